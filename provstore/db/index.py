"""The index rows each kind of object implies, and writing objects with them.

:data:`INDEXERS` has one entry per kind in :data:`provstore.core.objects.KINDS` (a test holds
them equal): a function from a sealed object to the ``(table, row)`` pairs derived from it.
Writing, :func:`rebuild` and ``fsck`` all derive rows through it, so the index is always what
the objects say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from provstore.core.chunks import chunked
from provstore.core.digests import split_frame
from provstore.core.errors import CorruptObjectError
from provstore.core.objects import Sealed, load
from provstore.db import dialects, layout, schema
from provstore.db.engine import param_mark

__all__ = [
    "INDEXERS",
    "INDEX_TABLES",
    "absent",
    "digests_of",
    "ids_of",
    "framed_kinds",
    "index_rows",
    "kinds_of",
    "ends_of",
    "objects_of_kind",
    "rebuild",
    "write_items",
    "write_rows",
]

Row = tuple[Any, ...]
IndexRow = tuple[Table, Row]
Indexer = Callable[[Sealed], Iterable[IndexRow]]

INDEX_TABLES = (schema.products, schema.product_parents, schema.runs, schema.run_ends)
"""The tables derived from objects (everything but ``objects`` and ``provstore_meta``)."""


def _indexer(rows: Callable[[Sealed], Iterable[tuple[str, Row]]]) -> Indexer:
    def indexer(item: Sealed) -> Iterator[IndexRow]:
        for name, row in rows(item):
            yield _TABLES[name], row

    indexer.__doc__ = rows.__doc__
    return indexer


_TABLES: dict[str, Table] = {table.name: table for table in INDEX_TABLES}

INDEXERS: dict[str, Indexer] = {kind: _indexer(rows) for kind, rows in layout.ROWS.items()}
"""Per kind: the ``(table, row)`` pairs an object implies (the rows are :data:`layout.ROWS`)."""


def index_rows(item: Sealed) -> Iterable[IndexRow]:
    """The index rows an object implies, as ``(table, row)`` pairs."""
    return INDEXERS[item.kind](item)


class _Writer:
    """:class:`layout.Writer` over a SQLAlchemy connection, through its dialect."""

    def __init__(self, conn: Connection, index_only: bool = False) -> None:
        self.conn = conn
        self.dialect = dialects.of(conn)
        self.index_only = index_only

    def put_objects(self, rows: Sequence[Row]) -> int:
        return 0 if self.index_only else self.dialect.put_objects(self.conn, rows)

    def placed(self) -> dict[bytes, int]:
        return {}

    def ids(self, digests: Iterable[bytes]) -> dict[bytes, int]:
        return ids_of(self.conn, digests)

    def intern(self, digests: Sequence[bytes]) -> None:
        self.dialect.insert_ignore(self.conn, schema.objects, [(d,) for d in digests], ["digest"])

    def insert(self, table: str, rows: list[Row]) -> None:
        self.dialect.insert_ignore(self.conn, _TABLES[table], rows)


def write_items(
    conn: Connection,
    items: Sequence[Sealed],
    known: dict[bytes, int] | None = None,
    learned: dict[bytes, int] | None = None,
) -> int:
    """Insert objects and the index rows they imply, idempotently, in the open transaction.

    Returns how many of the objects were new to the store; ``known`` and ``learned`` are
    :func:`layout.write`'s (ids of committed rows; the ids looked up, to keep after commit).
    """
    return layout.write(_Writer(conn), items, known, learned)


def write_rows(conn: Connection, objects: Sequence[Row], rows: dict[str, list[Row]]) -> int:
    """:func:`write_items` for rows already derived (:func:`layout.write_rows`)."""
    return layout.write_rows(_Writer(conn), objects, rows)


def ids_of(conn: Connection, digests: Iterable[bytes]) -> dict[bytes, int]:
    """The ``objects`` id of each of ``digests`` that has one (stored, or referred to)."""
    rows = _objects_where(conn, "SELECT digest, id FROM objects", "digest", digests)
    return {bytes(d): int(i) for d, i in rows}


def digests_of(conn: Connection, ids: Iterable[int]) -> dict[int, bytes]:
    """The digest of each of these ``objects`` ids."""
    rows = _objects_where(conn, "SELECT id, digest FROM objects", "id", ids)
    return {int(i): bytes(d) for i, d in rows}


def _objects_where(
    conn: Connection, select: str, column: str, values: Iterable[Any]
) -> Iterator[Any]:
    """The rows of ``select`` whose ``column`` is one of ``values``, a chunk at a time."""
    mark = param_mark(conn)
    for part in chunked(sorted(set(values))):
        sql = f"{select} WHERE {column} IN ({', '.join([mark] * len(part))})"
        yield from conn.exec_driver_sql(sql, tuple(part)).fetchall()  # not a fetch per row


def kinds_of(conn: Connection, digests: Iterable[bytes]) -> dict[bytes, str]:
    """The kind of each of ``digests`` that names a stored object (plain driver SQL: hot)."""
    wanted = sorted(set(digests))
    mark = param_mark(conn)
    found: dict[bytes, str] = {}
    for part in chunked(wanted):
        marks = ", ".join([mark] * len(part))
        sql = f"SELECT digest, kind FROM objects WHERE digest IN ({marks}) AND kind IS NOT NULL"
        found.update((bytes(d), kind) for d, kind in conn.exec_driver_sql(sql, tuple(part)))
    return found


def framed_kinds(conn: Connection, digests: Iterable[bytes]) -> dict[bytes, str]:
    """The kind each stored object's own bytes declare (its frame), not its ``kind`` column.

    For the rare reference whose column disagrees with what it must name: the column may be
    what is wrong (``fsck`` reports that on its own), and the bytes are the truth.
    """
    o = schema.objects.c
    found: dict[bytes, str] = {}
    for part in chunked(sorted(set(digests))):
        query = select(o.digest, o.data).where(o.digest.in_(part), o.data.is_not(None))
        for digest, data in conn.execute(query):
            try:
                found[bytes(digest)] = split_frame(bytes(data))[0]
            except ValueError:
                continue  # not a frame at all: fsck reports the object as corrupt
    return found


def absent(conn: Connection, digests: Iterable[bytes]) -> set[bytes]:
    """Those of ``digests`` that name no stored object."""
    wanted = set(digests)
    return wanted - kinds_of(conn, wanted).keys()


def ends_of(conn: Connection, runs: Iterable[bytes]) -> dict[bytes, bytes]:
    """The end the index holds for each of these runs that has one: run -> end digest.

    A run ends once: the ``run_ends`` index holds one row per run (a unique index), so after
    an insert that was ignored, the row found is the end that was there first.
    """
    col = schema.run_ends.c
    ids = ids_of(conn, runs)
    by_id = {i: d for d, i in ids.items()}
    ended: dict[int, int] = {}
    for part in chunked(sorted(by_id)):
        query = select(col.run, col.id).where(col.run.in_(part))
        ended.update((int(run), int(end)) for run, end in conn.execute(query))
    names = digests_of(conn, ended.values())
    return {by_id[run]: names[end] for run, end in ended.items()}


def objects_of_kind(conn: Connection, kind: str) -> list[tuple[bytes, bytes]]:
    """``(digest, framed bytes)`` of every stored object of ``kind``, in digest order.

    For kinds that are few and have no index table of their own (signatures).
    """
    o = schema.objects.c
    query = select(o.digest, o.data).where(o.kind == kind).order_by(o.digest)
    return [(bytes(digest), bytes(data)) for digest, data in conn.execute(query)]


def rebuild(
    conn: Connection, batch: int = 5000, on_progress: Callable[[int], None] | None = None
) -> int:
    """Empty the index tables and derive them again from every object, in the open transaction.

    Returns how many objects were indexed.  Objects that do not hash or decode are skipped
    (``provstore fsck`` lists them), so one damaged object cannot keep the rest from being
    indexed.
    """
    o = schema.objects
    for table in INDEX_TABLES:
        conn.execute(table.delete())
    writer = _Writer(conn, index_only=True)
    done, last = 0, 0
    while True:
        query = select(o.c.id, o.c.digest, o.c.data).where(o.c.id > last, o.c.data.is_not(None))
        page = conn.execute(query.order_by(o.c.id).limit(batch)).all()
        if not page:
            return done
        loaded = []
        for _, digest, data in page:
            try:
                loaded.append(load(bytes(digest), bytes(data)))
            except CorruptObjectError:
                continue
        layout.write(writer, loaded)
        done += len(loaded)
        last = int(page[-1][0])
        if on_progress is not None:
            on_progress(len(page))
