"""The index's shape as plain data: table names, column order, keys, the rows each kind implies.

:mod:`provstore.db.schema` declares the tables for SQLAlchemy; this module holds what a writer
needs to fill them without importing SQLAlchemy (a tracked process on SQLite writes through
:mod:`provstore.db.sqlite_direct` and never pays for it).  A test holds :data:`COLUMNS` and
:data:`KEY_WIDTH` equal to the SQLAlchemy tables, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, repeat
from operator import add, itemgetter
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:  # a writer process imports this module and never an object's class
    from provstore.core.objects import Product, Run, RunEnd, Sealed

__all__ = [
    "COLUMNS",
    "Columns",
    "INDEX_TABLE_NAMES",
    "KEY_WIDTH",
    "KNOWN_LIMIT",
    "OBJECT_COLUMNS",
    "REFS",
    "Packed",
    "ROWS",
    "SCHEMA_VERSION",
    "body_rows",
    "by_digest",
    "columns_of",
    "extend",
    "object_row",
    "pack",
    "references",
    "remember",
    "resolved",
    "rows_of",
    "sorted_rows",
    "write",
    "write_rows",
]

SCHEMA_VERSION = 4
"""4: every digest stored once, in ``objects`` under an integer id given in insertion order;
the index tables are keyed by and refer through those ids (digests referred to before their
object is stored get an ``objects`` row without data).  A version-3 store is upgraded in place
by rebuilding ``objects``' ids and the index tables from the objects.

3: runs indexed by the batch job they belonged to (``job``, ``job_array``), for
``provstore log --job``; a version-2 store is upgraded in place by rebuilding the index from
the objects, which are unchanged.

2: one end per run (a unique index on ``run_ends.run``); products indexed by name and path
as text searchable by prefix; on MySQL/MariaDB, text compared without padding (``'1.0'`` and
``'1.0 '`` differ, as on SQLite and PostgreSQL).  A version-1 store is upgraded in place when
opened for writing: its index tables are rebuilt from the objects (:mod:`provstore.db.setup`)."""

Row = tuple[Any, ...]
NamedRow = tuple[str, Row]

COLUMNS: dict[str, tuple[str, ...]] = {
    "objects": ("id", "digest", "kind", "size", "data"),
    "products": ("id", "name", "version", "content", "size", "run", "path"),
    "product_parents": ("child", "parent"),
    "runs": ("id", "environment", "started_ns", "host", "user", "name", "job", "job_array"),
    "run_ends": ("id", "run", "status", "finished_ns"),
}
"""Each table's columns, in the order of its rows."""

OBJECT_COLUMNS = COLUMNS["objects"][1:]
"""The columns an object's row is written with (the database gives its ``id``)."""

REFS: dict[str, tuple[int, ...]] = {
    "products": (0, 5),
    "product_parents": (0, 1),
    "runs": (0, 1),
    "run_ends": (0, 1),
}
"""Per index table, the positions in its rows that hold an object's id.

:data:`ROWS` yields digests there; a writer looks up (or assigns) their ids and replaces them
(:func:`resolved`) before inserting."""

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
    """The ``objects`` row of a sealed object, in :data:`OBJECT_COLUMNS`."""
    return (item.digest, item.kind, len(item.data), item.data)


def by_digest(rows: Sequence[Row]) -> list[Row]:
    """``objects`` rows in digest order (their key), as ``sorted(rows)`` orders them.

    By the digest alone: two rows with one digest are the same object, so no other column
    ever decides the order, and the tuples need not be compared.
    """
    return sorted(rows, key=_FIRST)


_FIRST = itemgetter(0)


def references(rows: dict[str, list[Row]]) -> set[bytes]:
    """Every digest index rows (from :data:`ROWS`) refer to, whose id a writer needs."""
    found: set[Any] = set()
    for table, table_rows in rows.items():
        for position in REFS[table]:
            found.update(map(itemgetter(position), table_rows))
    found.discard(None)
    return found


def resolved(table: str, rows: list[Row], ids: dict[bytes, int]) -> list[Row]:
    """``rows`` (from :data:`ROWS`) with ids for digests, in key order."""
    # The rows of a big batch: one comprehension each, no loop per position (a test holds
    # them equal to the general case below).
    if table == "product_parents":
        return sorted([(ids[child], ids[parent]) for child, parent in rows])
    if table == "products":
        out = [
            (ids[r[0]], r[1], r[2], r[3], r[4], None if r[5] is None else ids[r[5]], r[6])
            for r in rows
        ]
        return sorted(out, key=_FIRST)
    return _resolved(table, rows, ids)


def _resolved(table: str, rows: list[Row], ids: dict[bytes, int]) -> list[Row]:
    """:func:`resolved` for any table, through :data:`REFS`."""
    positions = REFS[table]
    out = []
    for row in rows:
        values = list(row)
        for position in positions:
            if values[position] is not None:
                values[position] = ids[values[position]]
        out.append(tuple(values))
    return sorted_rows(table, out)


def _product_row(digest: bytes, obj: Product) -> Row:
    return (digest, obj.name, obj.version, obj.content, obj.size, obj.run, obj.path)


def _product_rows(item: Sealed) -> Iterator[NamedRow]:
    obj = cast("Product", item.obj)  # ROWS is keyed by kind, and a kind is its class
    yield "products", _product_row(item.digest, obj)
    for parent in obj.parents:
        yield "product_parents", (item.digest, parent)


def _run_rows(item: Sealed) -> Iterator[NamedRow]:
    obj = cast("Run", item.obj)
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
    obj = cast("RunEnd", item.obj)
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


def _product_body(digest: bytes, body: dict[str, Any]) -> list[NamedRow]:
    row = (digest, body["name"], body["version"], body["content"], body["size"], body["run"])
    out: list[NamedRow] = [("products", (*row, body["path"]))]
    out += [("product_parents", (digest, parent)) for parent in body["parents"]]
    return out


def _run_body(digest: bytes, body: dict[str, Any]) -> list[NamedRow]:
    job = body.get("job") or {}
    ident, array = job.get("id"), job.get("array_id")
    row = (digest, body["environment"], body["started_ns"], body["host"], body["user"])
    extra = (
        body["name"],
        ident if type(ident) is str else None,
        array if type(array) is str else None,
    )
    return [("runs", row + extra)]


def _run_end_body(digest: bytes, body: dict[str, Any]) -> list[NamedRow]:
    return [("run_ends", (digest, body["run"], body["status"], body["finished_ns"]))]


_BODY_ROWS: dict[str, Callable[[bytes, dict[str, Any]], list[NamedRow]]] = {
    "run": _run_body,
    "runend": _run_end_body,
    "product": _product_body,
}


def body_rows(kind: str, digest: bytes, body: dict[str, Any]) -> list[NamedRow]:
    """:data:`ROWS` of an object of ``kind`` from its decoded, admitted body (no object built).

    For a bulk import (:func:`provstore.core.admission.admit`); a test holds it equal to
    :data:`ROWS` of the loaded object.
    """
    rows = _BODY_ROWS.get(kind)
    return [] if rows is None else rows(digest, body)


Columns = tuple[list[list[Any]], dict[str, list[list[Any]]], list[int]]
"""A batch's rows as columns, in the order of its items (:func:`columns_of`):
``(objects, tables, ends)``, the ``objects`` rows' columns (:data:`OBJECT_COLUMNS`), per
index table its columns (:data:`COLUMNS`), and per ``products`` row how many
``product_parents`` rows come up to the end of its own (a product's rows are together)."""

Packed = tuple[list[Sequence[Any]], dict[str, list[Sequence[Any]]]]
"""A batch as :func:`pack` makes it for a SQLite writer: the ``objects`` rows' columns in
digest order, and per index table with rows its columns, in the order of their first column
(the object's own digest: the order of their ids when the batch's objects are all new, ids
being given in insertion order), references as digests.  A writer maps whole columns
(``map(ids.__getitem__, column)``) and zips them: no Python code runs per row."""


def columns_of(items: Sequence[Sealed]) -> Columns:
    """:func:`rows_of` as :data:`Columns` (a test holds the two equal).

    Made straight into columns, with no tuple per row: a tracker makes them a few hundred
    products at a time while its writer process writes the batch before, and kept row
    tuples set the garbage collector off over and over (1,556 collections against 988 for
    150,000 products).
    """
    tables: dict[str, list[list[Any]]] = {
        name: [[] for _ in COLUMNS[name]] for name in INDEX_TABLE_NAMES
    }
    ends: list[int] = []
    ident, name, version, content, size, run, path = tables["products"]
    children, parents = tables["product_parents"]
    for item in items:
        if item.kind == "product":  # nearly every object of a big batch
            obj = cast("Product", item.obj)
            ident.append(item.digest)
            name.append(obj.name)
            version.append(obj.version)
            content.append(obj.content)
            size.append(obj.size)
            run.append(obj.run)
            path.append(obj.path)
            if obj.parents:
                children.extend(repeat(item.digest, len(obj.parents)))
                parents.extend(obj.parents)
            ends.append(len(parents))
            continue
        for table, row in ROWS[item.kind](item):
            for column, value in zip(tables[table], row, strict=True):
                column.append(value)
    datas = [item.data for item in items]
    objects: list[list[Any]] = [[item.digest for item in items], [item.kind for item in items]]
    return [*objects, list(map(len, datas)), datas], tables, ends


def extend(batch: Columns, more: Columns) -> None:
    """Add the rows of ``more`` to ``batch`` (after its own)."""
    objects, tables, ends = batch
    for column, added in zip(objects, more[0], strict=True):
        column.extend(added)
    ends.extend(map(add, more[2], repeat(len(tables["product_parents"][0]))))
    for name, columns in tables.items():
        for column, added in zip(columns, more[1][name], strict=True):
            column.extend(added)


def pack(batch: Columns) -> Packed:
    """A batch's :data:`Columns` in key order, as :data:`Packed` (tables without rows left out).

    The sorting :func:`write_rows` does, done where the batch is made (by a tracker, while
    its writer process writes the batch before), by index, with no tuple made per row.  A
    product's ``product_parents`` rows follow it (its parents are sorted): they are taken
    product by product, in the products' order, instead of sorted again.
    """
    objects, tables, ends = batch
    digests = objects[0]
    order = _order(digests)
    packed = {}
    for name, columns in tables.items():
        if name != "product_parents" and columns[0]:
            # A batch of products alone: their rows are its objects', in the same order.
            packed[name] = _taken(columns, order if columns[0] == digests else _order(columns[0]))
    if tables["product_parents"][0]:
        by_product = order if tables["products"][0] == digests else _order(tables["products"][0])
        starts = [0, *ends]
        rows = chain.from_iterable(map(range, map(starts.__getitem__, by_product),
                                       map(ends.__getitem__, by_product)))  # fmt: skip
        packed["product_parents"] = _taken(tables["product_parents"], list(rows))
    return _taken(objects, order), packed


def _order(keys: list[Any]) -> list[int]:
    """The indices of ``keys`` in the order of their values (stable)."""
    return sorted(range(len(keys)), key=keys.__getitem__)


def _taken(columns: list[list[Any]], order: list[int]) -> list[Sequence[Any]]:
    """``columns``' values in ``order`` (indices), as tuples.

    One ``itemgetter`` of every index takes them in a loop in C: 40% sooner than a ``map``
    of ``__getitem__``.
    """
    if len(order) < 2:  # an itemgetter of one index gives the value, not a tuple
        return [tuple(column[i] for i in order) for column in columns]
    take = itemgetter(*order)
    return [take(column) for column in columns]


def sorted_rows(table: str, rows: list[Row]) -> list[Row]:
    """Rows in key order, so concurrent batches take their locks in the same order."""
    width = KEY_WIDTH[table]
    if width == len(COLUMNS[table]):
        return sorted(rows)
    # One key column: the same order as by the one-column slice, without a tuple per row.
    return sorted(rows, key=_FIRST if width == 1 else lambda r: r[:width])


class Writer(Protocol):
    """What :func:`write` needs of a database connection in an open write transaction."""

    def put_objects(self, rows: Sequence[Row]) -> int:
        """Insert objects rows, filling in digests referred to before; how many were new."""

    def placed(self) -> dict[bytes, int]:
        """Ids the last :meth:`put_objects` is known to have given, without a query (or none)."""

    def ids(self, digests: Iterable[bytes]) -> dict[bytes, int]:
        """The id of each of ``digests`` that has an ``objects`` row (stored or referred to)."""

    def intern(self, digests: Sequence[bytes]) -> None:
        """Give ids to digests referred to but not stored (skipping those that have one)."""

    def insert(self, table: str, rows: list[Row]) -> None:
        """Insert index rows (ids resolved, in key order), skipping keys present."""


KNOWN_LIMIT = 500_000
"""The most ids a writer remembers (:func:`remember`): about 80 bytes each, so 40 MB at most
(the digests are the writer's own objects, shared)."""


def remember(known: dict[bytes, int], learned: dict[bytes, int]) -> None:
    """Keep the ids a committed transaction looked up, for the writer's next ones.

    An object's id never changes once given (nothing deletes or renumbers ``objects`` rows of
    a store of this schema), so only the ids of a transaction that rolled back may not be
    kept: a writer calls this after its commit.  Past :data:`KNOWN_LIMIT` it starts over.
    """
    if len(known) + len(learned) > KNOWN_LIMIT:
        known.clear()
    known.update(learned)


def write(
    db: Writer,
    items: Sequence[Sealed],
    known: dict[bytes, int] | None = None,
    learned: dict[bytes, int] | None = None,
) -> int:
    """Write objects and the index rows they imply through ``db``; how many objects were new.

    See :func:`write_rows`; ``known`` and ``learned`` are its.
    """
    return write_rows(db, *rows_of(items), known, learned)


def rows_of(items: Sequence[Sealed]) -> tuple[list[Row], dict[str, list[Row]]]:
    """The ``objects`` rows of ``items`` and the index rows they imply (from :data:`ROWS`)."""
    rows: dict[str, list[Row]] = {name: [] for name in INDEX_TABLE_NAMES}
    products, links = rows["products"], rows["product_parents"]
    for item in items:
        if item.kind == "product":  # nearly every object of a big batch: no generator each
            obj = cast("Product", item.obj)
            digest = item.digest
            products.append(_product_row(digest, obj))
            if obj.parents:
                links.extend([(digest, parent) for parent in obj.parents])
            continue
        for name, row in ROWS[item.kind](item):
            rows[name].append(row)
    return [object_row(item) for item in items], rows


def write_rows(
    db: Writer,
    objects: Sequence[Row],
    rows: dict[str, list[Row]],
    known: dict[bytes, int] | None = None,
    learned: dict[bytes, int] | None = None,
) -> int:
    """Write ``objects`` rows and index ``rows`` (from :data:`ROWS`); how many objects were new.

    Objects first (their ids come in insertion order), then the ids of every digest the
    index rows refer to (those the insert gave, when the writer can tell, else looked up):
    a digest not stored yet (a parent written later, or never) gets an ``objects`` row of
    its own without data, which its object fills in when it comes.

    ``known`` holds ids of committed rows (a tracker's earlier batches, its run), which are
    not looked up again; the ids looked up go into ``learned``, for :func:`remember`.
    """
    added = db.put_objects(objects)
    wanted = references(rows)
    if not wanted:
        return added
    # Whole-set operations where a batch is big: most digests are the batch's own objects
    # (placed), the rest mostly earlier batches' (known); only what neither holds is looked up.
    placed = db.placed()
    ids = dict(placed)
    rest = wanted - ids.keys()
    if rest and known:
        earlier = rest & known.keys()
        ids.update({digest: known[digest] for digest in earlier})
        rest -= earlier
    fetched = db.ids(rest) if rest else {}
    missing = sorted(rest - fetched.keys())
    if missing:
        db.intern(missing)
        fetched.update(db.ids(missing))
    if learned is not None:  # keyed by the batch's own digests: no copy of each kept
        learned.update(placed)
        learned.update(fetched)
    ids.update(fetched)
    for name, table_rows in rows.items():
        if table_rows:
            db.insert(name, resolved(name, table_rows, ids))
    return added
