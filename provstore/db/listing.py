"""Listing products and runs newest first, a page at a time, from the index alone.

Pages are keyset-paged (no ``OFFSET``): a page ends with a cursor, the sort key of its last
row, and the next page starts after it, so every page costs the same however deep it is.
Products are ordered by the start of the run that made them, newest first, then by digest;
source products (no run) come last.  Name and path globs use the byte-ordered text index
through the literal prefix before the first wildcard.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.engine import Connection

from provstore.core.chunks import chunked
from provstore.core.objects import Run, RunEnd, Sealed
from provstore.db import dialects, schema
from provstore.db.dialects import Dialect
from provstore.db.engine import param_mark

__all__ = [
    "ProductFilter",
    "ProductRow",
    "RunFilter",
    "RunSummary",
    "job_label",
    "products_query",
    "run_summary",
    "runs_query",
]

NO_RUN = -1  # the sort key of a product no run made: after every run (times are >= 0)


@dataclass(frozen=True, slots=True)
class ProductFilter:
    """Which products a listing holds; None means any."""

    name: str | None = None
    path: str | None = None
    run: bytes | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    at: str | None = None
    """An exact path (``path`` is a glob)."""


@dataclass(frozen=True, slots=True)
class ProductRow:
    """One product as the index knows it (no object is loaded for a listing)."""

    digest: bytes
    name: str
    version: str | None
    size: int | None
    run: bytes | None
    path: str | None
    started_ns: int | None

    @property
    def cursor(self) -> tuple[int, bytes]:
        """The sort key that the next page starts after."""
        return (NO_RUN if self.started_ns is None else self.started_ns, self.digest)

    @classmethod
    def from_row(cls, row: Any) -> ProductRow:
        """From a :func:`products_query` row."""
        run = None if row[4] is None else bytes(row[4])
        return cls(bytes(row[0]), row[1], row[2], row[3], run, row[5], row[6])


def job_label(job: Mapping[str, Any] | None) -> str:
    """``slurm 12345_7``-style text for a run's batch job, or ``""``."""
    job = job or {}
    if not job.get("id"):
        return ""
    task = f"_{job['task_id']}" if job.get("task_id") else ""
    array = job.get("array_id")
    ident = f"{array}{task}" if array and task else f"{job['id']}{task}"
    return f"{job.get('scheduler', 'job')} {ident}"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One line of ``provstore log``: a run, how it ended, and how many products it made."""

    digest: bytes
    started_ns: int
    host: str
    user: str
    name: str | None
    status: str | None
    finished_ns: int | None
    products: int
    exit_code: int | None = None
    command: tuple[str, ...] | None = None
    """The command ``provstore run`` ran, else the tracked process's ``argv``."""
    error: str | None = None
    job: Mapping[str, Any] | None = None
    """The batch job (or pod) the run belonged to: scheduler, id, array and task ids, ..."""

    @property
    def job_label(self) -> str:
        """``slurm 12345_7``-style text for the run's job, or ``""``."""
        return job_label(self.job)

    @property
    def cursor(self) -> tuple[int, bytes]:
        """The sort key that the next page starts after."""
        return (self.started_ns, self.digest)

    @property
    def duration_ns(self) -> int | None:
        """How long the run took (None while it has no end)."""
        return None if self.finished_ns is None else self.finished_ns - self.started_ns

    @property
    def label(self) -> str:
        """The run's name, else its command shortened to 60 characters."""
        if self.name:
            return self.name
        text = shlex.join(self.command or ())
        return text if len(text) <= 60 else text[:57] + "..."


def run_summary(row: Any, objects: Mapping[bytes, Sealed]) -> RunSummary:
    """A :class:`RunSummary` from a :func:`runs_query` row and the run and end objects."""
    digest = row[0]
    run = objects.get(digest)
    end = objects.get(row[8]) if row[8] is not None else None
    command = None
    if run is not None and isinstance(run.obj, Run):
        command = run.obj.command if run.obj.command is not None else run.obj.argv
    job = run.obj.job if run is not None and isinstance(run.obj, Run) else None
    exit_code = error = None
    if end is not None and isinstance(end.obj, RunEnd):
        exit_code, error = end.obj.exit_code, end.obj.error
    started, host, user, name, status, finished, products = row[1:8]
    return RunSummary(
        digest, started, host, user, name, status, finished, products, exit_code, command, error,
        job,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs ``provstore log`` lists; None means any."""

    status: str | None = None  # succeeded, failed or unfinished
    since_ns: int | None = None
    until_ns: int | None = None
    host: str | None = None
    name: str | None = None  # a glob on the run's name
    job: str | None = None  # a batch job's id, or an array job's id (all its tasks)


def _prefix_range(column: Any, pattern: str) -> list[Any]:
    """The index range of the glob's literal prefix (empty when it starts with a wildcard)."""
    cut = min((i for i, c in enumerate(pattern) if c in "*?["), default=len(pattern))
    prefix = pattern[:cut]
    if not prefix:
        return []
    if cut == len(pattern):
        return [column == prefix]
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return [column >= prefix, column < upper]


def glob_clauses(dialect: Dialect, column: Any, pattern: str) -> list[Any]:
    """A glob's range on the index, and the glob itself when the range does not say it all."""
    clauses = _prefix_range(column, pattern)
    literal_prefix_only = pattern.endswith("*") and not any(c in "*?[" for c in pattern[:-1])
    if not (clauses and literal_prefix_only) and any(c in "*?[" for c in pattern):
        clauses.append(dialect.glob(column, pattern))
    return clauses


_O = schema.objects.alias("o")  # the product's (or run's) own digest
_RO = schema.objects.alias("ro")  # the digest of the run it refers to
_EO = schema.objects.alias("eo")  # the digest of the run's end


def _product_columns() -> tuple[Any, ...]:
    p, r = schema.products.c, schema.runs.c
    return (_O.c.digest, p.name, p.version, p.size, _RO.c.digest, p.path, r.started_ns)


def _with_digests(joined: Any) -> Any:
    """Products joined to their own digest and to their run's."""
    p = schema.products.c
    return joined.join(_O, _O.c.id == p.id).outerjoin(_RO, _RO.c.id == p.run)


def _id_of(digest: bytes) -> Any:
    o = schema.objects.c
    return select(o.id).where(o.digest == digest).scalar_subquery()


def products_query(
    dialect: Dialect, where: ProductFilter, after: tuple[int, bytes] | None, limit: int | None
) -> Any:
    """One page of products, newest run first (see the module docstring)."""
    p, r = schema.products.c, schema.runs.c
    started = func.coalesce(r.started_ns, literal(NO_RUN))
    query = select(*_product_columns()).select_from(
        _with_digests(schema.products.outerjoin(schema.runs, r.id == p.run))
    )
    clauses: list[Any] = []
    if where.name is not None:
        clauses += glob_clauses(dialect, p.name, where.name)
    if where.path is not None:
        clauses += glob_clauses(dialect, p.path, where.path)
    if where.at is not None:
        clauses.append(p.path == where.at)
    if where.run is not None:
        clauses.append(p.run == _id_of(where.run))
    if where.since_ns is not None:
        clauses.append(r.started_ns >= where.since_ns)
    if where.until_ns is not None:
        clauses.append(r.started_ns < where.until_ns)
    if after is not None:
        clauses.append(or_(started < after[0], and_(started == after[0], _O.c.digest > after[1])))
    query = query.where(*clauses).order_by(started.desc(), _O.c.digest)
    return query if limit is None else query.limit(limit)


def runs_query(
    dialect: Dialect, where: RunFilter, after: tuple[int, bytes] | None, limit: int
) -> Any:
    """One page of runs, newest first, with how each ended and its product count."""
    r, e, p = schema.runs.c, schema.run_ends.c, schema.products.c
    count = select(func.count()).where(p.run == r.id).scalar_subquery()
    digest = _O.c.digest
    query = select(
        digest, r.started_ns, r.host, r.user, r.name, e.status, e.finished_ns, count, _EO.c.digest
    ).select_from(
        schema.runs.join(_O, _O.c.id == r.id)
        .outerjoin(schema.run_ends, e.run == r.id)
        .outerjoin(_EO, _EO.c.id == e.id)
    )
    clauses: list[Any] = []
    if where.status == "unfinished":
        clauses.append(e.id.is_(None))
    elif where.status is not None:
        clauses.append(e.status == where.status)
    if where.since_ns is not None:
        clauses.append(r.started_ns >= where.since_ns)
    if where.until_ns is not None:
        clauses.append(r.started_ns < where.until_ns)
    if where.host is not None:
        clauses.append(r.host == where.host)
    if where.name is not None:
        clauses += glob_clauses(dialect, r.name, where.name)
    if where.job is not None:
        clauses.append(or_(r.job == where.job, r.job_array == where.job))
    if after is not None:
        clauses.append(
            or_(r.started_ns < after[0], and_(r.started_ns == after[0], digest > after[1]))
        )
    return query.where(*clauses).order_by(r.started_ns.desc(), digest).limit(limit)


def products(
    conn: Connection, where: ProductFilter, after: tuple[int, bytes] | None, limit: int
) -> list[ProductRow]:
    """One page of products (see :func:`products_query`).

    Without a name, path or run filter the page is read run start by run start (see
    :func:`_by_start`), so its cost does not grow with the store.
    """
    if where.name in (None, "*") and where.path is None and where.at is None and where.run is None:
        return _by_start(conn, where, after, limit)
    query = products_query(dialects.of(conn), where, after, limit)
    return [ProductRow.from_row(row) for row in conn.execute(query)]


_STARTS_PER_QUERY = 16


def _by_start(
    conn: Connection, where: ProductFilter, after: tuple[int, bytes] | None, limit: int
) -> list[ProductRow]:
    """The page :func:`products_query` returns, read from the newest run start down.

    Sorting every product by its run's start costs a pass over the whole index (seconds at
    a million products); instead each distinct start time, newest first, is looked up in the
    runs index and its products fetched through the products' run index, until the page is
    full.  Source products (no run) follow, by digest, unless a time filter excludes them.
    """
    p, r = schema.products.c, schema.runs.c
    columns = _product_columns()
    digest = _O.c.digest
    out: list[ProductRow] = []
    upper = None if after is None or after[0] == NO_RUN else after[0]
    in_sources = after is not None and after[0] == NO_RUN
    while not in_sources and len(out) < limit:
        starts_query = select(r.started_ns).distinct().order_by(r.started_ns.desc())
        if upper is not None:
            starts_query = starts_query.where(r.started_ns <= upper)
        if where.since_ns is not None:
            starts_query = starts_query.where(r.started_ns >= where.since_ns)
        if where.until_ns is not None:
            starts_query = starts_query.where(r.started_ns < where.until_ns)
        starts = list(conn.execute(starts_query.limit(_STARTS_PER_QUERY)).scalars())
        for start in starts:
            query = select(*columns).select_from(
                _with_digests(schema.runs.join(schema.products, p.run == r.id))
            )
            query = query.where(r.started_ns == start)
            if after is not None and after[0] == start:
                query = query.where(digest > after[1])
            query = query.order_by(digest).limit(limit - len(out))
            out += [ProductRow.from_row(row) for row in conn.execute(query)]
            if len(out) >= limit:
                return out
        if len(starts) < _STARTS_PER_QUERY:
            break
        upper = starts[-1] - 1
    if where.since_ns is not None or where.until_ns is not None or len(out) >= limit:
        return out
    query = select(*columns).select_from(
        _with_digests(schema.products.outerjoin(schema.runs, r.id == p.run))
    )
    query = query.where(p.run.is_(None))
    if in_sources and after is not None:
        query = query.where(digest > after[1])
    query = query.order_by(digest).limit(limit - len(out))
    return out + [ProductRow.from_row(row) for row in conn.execute(query)]


def runs(
    conn: Connection, where: RunFilter, after: tuple[int, bytes] | None, limit: int
) -> list[tuple[Any, ...]]:
    """One page of :func:`runs_query` rows, digests as bytes."""
    rows = conn.execute(runs_query(dialects.of(conn), where, after, limit)).all()
    return [(bytes(r[0]), *r[1:8], None if r[8] is None else bytes(r[8])) for r in rows]


_WITH_CONTENT = (
    "SELECT o.digest, p.name, p.version, p.size, ro.digest, p.path, r.started_ns, p.content "
    "FROM products p JOIN objects o ON o.id = p.id LEFT JOIN runs r ON r.id = p.run "
    "LEFT JOIN objects ro ON ro.id = p.run WHERE p.content IN ({marks})"
)


def with_content(conn: Connection, contents: Iterable[bytes]) -> dict[bytes, list[ProductRow]]:
    """For each content digest, the products with those bytes, newest first.

    Plain driver SQL: ``status`` asks this for every file of a tree, a chunk at a time.
    """
    mark = param_mark(conn)
    out: dict[bytes, list[ProductRow]] = {}
    for part in chunked(sorted(set(contents))):
        sql = _WITH_CONTENT.format(marks=", ".join([mark] * len(part)))
        for row in conn.exec_driver_sql(sql, tuple(part)):
            out.setdefault(bytes(row[7]), []).append(ProductRow.from_row(row))
    for rows in out.values():
        rows.sort(key=lambda row: (-row.cursor[0], row.digest))
    return out


def recorded_paths(conn: Connection, paths: Iterable[str]) -> set[str]:
    """Those of these absolute paths at which some product was recorded (driver SQL)."""
    mark = param_mark(conn)
    found: set[str] = set()
    for part in chunked(sorted(set(paths))):
        sql = f"SELECT path FROM products WHERE path IN ({', '.join([mark] * len(part))})"
        found.update(path for (path,) in conn.exec_driver_sql(sql, tuple(part)))
    return found


def product_count(conn: Connection) -> int:
    """How many products the index holds (driver SQL).

    Products are only ever added, so within one read two equal counts mean the same set of
    products: ``status`` keeps its verdicts while the count has not moved.
    """
    return int(conn.exec_driver_sql("SELECT count(*) FROM products").scalar() or 0)
