"""Every difference between the databases provstore runs on, one record per database.

A :class:`Dialect` says how to open an engine for its URLs, how to insert rows idempotently,
which errors are worth retrying and which mean the connection (or its server) is gone, how
to reach one of several hosts, how to create tables when processes race (on a cluster's
different nodes too), how to serialise schema creation between processes, how to
let a recursive query run to any depth, which isolation a long read needs, whether a store
holds read connections and whether a tracked job keeps a pool, and which table options its
DDL takes.  Nothing outside this module names a database: callers ask :func:`for_url` or
:func:`of` for the record and use it.

Adding a database is one subclass here, one entry in :data:`DIALECTS`, and its URL in the test
suite's backend fixture (``tests/conftest.py``).
"""

from __future__ import annotations

import io
import operator
import os
import re
import sys
import urllib.parse
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from sqlalchemy import MetaData, Table, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

from provstore.core.digests import DIGEST_SIZE
from provstore.core.errors import ConfigError, NoStoreError, UnsupportedStoreError
from provstore.db import layout, sqlite_direct
from provstore.db.lineage_graph import comma_ints
from provstore.db.urls import bare_path, hidden, multi_host, split_host

__all__ = [
    "DIALECTS",
    "MYSQL_BACKENDS",
    "POSTGRESQL_BACKENDS",
    "Dialect",
    "for_url",
    "hosts",
    "of",
    "parse_url",
]

Row = tuple[Any, ...]
Digests = bytes | Sequence[bytes]  # one after another in one byte string, or a list

MYSQL_BACKENDS = ("mysql", "mariadb")
"""SQLAlchemy's names for the MySQL family (schema type variants are declared for these)."""
POSTGRESQL_BACKENDS = ("postgresql",)

_SCHEMA_LOCK_ID = 727300001
_FAILOVER_CONNECT_TIMEOUT = 5  # seconds a node that does not answer may take to refuse


def hosts(url: URL) -> tuple[str, ...]:
    """The ``host[:port]`` entries a server URL names in its ``host`` query parameters.

    Empty for a URL with one host in the usual place; two or more for a cluster's nodes
    (``mysql://u@h1:3307,h2:3308/db`` is read as ``?host=h1:3307&host=h2:3308``).
    """
    value = url.query.get("host", ())
    return (value,) if isinstance(value, str) else tuple(value)


class Dialect:
    """What one database does its own way.  The base class holds the common answers."""

    name: ClassVar[str]
    label: ClassVar[str]
    """The database's name for people (messages)."""
    backends: ClassVar[tuple[str, ...]]
    """SQLAlchemy backend names this record serves."""
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other URL schemes for it, read as its first backend name."""
    driver: ClassVar[str]
    """The one driver provstore talks to it through; a plain scheme (``mysql://``) means it."""
    example: ClassVar[str]
    """The URL form messages suggest."""
    hold_reads: ClassVar[bool] = True
    """A pooled store keeps one autocommit read connection per thread (one round trip/read)."""
    pool_jobs: ClassVar[bool] = False
    """A tracked job keeps a pool; on a server it must not hold idle connections."""
    long_read_isolation: ClassVar[str | None] = "REPEATABLE READ"
    """The isolation a multi-statement read (fsck) needs to see one state throughout."""

    def engine(self, url: URL, *, pooled: bool, read_only: bool = False) -> Engine:
        """An engine for ``url`` with this database's settings.

        ``read_only`` (commands that only read) must create nothing: no file, no directory.
        """
        raise NotImplementedError

    def check_url(self, url: URL, shown: str) -> None:
        """Refuse, as :class:`ConfigError`, a URL this database cannot be used with."""

    def storage_error(self, exc: DBAPIError) -> str | None:
        """What an error says of the store: ``"full"``, ``"read-only"``, ``"missing"`` or None.

        Full: no room left (disk, quota, the database's own size limit).  Read-only: the
        store cannot be written at all (a read-only file, server or transaction).  Missing:
        the server has no database of that name.
        """
        return None

    def prepare_schema(self, metadata: MetaData, conn: Connection) -> None:
        """Attach this database's DDL options before the tables are created.

        The schema declares intent in ``info``: ``compact`` tables (small rows under a
        digest key) and ``partial`` indexes (a ``WHERE`` clause).  Kept out of the table
        definitions, since naming a dialect's options there imports that dialect's module on
        every process start.
        """

    def upgrade_text(self, conn: Connection, metadata: MetaData) -> None:
        """Make existing tables compare text as :meth:`prepare_schema` declares it (schema 2)."""

    def lock_schema(self, conn: Connection) -> None:
        """Serialise schema creation between processes (inside the open transaction)."""

    def unlock_schema(self, conn: Connection) -> None:
        """Release what :meth:`lock_schema` took, when it outlives the transaction."""

    def lift_recursion_limit(self, conn: Connection) -> None:
        """Let a recursive query on this connection run to any depth."""

    def int_pairs(
        self, cursor: Any, columns: tuple[str, str], conditions: Sequence[str]
    ) -> tuple[Sequence[int], Sequence[int]]:
        """``columns`` of the ``product_parents`` rows under any of the disjoint ``conditions``.

        A lineage walk's hot query, on a driver cursor, as two columns (row ``k`` is the
        ``k``-th of each): one ``SELECT`` per condition, joined by ``UNION ALL`` (an ``OR``
        would make SQLite keep every row found to drop repeats).
        """
        select = f"SELECT {columns[0]}, {columns[1]} FROM product_parents WHERE "
        cursor.execute(" UNION ALL ".join(select + where for where in conditions))
        rows = cursor.fetchall()
        return list(map(_first, rows)), list(map(_second, rows))

    def digest_rows(self, cursor: Any, conditions: Sequence[str]) -> tuple[Sequence[int], Digests]:
        """Ids and digests of the ``objects`` rows under any of the disjoint ``conditions``.

        In no order: the lineage graph sorts the ones it needs (SQLite's sorter takes ten
        times as long for 30,000 rows as sorting them in Python).  The digests are a list
        or, packed by the database, one byte string (the graph then makes a ``bytes`` only
        of those it returns).
        """
        select = "SELECT id, digest FROM objects WHERE "
        cursor.execute(" UNION ALL ".join(select + where for where in conditions))
        rows = cursor.fetchall()
        return list(map(_first, rows)), list(map(_second, rows))

    def local_files(self, url: URL) -> list[str]:
        """The files on this machine that hold the store (``status`` leaves them out)."""
        return []

    def glob(self, column: Any, pattern: str) -> Any:
        """A case-sensitive shell-glob test (``*``, ``?``, ``[...]``) on a text column.

        ``LIKE`` where the pattern has no ``[...]`` class (text compares byte for byte on
        PostgreSQL's ``C`` and MySQL's binary collations, so ``LIKE`` is case-sensitive), a
        regular expression otherwise.
        """
        if "[" not in pattern:
            return column.like(glob_to_like(pattern), escape="!")
        return column.regexp_match(glob_to_regex(pattern))

    def is_transient(self, exc: DBAPIError) -> bool:
        """Whether a failed transaction may succeed if run again (deadlock, lock timeout)."""
        return False

    def is_connection_lost(self, exc: DBAPIError) -> bool:
        """Whether the server went away or could not be reached (another host may answer).

        A store whose URL names several hosts runs the transaction again on another one.
        """
        return bool(exc.connection_invalidated)

    def create_tables(
        self, conn: Connection, metadata: MetaData, tables: Sequence[Table] | None = None
    ) -> None:
        """Create the tables (all of ``metadata``'s, or ``tables``) and indexes that are missing.

        Another process may create the same ones at the same moment where the schema lock
        does not reach it (another node of a cluster); a database that can say ``IF NOT
        EXISTS`` says it, so that both succeed.
        """
        metadata.create_all(conn, tables=tables, checkfirst=True)

    def insert_ignore(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[Row],
        columns: Sequence[str] | None = None,
    ) -> int:
        """Insert rows sorted by key, skipping keys already present; how many were new.

        ``columns``: the columns the rows fill, when not all of the table's (the rest take
        their defaults: an object's ``id``).
        """
        raise NotImplementedError

    def put_objects(self, conn: Connection, rows: Sequence[Row]) -> int:
        """Insert ``objects`` rows (:data:`layout.OBJECT_COLUMNS`); how many were new.

        A digest already referred to but not stored (a row without data) gets its object's
        kind, size and bytes; a stored one is left as it is.
        """
        raise NotImplementedError

    fill_clause: ClassVar[str] = (
        "ON CONFLICT (digest) DO UPDATE SET kind = excluded.kind, size = excluded.size, "
        "data = excluded.data WHERE objects.data IS NULL"
    )
    """What an insert into ``objects`` does with a digest referred to before: fill it in."""

    temporary: ClassVar[str] = "CREATE TEMPORARY TABLE {name}"
    """How a staging table begins (it lives as long as the connection, or the transaction)."""

    def create_stage(
        self, conn: Connection, name: str, select: str, index: Sequence[str] = ()
    ) -> None:
        """A temporary table ``name`` shaped like the rows ``select`` returns (it returns none).

        ``index``: columns :meth:`index_stage` will index once the table is loaded.
        """
        self.drop_stage(conn, name)
        conn.exec_driver_sql(f"{self.temporary.format(name=name)} AS {select}")

    def drop_stage(self, conn: Connection, name: str) -> None:
        """Drop a staging table if it is there."""
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")

    def append_stage(
        self, conn: Connection, name: str, columns: Sequence[str], rows: Sequence[Row]
    ) -> None:
        """Append rows to a staging table (no keys, no indexes: each row goes at the end)."""
        if rows:
            marks = ", ".join([_param_mark(conn)] * len(columns))
            sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})"
            conn.exec_driver_sql(sql, list(rows))

    import_chunk: ClassVar[int | None] = None
    """How many objects an import stages and publishes at a time, in a pipeline (a thread
    decodes the next chunk while the database publishes this one); None: all at once."""

    def new_spool(self) -> Any:
        """Somewhere to gather rows for :meth:`load_stage`, from any thread."""
        return []

    def spool_rows(self, spool: Any, rows: Sequence[Row]) -> None:
        """Add rows to a spool (:meth:`new_spool`)."""
        spool.extend(rows)

    def close_spool(self, spool: Any) -> None:
        """Let go of a spool."""

    def load_stage(self, conn: Connection, name: str, columns: Sequence[str], spool: Any) -> None:
        """Append a spool's rows to a staging table."""
        self.append_stage(conn, name, columns, spool)

    def index_stage(self, conn: Connection, name: str, columns: Sequence[str]) -> None:
        """Index a loaded staging table (one sort, not a random insert per row)."""
        conn.exec_driver_sql(f"CREATE INDEX ix_{name} ON {name} ({', '.join(columns)})")

    finds_id_in_index: ClassVar[bool] = False
    """Whether a lookup in ``objects``' digest index gives an object's id without its row.

    Where it does (SQLite: the index holds the rowid), a join that needs only ids never
    reads the table; reading an object's ``kind`` is then a random read more.  Elsewhere the
    row is read for the id anyway, and its kind costs nothing more."""

    scans_through_index: ClassVar[bool] = False
    """Whether :meth:`scan_in_order` reads through an index the caller must create first."""

    def scan_in_order(self, name: str, alias: str, index: str, columns: Sequence[str]) -> str:
        """What ``FROM`` names to read staging table ``name`` (as ``alias``) in ``columns`` order.

        A join probes another table's B-tree in the order of the rows it reads: in key
        order, each probe finds its pages where the last one left them.  ``index`` (on
        ``columns``) is there where :attr:`scans_through_index` says it must be.
        """
        return f"{name} {alias}"

    def analyze_stage(self, conn: Connection, name: str) -> None:
        """Give the planner the staging table's size (temporary tables get no autovacuum)."""

    def bulk_memory(self, conn: Connection, bulk: bool) -> None:
        """Bound what a bulk load holds in this process (``bulk=False`` restores it)."""

    def publish(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        select: str,
        *,
        rebuild: bool = False,
        fresh: bool = False,
    ) -> int:
        """Insert the rows ``select`` gives (in its order) into ``table``, skipping keys present.

        One set-based statement: the table's B-tree is walked once in key order.  Returns
        how many rows were new; into ``objects``, a digest referred to before is filled in
        (see :meth:`put_objects`).  ``rebuild`` (see :meth:`rebuilds_indexes`): drop the
        table's plain secondary indexes first and build them again after, each in one sort.
        ``fresh``: no row can meet a key already in the table (each row's key starts with the
        id of an object the import has just written); a database may skip looking.
        ``select`` has a ``WHERE`` clause (SQLite needs one before ``ON CONFLICT``).
        """
        raise NotImplementedError

    staged_order: ClassVar[str] = "s.seq"
    """How a ``SELECT`` from a staging table ``s`` orders its rows by ``seq``."""

    join_in_order: ClassVar[str] = ""
    """What follows ``SELECT`` to make the database join tables in the order written: a
    staging table first, then the store's tables through their indexes."""

    ordered_join: ClassVar[str] = "JOIN"
    """A join the database takes in the order written, the left table driving: a small
    temporary table (no statistics) first, then the store's tables through their keys."""

    def join_by_keys(self, conn: Connection) -> None:
        """Make this transaction's joins go from row to row through keys (:attr:`ordered_join`).

        For queries led by a temporary table the planner knows nothing of.
        """

    @contextmanager
    def keyed_joins(self, conn: Connection) -> Iterator[None]:
        """Joins from row to row through keys for the statements run inside, on any connection.

        For a recursive query whose every round joins a few rows to a big table.
        """
        yield

    @contextmanager
    def probing_joins(self, conn: Connection) -> Iterator[None]:
        """Joins to the store's tables by probing their keys, for the statements run inside.

        Inside the caller's open transaction, for a statement that joins a staging table to
        ``objects`` by digest: one index probe per staged row, never a pass over the store.
        """
        yield

    @contextmanager
    def serial_plans(self, conn: Connection) -> Iterator[Callable[[], None]]:
        """A switch to plans without parallel workers (where a database has them) till the end.

        For a deep lineage walk's many queries, each over in a few milliseconds: called once
        the walk reads ranges of ids (a shallow walk never does, and pays nothing).
        """
        yield _no_switch

    def empty(self, conn: Connection, table: Table) -> None:
        """Delete every row of a temporary table that is filled and emptied many times."""
        conn.exec_driver_sql(f"DELETE FROM {table.name}")

    def staged_objects(self, stage: str, columns: Sequence[str], first: int | None = None) -> str:
        """The ``SELECT`` of staged objects to publish (a duplicate is a no-op).

        By digest; with ``first`` (ids reserved, ``id`` among ``columns``), each under the
        id ``first + seq`` and in ``seq`` order, so that ids ascend as the rows go in.
        """
        names = ", ".join(_staged_value(c, first) for c in columns)
        order = "s.digest, s.seq" if first is None else self.staged_order
        return f"SELECT {names} FROM {stage} s WHERE 1 = 1 ORDER BY {order}"

    def reserve_ids(self, conn: Connection, count: int) -> int | None:
        """The first of ``count`` consecutive ``objects`` ids this transaction may give, if any.

        An import that reserves them publishes the object staged at ``seq`` under
        ``first + seq``.  None: the database gives ids as rows go in.
        """
        return None

    def rebuilds_indexes(self, conn: Connection, staged: int) -> bool:
        """Whether publishing ``staged`` objects should rebuild secondary indexes.

        Rows published in primary-key order still land at random places in every other
        index; when an import outgrows the store, building those indexes again is cheaper.
        """
        return False


def _no_switch() -> None:
    """:meth:`Dialect.serial_plans`' switch where there is nothing to switch."""


def _staged_value(column: str, first: int | None) -> str:
    """A staged object's column in a publishing ``SELECT`` (its id: reserved, by ``seq``)."""
    return f"{int(first)} + s.seq" if column == "id" and first is not None else f"s.{column}"


_PACKED_MAX = 1 << 30  # group_concat_max_len for a packed lineage query: a count checks it


def sql_ints(ids: Iterable[int]) -> str:
    """Integer ids written into SQL as a comma list (``int`` makes each a plain number).

    For lists of thousands of ids, which a driver would otherwise escape one at a time.
    """
    return ", ".join(map(str, map(int, ids)))


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def _int64s(packed: bytes) -> array[int]:
    """Big-endian signed 64-bit integers, one after another, as an array."""
    numbers = array("q")
    numbers.frombytes(packed)
    if sys.byteorder == "little":
        numbers.byteswap()
    return numbers


def glob_to_like(pattern: str) -> str:
    """A glob without classes as a ``LIKE`` pattern (escape character ``!``)."""
    out = []
    for char in pattern:
        if char in "%_!":
            out.append("!" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def glob_to_regex(pattern: str) -> str:
    """A glob as an anchored POSIX extended regular expression (PostgreSQL ``~``, REGEXP)."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        end = pattern.find("]", i + 2) if char == "[" else -1
        if end > 0:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
            continue
        out.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
        i += 1
    return "".join(out) + "$"


_FIRST = operator.itemgetter(0)


def _sorted_rows(table: Table, rows: Sequence[Row]) -> list[Row]:
    """Rows in key order, so concurrent batches take their locks in the same order."""
    width = len(table.primary_key.columns)
    if width == len(table.columns):
        return sorted(rows)
    return sorted(rows, key=_FIRST if width == 1 else lambda r: r[:width])  # as by r[:1]


def _columns(
    conn: Connection, table: Table, names: Sequence[str] | None = None
) -> tuple[str, str]:
    quote = conn.dialect.identifier_preparer.quote
    chosen = [c.name for c in table.columns] if names is None else names
    return quote(table.name), ", ".join(quote(name) for name in chosen)


def _ordered(table: Table, rows: Sequence[Row], columns: Sequence[str] | None) -> list[Row]:
    return _sorted_rows(table, rows) if columns is None else sorted(rows)


_OBJECT_COLUMNS = ("digest", "kind", "size", "data")  # layout.OBJECT_COLUMNS


def _param_mark(conn: Connection) -> str:
    """The driver's positional parameter mark, for plain SQL on its cursor."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _copy_text(value: str) -> str:
    """Text as a field of PostgreSQL's ``COPY`` text format (backslash escapes)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def _copy_bytes(value: bytes) -> str:
    return "\\\\x" + value.hex()


def _copy_null(value: None) -> str:
    return "\\N"


_COPY_FIELD: dict[type, Callable[[Any], str]] = {
    str: _copy_text,
    bytes: _copy_bytes,
    int: str,
    type(None): _copy_null,
}
"""Per type, how a value is written as a field of ``COPY``'s text format."""


def _copy_other(value: Any) -> str:
    """A field of another type than :data:`_COPY_FIELD` names (a subclass: as its base)."""
    for kind, write in _COPY_FIELD.items():
        if isinstance(value, kind):
            return write(value)
    return str(value)


def _copy_lines(rows: Iterable[Row]) -> str:
    """Rows in ``COPY``'s text format.

    The common types are written inline (bytes, int, text without anything to escape, None),
    without a call per field: a million objects' rows take seconds less.
    """
    return "".join(
        [
            "\t".join(
                [
                    "\\\\x" + value.hex()
                    if (kind := type(value)) is bytes
                    else str(value)
                    if kind is int
                    else value
                    if kind is str
                    and not ("\\" in value or "\t" in value or "\n" in value or "\r" in value)
                    else "\\N"
                    if value is None
                    else _copy_other(value)
                    for value in row
                ]
            )
            + "\n"
            for row in rows
        ]
    )


def _partial_indexes(metadata: MetaData) -> list[tuple[Any, str]]:
    return [
        (index, index.info["partial"])
        for table in metadata.tables.values()
        for index in table.indexes
        if "partial" in index.info
    ]


class SQLite(Dialect):
    """An embedded file: WAL, a busy timeout, writers begun ``IMMEDIATE``."""

    name = "sqlite"
    label = "SQLite"
    backends = ("sqlite",)
    driver = "pysqlite"
    example = "sqlite:///PATH"
    hold_reads = False  # a connection per read is cheap here, and WAL readers never block
    pool_jobs = True
    long_read_isolation = None  # a WAL read transaction is already a snapshot
    ordered_join = "CROSS JOIN"  # SQLite's planner never reorders around one

    def engine(self, url: URL, *, pooled: bool, read_only: bool = False) -> Engine:
        """A file engine; an in-memory store only with ``PROVSTORE_ALLOW_MEMORY=1`` (tests).

        ``read_only`` opens an existing file with ``mode=ro`` and never creates one.  SQLite
        URI parameters (``?immutable=1``, ``?mode=ro``) are honoured in both URL spellings.
        """
        path, params = sqlite_file(url)
        if path is None:
            if os.environ.get("PROVSTORE_ALLOW_MEMORY") != "1":
                raise ConfigError(
                    "an in-memory SQLite store forgets everything when the process ends; "
                    "give a file: sqlite:////absolute/path/provstore.db"
                )
        elif read_only:
            _existing_store(url, path, params)
            _refuse_network_fs(path, create=False)
            params.setdefault("mode", "ro")
        else:
            _refuse_network_fs(path, create=True)
        if path is not None and params:
            url = _uri_url(url, path, params)
        engine = _create_engine(url, connect_args={"timeout": 60})
        fixed = read_only or params.get("mode") == "ro" or params.get("immutable") == "1"
        on_connect = _sqlite_on_connect_reading if fixed else _sqlite_on_connect
        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    def storage_error(self, exc: DBAPIError) -> str | None:
        """A full disk or database, a read-only file."""
        kind = sqlite_direct.error_kind(str(exc.orig))
        return kind if kind in ("full", "read-only") else None

    def prepare_schema(self, metadata: MetaData, conn: Connection) -> None:
        """Compact tables without a separate rowid B-tree; partial indexes."""
        for table in metadata.tables.values():
            if table.info.get("compact"):
                table.dialect_kwargs["sqlite_with_rowid"] = False
        for index, where in _partial_indexes(metadata):
            index.dialect_kwargs["sqlite_where"] = text(where)

    def int_pairs(
        self, cursor: Any, columns: tuple[str, str], conditions: Sequence[str]
    ) -> tuple[Sequence[int], Sequence[int]]:
        """Each column packed by SQLite into one text per condition (``group_concat``).

        Reading the texts costs a third of what the driver takes to build a row per link;
        both aggregates see the same rows in the same order.
        """
        select = f"SELECT group_concat({columns[0]}), group_concat({columns[1]}) "
        select += "FROM product_parents WHERE "
        cursor.execute(" UNION ALL ".join(select + where for where in conditions))
        rows = [row for row in cursor.fetchall() if row[0] is not None]
        return comma_ints(",".join(map(_first, rows))), comma_ints(",".join(map(_second, rows)))

    def digest_rows(self, cursor: Any, conditions: Sequence[str]) -> tuple[Sequence[int], Digests]:
        """Packed by SQLite: the ids as a comma list, the digests as one blob, per condition.

        40,000 rows: 11 ms against 18 ms as rows (and no tuple per row).  ``group_concat``
        passes a blob's bytes through as text (a UTF-8 database: the stores are), and both
        aggregates see the same rows in the same order; the digests' length is checked
        against the count all the same.
        """
        select = "SELECT count(*), group_concat(id), CAST(group_concat(digest, '') AS BLOB) "
        select += "FROM objects WHERE "
        cursor.execute(" UNION ALL ".join(select + where for where in conditions))
        rows = [row for row in cursor.fetchall() if row[0]]
        packed = b"".join(row[2] for row in rows)
        if len(packed) != DIGEST_SIZE * sum(row[0] for row in rows):
            return super().digest_rows(cursor, conditions)
        return comma_ints(",".join(row[1] for row in rows)), packed

    def local_files(self, url: URL) -> list[str]:
        """The database file and the journal files beside it."""
        path, _ = sqlite_file(url)
        if path is None:
            return []
        path = os.path.abspath(path)
        return [path, *(path + suffix for suffix in ("-wal", "-shm", "-journal"))]

    def glob(self, column: Any, pattern: str) -> Any:
        """SQLite's own ``GLOB``: case-sensitive, with the shell's ``*``, ``?`` and ``[...]``."""
        return column.op("GLOB")(pattern)

    def is_transient(self, exc: DBAPIError) -> bool:
        """Busy or locked database files."""
        return sqlite_direct.error_kind(str(exc.orig)) == "busy"

    def insert_ignore(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[Row],
        columns: Sequence[str] | None = None,
    ) -> int:
        """``INSERT OR IGNORE`` through ``executemany``."""
        if not rows:
            return 0
        name, names = _columns(conn, table, columns)
        marks = ", ".join("?" for _ in (columns or table.columns))
        sql = f"INSERT OR IGNORE INTO {name} ({names}) VALUES ({marks})"
        return int(conn.exec_driver_sql(sql, _ordered(table, rows, columns)).rowcount)

    def put_objects(self, conn: Connection, rows: Sequence[Row]) -> int:
        """An upsert through ``executemany`` (its row count: rows inserted or filled in)."""
        if not rows:
            return 0
        sql = sqlite_direct.PUT_OBJECTS
        return int(conn.exec_driver_sql(sql, layout.by_digest(rows)).rowcount)

    temporary = "CREATE TEMP TABLE {name}"
    staged_order = "s.rowid"
    """Rows are staged in ``seq`` order, which is their rowid order: read so, without a sort
    (a million objects' bytes sorted again cost seconds)."""

    scans_through_index = True
    finds_id_in_index = True

    def scan_in_order(self, name: str, alias: str, index: str, columns: Sequence[str]) -> str:
        """``INDEXED BY``: the planner would read the table in its own (insertion) order.

        Probes in digest order are ~6x cheaper at a million rows than random ones.
        """
        return f"{name} {alias} INDEXED BY {index}"

    def bulk_memory(self, conn: Connection, bulk: bool) -> None:
        """A smaller page cache while publishing, which also bounds the sorter's memory.

        Rows are published in key order, so the cache needs little more than the path to
        the current leaf of each B-tree; SQLite's sorter takes as much memory as the cache.
        """
        size = _BULK_CACHE_KIB if bulk else _CACHE_KIB
        conn.exec_driver_sql(f"PRAGMA cache_size = -{size}")

    def drop_stage(self, conn: Connection, name: str) -> None:
        """Drop a staging table (in the connection's own ``temp`` schema) if it is there."""
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")

    def publish(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        select: str,
        *,
        rebuild: bool = False,
        fresh: bool = False,
    ) -> int:
        """``INSERT OR IGNORE … SELECT … ORDER BY``; rebuilt indexes come back as they were.

        Their own ``CREATE INDEX`` statements are read from the schema and run again, in the
        same transaction (readers keep seeing the indexes of their snapshot).  Unique
        indexes stay: they enforce what the insert must respect.
        """
        name, names = _columns(conn, table, columns)
        saved: list[tuple[str, str]] = []
        if rebuild:
            found = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL AND upper(sql) NOT LIKE 'CREATE UNIQUE%'",
                (table.name,),
            )
            saved = [(str(index), str(create)) for index, create in found]
            for index, _ in saved:
                conn.exec_driver_sql(f'DROP INDEX "{index}"')
        if table.name == "objects":
            sql = f"INSERT INTO {name} ({names}) {select} {self.fill_clause}"
        else:
            sql = f"INSERT OR IGNORE INTO {name} ({names}) {select}"
        added = int(conn.exec_driver_sql(sql).rowcount)
        for _, create in saved:
            conn.exec_driver_sql(create)
        return added

    def reserve_ids(self, conn: Connection, count: int) -> int | None:
        """The ids after the last: a write transaction (``BEGIN IMMEDIATE``) is the only one."""
        last = conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM objects").scalar()
        return int(last or 0) + 1

    def rebuilds_indexes(self, conn: Connection, staged: int) -> bool:
        """From 10,000 objects, when the import holds at least as many as the store.

        The store's size is read from the ``objects`` rowid (no count over the table).
        """
        if staged < _REBUILD_FROM:
            return False
        stored = conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM objects").scalar()
        return staged >= int(stored or 0)


def _refuse_network_fs(path: str, *, create: bool) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if create:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot make the directory for {path}: {exc.strerror}") from None
    sqlite_direct.refuse_network_fs(path)


_PYSQLITE_ARGS = frozenset(
    {"timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements"}
)


def sqlite_file(url: URL) -> tuple[str | None, dict[str, str]]:
    """The file a SQLite URL names (None: in memory) and the SQLite URI parameters it gives.

    Both spellings are read: ``sqlite:////path?immutable=1`` (SQLAlchemy alone would drop the
    parameter with a warning; provstore passes it on) and SQLAlchemy's URI form
    ``sqlite:///file:/path?immutable=1&uri=true``.
    """
    database = url.database or ""
    params = {
        key: value if isinstance(value, str) else value[-1]
        for key, value in url.query.items()
        if key not in _PYSQLITE_ARGS and key != "uri"
    }
    if database.startswith("file:") and str(url.query.get("uri", "")).lower() in ("true", "1"):
        split = urllib.parse.urlsplit(database)
        database = urllib.parse.unquote(split.path)
        params = {**dict(urllib.parse.parse_qsl(split.query)), **params}
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if memory or params.get("mode") == "memory":
        return None, params
    return database, params


def _uri_url(url: URL, path: str, params: dict[str, str]) -> URL:
    """``url`` in SQLAlchemy's URI form, so that SQLite sees ``params``."""
    kept = {k: v for k, v in url.query.items() if k in _PYSQLITE_ARGS}
    query = {**kept, **params, "uri": "true"}
    return url.set(database="file:" + urllib.parse.quote(path), query=query)


def _existing_store(url: URL, path: str, params: dict[str, str]) -> None:
    """Refuse to read a file that is not there, or a WAL file SQLite cannot share read-only."""
    shown = url.render_as_string(hide_password=True)
    if not os.path.exists(path):
        raise NoStoreError(shown, "no such file")
    if not os.path.isfile(path):
        raise NoStoreError(shown, "it is not a file")
    directory = os.path.dirname(os.path.abspath(path))
    shared = os.path.exists(path + "-shm") or os.access(directory, os.W_OK)
    if params.get("immutable") != "1" and not shared:
        raise UnsupportedStoreError(
            f"{path} is on read-only media (its directory cannot be written): SQLite cannot "
            "make the shared-memory file it needs beside it to read it safely. If nothing can "
            f"change the file meanwhile, read it as immutable: --url 'sqlite:///{path}"
            "?immutable=1'."
        )


_CACHE_KIB = 65536  # as sqlite_direct.PRAGMAS
_PG_BULK_WORK_MEM = "256MB"
_PG_RESERVE_WAIT = "100ms"  # how long reserving ids apart waits for another writer's lock
_SPOOL_MEMORY = 256 << 10  # a spool's COPY text held in memory before it goes to a file
_COPY_READ = 1 << 20  # how much COPY text the driver reads from a spool at a time
_REBUILD_FROM = 10_000
_BULK_CACHE_KIB = 16384


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    sqlite_direct.configure(dbapi_conn)  # the pragmas a tracker's direct writer sets too


def _sqlite_on_connect_reading(dbapi_conn: Any, _record: Any) -> None:
    """A read-only connection: no journal mode to set, nothing to checkpoint."""
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout = 60000")
    cursor.execute("PRAGMA cache_size = -65536")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("provstore_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _create_engine(url: URL, *hooks: Callable[..., None], **settings: Any) -> Engine:
    """An engine whose connections fail as :class:`ConfigError` when the driver refuses them.

    An unknown keyword or a bad value in the URL's query is the user's to fix, not a
    traceback.  ``hooks`` are ``do_connect`` listeners that adjust the arguments first.
    """
    try:
        engine = create_engine(url, **settings)
    except (ArgumentError, TypeError, ValueError) as exc:
        raise ConfigError(f"the options in the store URL cannot be used: {exc}") from None
    for hook in hooks:
        event.listen(engine, "do_connect", hook)
    event.listen(engine, "do_connect", _driver_connect)
    return engine


def _driver_connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
    try:
        return dialect.connect(*cargs, **cparams)
    except dialect.loaded_dbapi.Error:
        raise  # the database's own answer: SQLAlchemy wraps it, and it may be transient
    except Exception as exc:
        raise ConfigError(
            f"the {dialect.driver} driver cannot use the options in the store URL: {exc}"
        ) from None


def _server_pool(pooled: bool) -> dict[str, Any]:
    return {"pool_pre_ping": True} if pooled else {"poolclass": NullPool}


_KEYED_JOINS = ("enable_hashjoin", "enable_mergejoin", "jit")  # PostgreSQL planner settings
_PARALLEL = "max_parallel_workers_per_gather"  # PostgreSQL: workers a query may start


class PostgreSQL(Dialect):
    """A server: ``ON CONFLICT DO NOTHING`` through psycopg2's ``execute_values``."""

    name = "postgresql"
    label = "PostgreSQL"
    backends = POSTGRESQL_BACKENDS
    aliases = ("postgres",)  # libpq's other URI scheme
    driver = "psycopg2"
    example = "postgresql://USER@HOST/DB"

    def join_by_keys(self, conn: Connection) -> None:
        """Nested loops only, and no JIT, until the transaction ends.

        An unanalysed temporary table is taken for 1,200 rows whatever it holds: the planner
        then hashes all of ``product_parents`` and ``objects`` (0.25 s a statement at 120k
        products) and compiles the plan (0.09 s), where a level needs a few index lookups.
        """
        for setting in _KEYED_JOINS:
            conn.exec_driver_sql(f"SET LOCAL {setting} = off")

    @contextmanager
    def keyed_joins(self, conn: Connection) -> Iterator[None]:
        """Nested loops only, and no JIT, until the block ends (``SET``, then ``RESET``).

        A session setting, since a held read connection runs without a transaction block
        (where ``SET LOCAL`` does nothing).  The planner hashes all of ``product_parents`` for
        every round of a recursive walk: the ancestors of a 97,000-product neighbourhood took
        37 s (3,000 rounds), and 0.55 s through the keys.
        """
        for setting in _KEYED_JOINS:
            conn.exec_driver_sql(f"SET {setting} = off")
        try:
            yield
        finally:
            for setting in _KEYED_JOINS:
                conn.exec_driver_sql(f"RESET {setting}")

    @contextmanager
    def probing_joins(self, conn: Connection) -> Iterator[None]:
        """Nested loops through keys, and no JIT, inside the block (``SET LOCAL``, then back).

        A chunk of an import joins its staged rows to ``objects`` by digest.  The planner
        hashed the whole of ``objects`` for each chunk (its data too: 300 MB at a million
        objects), so a chunk's publishing cost grew with the store: ten chunks of 100,000
        objects took 25 s to publish their products and parents, where a probe of the digest
        index per staged row takes a few seconds in all.  Set back to what it was when the
        block ends; after an error the rollback undoes it (a statement sent then would only
        fail again and hide the error).
        """
        was = conn.exec_driver_sql(
            "SELECT " + ", ".join(f"current_setting('{s}')" for s in _KEYED_JOINS)
        ).one()
        self.join_by_keys(conn)
        yield
        for setting, value in zip(_KEYED_JOINS, was, strict=True):
            conn.exec_driver_sql(
                "SELECT set_config(%(s)s, %(v)s, true)", {"s": setting, "v": str(value)}
            )

    @contextmanager
    def serial_plans(self, conn: Connection) -> Iterator[Callable[[], None]]:
        """Once switched, no parallel workers till the block ends, then the setting as it was.

        A session setting, as in :meth:`keyed_joins` (a held read connection has no
        transaction block).  Switched on only by a walk that reads ranges of ids: the three
        statements cost 0.4 ms, a third of a walk of depth 1.

        A walk fetching two ranges of ids in one query (a ``UNION ALL``) was planned as a
        parallel append; starting its workers took 10-15 ms, the scans under 1 ms.  At depth
        1,000 in a DAG of 1M products, a fifth of the walk's queries were such: 337 ms with
        workers, 231 ms without (ancestors; descendants 377 and 287 ms).
        """
        was: list[str] = []

        def switch() -> None:
            if not was:
                was.append(str(conn.exec_driver_sql(f"SHOW {_PARALLEL}").scalar()))
                if was[0] != "0":
                    conn.exec_driver_sql(f"SET {_PARALLEL} = 0")

        restore = f"SELECT set_config('{_PARALLEL}', %(was)s, false)"
        try:
            yield switch
        except BaseException:
            # a failed statement aborts the transaction, whose rollback undoes the SET: the
            # walk's own error goes on, not the one restoring would raise
            if was and was[0] != "0":
                try:
                    conn.exec_driver_sql(restore, {"was": was[0]})
                except DBAPIError:
                    pass
            raise
        if was and was[0] != "0":
            conn.exec_driver_sql(restore, {"was": was[0]})

    def empty(self, conn: Connection, table: Table) -> None:
        """``TRUNCATE``, which frees the rows at once.

        Deleted rows would stay in the table (nothing vacuums a temporary table during a
        transaction), and every later scan of it would read them again: a walk of 97,000
        products over 3,000 levels took 22 s with ``DELETE``, 5.4 s with ``TRUNCATE``.
        """
        conn.exec_driver_sql(f"TRUNCATE {table.name}")

    def int_pairs(
        self, cursor: Any, columns: tuple[str, str], conditions: Sequence[str]
    ) -> tuple[Sequence[int], Sequence[int]]:
        """Each column packed by the server into one comma list.

        Both aggregates read the same rows in the same order.  80,000 links: 18 ms so,
        22 ms as one ``bytea`` of 64-bit integers (``int8send``, concatenated per row),
        56 ms as rows, which psycopg2 parses one value at a time.
        """
        select = f"SELECT {columns[0]} AS a, {columns[1]} AS b FROM product_parents WHERE "
        union = " UNION ALL ".join(select + where for where in conditions)
        cursor.execute(
            f"SELECT string_agg(a::text, ','), string_agg(b::text, ',') FROM ({union}) s"
        )
        nears, fars = cursor.fetchone()
        if nears is None:
            return [], []
        return comma_ints(nears), comma_ints(fars)

    def digest_rows(self, cursor: Any, conditions: Sequence[str]) -> tuple[Sequence[int], Digests]:
        """Packed by the server: ids as 64-bit integers in one ``bytea``, digests in another.

        Both aggregates read the same rows in the same order.
        """
        select = "SELECT id, digest FROM objects WHERE "
        union = " UNION ALL ".join(select + where for where in conditions)
        cursor.execute(
            f"SELECT string_agg(int8send(id), ''), string_agg(digest, '') FROM ({union}) s"
        )
        ids, packed = cursor.fetchone()
        if ids is None:
            return [], []
        return _int64s(bytes(ids)), bytes(packed)

    def engine(self, url: URL, *, pooled: bool, read_only: bool = False) -> Engine:
        """A psycopg2 engine; unpooled for jobs.

        A URL naming several hosts is libpq's multi-host form: libpq tries them in order and,
        unless the URL says otherwise, keeps only a server that accepts writes
        (``target_session_attrs=read-write``: the primary, never a standby).
        """
        if len(hosts(url)) > 1:
            defaults = {"target_session_attrs": "read-write", "connect_timeout": "5"}
            url = url.update_query_dict({k: v for k, v in defaults.items() if k not in url.query})
        return _create_engine(url, **_server_pool(pooled))

    def check_url(self, url: URL, shown: str) -> None:
        """Numeric ports in a multi-host URL."""
        _check_hosts(url, shown)

    def prepare_schema(self, metadata: MetaData, conn: Connection) -> None:
        """Partial indexes."""
        for index, where in _partial_indexes(metadata):
            index.dialect_kwargs["postgresql_where"] = text(where)

    def lock_schema(self, conn: Connection) -> None:
        """A transaction-scoped advisory lock (released at commit)."""
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_ID})")

    def is_transient(self, exc: DBAPIError) -> bool:
        """Serialization failure, deadlock, lock not available, too many clients."""
        code = getattr(exc.orig, "pgcode", None)
        return code in ("40001", "40P01", "55P03") or "too many clients" in str(exc.orig).lower()

    def is_connection_lost(self, exc: DBAPIError) -> bool:
        """A server that shut down, is starting, or could not be reached (libpq gave up)."""
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "pgcode", None)
        if code in ("57P01", "57P02", "57P03"):
            return True
        message = str(exc.orig).lower()
        return code is None and any(
            words in message
            for words in ("could not connect", "connection refused", "server closed the")
        )

    def storage_error(self, exc: DBAPIError) -> str | None:
        """``disk_full``; a read-only transaction (a hot standby); no such database."""
        code = getattr(exc.orig, "pgcode", None)
        message = str(exc.orig)
        if code == "3D000" or ('database "' in message and "does not exist" in message):
            return "missing"
        return {"53100": "full", "25006": "read-only"}.get(code or "")

    def insert_ignore(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[Row],
        columns: Sequence[str] | None = None,
    ) -> int:
        """One multi-row statement per 1,000 rows (psycopg2's executemany sends one per row)."""
        if not rows:
            return 0
        name, names = _columns(conn, table, columns)
        sql = f"INSERT INTO {name} ({names}) VALUES %s ON CONFLICT DO NOTHING RETURNING 1"
        return self._values(conn, sql, _ordered(table, rows, columns))

    def put_objects(self, conn: Connection, rows: Sequence[Row]) -> int:
        """One multi-row upsert per 1,000 rows, counting the rows inserted or filled in."""
        if not rows:
            return 0
        sql = (
            f"INSERT INTO objects ({', '.join(_OBJECT_COLUMNS)}) VALUES %s "
            f"{self.fill_clause} RETURNING 1"
        )
        return self._values(conn, sql, layout.by_digest(rows))

    @staticmethod
    def _values(conn: Connection, sql: str, rows: list[Row]) -> int:
        import psycopg2
        from psycopg2.extras import execute_values

        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            return len(execute_values(cursor, sql, rows, page_size=1000, fetch=True))
        except psycopg2.Error as exc:
            # Wrapped like SQLAlchemy's own errors, so retries and the CLI's messages apply.
            raise DBAPIError.instance(sql, None, exc, psycopg2.Error) from exc
        finally:
            cursor.close()

    temporary = "CREATE TEMPORARY TABLE {name} ON COMMIT DROP"

    def bulk_memory(self, conn: Connection, bulk: bool) -> None:
        """More server memory per sort and hash for the import's transaction (``SET LOCAL``).

        Publishing joins every staged row to ``objects`` by hash and sorts the result by
        key; with the default 4 MB each spills to temporary files in many batches at a
        million objects.  This is the server's memory, not this process's, and only while
        the import's transaction lasts: nothing to restore (a statement sent after a failed
        one would only fail again and hide the error).
        """
        if bulk:
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{_PG_BULK_WORK_MEM}'")

    def append_stage(
        self, conn: Connection, name: str, columns: Sequence[str], rows: Sequence[Row]
    ) -> None:
        """``COPY … FROM STDIN`` in text format (psycopg2's ``copy_expert``)."""
        if rows:
            self._copy(conn, name, columns, io.StringIO(_copy_lines(rows)))

    import_chunk = 100_000

    def new_spool(self) -> Any:
        """A temporary file of ``COPY`` text in UTF-8 (in memory up to a little, then on disk)."""
        import tempfile

        return tempfile.SpooledTemporaryFile(_SPOOL_MEMORY, mode="w+b")

    def spool_rows(self, spool: Any, rows: Sequence[Row]) -> None:
        spool.write(_copy_lines(rows).encode())

    def close_spool(self, spool: Any) -> None:
        spool.close()

    def load_stage(self, conn: Connection, name: str, columns: Sequence[str], spool: Any) -> None:
        """``COPY … FROM STDIN`` from the spool's file, read :data:`_COPY_READ` at a time.

        Its bytes go as they are where the connection speaks UTF-8 (no decoding and encoding
        again of a gigabyte per million objects), else as text the driver encodes.
        """
        spool.seek(0)
        encoding = conn.connection.driver_connection.encoding  # type: ignore[union-attr]
        if encoding.upper().replace("-", "") != "UTF8":
            spool = io.TextIOWrapper(spool, encoding="utf-8")
        self._copy(conn, name, columns, spool)

    @staticmethod
    def _copy(conn: Connection, name: str, columns: Sequence[str], source: Any) -> None:
        import psycopg2

        sql = f"COPY {name} ({', '.join(columns)}) FROM STDIN"
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(sql, source, _COPY_READ)
        except psycopg2.Error as exc:
            raise DBAPIError.instance(sql, None, exc, psycopg2.Error) from exc
        finally:
            cursor.close()

    def staged_objects(self, stage: str, columns: Sequence[str], first: int | None = None) -> str:
        """The first staged object of each digest: an upsert may not touch a row twice.

        By digest; with ids reserved (which do not depend on the order), as staged: the
        first of each digest found by an anti-join on digests, not by sorting the bytes of
        every object (or reading them through the staging index, a random read each).
        """
        names = ", ".join(_staged_value(c, first) for c in columns)
        if first is None:
            return (
                f"SELECT DISTINCT ON (s.digest) {names} FROM {stage} s WHERE 1 = 1 "
                "ORDER BY s.digest, s.seq"
            )
        return (
            f"SELECT {names} FROM {stage} s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {stage} e WHERE e.digest = s.digest AND e.seq < s.seq)"
        )

    def reserve_ids(self, conn: Connection, count: int) -> int | None:
        """``count`` values of the id sequence, when they came consecutive.

        Taken in one statement, never given to anyone else; another writer taking one
        meanwhile leaves a gap, and then the import lets the sequence give ids as usual.
        """
        first = self._reserve_apart(conn, count)
        if first is not None:
            return first
        sql = (
            "SELECT min(v), max(v) FROM (SELECT nextval(pg_get_serial_sequence('objects', 'id')) "
            f"AS v FROM generate_series(1, {int(count)})) t"
        )
        low, high = conn.exec_driver_sql(sql).one()
        return int(low) if low is not None and high - low + 1 == count else None

    @staticmethod
    def _reserve_apart(conn: Connection, count: int) -> int | None:
        """``count`` ids in one step of the sequence, on a connection of its own (or None).

        ``ALTER SEQUENCE`` (which changes nothing) holds off every other ``nextval`` until
        its short transaction commits; meanwhile ``nextval`` and ``setval`` move the sequence
        past the ids reserved: two statements instead of a ``nextval`` per id (2.6 s for a
        million).  None when that cannot be done at once: the sequence is not this user's to
        alter, or a transaction that took an id is still open (``lock_timeout``: it may be
        waiting for this import's own rows).
        """
        try:
            with conn.engine.connect() as side, side.begin():
                side.exec_driver_sql(f"SET LOCAL lock_timeout = '{_PG_RESERVE_WAIT}'")
                sequence = side.exec_driver_sql(
                    "SELECT pg_get_serial_sequence('objects', 'id')"
                ).scalar()
                side.exec_driver_sql(f"ALTER SEQUENCE {sequence} INCREMENT BY 1")
                named = {"s": sequence, "last": int(count) - 1}
                first = int(side.exec_driver_sql("SELECT nextval(%(s)s)", named).scalar() or 0)
                side.exec_driver_sql(
                    "SELECT setval(%(s)s, %(first)s + %(last)s)", {**named, "first": first}
                )
        except DBAPIError:
            return None
        return first

    def scan_in_order(self, name: str, alias: str, index: str, columns: Sequence[str]) -> str:
        """A sorted subquery, which a nested loop (:meth:`probing_joins`) reads in its order.

        A chunk's parents probed in digest order touch each leaf of the digest index once
        instead of once per parent (a random page each, mostly outside the buffer cache).
        """
        return f"(SELECT * FROM {name} ORDER BY {', '.join(columns)}) {alias}"

    def analyze_stage(self, conn: Connection, name: str) -> None:
        """``ANALYZE``: without it the planner takes a temporary table for a small one."""
        conn.exec_driver_sql(f"ANALYZE {name}")

    def publish(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        select: str,
        *,
        rebuild: bool = False,
        fresh: bool = False,
    ) -> int:
        """``INSERT … SELECT … ORDER BY … ON CONFLICT DO NOTHING`` (objects: fill them in).

        Fresh rows go in by a plain ``INSERT``: ``ON CONFLICT`` probes the key before each
        row and logs its insertion twice (speculative, then confirmed), ~30% of the time.
        """
        name, names = _columns(conn, table, columns)
        conflict = self.fill_clause if table.name == "objects" else "ON CONFLICT DO NOTHING"
        if fresh:
            conflict = ""
        sql = f"INSERT INTO {name} ({names}) {select} {conflict}"
        return int(conn.exec_driver_sql(sql).rowcount)


class MySQL(Dialect):
    """MySQL and MariaDB: utf8mb4 with binary collation, InnoDB, ``READ COMMITTED``."""

    name = "mysql"
    label = "MySQL/MariaDB"
    backends = MYSQL_BACKENDS
    driver = "pymysql"
    example = "mysql://USER@HOST/DB"

    def engine(self, url: URL, *, pooled: bool, read_only: bool = False) -> Engine:
        """A PyMySQL engine speaking utf8mb4; no TLS context on loopback.

        A URL naming several hosts (a Galera cluster's nodes) connects to the first that
        answers and is ready, starting with the one that answered last (see
        :class:`_Failover`).
        """
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        nodes = [split_host(token) for token in hosts(url)]
        hooks: list[Callable[..., Any]] = [_affected_rows]
        if nodes:
            url = url.difference_update_query(["host"]).set(host=nodes[0][0], port=nodes[0][1])
        args: dict[str, Any] = {}
        names: list[str | None] = [host for host, _ in nodes] or [url.host]
        local = all(name in (None, "localhost", "127.0.0.1", "::1") for name in names)
        if url.get_driver_name() == "pymysql" and local and "ssl" not in str(url.query):
            # PyMySQL builds a fresh TLS context (40-150 ms) per connection; loopback needs none.
            args["ssl_disabled"] = True
        if len(nodes) > 1:
            if "connect_timeout" not in url.query:
                args["connect_timeout"] = _FAILOVER_CONNECT_TIMEOUT
            hooks.append(_Failover(nodes))
        return _create_engine(
            url,
            *hooks,
            isolation_level="READ COMMITTED",
            pool_recycle=3600,
            connect_args=args,
            **_server_pool(pooled),
        )

    def check_url(self, url: URL, shown: str) -> None:
        """A database name, text in utf8mb4 (what every column holds), numeric ports."""
        if not url.database:
            raise ConfigError(f"name the database in {shown}: {self.example}")
        _check_hosts(url, shown)
        charset = url.query.get("charset", "utf8mb4")
        if charset != "utf8mb4":
            raise ConfigError(
                f"provstore talks to {self.label} in utf8mb4, not charset={charset} ({shown}); "
                "leave charset out of the URL or give charset=utf8mb4"
            )

    def prepare_schema(self, metadata: MetaData, conn: Connection) -> None:
        """InnoDB tables in utf8mb4, compared byte for byte without padding."""
        collation = self.collation(conn)
        for table in metadata.tables.values():
            for backend in self.backends:
                table.dialect_kwargs[f"{backend}_engine"] = "InnoDB"
                table.dialect_kwargs[f"{backend}_charset"] = "utf8mb4"
                table.dialect_kwargs[f"{backend}_collate"] = collation
            for index in table.indexes:
                if "prefix" in index.info:  # a TEXT column is indexed by its first characters
                    lengths = {col.name: index.info["prefix"] for col in index.columns}
                    for backend in self.backends:
                        index.dialect_kwargs[f"{backend}_length"] = lengths

    @staticmethod
    def collation(conn: Connection) -> str:
        """A binary NO PAD collation: ``utf8mb4_bin`` pads (``'a' = 'a '``); these do not."""
        mariadb = getattr(conn.dialect, "is_mariadb", False)
        return "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"

    def upgrade_text(self, conn: Connection, metadata: MetaData) -> None:
        """Convert the text columns of every existing table to the NO PAD collation."""
        quote = conn.dialect.identifier_preparer.quote
        collation = self.collation(conn)
        existing = set(inspect(conn).get_table_names())
        for table in metadata.tables.values():
            if table.name not in existing:
                continue
            conn.exec_driver_sql(
                f"ALTER TABLE {quote(table.name)} "
                f"CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}"
            )

    def lock_schema(self, conn: Connection) -> None:
        """A named lock held by the session (released by :meth:`unlock_schema`).

        Only between sessions of one server: on a Galera cluster each node has its own named
        locks, so correctness does not rest on it (:meth:`create_tables` may race and win).
        """
        conn.exec_driver_sql("SELECT GET_LOCK('provstore_schema', 120)")

    def create_tables(
        self, conn: Connection, metadata: MetaData, tables: Sequence[Table] | None = None
    ) -> None:
        """``CREATE TABLE``/``CREATE INDEX IF NOT EXISTS`` on MariaDB, one statement each.

        Galera runs each DDL statement on every node in one total order, so when two nodes
        create the schema at once the second statement of each pair finds the object there
        and does nothing.  MySQL has no ``CREATE INDEX IF NOT EXISTS``: checked first there.
        """
        if not getattr(conn.dialect, "is_mariadb", False):
            super().create_tables(conn, metadata, tables)
            return
        chosen = set(tables) if tables is not None else None
        for table in metadata.sorted_tables:
            if chosen is not None and table not in chosen:
                continue
            conn.execute(CreateTable(table, if_not_exists=True))
            for index in sorted(table.indexes, key=lambda i: i.name or ""):
                conn.execute(CreateIndex(index, if_not_exists=True))

    def unlock_schema(self, conn: Connection) -> None:
        """Release the named lock."""
        conn.exec_driver_sql("SELECT RELEASE_LOCK('provstore_schema')")

    def int_pairs(
        self, cursor: Any, columns: tuple[str, str], conditions: Sequence[str]
    ) -> tuple[Sequence[int], Sequence[int]]:
        """The pairs packed into one text by the server.

        PyMySQL decodes rows in Python, ~2 us a row; splitting one text costs a tenth of that.

        ``GROUP_CONCAT`` cuts its text at ``group_concat_max_len`` bytes, maybe inside a
        number: a text that long, the limit read beside it, may have been cut, and the rows
        are then fetched plainly.  (Summing the length the text should have, as
        :meth:`digests_in_order` counts its rows, took a quarter of the query's time.)
        """
        where = " OR ".join(f"({condition})" for condition in conditions)
        first, second = columns
        _lift_concat_limit(cursor)
        cursor.execute(
            "SELECT @@SESSION.group_concat_max_len, "
            f"GROUP_CONCAT({first}, ',', {second}) FROM product_parents WHERE {where}"
        )
        limit, packed = cursor.fetchone()
        if packed is None:
            return [], []
        if len(packed) >= int(limit):
            return super().int_pairs(cursor, columns, conditions)
        numbers = comma_ints(packed)
        return numbers[::2], numbers[1::2]

    def digest_rows(self, cursor: Any, conditions: Sequence[str]) -> tuple[Sequence[int], Digests]:
        """Packed by the server: the ids as one comma list, the digests as one binary string.

        Both aggregates read the same rows in the same order.  A list as long as
        ``group_concat_max_len`` may have been cut (maybe inside a number), and the rows are
        then fetched plainly.  (Both in hexadecimal, 80 characters a row, took a third longer
        for 40,000 rows.)
        """
        where = " OR ".join(f"({condition})" for condition in conditions)
        _lift_concat_limit(cursor)
        cursor.execute(
            "SELECT @@SESSION.group_concat_max_len, COUNT(*), GROUP_CONCAT(id), "
            f"GROUP_CONCAT(digest SEPARATOR '') FROM objects WHERE {where}"
        )
        limit, count, listed, packed = cursor.fetchone()
        if not count:
            return [], []
        if len(listed) >= int(limit) or len(packed) != DIGEST_SIZE * count:  # cut short
            return super().digest_rows(cursor, conditions)
        return comma_ints(listed), bytes(packed)

    def lift_recursion_limit(self, conn: Connection) -> None:
        """MariaDB stops a recursive CTE silently after 1,000 rounds; MySQL fails at 1,000."""
        if getattr(conn.dialect, "is_mariadb", False):
            conn.exec_driver_sql("SET SESSION max_recursive_iterations = 4294967295")
        else:
            conn.exec_driver_sql("SET SESSION cte_max_recursion_depth = 4294967295")

    def is_transient(self, exc: DBAPIError) -> bool:
        """Too many connections, lock wait timeout, deadlock, and their kin.

        Galera reports a write set that lost certification against another node's (the same
        row written on two nodes at once) as a deadlock, 1213, at ``COMMIT``: the whole
        transaction runs again.  1684: a table skipped by ``information_schema`` while another
        session's DDL changes it (a schema being created on another node at that moment).
        """
        return _mysql_code(exc) in (1040, 1205, 1213, 1614, 1684)

    def is_connection_lost(self, exc: DBAPIError) -> bool:
        """Cannot connect, server gone or shutting down, a node not ready (Galera's 1047)."""
        lost = (1047, 1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031)
        return bool(exc.connection_invalidated) or _mysql_code(exc) in lost

    def storage_error(self, exc: DBAPIError) -> str | None:
        """Table or disk full, errno 28 from the engine; a read-only server; unknown database."""
        code = _mysql_code(exc)
        message = str(exc.orig).lower()
        if code in (1021, 1114) or "no space left" in message or "error 28 " in message:
            return "full"
        if code in (1036, 1290, 1792):
            return "read-only"
        return "missing" if code == 1049 else None

    def insert_ignore(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[Row],
        columns: Sequence[str] | None = None,
    ) -> int:
        """``ON DUPLICATE KEY UPDATE`` (PyMySQL folds ``executemany`` into multi-row inserts)."""
        if not rows:
            return 0
        name, names = _columns(conn, table, columns)
        marks = ", ".join("%s" for _ in (columns or table.columns))
        key = columns[0] if columns else table.primary_key.columns[0].name
        first = conn.dialect.identifier_preparer.quote(key)
        sql = (
            f"INSERT INTO {name} ({names}) VALUES ({marks}) "
            f"ON DUPLICATE KEY UPDATE {first} = {first}"
        )
        # Affected rows: 1 per row inserted, 0 per key already present (see _affected_rows).
        return int(conn.exec_driver_sql(sql, _ordered(table, rows, columns)).rowcount)

    join_in_order = "STRAIGHT_JOIN "
    ordered_join = "STRAIGHT_JOIN"
    """InnoDB's statistics of a store filled inside the same transaction can still say it is
    empty; the optimizer would then scan ``objects`` and the unindexed staging table for
    every row of the other."""

    fill_clause = (
        "ON DUPLICATE KEY UPDATE kind = IF(objects.data IS NULL, VALUES(kind), objects.kind), "
        "size = IF(objects.data IS NULL, VALUES(size), objects.size), "
        "data = IFNULL(objects.data, VALUES(data))"
    )  # assigned left to right: data last, so the tests above still see it empty

    def put_objects(self, conn: Connection, rows: Sequence[Row]) -> int:
        """An upsert; a row filled in counts 2 affected rows, so those are counted first."""
        if not rows:
            return 0
        ordered = layout.by_digest(rows)
        filled = self._referred(conn, [row[0] for row in ordered])
        sql = (
            f"INSERT INTO objects ({', '.join(_OBJECT_COLUMNS)}) VALUES (%s, %s, %s, %s) "
            f"{self.fill_clause}"
        )
        return int(conn.exec_driver_sql(sql, ordered).rowcount) - filled

    @staticmethod
    def _referred(conn: Connection, digests: Sequence[bytes]) -> int:
        """How many of ``digests`` are referred to but not stored (rows without data)."""
        count = 0
        for start in range(0, len(digests), 500):
            part = tuple(digests[start : start + 500])
            marks = ", ".join(["%s"] * len(part))
            sql = f"SELECT count(*) FROM objects WHERE digest IN ({marks}) AND data IS NULL"
            count += int(conn.exec_driver_sql(sql, part).scalar() or 0)
        return count

    def create_stage(
        self, conn: Connection, name: str, select: str, index: Sequence[str] = ()
    ) -> None:
        """A temporary table that comes with its index.

        A later ``CREATE INDEX`` or ``ALTER TABLE``, even on a temporary table, would commit
        the transaction.
        """
        self.drop_stage(conn, name)
        keys = f"(INDEX ({', '.join(index)})) " if index else ""
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} {keys}AS {select}")

    def index_stage(self, conn: Connection, name: str, columns: Sequence[str]) -> None:
        """Indexed when created (:meth:`create_stage`)."""

    def drop_stage(self, conn: Connection, name: str) -> None:
        """``DROP TEMPORARY TABLE``: it survives a rollback, and never commits implicitly."""
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {name}")

    def empty(self, conn: Connection, table: Table) -> None:
        """Drop the table and create it again.

        ``TRUNCATE`` would commit the transaction, even on a temporary table; ``DELETE``
        took 13 s where this takes 5.5 s, in a walk of 97,000 products over 3,000 levels.
        """
        self.drop_stage(conn, table.name)
        table.create(conn)

    def publish(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        select: str,
        *,
        rebuild: bool = False,
        fresh: bool = False,
    ) -> int:
        """``INSERT … SELECT … ORDER BY … ON DUPLICATE KEY UPDATE`` (affected rows: new ones)."""
        name, names = _columns(conn, table, columns)
        filled = 0
        if table.name == "objects":
            conflict = self.fill_clause
            filled = int(
                conn.exec_driver_sql(
                    f"SELECT count(*) FROM ({select}) s JOIN objects o "
                    "ON o.digest = s.digest WHERE o.data IS NULL"
                ).scalar()
                or 0
            )
        else:
            first = conn.dialect.identifier_preparer.quote(table.primary_key.columns[0].name)
            conflict = f"ON DUPLICATE KEY UPDATE {name}.{first} = {name}.{first}"
        sql = f"INSERT INTO {name} ({names}) {select} {conflict}"
        return int(conn.exec_driver_sql(sql).rowcount) - filled


def _mysql_code(exc: DBAPIError) -> int | None:
    args: tuple[Any, ...] = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _check_hosts(url: URL, shown: str) -> None:
    for token in hosts(url):
        try:
            split_host(token)
        except ValueError:
            raise ConfigError(f"the port of host {token!r} in {shown} is not a number") from None


class _Failover:
    """A ``do_connect`` hook that reaches one of several MariaDB/MySQL hosts (cluster nodes).

    Tries the host that answered last first, then the others in the URL's order; a host is
    skipped when it refuses the connection or, on Galera, is not ready for clients
    (``wsrep_ready`` OFF: a node outside the primary component or still joining).  Sessions
    on a Galera node wait for the cluster's earlier commits before each read
    (``wsrep_sync_wait = 1``), so a job sees what another node committed before it asked.
    """

    def __init__(self, nodes: Sequence[tuple[str, int | None]]) -> None:
        self.nodes = list(nodes)
        self.preferred = 0

    def __call__(self, dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        count = len(self.nodes)
        start = self.preferred
        last: Exception | None = None
        for step in range(count):
            index = (start + step) % count
            host, port = self.nodes[index]
            params = {**cparams, "host": host}
            if port is not None:
                params["port"] = port
            try:
                conn = _driver_connect(dialect, record, cargs, params)
                if self._ready(conn):
                    self.preferred = index
                    return conn
                conn.close()
                last = dialect.loaded_dbapi.OperationalError(
                    1047, f"{host}:{port} is not ready for clients (wsrep_ready is OFF)"
                )
            except dialect.loaded_dbapi.Error as exc:
                last = exc
        assert last is not None
        raise last

    @staticmethod
    def _ready(conn: Any) -> bool:
        cursor = conn.cursor()
        try:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep_ready'")
            row = cursor.fetchone()
            if row is None:  # MySQL: no Galera
                return True
            if str(row[1]).upper() != "ON":
                cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
                on = cursor.fetchone()
                return on is None or str(on[1]).upper() != "ON"  # ready: a plain MariaDB
            cursor.execute("SET SESSION wsrep_sync_wait = 1")
            return True
        finally:
            cursor.close()


_CLIENT_FOUND_ROWS = 2  # the MySQL protocol's capability bit of that name


def _lift_concat_limit(cursor: Any) -> None:
    """Let ``GROUP_CONCAT`` on this cursor's connection return up to ``_PACKED_MAX`` bytes.

    Once per connection: the session keeps it, and the connection remembers it was done.
    """
    connection = cursor.connection
    if not getattr(connection, "provstore_packed", False):
        cursor.execute(f"SET SESSION group_concat_max_len = {_PACKED_MAX}")
        connection.provstore_packed = True


def _affected_rows(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    """Connect without ``CLIENT_FOUND_ROWS``, which SQLAlchemy always asks for.

    With it, a row that ``ON DUPLICATE KEY UPDATE`` leaves as it was counts as affected, the
    same as a new one; without it the affected-row count is exactly the rows inserted, even
    when other transactions insert the same keys at the same time.  provstore runs no
    statement that relies on matched-row counts.
    """
    cparams["client_flag"] = cparams.get("client_flag", 0) & ~_CLIENT_FOUND_ROWS


DIALECTS: dict[str, Dialect] = {d.name: d for d in (SQLite(), PostgreSQL(), MySQL())}
_BY_BACKEND = {backend: d for d in DIALECTS.values() for backend in d.backends}


_BY_SCHEME = {scheme: d for d in DIALECTS.values() for scheme in (*d.backends, *d.aliases)}
_FILE_DIALECT = DIALECTS["sqlite"]
"""What a bare file path given as a URL is."""


def _forms() -> str:
    examples = [d.example for d in DIALECTS.values()]
    return ", ".join(examples[:-1]) + " or " + examples[-1]


def _resolve(url: str | URL) -> tuple[Dialect, URL]:
    """The record and the full URL (driver named) for ``url``, or :class:`ConfigError`."""
    if isinstance(url, str):
        path = bare_path(url)
        if path is not None:
            drivername = f"{_FILE_DIALECT.name}+{_FILE_DIALECT.driver}"
            return _FILE_DIALECT, URL.create(drivername, database=path)
    shown = hidden(url)
    try:
        parsed = make_url(multi_host(url) if isinstance(url, str) else url)
    except Exception as exc:
        why = " (its port is not a number)" if isinstance(exc, ValueError) else ""
        raise ConfigError(
            f"{shown!r} is not a database URL{why}; give {_forms()} (a file path with a "
            "directory or a suffix, like ./store.db, is a SQLite file)"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    found = _BY_SCHEME.get(backend)
    if found is None:
        raise ConfigError(f"unsupported database {backend!r} in {shown}; give {_forms()}")
    if driver and driver != found.driver:
        raise ConfigError(
            f"provstore talks to {found.label} through {found.driver}, not {driver} "
            f"({shown}); give {found.example} or {found.backends[0]}+{found.driver}://..."
        )
    if backend not in found.backends:
        backend = found.backends[0]
    parsed = parsed.set(drivername=f"{backend}+{found.driver}")
    found.check_url(parsed, shown)
    return found, parsed


def parse_url(url: str | URL) -> URL:
    """The URL with provstore's driver named, or :class:`ConfigError` saying what works.

    A plain scheme means the driver provstore uses (``postgresql://`` is psycopg2,
    ``mysql://`` and ``mariadb://`` are PyMySQL, whatever SQLAlchemy would pick); a text
    without a scheme that looks like a file path is a SQLite file there.
    """
    return _resolve(url)[1]


def for_url(url: str | URL) -> Dialect:
    """The record for a URL's database, or :class:`ConfigError` for one provstore lacks."""
    return _resolve(url)[0]


def of(bind: Connection | Engine) -> Dialect:
    """The record for an open connection or engine."""
    return _BY_BACKEND[bind.dialect.name]
