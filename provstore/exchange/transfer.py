"""Export a closure to a bundle and import a bundle into a store, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import select

from provstore.core.digests import to_hex
from provstore.core.errors import BundleError, CorruptObjectError
from provstore.core.objects import Run, Sealed, load
from provstore.db import engine as backend
from provstore.db import schema
from provstore.exchange.bundle import BundleReader, Limits, write_bundle
from provstore.store import Store, write_items

__all__ = ["ExportResult", "ImportResult", "export_bundle", "import_bundle"]

_BATCH = 2000
_KNOWN = 100_000  # digests remembered per import to spare reference lookups (~10 MiB)


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote."""

    roots: tuple[str, ...]
    objects: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: objects new to the store and objects it already held."""

    roots: tuple[str, ...]
    added: int
    present: int


def _graph(store: Store, roots: Sequence[bytes]) -> dict[bytes, tuple[bytes, ...]]:
    """Digest → references for the whole closure (with run ends), breadth-first.

    Objects are loaded (and verified) a chunk at a time and only their references are kept,
    so memory holds digests, not objects.
    """
    refs: dict[bytes, tuple[bytes, ...]] = {}
    layer = sorted(set(roots))
    while layer:
        following: set[bytes] = set()
        for start in range(0, len(layer), _BATCH):
            chunk = layer[start : start + _BATCH]
            found = store.get_many(chunk)
            for digest in chunk:
                if digest not in found:
                    raise BundleError(f"the store lacks {to_hex(digest)}; run `provstore fsck`")
            runs = [d for d, item in found.items() if isinstance(item.obj, Run)]
            if runs:
                following.update(store.run_ends(runs))
            for digest, item in found.items():
                refs[digest] = item.obj.references()
                following.update(refs[digest])
        layer = sorted(d for d in following if d not in refs)
    return refs


def _with_run_products(store: Store, roots: list[bytes]) -> list[bytes]:
    """A run given as a root brings the products it made (they name it; it cannot name them).

    Only digests are read here; every object is loaded and verified once, by the walk.
    """
    kinds = schema.objects.c
    products = schema.products.c
    extra: list[bytes] = []
    with store.engine.connect() as conn:
        runs = conn.execute(
            select(kinds.digest).where(kinds.digest.in_(roots), kinds.kind == "run")
        ).scalars()
        for run in list(runs):
            query = select(products.digest).where(products.run == run)
            extra.extend(bytes(d) for d in conn.execute(query).scalars())
    return [*roots, *extra]


def _dependency_order(refs: dict[bytes, tuple[bytes, ...]]) -> list[bytes]:
    """Every object after the objects it refers to (iterative post-order, deterministic)."""
    order: list[bytes] = []
    done: set[bytes] = set()
    for start in sorted(refs):
        stack: list[tuple[bytes, Iterator[bytes]]] = [(start, iter(sorted(refs[start])))]
        if start in done:
            continue
        done.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                order.append(node)
            elif child not in done and child in refs:
                done.add(child)
                stack.append((child, iter(sorted(refs[child]))))
    return order


def export_bundle(
    store: Store, refs: Sequence[str | bytes], fileobj: BinaryIO, *, compress: bool = True
) -> ExportResult:
    """Write the full closure of ``refs`` to ``fileobj`` as a bundle."""
    roots = [store.resolve(ref) for ref in refs]
    order = _dependency_order(_graph(store, _with_run_products(store, roots)))

    def stream() -> Iterator[tuple[bytes, bytes]]:
        table = schema.objects
        for start in range(0, len(order), _BATCH):
            part = order[start : start + _BATCH]
            query = select(table.c.digest, table.c.data).where(table.c.digest.in_(part))
            with store.engine.connect() as conn:
                rows = {bytes(d): bytes(data) for d, data in conn.execute(query)}
            for digest in part:
                yield digest, rows[digest]

    count = write_bundle(fileobj, roots, stream(), compress=compress)
    return ExportResult(tuple(to_hex(r) for r in roots), count)


def import_bundle(
    store: Store,
    fileobj: BinaryIO,
    *,
    limits: Limits | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Check and import a bundle in one transaction; :class:`BundleError` leaves no trace."""
    start = fileobj.tell() if fileobj.seekable() else None

    def attempt() -> ImportResult:
        if start is not None:
            fileobj.seek(start)
        return _import(store, BundleReader(fileobj, limits), on_progress)

    # A deadlock or serialization failure is retried from the start when the file can seek.
    return attempt() if start is None else backend.retrying(attempt)


def _import(
    store: Store, reader: BundleReader, on_progress: Callable[[int], None] | None
) -> ImportResult:
    added = present = 0
    known: dict[bytes, None] = {}  # digests written by this import, the newest kept
    with backend.write_transaction(store.engine) as conn:
        for batch in _decoded(reader):
            new, old = _write_batch(conn, batch, known)
            added, present = added + new, present + old
            if on_progress and batch:
                on_progress(len(batch))
        missing_roots = _absent(conn, reader.roots)
        if missing_roots:
            raise BundleError("a root is not in the bundle", to_hex(sorted(missing_roots)[0]))
    return ImportResult(tuple(to_hex(r) for r in reader.roots), added, present)


def _decoded(reader: BundleReader) -> Iterator[list[tuple[int, Sealed]]]:
    """Batches of verified objects; the last comes after the trailer was checked."""
    batch: list[tuple[int, Sealed]] = []
    for index, digest, data in reader.objects():
        try:
            batch.append((index, load(digest, data, hashed=True)))
        except CorruptObjectError as exc:
            raise BundleError(f"invalid object: {exc.reason}", to_hex(digest), index) from None
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    yield batch


def _absent(conn: Any, digests: Sequence[bytes] | set[bytes]) -> set[bytes]:
    wanted = sorted(set(digests))
    mark = backend.param_mark(conn)
    found: set[bytes] = set()
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        sql = f"SELECT digest FROM objects WHERE digest IN ({', '.join([mark] * len(part))})"
        found.update(bytes(d) for (d,) in conn.exec_driver_sql(sql, tuple(part)))
    return set(wanted) - found


def _write_batch(
    conn: Any, batch: list[tuple[int, Sealed]], known: dict[bytes, None]
) -> tuple[int, int]:
    """Insert a batch, then require every reference to resolve; returns (added, present).

    ``known`` holds digests this import wrote already (bounded to the newest ``_KNOWN``):
    references to them, which are most of them (a product's run, its recent parents), need
    no query.
    """
    if not batch:
        return 0, 0
    unique = {item.digest: item for _, item in batch}
    added = write_items(conn, unique.values())
    known.update(dict.fromkeys(unique))
    referrer: dict[bytes, tuple[int, Sealed]] = {}
    for index, item in batch:
        for ref in item.obj.references():
            if ref not in known:
                referrer.setdefault(ref, (index, item))
    missing = _absent(conn, list(referrer))
    known.update(dict.fromkeys(referrer))
    if len(known) > _KNOWN:  # keep the newest half (amortised: no per-entry eviction)
        newest = list(known)[-(_KNOWN // 2) :]
        known.clear()
        known.update(dict.fromkeys(newest))
    if missing:
        ref = sorted(missing, key=lambda d: referrer[d][0])[0]
        index, item = referrer[ref]
        raise BundleError(
            f"it refers to {to_hex(ref)}, which is neither earlier in the bundle nor in the store",
            item.hex,
            index,
        )
    return added, len(batch) - added
