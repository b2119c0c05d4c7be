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
    "framed_kinds",
    "index_rows",
    "kinds_of",
    "ends_of",
    "objects_of_kind",
    "rebuild",
    "write_items",
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


def _insert_index(conn: Connection, items: Iterable[Sealed]) -> None:
    rows: dict[str, list[Row]] = {name: [] for name in layout.INDEX_TABLE_NAMES}
    for item in items:
        for name, row in layout.ROWS[item.kind](item):
            rows[name].append(row)
    insert = dialects.of(conn).insert_ignore
    for name, table_rows in rows.items():
        insert(conn, _TABLES[name], table_rows)


def write_items(conn: Connection, items: Sequence[Sealed]) -> int:
    """Insert objects and the index rows they imply, idempotently, in the open transaction.

    Returns how many of the objects were new to the store.
    """
    object_rows = [layout.object_row(item) for item in items]
    added = dialects.of(conn).insert_ignore(conn, schema.objects, object_rows)
    _insert_index(conn, items)
    return added


def kinds_of(conn: Connection, digests: Iterable[bytes]) -> dict[bytes, str]:
    """The kind of each of ``digests`` that names a stored object (plain driver SQL: hot)."""
    wanted = sorted(set(digests))
    mark = param_mark(conn)
    found: dict[bytes, str] = {}
    for part in chunked(wanted):
        marks = ", ".join([mark] * len(part))
        sql = f"SELECT digest, kind FROM objects WHERE digest IN ({marks})"
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
        for digest, data in conn.execute(select(o.digest, o.data).where(o.digest.in_(part))):
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
    found: dict[bytes, bytes] = {}
    for part in chunked(sorted(set(runs))):
        query = select(col.run, col.digest).where(col.run.in_(part)).order_by(col.digest)
        for run, digest in conn.execute(query):
            found.setdefault(bytes(run), bytes(digest))
    return found


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
    done, last = 0, b""
    while True:
        query = select(o.c.digest, o.c.data).where(o.c.digest > last)
        page = conn.execute(query.order_by(o.c.digest).limit(batch)).all()
        if not page:
            return done
        loaded = []
        for digest, data in page:
            try:
                loaded.append(load(bytes(digest), bytes(data)))
            except CorruptObjectError:
                continue
        _insert_index(conn, loaded)
        done += len(loaded)
        last = bytes(page[-1][0])
        if on_progress is not None:
            on_progress(len(page))
