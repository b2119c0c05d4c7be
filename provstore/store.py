"""The store: objects and their index in one database, read and written through SQLAlchemy.

Every write is one transaction holding the objects and every index row derived from them;
every read of an object re-hashes its bytes.  The index tables can always be rebuilt from the
``objects`` table (:meth:`Store.reindex`).

This class knows the database; verifying, diffing and moving provenance are built on top of
it (:class:`provstore.api.Store` gathers them into the store users hold).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from provstore import resolver
from provstore.core.chunks import chunked
from provstore.core.contracts import (
    Verdict,
    all_of,
    is_count,
    is_digest_ref,
    is_optional_str,
    requires,
)
from provstore.core.digests import DIGEST_SIZE, parse_ref, to_hex
from provstore.core.errors import (
    AmbiguousDigestError,
    CorruptObjectError,
    StoreError,
    UnknownDigestError,
    WrongKindError,
)
from provstore.core.objects import KINDS, Environment, Product, Run, Sealed, load, seal
from provstore.db import dialects, index, layout, lineage_stream, listing, queries, schema
from provstore.db import lineage as walks
from provstore.db.connections import Readers
from provstore.db.engine import connect, failover, retrying, storage_error, write_transaction
from provstore.db.listing import ProductFilter, ProductRow, RunFilter, RunSummary
from provstore.db.setup import check_schema, ensure_schema

__all__ = ["Lineage", "ProductFilter", "ProductRow", "RunFilter", "RunSummary", "Store"]

_CANDIDATES_SHOWN = 10
_PAGE = 64  # products with the same content decoded per query, looking for one at a path
_T = TypeVar("_T")
_P = ParamSpec("_P")


@dataclass(frozen=True, slots=True)
class Lineage:
    """The ancestors or descendants of ``root``: each node's depth, and the edges between.

    Edges are ``(child, parent)`` pairs whatever the direction.
    """

    root: bytes
    direction: str
    depths: dict[bytes, int]
    edges: tuple[tuple[bytes, bytes], ...]

    def __iter__(self) -> Iterator[bytes]:
        """The products reached, nearest first (the root itself first), then by digest."""
        return iter(sorted(self.depths, key=lambda digest: (self.depths[digest], digest)))

    def __len__(self) -> int:
        return len(self.depths)


def _reads(method: Callable[Concatenate[Store, _P], _T]) -> Callable[Concatenate[Store, _P], _T]:
    """Run a read again, once, when its held connection turned out dead (server restart).

    Where the URL names several hosts, a read whose server is gone runs again on another one,
    as a write does (:meth:`Store.retrying`).
    """

    @functools.wraps(method)
    def wrapper(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except DBAPIError as exc:
            if self.failover and self.dialect.is_connection_lost(exc):
                return self.retrying(lambda: method(self, *args, **kwargs))
            if not (self._readers.hold and exc.connection_invalidated):
                raise
            return method(self, *args, **kwargs)

    return wrapper


def _is_kind(kind: Any) -> Verdict:
    kinds = (kind,) if isinstance(kind, str) else kind
    if kind is None or (
        isinstance(kinds, (tuple, list)) and kinds and all(k in KINDS for k in kinds)
    ):
        return True
    return f"kind must be one of {', '.join(KINDS)} (or a list of them), not {kind!r}"


def _lineage_args(
    self: Store, ref: Any, direction: Any = "ancestors", depth: Any = None
) -> Verdict:
    if direction not in ("ancestors", "descendants"):
        return f"direction must be 'ancestors' or 'descendants', not {direction!r}"
    return all_of(is_digest_ref(ref), is_count(depth, "depth", optional=True))


def _find_args(
    self: Store,
    name: Any = None,
    content_digest: Any = None,
    version: Any = None,
    limit: Any = None,
) -> Verdict:
    return all_of(
        is_optional_str(name, "name"),
        True if content_digest is None else is_digest_ref(content_digest, "content_digest"),
        is_optional_str(version, "version"),
        is_count(limit, "limit", optional=True),
    )


def _all_sealed(self: Store, items: Iterable[Any]) -> Verdict:
    if isinstance(items, Sequence) and not all(isinstance(i, Sealed) for i in items):
        return "put() stores sealed objects: seal each with provstore.core.objects.seal()"
    return True


class Store:
    """A provstore store behind one database URL."""

    def __init__(self, url: str, *, pooled: bool = True, create: bool = True) -> None:
        """Open the store at ``url``, creating its schema if the database has none.

        ``create=False`` creates nothing (:class:`NoStoreError` when there is no store) and
        opens a SQLite file read-only: for commands that only read.
        """
        self.url = url
        self.dialect = dialects.for_url(url)
        self.safe_url = dialects.parse_url(url).render_as_string(hide_password=True)
        """The URL with any password hidden, for messages."""
        self.engine: Engine = connect(url, pooled=pooled, read_only=not create)
        self.failover = failover(url)
        """The URL names several hosts: a lost connection is retried on another one."""
        self._known_ids: dict[bytes, int] = {}  # ids of rows put() committed (layout.remember)
        # On a server a pooled store keeps one autocommit connection per thread for reads:
        # a lookup is then one round trip, not four (pre-ping, BEGIN, SELECT, ROLLBACK).
        self._readers = Readers(self.engine, hold=pooled and self.dialect.hold_reads)
        try:
            shown, reader = self.safe_url, self._readers.connection
            if create:
                self.retrying(lambda: ensure_schema(self.engine, reader, shown))
            else:
                self.retrying(lambda: check_schema(reader, shown))
        except DBAPIError as exc:
            self.engine.dispose()
            error = storage_error(exc, self.engine)
            if error is not None:
                raise error from None
            detail = " ".join(str(exc.orig).split())
            raise StoreError(f"cannot open the store at {self.safe_url}: {detail}") from None
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        """Release every connection."""
        self._readers.close()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def retrying(self, action: Callable[[], _T]) -> _T:
        """Run ``action`` (a whole transaction) again on this database's transient errors.

        And, where the URL names several hosts, on a lost connection: on another host.
        """
        return retrying(action, self.dialect, failover=self.failover)

    # -- writing -----------------------------------------------------------------------------

    @requires(_all_sealed)
    def put(self, items: Iterable[Sealed]) -> None:
        """Store objects and their index rows in one transaction (idempotent)."""
        batch = list(items)

        def write() -> None:
            learned: dict[bytes, int] = {}
            with write_transaction(self.engine) as conn:
                index.write_items(conn, batch, self._known_ids, learned)
            layout.remember(self._known_ids, learned)  # committed: the ids stay

        if batch:
            self.retrying(write)

    def reindex(self, batch: int = 5000, on_progress: Callable[[int], None] | None = None) -> int:
        """Rebuild every index table from the stored objects, in one transaction.

        Returns how many objects were indexed; ``on_progress(n)`` follows each page.  Objects
        that do not hash or decode are skipped (``provstore fsck`` lists them).
        """
        with write_transaction(self.engine) as conn:
            return index.rebuild(conn, batch, on_progress)

    # -- reading objects ---------------------------------------------------------------------

    @requires(lambda self, ref: is_digest_ref(ref))
    def resolve(self, ref: str | bytes) -> bytes:
        """The digest ``ref`` names: a digest or prefix, ``name:NAME[@VERSION]`` or a file.

        Where it names several (a name, a file's bytes), the best match: for a file the product
        recorded at that path, then the newest; for a name the newest.
        """
        return resolver.resolve(self, ref)

    @requires(lambda self, ref: is_digest_ref(ref))
    def resolve_all(self, ref: str | bytes) -> list[bytes]:
        """Every digest ``ref`` names, best first (see :meth:`resolve`)."""
        return resolver.resolve_all(self, ref)

    @_reads
    def resolve_digest(self, ref: str | bytes) -> bytes:
        """The full digest named by raw bytes, hex text or a unique hex prefix."""
        if isinstance(ref, bytes):
            if len(ref) != DIGEST_SIZE or not self.contains(ref):
                raise UnknownDigestError(ref.hex())
            return ref
        parsed = parse_ref(ref)
        params = {"low": parsed.low, "high": parsed.high, "limit": _CANDIDATES_SHOWN + 1}
        with self._readers.connection() as conn:
            found = [bytes(d) for d in conn.execute(queries.DIGESTS_IN_RANGE, params).scalars()]
        if not found:
            raise UnknownDigestError(ref)
        if len(found) > 1:
            shown = [to_hex(d) for d in found[:_CANDIDATES_SHOWN]]
            if len(found) > _CANDIDATES_SHOWN:
                shown.append("...")
            raise AmbiguousDigestError(ref, shown)
        return found[0]

    @_reads
    def contains(self, digest: bytes) -> bool:
        """Whether an object with this digest is stored (one indexed lookup)."""
        with self._readers.connection() as conn:
            return conn.execute(queries.HAS_DIGEST, {"digest": digest}).first() is not None

    @_reads
    def missing(self, digests: Iterable[bytes]) -> set[bytes]:
        """Those of ``digests`` that are not stored."""
        with self._readers.connection() as conn:
            return index.absent(conn, digests)

    @requires(lambda self, ref, *, kind=None: all_of(is_digest_ref(ref), _is_kind(kind)))
    @_reads
    def get(self, ref: str | bytes, *, kind: str | Sequence[str] | None = None) -> Sealed:
        """The verified object named by ``ref``; with ``kind``, refuse objects of another.

        A full digest costs one indexed query; a prefix costs one more to make sure it is
        unique.
        """
        if isinstance(ref, bytes) and len(ref) == DIGEST_SIZE:
            return self._load(ref, kind)
        if not isinstance(ref, str):
            return self._load(self.resolve_digest(ref), kind)
        if not resolver.is_digest_text(ref) or os.path.isfile(ref):  # a name or a file
            return self._load(self.resolve(ref), kind)
        parsed = parse_ref(ref)
        if parsed.exact is not None:
            return self._load(parsed.exact, kind, ref)
        with self._readers.connection() as conn:
            rows = conn.execute(queries.BY_PREFIX, {"low": parsed.low, "high": parsed.high}).all()
        if len(rows) != 1:  # unknown or ambiguous: resolve_digest() says which, and lists
            return self._load(self.resolve_digest(ref), kind)
        return self._checked(load(bytes(rows[0][0]), bytes(rows[0][1])), kind)

    @_reads
    def get_many(
        self, digests: Iterable[bytes], *, corrupt: dict[bytes, str] | None = None
    ) -> dict[bytes, Sealed]:
        """Verified objects by digest (those not stored are absent from the result).

        A corrupt object raises :class:`CorruptObjectError`, unless ``corrupt`` is given: then
        its reason is recorded there and the others are still returned.
        """
        table = schema.objects
        found: dict[bytes, Sealed] = {}
        with self._readers.connection() as conn:
            for part in chunked(sorted(set(digests))):
                query = select(table.c.digest, table.c.data).where(
                    table.c.digest.in_(part), table.c.data.is_not(None)
                )
                for raw_digest, data in conn.execute(query):
                    digest = bytes(raw_digest)
                    try:
                        found[digest] = load(digest, bytes(data))
                    except CorruptObjectError as exc:
                        if corrupt is None:
                            raise
                        corrupt[digest] = exc.reason
        return found

    def _load(
        self, digest: bytes, kind: str | Sequence[str] | None, ref: str | None = None
    ) -> Sealed:
        with self._readers.connection() as conn:
            data = conn.execute(queries.DATA_BY_DIGEST, {"digest": digest}).scalar()
        if data is None:
            raise UnknownDigestError(ref or to_hex(digest))
        return self._checked(load(digest, bytes(data)), kind)

    @staticmethod
    def _checked(item: Sealed, kind: str | Sequence[str] | None) -> Sealed:
        kinds = (kind,) if isinstance(kind, str) else kind
        if kinds is not None and item.kind not in kinds:
            raise WrongKindError(item.hex, item.kind, kinds)
        return item

    # -- reading through the index -----------------------------------------------------------

    def _referring(self, table: Any, key: str, values: Iterable[bytes]) -> list[bytes]:
        """The digests of the rows of ``table`` whose ``key`` refers to one of ``values``."""
        col, o = table.c, schema.objects.c
        out: list[bytes] = []
        with self._readers.connection() as conn:
            ids = index.ids_of(conn, values)
            for part in chunked(sorted(ids.values())):
                query = (
                    select(o.digest)
                    .select_from(table.join(schema.objects, o.id == col.id))
                    .where(col[key].in_(part))
                )
                out.extend(bytes(d) for d in conn.execute(query).scalars())
        return out

    @_reads
    def run_ends(self, runs: Iterable[bytes]) -> list[bytes]:
        """Digests of the end records of these runs."""
        return self._referring(schema.run_ends, "run", runs)

    @_reads
    def made_by(self, runs: Iterable[bytes]) -> list[bytes]:
        """Digests of the products these runs made (digests of other kinds make none)."""
        return self._referring(schema.products, "run", runs)

    @_reads
    def signatures_of(self, digest: bytes) -> list[Sealed]:
        """The recorded signatures (of imported bundles) that name ``digest`` as a root.

        Signatures are few (one per signed import): they are read by kind and filtered here.
        Each is re-hashed; whether it verifies is for the caller (it needs the crypto).
        """
        with self._readers.connection() as conn:
            rows = index.objects_of_kind(conn, "signature")
        found = [load(d, data) for d, data in rows]
        return [item for item in found if digest in getattr(item.obj, "roots", ())]

    @_reads
    def get_bytes(self, digests: Iterable[bytes]) -> dict[bytes, bytes]:
        """Stored framed bytes by digest, not re-hashed: for callers that verified them."""
        table = schema.objects
        out: dict[bytes, bytes] = {}
        with self._readers.connection() as conn:
            for part in chunked(sorted(set(digests))):
                query = select(table.c.digest, table.c.data).where(
                    table.c.digest.in_(part), table.c.data.is_not(None)
                )
                out.update((bytes(d), bytes(data)) for d, data in conn.execute(query))
        return out

    @_reads
    def products_of_run(self, run: bytes) -> list[Sealed]:
        """Every product a run made (through the ``products.run`` index)."""
        return list(self.get_many(self.made_by([run])).values())

    @requires(_find_args)
    @_reads
    def find_products(
        self,
        name: str | None = None,
        content_digest: str | bytes | None = None,
        version: str | None = None,
        limit: int | None = None,
    ) -> list[Sealed]:
        """Products by name, version and/or content digest, newest run first (sources last)."""
        params: dict[str, Any] = {}
        if name is not None:
            params["name"] = name
        if version is not None:
            params["version"] = version
        match = None
        if isinstance(content_digest, bytes):
            match, params["content"] = "exact", content_digest
        elif content_digest is not None:
            parsed = parse_ref(content_digest)
            if parsed.exact is not None:
                match, params["content"] = "exact", parsed.exact
            else:
                match, params["low"], params["high"] = "range", parsed.low, parsed.high
        if limit is not None:
            params["limit"] = limit
        query = queries.find_products(
            name is not None, version is not None, match, limit is not None
        )
        with self._readers.connection() as conn:
            rows = conn.execute(query, params).all()
        return [load(bytes(digest), bytes(data)) for digest, data in rows]

    @requires(
        lambda self, content, path=None: all_of(
            (type(content) is bytes and len(content) == DIGEST_SIZE)
            or f"content must be the 32-byte digest of a file's bytes, not {content!r}",
            is_optional_str(path, "path", empty=False),
        )
    )
    @_reads
    def product_for(self, content: bytes, path: str | None = None) -> Sealed | None:
        """The product that stands for a file with these bytes (a 32-byte content digest).

        The newest product recorded at ``path`` (absolute, as products record it) with these
        bytes, else the newest with these bytes from any path; None when there is none.  One
        indexed query in the common case: candidates are read newest first, a page at a time,
        until one was recorded at ``path``.
        """
        query = queries.products_with_content()
        first: Sealed | None = None
        offset = 0
        with self._readers.connection() as conn:
            while True:
                params = {"content": content, "limit": _PAGE, "offset": offset}
                rows = conn.execute(query, params).all()
                for digest, data in rows:
                    item = load(bytes(digest), bytes(data))
                    if path is None or (isinstance(item.obj, Product) and item.obj.path == path):
                        return item
                    if first is None:
                        first = item
                if len(rows) < _PAGE:
                    return first
                offset += _PAGE

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

    @requires(
        lambda self, env=None: (
            env is None
            or isinstance(env, Environment)
            or f"env must be an Environment or None, not {type(env).__name__}"
        )
    )
    @_reads
    def match_environment(self, env: Environment | None = None) -> str | None:
        """The hex digest of ``env`` (default: this process's) if the store holds it."""
        if env is None:
            from provstore.capture.snapshot import capture_environment

            digest = capture_environment().environment.digest
        else:
            digest = seal(env).digest
        return to_hex(digest) if self.contains(digest) else None

    @requires(_lineage_args)
    @_reads
    def lineage(
        self, ref: str | bytes, direction: str = "ancestors", depth: int | None = None
    ) -> Lineage:
        """Ancestors or descendants of a product, to ``depth`` levels (all when None).

        ``depths`` maps each product reached to its distance from ``ref`` (the shortest path);
        ``edges`` holds every parent link among them, so a depth-limited lineage is exactly the
        unlimited one cut down to the products within ``depth``.
        """
        item = self.get(ref, kind="product")
        assert isinstance(item.obj, Product)
        # a product names its parents: the first level of ancestors needs no query
        first = item.obj.parents if direction == "ancestors" and depth else None
        with self._readers.connection() as conn:
            depths, edges = walks.walk(
                conn, item.digest, direction, depth, first, aside=self._readers.aside
            )
        return Lineage(item.digest, direction, depths, edges)

    @requires(_lineage_args)
    def iter_lineage(
        self, ref: str | bytes, direction: str = "ancestors", depth: int | None = None
    ) -> Iterator[tuple[bytes, int]]:
        """``(digest, depth)`` of the products :meth:`lineage` gives, streamed in its order.

        The root first, then level by level, each level by digest.  The walk keeps what it
        has visited in temporary tables on a connection of its own, so this process holds one
        page of digests, not the neighbourhood (edges are not given: use :meth:`lineage`).
        ``ref`` is resolved now; the walk runs as the iterator is consumed, in one read
        transaction, and needs the right to create temporary tables (a PostgreSQL hot
        standby refuses them; a read-only SQLite file does not).
        """
        item = self.get(ref, kind="product")
        return lineage_stream.stream(self.engine, item.digest, direction, depth)

    @_reads
    def labels(self, digests: Iterable[bytes]) -> dict[bytes, str]:
        """``"name version"`` of each product among ``digests``, from the index."""
        col, o = schema.products.c, schema.objects.c
        out: dict[bytes, str] = {}
        with self._readers.connection() as conn:
            for part in chunked(sorted(set(digests))):
                query = (
                    select(o.digest, col.name, col.version)
                    .select_from(schema.products.join(schema.objects, o.id == col.id))
                    .where(o.digest.in_(part))
                )
                for digest, name, version in conn.execute(query):
                    out[bytes(digest)] = f"{name} {version}" if version else name
        return out

    @requires(lambda self, limit=20, *, where=None, after=None: is_count(limit, "limit"))
    @_reads
    def runs(
        self,
        limit: int = 20,
        *,
        where: RunFilter | None = None,
        after: tuple[int, bytes] | None = None,
    ) -> list[RunSummary]:
        """The most recent runs (filtered by ``where``), newest first, with how each ended.

        ``after`` is the :attr:`RunSummary.cursor` of the last run of the previous page.
        """
        with self._readers.connection() as conn:
            rows = listing.runs(conn, where or RunFilter(), after, limit)
        wanted = [row[0] for row in rows] + [row[8] for row in rows if row[8]]
        found = self.get_many(wanted, corrupt={})
        return [listing.run_summary(row, found) for row in rows]

    @requires(lambda self, *, where=None, limit=50, after=None: is_count(limit, "limit"))
    @_reads
    def products(
        self,
        *,
        where: ProductFilter | None = None,
        limit: int = 50,
        after: tuple[int, bytes] | None = None,
    ) -> list[ProductRow]:
        """Products newest first (by their run's start; source products last), from the index.

        ``where`` filters by name and path globs, run and time; ``after`` is the
        :attr:`ProductRow.cursor` of the last product of the previous page.
        """
        with self._readers.connection() as conn:
            return listing.products(conn, where or ProductFilter(), after, limit)

    @_reads
    def with_content(self, contents: Iterable[bytes]) -> dict[bytes, list[ProductRow]]:
        """For each content digest, the products with those bytes, newest first (index only)."""
        with self._readers.connection() as conn:
            return listing.with_content(conn, contents)

    @_reads
    def recorded_paths(self, paths: Iterable[str]) -> set[str]:
        """Those of these absolute paths at which some product was recorded."""
        with self._readers.connection() as conn:
            return listing.recorded_paths(conn, paths)

    @_reads
    def product_count(self) -> int:
        """How many products the index holds (it only grows: see :func:`listing.product_count`)."""
        with self._readers.connection() as conn:
            return listing.product_count(conn)

    @requires(lambda self, path, limit=None: is_count(limit, "limit", optional=True))
    def products_at(self, path: str, limit: int | None = None) -> list[Sealed]:
        """Products recorded at this absolute path, newest first."""
        rows = self.products(where=ProductFilter(at=path), limit=limit or 1000)
        found = self.get_many(row.digest for row in rows)
        return [found[row.digest] for row in rows if row.digest in found]

    @_reads
    def stats(self) -> dict[str, Any]:
        """Object counts by every kind, bytes stored and parent links."""
        with self._readers.connection() as conn:
            rows = conn.execute(queries.COUNT_BY_KIND).all()
            edges = conn.execute(queries.COUNT_PARENT_LINKS).scalar()
        counts = dict.fromkeys(KINDS, 0)
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
