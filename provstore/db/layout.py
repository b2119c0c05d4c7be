"""The index's shape as plain data: table names, column order, keys, the rows each kind implies.

:mod:`provstore.db.schema` declares the tables for SQLAlchemy; this module holds what a writer
needs to fill them without importing SQLAlchemy (a tracked process on SQLite writes through
:mod:`provstore.db.sqlite_direct` and never pays for it).  A test holds :data:`COLUMNS` and
:data:`KEY_WIDTH` equal to the SQLAlchemy tables, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from provstore.core.objects import Product, Run, RunEnd, Sealed

__all__ = [
    "COLUMNS",
    "INDEX_TABLE_NAMES",
    "KEY_WIDTH",
    "ROWS",
    "SCHEMA_VERSION",
    "object_row",
    "sorted_rows",
]

SCHEMA_VERSION = 3
"""3: runs indexed by the batch job they belonged to (``job``, ``job_array``), for
``provstore log --job``; a version-2 store is upgraded in place by rebuilding the index from
the objects, which are unchanged.

2: one end per run (a unique index on ``run_ends.run``); products indexed by name and path
as text searchable by prefix; on MySQL/MariaDB, text compared without padding (``'1.0'`` and
``'1.0 '`` differ, as on SQLite and PostgreSQL).  A version-1 store is upgraded in place when
opened for writing: its index tables are rebuilt from the objects (:mod:`provstore.db.setup`)."""

Row = tuple[Any, ...]
NamedRow = tuple[str, Row]

COLUMNS: dict[str, tuple[str, ...]] = {
    "objects": ("digest", "kind", "size", "data"),
    "products": ("digest", "name", "version", "content", "size", "run", "path"),
    "product_parents": ("child", "parent"),
    "runs": ("digest", "environment", "started_ns", "host", "user", "name", "job", "job_array"),
    "run_ends": ("digest", "run", "status", "finished_ns"),
}
"""Each written table's columns, in the order of its rows."""

KEY_WIDTH: dict[str, int] = {
    "objects": 1,
    "products": 1,
    "product_parents": 2,
    "runs": 1,
    "run_ends": 1,
}
"""How many leading columns of a row are its primary key."""

INDEX_TABLE_NAMES = ("products", "product_parents", "runs", "run_ends")
"""The tables derived from objects, in the order they are written."""


def object_row(item: Sealed) -> Row:
    """The ``objects`` row of a sealed object."""
    return (item.digest, item.kind, len(item.data), item.data)


def _product_rows(item: Sealed) -> Iterator[NamedRow]:
    obj = item.obj
    assert isinstance(obj, Product)
    row = (item.digest, obj.name, obj.version, obj.content, obj.size, obj.run, obj.path)
    yield "products", row
    for parent in obj.parents:
        yield "product_parents", (item.digest, parent)


def _run_rows(item: Sealed) -> Iterator[NamedRow]:
    obj = item.obj
    assert isinstance(obj, Run)
    job = obj.job or {}
    ident, array = job.get("id"), job.get("array_id")
    yield (
        "runs",
        (
            item.digest,
            obj.environment,
            obj.started_ns,
            obj.host,
            obj.user,
            obj.name,
            ident if type(ident) is str else None,
            array if type(array) is str else None,
        ),
    )


def _run_end_rows(item: Sealed) -> Iterator[NamedRow]:
    obj = item.obj
    assert isinstance(obj, RunEnd)
    yield "run_ends", (item.digest, obj.run, obj.status, obj.finished_ns)


def _no_rows(item: Sealed) -> Iterator[NamedRow]:
    """Kinds found only by digest (through the objects that refer to them), or by kind.

    Signatures are few (one per signed import) and found by the ``objects`` table's kind
    index, so they need no table of their own.
    """
    return iter(())


ROWS: dict[str, Callable[[Sealed], Iterable[NamedRow]]] = {
    "libraryset": _no_rows,
    "condaset": _no_rows,
    "importset": _no_rows,
    "environment": _no_rows,
    "variables": _no_rows,
    "run": _run_rows,
    "runend": _run_end_rows,
    "product": _product_rows,
    "signature": _no_rows,
}
"""Per kind: the ``(table name, row)`` pairs an object implies (:data:`index.INDEXERS`)."""


def sorted_rows(table: str, rows: list[Row]) -> list[Row]:
    """Rows in key order, so concurrent batches take their locks in the same order."""
    width = KEY_WIDTH[table]
    return sorted(rows) if width == len(COLUMNS[table]) else sorted(rows, key=lambda r: r[:width])
