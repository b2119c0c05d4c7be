"""Engines and the few statements that differ between SQLite, PostgreSQL and MySQL/MariaDB.

* SQLite: WAL, a busy timeout, write transactions begun ``IMMEDIATE`` (so two writers queue
  instead of deadlocking on a lock upgrade), and a refusal to run on a network file system.
* Idempotent batched inserts: ``INSERT OR IGNORE`` / ``ON CONFLICT DO NOTHING`` (through
  ``execute_values``, since psycopg2's ``executemany`` sends one statement per row) /
  ``ON DUPLICATE KEY UPDATE`` (which pymysql folds into multi-row statements).  Rows are
  sorted by key, so concurrent batches lock in the same order.
* A bounded retry of whole transactions on deadlock, serialization and lock-timeout errors.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from provstore.core.errors import ConfigError, StoreError, UnsupportedStoreError

__all__ = ["connect", "insert_ignore", "retrying", "write_transaction"]

T = TypeVar("T")
_NETWORK_FS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "lustre", "gpfs",
    "beegfs", "ceph", "glusterfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs",
    "fuse.gcsfuse", "fuse.s3fs", "fuse.rclone", "davfs", "fuse.davfs",
}  # fmt: skip
_RETRY_ATTEMPTS = 20


def connect(url: str, *, pooled: bool = True) -> Engine:
    """An engine for ``url`` with provstore's per-backend settings applied.

    ``pooled=False`` (what a tracked job uses on a server) opens a connection per transaction
    and closes it after, so hundreds of jobs do not hold hundreds of idle server connections.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"{url!r} is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    pool: dict[str, Any] = {"pool_pre_ping": True} if pooled else {"poolclass": NullPool}
    if backend == "postgresql":
        return create_engine(parsed, **pool)
    if backend in ("mysql", "mariadb"):
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        args: dict[str, Any] = {}
        local = parsed.host in (None, "localhost", "127.0.0.1", "::1")
        if parsed.get_driver_name() == "pymysql" and local and "ssl" not in str(parsed.query):
            # PyMySQL builds a fresh TLS context (40-150 ms) per connection; loopback needs none.
            args["ssl_disabled"] = True
        return create_engine(
            parsed,
            isolation_level="READ COMMITTED",
            pool_recycle=3600,
            connect_args=args,
            **pool,
        )
    raise ConfigError(
        f"unsupported database {backend!r} in {url!r}; use sqlite:///PATH, "
        "postgresql://... or mysql+pymysql://..."
    )


def _sqlite_engine(url: URL) -> Engine:
    path = url.database
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        if os.environ.get("PROVSTORE_ALLOW_MEMORY") != "1":
            raise ConfigError(
                "an in-memory SQLite store forgets everything when the process ends; "
                "give a file: sqlite:////absolute/path/provstore.db"
            )
    else:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fstype = _filesystem_type(directory)
        if fstype in _NETWORK_FS:
            raise UnsupportedStoreError(
                f"{path} is on a network file system ({fstype}); SQLite's locking is not safe "
                "there. Use PostgreSQL or MariaDB for a shared store, or spool mode for "
                "nodes that cannot reach one."
            )
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA cache_size = -65536")  # 64 MiB: index pages of big batches
        cursor.execute("PRAGMA wal_autocheckpoint = 10000")  # fewer, larger checkpoints
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("provstore_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _filesystem_type(directory: str) -> str:
    """The type of the file system holding ``directory`` ('' when it cannot be told)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            entries = [line.split() for line in mounts]
    except OSError:
        return ""
    best, fstype = "", ""
    real = os.path.realpath(directory)
    for entry in entries:
        if len(entry) < 3:
            continue
        point = entry[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, entry[2]
    return fstype


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
    with engine.connect() as conn:
        conn = conn.execution_options(provstore_write=True)
        with conn.begin():
            yield conn


def _is_transient(exc: DBAPIError) -> bool:
    orig = exc.orig
    code = getattr(orig, "pgcode", None)
    if code in ("40001", "40P01", "55P03"):
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in (1040, 1205, 1213, 1614):
        return True  # too many connections, lock wait timeout, deadlock
    message = str(orig).lower()
    return any(
        text in message for text in ("database is locked", "database is busy", "too many clients")
    )


def retrying(action: Callable[[], T]) -> T:
    """Run a whole transaction, again on deadlock/serialization/lock errors (bounded)."""
    for attempt in range(_RETRY_ATTEMPTS):
        try:
            return action()
        except (OperationalError, DBAPIError) as exc:
            if not _is_transient(exc) or attempt == _RETRY_ATTEMPTS - 1:
                raise
            time.sleep(min(2.0, 0.01 * 2**attempt) * (0.5 + random.random()))
    raise StoreError("unreachable")  # pragma: no cover


def insert_ignore(conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert rows (tuples in column order), skipping those whose key is already present.

    Returns how many rows were new.
    """
    if not rows:
        return 0
    width = len(table.primary_key.columns)
    ordered = (
        sorted(rows) if width == len(table.columns) else sorted(rows, key=lambda r: r[:width])
    )
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    name = quote(table.name)
    columns = ", ".join(quote(c.name) for c in table.columns)
    backend = dialect.name
    if backend == "sqlite":
        marks = ", ".join("?" for _ in table.columns)
        sql = f"INSERT OR IGNORE INTO {name} ({columns}) VALUES ({marks})"
        return int(conn.exec_driver_sql(sql, ordered).rowcount)
    if backend == "postgresql":
        from psycopg2.extras import execute_values

        sql = f"INSERT INTO {name} ({columns}) VALUES %s ON CONFLICT DO NOTHING RETURNING 1"
        import psycopg2

        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            return len(execute_values(cursor, sql, ordered, page_size=1000, fetch=True))
        except psycopg2.Error as exc:
            # Wrapped like SQLAlchemy's own errors, so retries and the CLI's messages apply.
            raise DBAPIError.instance(sql, None, exc, psycopg2.Error) from exc
        finally:
            cursor.close()
    marks = ", ".join("%s" for _ in table.columns)
    first = quote(table.primary_key.columns[0].name)
    sql = (
        f"INSERT INTO {name} ({columns}) VALUES ({marks}) "
        f"ON DUPLICATE KEY UPDATE {first} = {first}"
    )
    # pymysql reports matched rows (CLIENT.FOUND_ROWS), so count the new keys beforehand.
    new = _count_new(conn, table, name, ordered) if width == 1 else 0
    conn.exec_driver_sql(sql, ordered)
    return new


def _count_new(conn: Connection, table: Table, name: str, rows: Sequence[tuple[Any, ...]]) -> int:
    keys = sorted({row[0] for row in rows})
    key = conn.dialect.identifier_preparer.quote(table.primary_key.columns[0].name)
    present = 0
    for start in range(0, len(keys), 1000):
        part = keys[start : start + 1000]
        marks = ", ".join("%s" for _ in part)
        sql = f"SELECT COUNT(*) FROM {name} WHERE {key} IN ({marks})"
        present += int(conn.exec_driver_sql(sql, tuple(part)).scalar() or 0)
    return len(keys) - present


def param_mark(conn: Connection) -> str:
    """The driver's positional parameter mark, for plain SQL on its cursor."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def text_stmt(sql: str) -> Any:
    """A textual statement (kept here so callers need not import sqlalchemy)."""
    return text(sql)
