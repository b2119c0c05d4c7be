"""Check a whole store against its objects: hashes, references and the derived index.

:func:`fsck` streams the ``objects`` table in pages ordered by digest (keyset pagination, so
memory stays bounded by one page whatever the store's size) inside one read snapshot, and for
each page checks that

* every object re-hashes to its digest and decodes strictly, and its ``kind`` and ``size``
  columns agree with its bytes (problem kinds ``corrupt`` and ``column``);
* every digest it refers to names a stored object of the kind the field requires
  (``reference``);
* no run has a second end (``conflict``: a run ends once; the index keeps the first);
* the index holds exactly the rows derived from the page's objects (``index``).

The pages split the digest space into consecutive ranges ``(previous last, last]``; each
index table is read by its key over the same range, so every index row is compared with what
the objects derive, once: a missing, extra or differing row is found with its digest, not only
as a count.  Rows keyed past the last object are all extra; they are counted, not loaded.
A corrupt object's index rows are not checked.  Index problems are listed up to
:data:`LISTED_PER_TABLE` per table, then summed up in one problem per table with an empty
digest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from provstore.core.digests import to_hex
from provstore.core.errors import CorruptObjectError
from provstore.core.objects import RunEnd, Sealed, load, second_end, wrong_kind
from provstore.db import layout, schema
from provstore.db.index import INDEX_TABLES, ends_of, framed_kinds, index_rows, kinds_of
from provstore.store import Store

__all__ = ["LISTED_PER_TABLE", "FsckReport", "Problem", "fsck"]

LISTED_PER_TABLE = 100
_REINDEX_HINT = "`provstore reindex` rebuilds the index from the objects"

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a store.

    ``digest`` is the object's (or index row key's) hex digest, ``""`` for a whole-table
    summary; ``kind`` is ``corrupt``, ``column``, ``reference``, ``conflict`` or ``index``.
    """

    digest: str
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class FsckReport:
    """What :func:`fsck` examined and found.

    ``by_kind`` counts objects by the kind their bytes declare (by the ``kind`` column for
    objects that do not decode); ``problems`` lists object problems page by page, in digest
    order, then one summary per index table that disagrees with the objects.
    """

    objects: int
    by_kind: dict[str, int]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """Whether the store passed every check."""
        return not self.problems


@dataclass(slots=True)
class _Tally:
    """Index discrepancies of one table."""

    missing: int = 0
    extra: int = 0
    differing: int = 0

    @property
    def total(self) -> int:
        return self.missing + self.extra + self.differing


@dataclass(slots=True)
class _Checker:
    """The running state of one fsck: counts and problems so far."""

    store: Store
    objects: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    tallies: dict[str, _Tally] = field(default_factory=dict)

    def report(self) -> FsckReport:
        summaries = [
            Problem(
                "",
                "index",
                f"index table {name}: {t.missing} missing, {t.extra} extra and "
                f"{t.differing} differing rows; {_REINDEX_HINT}",
            )
            for name, t in self.tallies.items()
            if t.total
        ]
        by_kind = dict(sorted(self.by_kind.items()))
        return FsckReport(self.objects, by_kind, tuple(self.problems + summaries))

    # -- objects -----------------------------------------------------------------------------

    def check_page(self, conn: Connection, page: Sequence[Row], lower: bytes | None) -> None:
        """Check one page of ``(digest, kind, size, data)`` rows whose digests follow lower."""
        loaded: list[Sealed] = []
        corrupt: set[bytes] = set()
        for digest, kind, size, data in page:
            item = self.check_object(digest, kind, size, data)
            if item is None:
                corrupt.add(digest)
            else:
                loaded.append(item)
        self.check_references(conn, loaded)
        second = self.check_run_ends(conn, loaded)
        kept = [item for item in loaded if item.digest not in second]
        self.check_index(conn, kept, corrupt | second, lower, page[-1][0])

    def check_object(self, digest: bytes, kind: str, size: int, data: bytes) -> Sealed | None:
        """The decoded object, or None (and a problem) when it does not hash or decode."""
        self.objects += 1
        hexed = to_hex(digest)
        if size != len(data):
            self._add(hexed, "column", f"the size column says {size} but it has {len(data)}")
        try:
            item = load(digest, data)
        except CorruptObjectError as exc:
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            self._add(hexed, "corrupt", f"this {kind} object is corrupt: {exc.reason}")
            return None
        self.by_kind[item.kind] = self.by_kind.get(item.kind, 0) + 1
        if kind != item.kind:
            self._add(hexed, "column", f"the kind column says {kind!r} but it is a {item.kind}")
        return item

    def check_references(self, conn: Connection, loaded: Sequence[Sealed]) -> None:
        """Report references to digests no stored object has, or to objects of another kind."""
        kinds = {item.digest: item.kind for item in loaded}
        wanted = {ref for item in loaded for ref in item.obj.references()} - kinds.keys()
        columns = kinds_of(conn, wanted)
        doubtful = {
            ref for item in loaded for _, ref, kind in item.obj.typed_references()
            if ref in columns and columns[ref] != kind
        }  # fmt: skip
        kinds.update(columns)
        kinds.update(framed_kinds(conn, doubtful))
        for item in loaded:
            gone: list[str] = []
            for name, ref, kind in item.obj.typed_references():
                found = kinds.get(ref)
                if found is None:
                    gone.append(to_hex(ref))
                elif found != kind:
                    self._add(item.hex, "reference", wrong_kind(item.kind, name, ref, found, kind))
            if gone:
                names = ", ".join(gone)
                self._add(
                    item.hex, "reference", f"this {item.kind} refers to {names}, not in the store"
                )

    def check_run_ends(self, conn: Connection, loaded: Sequence[Sealed]) -> set[bytes]:
        """Report second ends of runs (a run ends once); their digests, left out of the index.

        The first end is the one the index holds, else (no row) the smallest digest: the one
        ``reindex`` would keep.
        """
        ends: dict[bytes, list[Sealed]] = {}
        for item in loaded:
            if isinstance(item.obj, RunEnd):
                ends.setdefault(item.obj.run, []).append(item)
        indexed = ends_of(conn, ends)
        second: set[bytes] = set()
        for run, items in ends.items():
            first = indexed.get(run, min(item.digest for item in items))
            for item in items:
                if item.digest != first:
                    second.add(item.digest)
                    self._add(item.hex, "conflict", second_end(run, first) + " (the index "
                              "keeps the first)")  # fmt: skip
        return second

    # -- index -------------------------------------------------------------------------------

    def check_index(
        self,
        conn: Connection,
        loaded: Sequence[Sealed],
        corrupt: set[bytes],
        lower: bytes | None,
        upper: bytes | None,
    ) -> None:
        """Compare the index rows keyed in ``(lower, upper]`` with those derived from loaded."""
        derived: dict[str, set[Row]] = {table.name: set() for table in INDEX_TABLES}
        for item in loaded:
            for table, row in index_rows(item):
                derived[table.name].add(row)
        for table in INDEX_TABLES:
            found = {
                row for row in _index_range(conn, table, lower, upper) if row[0] not in corrupt
            }
            self._compare(table, derived[table.name], found)

    def _compare(self, table: Table, derived: set[Row], found: set[Row]) -> None:
        width = len(table.primary_key.columns)
        missing = {row[:width]: row for row in derived - found}
        extra = {row[:width]: row for row in found - derived}
        tally = self.tallies.setdefault(table.name, _Tally())
        for key in sorted(missing.keys() | extra.keys()):
            if key in missing and key in extra:
                tally.differing += 1
                what = _differences(table, missing[key], extra[key])
                message = f"its row in index table {table.name} differs from the object ({what})"
            elif key in missing:
                tally.missing += 1
                message = f"index table {table.name} lacks its row{_detail(table, key)}"
            else:
                tally.extra += 1
                detail = _detail(table, key)
                message = f"index table {table.name} holds a row no object derives{detail}"
            if tally.total <= LISTED_PER_TABLE:
                self._add(to_hex(key[0]), "index", f"{message}; {_REINDEX_HINT}")

    def check_tail(self, conn: Connection, lower: bytes | None) -> None:
        """Count index rows keyed past the last object (all extra); list the first few."""
        for table in INDEX_TABLES:
            columns, joined = _with_digests(table)
            key = columns[: len(table.primary_key.columns)]
            after = [] if lower is None else [key[0] > lower]
            count = select(func.count()).select_from(joined).where(*after)
            extra = conn.execute(count).scalar_one()
            if not extra:
                continue
            tally = self.tallies.setdefault(table.name, _Tally())
            room = max(0, LISTED_PER_TABLE - tally.total)
            listed = select(*key).select_from(joined).where(*after).order_by(*key).limit(room)
            for row in conn.execute(listed) if room else ():
                detail = _detail(table, tuple(_plain(value) for value in row))
                message = f"index table {table.name} holds a row no object derives{detail}"
                self._add(to_hex(_plain(row[0])), "index", f"{message}; {_REINDEX_HINT}")
            tally.extra += extra

    def _add(self, digest: str, kind: str, message: str) -> None:
        self.problems.append(Problem(digest, kind, message))


def _detail(table: Table, key: Row) -> str:
    """The key columns after the first (``parent`` of an edge), for messages."""
    rest = zip(list(table.primary_key.columns)[1:], key[1:], strict=True)
    return "".join(f" ({column.name} {to_hex(value)})" for column, value in rest)


def _differences(table: Table, want: Row, have: Row) -> str:
    names = [column.name for column, a, b in zip(table.columns, want, have, strict=True) if a != b]
    return f"{'column' if len(names) == 1 else 'columns'} {', '.join(names)}"


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, (memoryview, bytearray)) else value


def _index_range(
    conn: Connection, table: Table, lower: bytes | None, upper: bytes | None
) -> Iterator[Row]:
    columns, joined = _with_digests(table)
    key = columns[0]
    query = select(*columns).select_from(joined)
    if lower is not None:
        query = query.where(key > lower)
    if upper is not None:
        query = query.where(key <= upper)
    for row in conn.execute(query):
        yield tuple(_plain(value) for value in row)


def _with_digests(table: Table) -> tuple[list[Any], Any]:
    """``table``'s columns with the digests of the ids it holds, and the join giving them."""
    refs = layout.REFS[table.name]
    joined: Any = table
    columns: list[Any] = []
    for i, column in enumerate(table.columns):
        if i not in refs:
            columns.append(column)
            continue
        named = schema.objects.alias(f"r{i}")
        joined = joined.outerjoin(named, named.c.id == column)
        columns.append(named.c.digest)
    return columns, joined


def _read_page(conn: Connection, after: bytes | None, batch: int) -> list[Row]:
    o = schema.objects
    query = select(o.c.digest, o.c.kind, o.c.size, o.c.data).where(o.c.data.is_not(None))
    if after is not None:
        query = query.where(o.c.digest > after)
    rows = conn.execute(query.order_by(o.c.digest).limit(batch))
    return [(bytes(d), kind, size, bytes(data)) for d, kind, size, data in rows]


@contextmanager
def _snapshot(store: Store) -> Iterator[Connection]:
    """One read transaction, so every page and index range comes from the same state."""
    with store.engine.connect() as conn:
        isolation = store.dialect.long_read_isolation
        if isolation is not None:
            conn.execution_options(isolation_level=isolation)
        with conn.begin():
            yield conn


def fsck(
    store: Store, *, batch: int = 2000, on_progress: Callable[[int], None] | None = None
) -> FsckReport:
    """Check every object of ``store`` and the index derived from them.

    Reads ``batch`` objects at a time; ``on_progress(n)`` is called after each page with the
    number of objects in it.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    checker = _Checker(store)
    with _snapshot(store) as conn:
        last: bytes | None = None
        while page := _read_page(conn, last, batch):
            checker.check_page(conn, page, last)
            last = page[-1][0]
            if on_progress is not None:
                on_progress(len(page))
        checker.check_tail(conn, last)
    return checker.report()
