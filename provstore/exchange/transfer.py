"""Export a closure to a bundle and import a bundle into a store, in one transaction."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy.engine import Connection

from provstore.checks.walk import closure
from provstore.core.admission import admit, typed_references
from provstore.core.chunks import chunked
from provstore.core.digests import to_hex
from provstore.core.errors import BundleError, CorruptObjectError
from provstore.core.objects import (
    Sealed,
    Signature,
    load,
    refusal,
    second_end,
    wrong_kind,
)
from provstore.db import dialects, layout, schema
from provstore.db.engine import write_transaction
from provstore.db.index import (
    INDEX_TABLES,
    absent,
    ends_of,
    framed_kinds,
    kinds_of,
    write_items,
    write_rows,
)
from provstore.db.staging import CHECKED_BY_INDEX, Spool, Stage
from provstore.exchange.bundle import BundleReader, Limits, write_bundle
from provstore.store import Store

if TYPE_CHECKING:
    from provstore.exchange.signing import PrivateKey, TrustedKeys

__all__ = ["ExportResult", "ImportResult", "export_bundle", "import_bundle"]

_BATCH = 2000
_KNOWN = 100_000  # digests remembered per import to spare reference lookups (~10 MiB)
_SPOOLS = 2  # chunks of a pipelined import spooled at a time (one publishing, one filling)
_TABLES = (schema.objects, *INDEX_TABLES)  # staged by an import, published in this order
_BY_NAME = {table.name: table for table in INDEX_TABLES}


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
    """Import a bundle of one batch directly; stage a bigger one and publish it in key order.

    Staging costs a few temporary tables per import (about 17 ms on SQLite, 70 ms on
    PostgreSQL), which a bundle of one batch (a spooled run) would pay for nothing.  A signed
    bundle's signatures are checked last, inside the same transaction, and recorded.
    """
    roots = tuple(to_hex(r) for r in reader.roots)
    signed_by: tuple[str, ...] = ()
    with write_transaction(store.engine) as conn:
        batches = _decoded(reader)
        first = next(batches)
        try:
            second = next(batches, None)
        except BundleError:  # the first batch's own problems come before it
            _write_batch(conn, first)
            raise
        if not second:  # None, or the empty last batch after a full first one
            added, present = _write_batch(conn, first)
            if on_progress and first:
                on_progress(len(first))
        else:
            added, present = _staged(conn, [first, second], batches, on_progress)
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
    return ImportResult(roots, added, present, signed_by)


Ref = tuple[str, bytes, str]  # (field, digest referred to, kind it must be)
Record = tuple[int, bytes, str, bytes, list[layout.NamedRow], list[Ref]]
"""An admitted object: (bundle index, digest, kind, framed bytes, index rows, references)."""
Problem = tuple[int, str, bytes]  # (bundle index, message, digest of the object)


def _staged(
    conn: Connection,
    read: list[list[Record]],
    rest: Iterator[list[Record]],
    on_progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """Stage objects and their index rows, check them, then publish each table in key order.

    All at once, or a chunk at a time where the database takes chunks
    (:attr:`~provstore.db.dialects.Dialect.import_chunk`): see :func:`_pipelined`.
    """
    batches = itertools.chain(read, rest)
    if dialects.of(conn).import_chunk is not None:
        return _pipelined(conn, batches, on_progress)
    known = _Recent(_KNOWN)  # digest -> kind, staged by this import
    total = 0
    with Stage(conn, _TABLES) as stage:
        try:
            for batch in batches:
                _stage_batch(stage, batch, known)
                total += len(batch)
                if on_progress and batch:
                    on_progress(len(batch))
        except BundleError as exc:  # a bad reference staged before it is the first problem
            _check_staged_references(conn, stage, before=exc.index)
            raise
        added = _publish(conn, stage)
    return added, total - added


def _publish(conn: Connection, stage: Stage) -> int:
    """Check the staged references, publish each table, check run ends; how many were new.

    References are checked before the objects are published, or just after where that
    takes less (:meth:`~provstore.db.staging.Stage.checks_published`); either way before
    any index row is, and in the one transaction.
    """
    after = stage.checks_published()
    if not after:
        _check_staged_references(conn, stage)
    added = stage.publish(schema.objects)
    if after:
        _check_staged_references(conn, stage)
    for table in INDEX_TABLES:  # a run's first end is the one kept: publish in bundle order
        stage.publish(table, by_seq=table is schema.run_ends)
    if stage.held_back:  # a reference the publish checked is wrong, or its kind column
        _check_staged_references(conn, stage)
        stage.publish_held_back()
    _check_second_ends(conn, stage)
    stage.close()
    return added


def _pipelined(
    conn: Connection,
    batches: Iterator[list[Record]],
    on_progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """Decode and spool the next chunk in a thread while this one is staged and published.

    The thread reads, checks and turns objects into what the database loads (a
    :class:`~provstore.db.staging.Spool`, kept in temporary files); this one stages each
    spool, checks its references (against the objects before them in it and the store,
    which now holds the earlier chunks) and publishes it, in the one transaction: nothing
    is visible before it commits, and a problem anywhere rolls every chunk back.  At most
    :data:`_SPOOLS` spools exist at a time.  Whatever goes wrong in the thread is raised
    here, after the chunks before it; whatever goes wrong here stops the thread.
    """
    dialect = dialects.of(conn)
    chunk = dialect.import_chunk or 0
    messages: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
    room = threading.Semaphore(_SPOOLS)
    stop = threading.Event()

    def produce() -> None:
        known = _Recent(_KNOWN)
        spool: Spool | None = None
        try:
            for batch in batches:
                if spool is None:
                    room.acquire()
                    if stop.is_set():
                        return
                    spool = Spool(dialect, _TABLES)
                _stage_batch(spool, batch, known)
                messages.put(("progress", len(batch)))
                if spool.objects >= chunk:
                    messages.put(("spool", spool))
                    spool = None
                if stop.is_set():
                    if spool is not None:
                        spool.close()
                    return
            messages.put(("spool", spool))
            messages.put(("done",))
        except BundleError as exc:  # the batches before it are in the spool
            messages.put(("failed", spool, exc))
        except BaseException as exc:  # noqa: BLE001 - raised again by the other thread
            messages.put(("error", exc))

    worker = threading.Thread(target=produce, name="provstore-import", daemon=True)
    worker.start()
    added = total = 0
    try:
        while True:
            message = messages.get()
            if message[0] == "progress":
                total += message[1]
                if on_progress and message[1]:
                    on_progress(message[1])
            elif message[0] == "spool":
                added += _publish_spool(conn, message[1])
                room.release()
            elif message[0] == "failed":
                _, spool, exc = message
                if spool is not None:  # a bad reference staged before it is the first problem
                    try:
                        with Stage(conn, _TABLES) as stage:
                            stage.load(spool)
                            _check_staged_references(conn, stage, before=exc.index)
                    finally:
                        spool.close()
                raise exc
            elif message[0] == "error":
                raise message[1]
            else:
                break
    finally:
        stop.set()
        room.release()  # a thread waiting for room sees the stop
        worker.join()
        while not messages.empty():
            left = messages.get()
            if left[0] in ("spool", "failed") and left[1] is not None:
                left[1].close()
    return added, total - added


def _publish_spool(conn: Connection, spool: Spool | None) -> int:
    """Stage a spool and publish it (:func:`_publish`); how many objects were new."""
    if spool is None:
        return 0
    try:
        with Stage(conn, _TABLES) as stage:
            stage.load(spool)
            return _publish(conn, stage)
    finally:
        spool.close()


def _decoded(reader: BundleReader) -> Iterator[list[Record]]:
    """Batches of verified, admissible objects; the last comes after the trailer was checked.

    Each object is checked as :func:`load` checks it; most are admitted from their decoded
    body (:func:`admit`), without building the object, and the rest are loaded, which
    accepts them or names their problem.
    """
    batch: list[Record] = []
    append, size = batch.append, _BATCH
    for index, digest, data in reader.objects():
        found = admit(data)
        if found is not None:
            kind, _, body = found
            rows = layout.body_rows(kind, digest, body)
            append((index, digest, kind, data, rows, typed_references(kind, body)))
        else:
            item = _loaded(index, digest, data)
            rows = list(layout.ROWS[item.kind](item))
            append((index, digest, item.kind, data, rows, list(item.obj.typed_references())))
        if len(batch) >= size:
            yield batch
            batch = []
            append = batch.append
    yield batch


def _loaded(index: int, digest: bytes, data: bytes) -> Sealed:
    """The object, decoded and checked, or the :class:`BundleError` that names its problem."""
    try:
        item = load(digest, data, hashed=True)
    except CorruptObjectError as exc:
        raise BundleError(f"invalid object: {exc.reason}", to_hex(digest), index) from None
    refused = refusal(item.obj, len(data))
    if refused is not None:
        raise BundleError(f"{refused[0]} cannot be stored: {refused[1]}", item.hex, index)
    return item


class _Recent:
    """Digests an import staged and their kinds: the newest, and those still referred to.

    Two generations of at most ``size // 2`` each: a digest found in the older one moves to
    the newer, so an object referred to all along (a run, its environment) is never
    forgotten, while memory stays bounded however big the bundle.
    """

    def __init__(self, size: int) -> None:
        self._half = max(size // 2, 1)
        self._new: dict[bytes, str] = {}
        self._old: dict[bytes, str] = {}

    def get(self, digest: bytes) -> str | None:
        kind = self._new.get(digest)
        if kind is None:
            kind = self._old.get(digest)
            if kind is not None:
                self._new[digest] = kind
        return kind

    def add(self, digest: bytes, kind: str) -> None:
        self._new[digest] = kind
        if len(self._new) >= self._half:
            self._old, self._new = self._new, {}


def _stage_batch(stage: Stage | Spool, batch: list[Record], known: _Recent) -> None:
    """Stage a batch's objects and index rows; check the references ``known`` can answer.

    ``known`` remembers digests this import staged and their kinds (a bounded number):
    references to them, which are most of them (a product's run, its recent parents), are
    checked at once; the others are staged and checked in one query at the end.
    """
    if not batch:
        return
    rows: dict[str, list[tuple[Any, ...]]] = {table.name: [] for table in INDEX_TABLES}
    objects = [(index, digest, kind, len(data), data) for index, digest, kind, data, _, _ in batch]
    for index, _, _, _, named, _ in batch:
        for name, row in named:
            rows[name].append((index, *row))
    stage.add(schema.objects, objects)
    for name, table_rows in rows.items():
        if table_rows:
            stage.add(_BY_NAME[name], table_rows)
    problems: list[Problem] = []
    later: list[tuple[int, bytes, str]] = []
    get, add = known.get, known.add
    for index, digest, kind, _, _, refs in batch:
        for field, ref, expected in refs:
            found = get(ref)
            if found is None:
                if (kind, field) not in CHECKED_BY_INDEX:  # else the stage checks it
                    later.append((index, ref, expected))
            elif found != expected:
                problems.append((index, wrong_kind(kind, field, ref, found, expected), digest))
        add(digest, kind)  # after its references: an object may only name earlier ones
    if later:
        stage.add_refs(later)
    if problems:
        index, message, digest = min(problems, key=lambda p: p[0])
        raise BundleError(message, to_hex(digest), index)


def _check_staged_references(conn: Connection, stage: Stage, before: int | None = None) -> None:
    """Every staged reference names an object of its kind, earlier in the bundle or stored.

    Only references of objects before ``before`` when it is given (another problem was found
    there).  A stored object whose ``kind`` column disagrees is judged by its own bytes (the
    column may be what is wrong; ``fsck`` reports that on its own).
    """
    for index, ref, kind, staged, stored in stage.unresolved(before):
        found = staged or stored
        if staged is None and stored is not None:
            found = framed_kinds(conn, [ref]).get(ref, stored)
            if found == kind:
                continue
        digest, data = stage.staged_object(index)
        item = load(digest, data, hashed=True)
        field = next(f for f, r, k in item.obj.typed_references() if r == ref and k == kind)
        problems: list[Problem] = []
        _check_kind(problems, (index, digest, item.kind, field, kind), ref, found)
        raise BundleError(problems[0][1], item.hex, index)


Use = tuple[int, bytes, str, str, str]  # (bundle index, referrer, its kind, field, kind needed)


def _check_kind(problems: list[Problem], use: Use, ref: bytes, found: str | None) -> None:
    index, digest, referrer, field, kind = use
    if found is None:
        message = f"its {field} {to_hex(ref)} is neither earlier in the bundle nor in the store"
    elif found != kind:
        message = wrong_kind(referrer, field, ref, found, kind)
    else:
        return
    problems.append((index, message, digest))


def _check_second_ends(conn: Connection, stage: Stage) -> None:
    """Run ends in the bundle for runs that end otherwise (a run ends once).

    Checked after the ends are published: the unique index has then kept one end per run (the
    earliest in the bundle, or one already stored), so an end the index does not hold is a
    second one, also when another import wrote the first at the same moment.
    """
    staged = stage.names[schema.run_ends]
    sql = (
        f"SELECT {dialects.of(conn).join_in_order}s.seq, s.id, s.run, eo.digest FROM {staged} s "
        "JOIN objects ro ON ro.digest = s.run JOIN run_ends e ON e.run = ro.id "
        "JOIN objects eo ON eo.id = e.id WHERE eo.digest <> s.id ORDER BY s.seq"
    )
    first = conn.exec_driver_sql(sql).first()
    if first is not None:
        index, digest, run, kept = first
        raise BundleError(second_end(bytes(run), bytes(kept)), to_hex(bytes(digest)), index)


def _write_batch(conn: Connection, batch: list[Record]) -> tuple[int, int]:
    """Insert a batch, then check its references and run ends; returns (added, present).

    The direct path, for a bundle of one batch.  Every reference must resolve to an object
    of the kind its field names (in the batch or stored), and every run must end once.
    """
    if not batch:
        return 0, 0
    unique: dict[bytes, Record] = {}
    for record in batch:
        unique.setdefault(record[1], record)
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in layout.INDEX_TABLE_NAMES}
    for _, _, _, _, named, _ in unique.values():
        for name, row in named:
            rows[name].append(row)
    objects = [(digest, kind, len(data), data) for _, digest, kind, data, _, _ in unique.values()]
    first = {digest: record[0] for digest, record in unique.items()}  # where each comes first
    ahead = {ref for index, *_, refs in batch for _, ref, _ in refs if first.get(ref, -1) > index}
    before = kinds_of(conn, ahead)  # named before it comes: it must have been stored already
    added = write_rows(conn, objects, rows)
    problems: list[Problem] = []
    pending: dict[bytes, list[Use]] = {}
    for index, digest, kind, _, _, refs in batch:
        for field, ref, expected in refs:
            use = (index, digest, kind, field, expected)
            if first.get(ref, index) < index:
                _check_kind(problems, use, ref, unique[ref][2])
            else:
                pending.setdefault(ref, []).append(use)
    stored = kinds_of(conn, pending.keys() - ahead)
    stored.update(before)
    doubtful = {
        ref for ref, uses in pending.items() for use in uses if stored.get(ref, use[4]) != use[4]
    }
    stored.update(framed_kinds(conn, doubtful))  # the kind column may be what is wrong
    for ref, uses in pending.items():
        for use in uses:
            _check_kind(problems, use, ref, stored.get(ref))
    problems.extend(_second_ends(conn, batch))
    if problems:
        index, message, digest = min(problems, key=lambda p: p[0])
        raise BundleError(message, to_hex(digest), index)
    return added, len(batch) - added


def _second_ends(conn: Connection, batch: list[Record]) -> list[Problem]:
    """Run ends in the batch for runs that end otherwise (a run ends once).

    Checked after the batch is written: the unique index has then kept one end per run, so
    an end the index does not hold is a second one, also when another import wrote the first
    at the same moment.
    """
    ends = [
        (index, digest, row[1])
        for index, digest, _, _, named, _ in batch
        for name, row in named
        if name == "run_ends"
    ]
    indexed = ends_of(conn, {run for _, _, run in ends})
    problems = []
    for index, digest, run in ends:
        first = indexed.get(run, digest)
        if first != digest:
            problems.append((index, second_end(run, first), digest))
    return problems
