"""The store: objects and their index in one database, read and written through SQLAlchemy.

Every write is one transaction holding the objects and every index row derived from them;
every read of an object re-hashes its bytes.  The index tables can always be rebuilt from the
``objects`` table (:meth:`Store.reindex`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import blake3
from sqlalchemy import bindparam, func, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from provstore.core.digests import DIGEST_SIZE, parse_ref, to_hex
from provstore.core.errors import (
    AmbiguousDigestError,
    CorruptObjectError,
    SchemaVersionError,
    StoreError,
    UnknownDigestError,
    WrongKindError,
)
from provstore.core.objects import Environment, Product, Run, RunEnd, Sealed, load, seal
from provstore.db import engine as backend
from provstore.db import lineage as walk
from provstore.db import schema
from provstore.db.connections import Readers

__all__ = [
    "INDEX_TABLES",
    "Lineage",
    "RunSummary",
    "Store",
    "index_rows",
    "write_items",
]

INDEX_TABLES = (schema.products, schema.product_parents, schema.runs, schema.run_ends)
_CANDIDATES_SHOWN = 10

# Hot reads, built once (SQLAlchemy then only looks their compiled form up in its cache).
_O = schema.objects.c
_DATA_BY_DIGEST = select(_O.data).where(_O.digest == bindparam("digest"))
_HAS_DIGEST = select(_O.digest).where(_O.digest == bindparam("digest"))
_BY_PREFIX = (
    select(_O.digest, _O.data).where(_O.digest.between(bindparam("low"), bindparam("high")))
).limit(2)


@dataclass(frozen=True, slots=True)
class Lineage:
    """The ancestors or descendants of ``root``: each node's depth, and the edges between.

    Edges are ``(child, parent)`` pairs whatever the direction.
    """

    root: bytes
    direction: str
    depths: dict[bytes, int]
    edges: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One line of ``provstore log``."""

    digest: bytes
    started_ns: int
    host: str
    user: str
    name: str | None
    status: str | None
    finished_ns: int | None
    products: int


def index_rows(item: Sealed) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """The index rows an object implies, as ``(table, row)`` pairs (none for most kinds)."""
    obj = item.obj
    if isinstance(obj, Product):
        name_key = blake3.blake3(obj.name.encode("utf-8")).digest()
        yield (
            schema.products,
            (item.digest, name_key, obj.name, obj.version, obj.content, obj.size, obj.run),
        )
        for parent in obj.parents:
            yield schema.product_parents, (item.digest, parent)
    elif isinstance(obj, Run):
        yield (
            schema.runs,
            (item.digest, obj.environment, obj.started_ns, obj.host, obj.user, obj.name),
        )
    elif isinstance(obj, RunEnd):
        yield schema.run_ends, (item.digest, obj.run, obj.status, obj.finished_ns)


@functools.cache
def _find_query(name: bool, version: bool, content: str | None, limited: bool) -> Any:
    """The ``find_products`` statement for this combination of filters (built once each)."""
    p, r, o = schema.products, schema.runs, schema.objects
    query = select(p.c.digest, o.c.data).select_from(
        p.join(o, o.c.digest == p.c.digest).outerjoin(r, r.c.digest == p.c.run)
    )
    if name:
        query = query.where(p.c.name_key == bindparam("name_key"), p.c.name == bindparam("name"))
    if version:
        query = query.where(p.c.version == bindparam("version"))
    if content == "exact":
        query = query.where(p.c.content == bindparam("content"))
    elif content == "range":
        query = query.where(p.c.content.between(bindparam("low"), bindparam("high")))
    query = query.order_by(r.c.started_ns.desc(), p.c.digest)
    return query.limit(bindparam("limit")) if limited else query


def write_items(conn: Connection, items: Iterable[Sealed]) -> int:
    """Insert objects and the index rows they imply, idempotently, in the open transaction.

    Returns how many of the objects were new to the store.
    """
    rows: dict[Any, list[tuple[Any, ...]]] = {table: [] for table in INDEX_TABLES}
    object_rows = []
    for item in items:
        object_rows.append((item.digest, item.kind, len(item.data), item.data))
        for table, row in index_rows(item):
            rows[table].append(row)
    added = backend.insert_ignore(conn, schema.objects, object_rows)
    for table, table_rows in rows.items():
        backend.insert_ignore(conn, table, table_rows)
    return added


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _reads(method: Callable[Concatenate[Store, _P], _T]) -> Callable[Concatenate[Store, _P], _T]:
    """Run a read again, once, when its held connection turned out dead (server restart)."""

    @functools.wraps(method)
    def wrapper(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except DBAPIError as exc:
            if not (self._readers.hold and exc.connection_invalidated):
                raise
            return method(self, *args, **kwargs)

    return wrapper


class Store:
    """A provstore store behind one database URL."""

    def __init__(self, url: str, *, pooled: bool = True) -> None:
        self.url = url
        self.engine: Engine = backend.connect(url, pooled=pooled)
        # On a server a pooled store keeps one autocommit connection per thread for reads:
        # a lookup is then one round trip, not four (pre-ping, BEGIN, SELECT, ROLLBACK).
        self._readers = Readers(self.engine, hold=pooled and self.engine.dialect.name != "sqlite")
        try:
            backend.retrying(self._ensure_schema)
        except (OperationalError, DBAPIError) as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the store at {self.safe_url}: {exc.orig}") from None
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release every connection."""
        self._readers.close()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------

    def _read_version(self) -> str | None:
        query = select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
        try:  # the common case, one query; the inspector only when the table may be missing
            with self._readers.connection() as conn:
                value: str | None = conn.execute(query).scalar_one_or_none()
                return value
        except DBAPIError:
            with self._readers.connection() as conn:
                if not inspect(conn).has_table(schema.meta.name):
                    return None
                again: str | None = conn.execute(query).scalar_one_or_none()  # created meanwhile
                return again

    def _ensure_schema(self) -> None:
        version = self._read_version()
        if version is None:
            backend.retrying(self._create_schema)
            version = self._read_version()
        if version != str(schema.SCHEMA_VERSION):
            raise SchemaVersionError(str(version), schema.SCHEMA_VERSION)

    def _create_schema(self) -> None:
        with backend.write_transaction(self.engine) as conn:
            name = conn.dialect.name
            if name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727300001)")
            elif name in ("mysql", "mariadb"):
                conn.exec_driver_sql("SELECT GET_LOCK('provstore_schema', 120)")
            try:
                # Under the lock another process's creation is either whole or not begun.
                found = inspect(conn)
                if not found.has_table(schema.meta.name) and found.has_table(schema.objects.name):
                    raise StoreError(
                        f"{self.safe_url} holds an 'objects' table but no provstore schema "
                        "record; it is not a provstore store. Use another database."
                    )
                schema.prepare(name)
                schema.metadata.create_all(conn, checkfirst=True)
                backend.insert_ignore(
                    conn, schema.meta, [("schema_version", str(schema.SCHEMA_VERSION))]
                )
            finally:
                if name in ("mysql", "mariadb"):
                    conn.exec_driver_sql("SELECT RELEASE_LOCK('provstore_schema')")

    # -- writing -----------------------------------------------------------------------------

    def put(self, items: Iterable[Sealed]) -> None:
        """Store objects and their index rows in one transaction (idempotent)."""
        batch = list(items)

        def write() -> None:
            with backend.write_transaction(self.engine) as conn:
                write_items(conn, batch)

        if batch:
            backend.retrying(write)

    # -- reading -----------------------------------------------------------------------------

    @_reads
    def resolve(self, ref: str | bytes) -> bytes:
        """The full digest named by raw bytes, hex text or a unique hex prefix."""
        if isinstance(ref, bytes):
            if len(ref) != DIGEST_SIZE:
                raise UnknownDigestError(ref.hex())
            if not self.contains(ref):
                raise UnknownDigestError(ref.hex())
            return ref
        parsed = parse_ref(ref)
        col = schema.objects.c.digest
        query = select(col).where(col.between(parsed.low, parsed.high)).order_by(col)
        with self._readers.connection() as conn:
            found = list(conn.execute(query.limit(_CANDIDATES_SHOWN + 1)).scalars())
        if not found:
            raise UnknownDigestError(ref)
        if len(found) > 1:
            shown = [to_hex(d) for d in found[:_CANDIDATES_SHOWN]]
            if len(found) > _CANDIDATES_SHOWN:
                shown.append("...")
            raise AmbiguousDigestError(ref, shown)
        return bytes(found[0])

    @_reads
    def contains(self, digest: bytes) -> bool:
        """Whether an object with this digest is stored (one indexed lookup)."""
        with self._readers.connection() as conn:
            return conn.execute(_HAS_DIGEST, {"digest": digest}).first() is not None

    @_reads
    def missing(self, digests: Iterable[bytes]) -> set[bytes]:
        """Those of ``digests`` that are not stored."""
        wanted = set(digests)
        col = schema.objects.c.digest
        present: set[bytes] = set()
        chunk = sorted(wanted)
        with self._readers.connection() as conn:
            for start in range(0, len(chunk), 500):
                part = chunk[start : start + 500]
                present.update(
                    bytes(d) for d in conn.execute(select(col).where(col.in_(part))).scalars()
                )
        return wanted - present

    @_reads
    def get(self, ref: str | bytes, *, kind: str | Sequence[str] | None = None) -> Sealed:
        """The verified object named by ``ref``; with ``kind``, refuse objects of another.

        A full digest costs one indexed query; a prefix costs one more to make sure it is
        unique.
        """
        if isinstance(ref, bytes) and len(ref) == DIGEST_SIZE:
            return self._load(ref, kind)
        if isinstance(ref, str):
            exact = parse_ref(ref).exact
            if exact is not None:
                return self._load(exact, kind, ref)
        parsed = parse_ref(ref) if isinstance(ref, str) else None
        if parsed is None:
            return self._load(self.resolve(ref), kind)
        with self._readers.connection() as conn:
            rows = conn.execute(_BY_PREFIX, {"low": parsed.low, "high": parsed.high}).all()
        if len(rows) != 1:  # unknown or ambiguous: resolve() says which, with the candidates
            return self._load(self.resolve(ref), kind)
        return self._checked(load(bytes(rows[0][0]), bytes(rows[0][1])), kind)

    @_reads
    def get_many(
        self, digests: Iterable[bytes], *, corrupt: dict[bytes, str] | None = None
    ) -> dict[bytes, Sealed]:
        """Verified objects by digest (those not stored are absent from the result).

        A corrupt object raises :class:`CorruptObjectError`, unless ``corrupt`` is given: then
        its reason is recorded there and the others are still returned.
        """
        wanted = sorted(set(digests))
        table = schema.objects
        found: dict[bytes, Sealed] = {}
        with self._readers.connection() as conn:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                query = select(table.c.digest, table.c.data).where(table.c.digest.in_(part))
                for raw_digest, data in conn.execute(query):
                    digest = bytes(raw_digest)
                    try:
                        found[digest] = load(digest, bytes(data))
                    except CorruptObjectError as exc:
                        if corrupt is None:
                            raise
                        corrupt[digest] = exc.reason
        return found

    @_reads
    def run_ends(self, runs: Iterable[bytes]) -> list[bytes]:
        """Digests of the end records of these runs."""
        wanted = sorted(set(runs))
        col = schema.run_ends.c
        out: list[bytes] = []
        with self._readers.connection() as conn:
            for start in range(0, len(wanted), 500):
                query = select(col.digest).where(col.run.in_(wanted[start : start + 500]))
                out.extend(bytes(d) for d in conn.execute(query).scalars())
        return out

    @_reads
    def products_of_run(self, run: bytes) -> list[Sealed]:
        """Every product a run made (through the ``products.run`` index)."""
        col = schema.products.c
        with self._readers.connection() as conn:
            rows = conn.execute(select(col.digest).where(col.run == run)).scalars()
            digests = [bytes(d) for d in rows]
        return list(self.get_many(digests).values())

    def _load(
        self, digest: bytes, kind: str | Sequence[str] | None, ref: str | None = None
    ) -> Sealed:
        with self._readers.connection() as conn:
            data = conn.execute(_DATA_BY_DIGEST, {"digest": digest}).scalar()
        if data is None:
            raise UnknownDigestError(ref or to_hex(digest))
        return self._checked(load(digest, bytes(data)), kind)

    @staticmethod
    def _checked(item: Sealed, kind: str | Sequence[str] | None) -> Sealed:
        kinds = (kind,) if isinstance(kind, str) else kind
        if kinds is not None and item.kind not in kinds:
            raise WrongKindError(item.hex, item.kind, kinds)
        return item

    @_reads
    def find_products(
        self,
        name: str | None = None,
        content_digest: str | bytes | None = None,
        version: str | None = None,
        limit: int | None = None,
    ) -> list[Sealed]:
        """Products by name, version and/or content digest, newest run first."""
        params: dict[str, Any] = {}
        if name is not None:
            params["name_key"] = blake3.blake3(name.encode("utf-8")).digest()
            params["name"] = name
        if version is not None:
            params["version"] = version
        match = None
        if content_digest is not None:
            raw = (
                content_digest if isinstance(content_digest, bytes) else parse_ref(content_digest)
            )
            if isinstance(raw, bytes) or raw.exact is not None:
                match, params["content"] = "exact", raw if isinstance(raw, bytes) else raw.exact
            else:
                match, params["low"], params["high"] = "range", raw.low, raw.high
        if limit is not None:
            params["limit"] = limit
        query = _find_query(name is not None, version is not None, match, limit is not None)
        with self._readers.connection() as conn:
            rows = conn.execute(query, params).all()
        return [load(bytes(digest), bytes(data)) for digest, data in rows]

    def environment_of(self, ref: str | bytes) -> Sealed:
        """The environment behind an environment, a run or a product (through its run)."""
        item = self.get(ref, kind=("environment", "run", "product"))
        if isinstance(item.obj, Product):
            if item.obj.run is None:
                raise WrongKindError(item.hex, "source product (no run)", ("made product",))
            item = self.get(item.obj.run, kind="run")
        if isinstance(item.obj, Run):
            item = self.get(item.obj.environment, kind="environment")
        return item

    @_reads
    def match_environment(self, env: Environment | None = None) -> str | None:
        """The hex digest of ``env`` (default: this process's) if the store holds it."""
        if env is None:
            from provstore.capture.snapshot import capture_environment

            digest = capture_environment().environment.digest
        else:
            digest = seal(env).digest
        return to_hex(digest) if self.contains(digest) else None

    @_reads
    def lineage(
        self, ref: str | bytes, direction: str = "ancestors", depth: int | None = None
    ) -> Lineage:
        """Ancestors or descendants of a product, to ``depth`` levels (all when None).

        ``depths`` maps each product reached to its distance from ``ref`` (the shortest path);
        ``edges`` holds every parent link among them, so a depth-limited lineage is exactly the
        unlimited one cut down to the products within ``depth``.
        """
        if direction not in ("ancestors", "descendants"):
            raise ValueError("direction must be 'ancestors' or 'descendants'")
        item = self.get(ref, kind="product")
        root = item.digest
        near = "child" if direction == "ancestors" else "parent"
        with self._readers.connection() as conn:
            if depth is not None and depth <= walk.LEVEL_WALK_MAX:
                # a product names its parents: the first level of ancestors needs no query
                obj = item.obj
                assert isinstance(obj, Product)
                first = obj.parents if direction == "ancestors" and depth else None
                depths, edges = walk.edges_by_level(conn, root, near, depth, first)
            else:
                edges = walk.all_edges(conn, root, near)
                depths = walk.levels(root, edges, near, depth)
        kept = tuple(sorted(e for e in edges if e[0] in depths and e[1] in depths))
        return Lineage(root, direction, depths, kept)

    @_reads
    def labels(self, digests: Iterable[bytes]) -> dict[bytes, str]:
        """``"name version"`` of each product among ``digests``, from the index."""
        col = schema.products.c
        wanted = sorted(set(digests))
        out: dict[bytes, str] = {}
        with self._readers.connection() as conn:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                query = select(col.digest, col.name, col.version).where(col.digest.in_(part))
                for digest, name, version in conn.execute(query):
                    out[bytes(digest)] = f"{name} {version}" if version else name
        return out

    @_reads
    def runs(self, limit: int = 20) -> list[RunSummary]:
        """The most recent runs, newest first, with how they ended and how many products."""
        r, e, p = schema.runs, schema.run_ends, schema.products
        count = select(func.count()).where(p.c.run == r.c.digest).scalar_subquery()
        query = (
            select(r.c.digest, r.c.started_ns, r.c.host, r.c.user, r.c.name,
                   e.c.status, e.c.finished_ns, count)
            .select_from(r.outerjoin(e, e.c.run == r.c.digest))
            .order_by(r.c.started_ns.desc(), r.c.digest)
            .limit(limit)
        )  # fmt: skip
        with self._readers.connection() as conn:
            rows = conn.execute(query).all()
        return [RunSummary(bytes(row[0]), *row[1:]) for row in rows]

    @_reads
    def stats(self) -> dict[str, Any]:
        """Object counts by kind and bytes stored."""
        o = schema.objects
        query = select(o.c.kind, func.count(), func.coalesce(func.sum(o.c.size), 0)).group_by(
            o.c.kind
        )
        with self._readers.connection() as conn:
            rows = conn.execute(query).all()
            edges = conn.execute(select(func.count()).select_from(schema.product_parents)).scalar()
        counts = {
            kind: 0
            for kind in ("environment", "libraryset", "variables", "run", "runend", "product")
        }
        total = 0
        for kind, n, size in rows:
            counts[kind] = int(n)
            total += int(size)
        return {
            "objects": counts,
            "bytes": total,
            "parent_links": int(edges or 0),
            "url": self.safe_url,
        }

    def reindex(self, batch: int = 5000, on_progress: Callable[[int], None] | None = None) -> int:
        """Rebuild every index table from the stored objects, in one transaction.

        Returns how many objects were indexed; ``on_progress(n)`` follows each page.  Objects
        that do not hash or decode are skipped (``provstore fsck`` lists them), so one damaged
        object cannot keep the rest of the index from being rebuilt.
        """
        o = schema.objects
        done = 0
        with backend.write_transaction(self.engine) as conn:
            for table in INDEX_TABLES:
                conn.execute(table.delete())
            last = b""
            while True:
                query = select(o.c.digest, o.c.data).where(o.c.digest > last)
                page = conn.execute(query.order_by(o.c.digest).limit(batch)).all()
                if not page:
                    break
                rows: dict[Any, list[tuple[Any, ...]]] = {t: [] for t in INDEX_TABLES}
                for digest, data in page:
                    try:
                        item = load(bytes(digest), bytes(data))
                    except CorruptObjectError:
                        continue  # `provstore fsck` lists it; the rest still gets indexed
                    done += 1
                    for table, row in index_rows(item):
                        rows[table].append(row)
                for table, table_rows in rows.items():
                    backend.insert_ignore(conn, table, table_rows)
                last = bytes(page[-1][0])
                if on_progress is not None:
                    on_progress(len(page))
        return done
