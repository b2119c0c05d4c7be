"""Export a closure to a bundle and import a bundle into a store, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy.engine import Connection

from provstore.checks.walk import closure
from provstore.core.chunks import chunked
from provstore.core.digests import to_hex
from provstore.core.errors import BundleError, CorruptObjectError
from provstore.core.objects import (
    RunEnd,
    Sealed,
    Signature,
    load,
    refusal,
    second_end,
    wrong_kind,
)
from provstore.db.engine import write_transaction
from provstore.db.index import absent, ends_of, framed_kinds, kinds_of, write_items
from provstore.exchange.bundle import BundleReader, Limits, write_bundle
from provstore.store import Store

if TYPE_CHECKING:
    from provstore.exchange.signing import PrivateKey, TrustedKeys

__all__ = ["ExportResult", "ImportResult", "export_bundle", "import_bundle"]

_BATCH = 2000
_KNOWN = 100_000  # digests remembered per import to spare reference lookups (~10 MiB)


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote: ``objects`` things of the kind ``what`` names."""

    roots: tuple[str, ...]
    objects: int
    what: str = "objects"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: objects new to the store and objects it already held."""

    roots: tuple[str, ...]
    added: int
    present: int
    signed_by: tuple[str, ...] = ()
    """Who signed the bundle (name and key id), when it was signed."""


def _references(store: Store, roots: list[bytes]) -> dict[bytes, tuple[bytes, ...]]:
    """Digest → references for the whole closure of ``roots`` (with run ends).

    A run given as a root brings the products it made (they name it; it cannot name them).
    Objects are verified as the walk loads them; only their references are kept.
    """
    walked = closure(store, [*roots, *store.made_by(roots)], objects=False)
    if walked.corrupt:
        digest, reason = min(walked.corrupt.items())
        raise CorruptObjectError(to_hex(digest), reason)
    if walked.missing:
        lacking = to_hex(min(walked.missing))
        raise BundleError(f"the store lacks {lacking}; run `provstore fsck`")
    if walked.wrong_kinds:
        digest, reason = min(walked.wrong_kinds.items())
        raise BundleError(f"{reason}; run `provstore fsck`", to_hex(digest))
    return walked.references


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
    store: Store,
    refs: Sequence[str | bytes],
    fileobj: BinaryIO,
    *,
    compress: bool = True,
    sign: PrivateKey | None = None,
) -> ExportResult:
    """Write the full closure of ``refs`` to ``fileobj`` as a bundle (signed with ``sign``)."""
    roots = [store.resolve(ref) for ref in refs]
    order = _dependency_order(_references(store, roots))

    def stream() -> Iterator[tuple[bytes, bytes]]:
        for part in chunked(order, _BATCH):
            found = store.get_bytes(part)
            for digest in part:
                yield digest, found[digest]

    signer = None
    if sign is not None:
        from functools import partial

        from provstore.exchange.signing import sign_bundle

        signer = partial(sign_bundle, sign)
    count = write_bundle(fileobj, roots, stream(), compress=compress, signer=signer)
    return ExportResult(tuple(to_hex(r) for r in roots), count)


def import_bundle(
    store: Store,
    fileobj: BinaryIO,
    *,
    limits: Limits | None = None,
    on_progress: Callable[[int], None] | None = None,
    trusted: TrustedKeys | None = None,
) -> ImportResult:
    """Check and import a bundle in one transaction; :class:`BundleError` leaves no trace.

    A signed bundle's signatures must hold for it; they are recorded as objects.  With
    ``trusted`` keys, a bundle without a valid signature by one of them is rejected.
    """
    start = fileobj.tell() if fileobj.seekable() else None

    def attempt() -> ImportResult:
        if start is not None:
            fileobj.seek(start)
        return _import(store, BundleReader(fileobj, limits), on_progress, trusted)

    # A deadlock or serialization failure is retried from the start when the file can seek.
    return attempt() if start is None else store.retrying(attempt)


def _import(
    store: Store,
    reader: BundleReader,
    on_progress: Callable[[int], None] | None,
    trusted: TrustedKeys | None,
) -> ImportResult:
    added = present = 0
    signed_by: tuple[str, ...] = ()
    known: dict[bytes, str] = {}  # digest -> kind, written or checked by this import
    with write_transaction(store.engine) as conn:
        for batch in _decoded(reader):
            new, old = _write_batch(conn, batch, known)
            added, present = added + new, present + old
            if on_progress and batch:
                on_progress(len(batch))
        missing_roots = absent(conn, reader.roots)
        if missing_roots:
            raise BundleError("a root is not in the bundle", to_hex(sorted(missing_roots)[0]))
        if reader.signatures or trusted is not None:
            from provstore.exchange.signing import check_signatures, describe

            signatures = check_signatures(
                reader.signatures, reader.roots, reader.checksum, reader.count, trusted
            )
            write_items(conn, signatures)
            signed_by = tuple(
                describe(item.obj) for item in signatures if isinstance(item.obj, Signature)
            )
    return ImportResult(tuple(to_hex(r) for r in reader.roots), added, present, signed_by)


def _decoded(reader: BundleReader) -> Iterator[list[tuple[int, Sealed]]]:
    """Batches of verified, admissible objects; the last comes after the trailer was checked."""
    batch: list[tuple[int, Sealed]] = []
    for index, digest, data in reader.objects():
        try:
            item = load(digest, data, hashed=True)
        except CorruptObjectError as exc:
            raise BundleError(f"invalid object: {exc.reason}", to_hex(digest), index) from None
        refused = refusal(item.obj, len(data))
        if refused is not None:
            raise BundleError(f"{refused[0]} cannot be stored: {refused[1]}", item.hex, index)
        batch.append((index, item))
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    yield batch


Use = tuple[int, Sealed, str, str]  # (bundle index, referrer, field, expected kind)
Problem = tuple[int, str, Sealed]  # (bundle index, message, object)


def _write_batch(
    conn: Connection, batch: list[tuple[int, Sealed]], known: dict[bytes, str]
) -> tuple[int, int]:
    """Insert a batch, then check its references and run ends; returns (added, present).

    Every reference must resolve to an object of the kind its field names, and every run must
    end once.  ``known`` maps digests this import wrote or checked to their kinds (bounded to
    the newest ``_KNOWN``): references to them, which are most of them (a product's run, its
    recent parents), need no query.
    """
    if not batch:
        return 0, 0
    unique = {item.digest: item for _, item in batch}
    added = write_items(conn, list(unique.values()))
    known.update((digest, item.kind) for digest, item in unique.items())
    problems: list[Problem] = []
    pending: dict[bytes, list[Use]] = {}
    for index, item in batch:
        for field, ref, kind in item.obj.typed_references():
            if ref in known:
                _check_kind(problems, (index, item, field, kind), ref, known[ref])
            else:
                pending.setdefault(ref, []).append((index, item, field, kind))
    stored = kinds_of(conn, pending)
    doubtful = {
        ref for ref, uses in pending.items() for use in uses if stored.get(ref, use[3]) != use[3]
    }
    stored.update(framed_kinds(conn, doubtful))  # the kind column may be what is wrong
    for ref, uses in pending.items():
        for use in uses:
            _check_kind(problems, use, ref, stored.get(ref))
    known.update(stored)
    problems.extend(_second_ends(conn, batch))
    if len(known) > _KNOWN:  # keep the newest half (amortised: no per-entry eviction)
        newest = list(known.items())[-(_KNOWN // 2) :]
        known.clear()
        known.update(newest)
    if problems:
        index, message, item = min(problems, key=lambda p: p[0])
        raise BundleError(message, item.hex, index)
    return added, len(batch) - added


def _check_kind(problems: list[Problem], use: Use, ref: bytes, found: str | None) -> None:
    index, item, field, kind = use
    if found is None:
        message = f"its {field} {to_hex(ref)} is neither earlier in the bundle nor in the store"
    elif found != kind:
        message = wrong_kind(item.kind, field, ref, found, kind)
    else:
        return
    problems.append((index, message, item))


def _second_ends(conn: Connection, batch: list[tuple[int, Sealed]]) -> list[Problem]:
    """Run ends in the batch for runs that end otherwise (a run ends once).

    Checked after the batch is written: the unique index has then kept one end per run (the
    earlier one), so an end the index does not hold is a second one, also when another import
    wrote the first at the same moment.
    """
    ends = [(index, item, item.obj.run) for index, item in batch if isinstance(item.obj, RunEnd)]
    indexed = ends_of(conn, {run for _, _, run in ends})
    problems = []
    for index, item, run in ends:
        first = indexed.get(run, item.digest)
        if first != item.digest:
            problems.append((index, second_end(run, first), item))
    return problems
