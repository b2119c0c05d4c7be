"""SQLite through the standard library's driver alone: how a tracked process writes its run.

A short tracked process writes a handful of objects, and importing SQLAlchemy costs it more
than everything else it does (150 to 250 ms of CPU on the benchmark machine, against about
20 ms for the capture and the writes).  So a tracker on an existing SQLite store of the
current schema writes through one plain ``sqlite3`` connection, configured as the SQLite
dialect configures its engine's (:func:`configure`: the same pragmas), inserting the rows
:mod:`provstore.db.layout` derives with ``INSERT OR IGNORE``, one ``BEGIN IMMEDIATE``
transaction per batch, retried while the database is busy.  Everything else (creating or
upgrading a store, every read) goes through :class:`provstore.store.Store`, and SQLAlchemy's
tables stay the definition of the index: a test holds :mod:`provstore.db.layout` equal to them.

This module is part of the SQLite dialect (:class:`provstore.db.dialects.SQLite` uses its
pragmas, its error classes and its refusal of network file systems) written without
SQLAlchemy, so that importing it costs nothing.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from provstore.core.errors import (
    ReadOnlyStoreError,
    StoreError,
    StoreFullError,
    UnsupportedStoreError,
)
from provstore.db import layout
from provstore.db.urls import bare_path

if TYPE_CHECKING:  # a writer process (sqlite_pipe) imports this module, never the objects
    from provstore.core.objects import Sealed

__all__ = [
    "PRAGMAS",
    "DirectWriter",
    "configure",
    "error_kind",
    "filesystem_type",
    "open_writer",
    "plain_file",
    "refuse_network_fs",
]

PRAGMAS = (
    "busy_timeout = 60000",
    "journal_mode = WAL",
    "synchronous = NORMAL",
    "cache_size = -65536",  # 64 MiB: index pages of big batches
    "wal_autocheckpoint = 10000",  # fewer, larger checkpoints
)
"""Every writing connection's settings, whoever opens it."""

_ATTEMPTS = 20  # as provstore.db.engine.retrying
_PLAIN_URL = re.compile(r"sqlite(?:\+pysqlite)?:///(?P<path>[^?#%]+)")
_MEMORY = (":memory:", "file:")
_NETWORK_FS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "lustre", "gpfs",
    "beegfs", "ceph", "glusterfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs",
    "fuse.gcsfuse", "fuse.s3fs", "fuse.rclone", "davfs", "fuse.davfs",
}  # fmt: skip
PAGE = 64
"""Products with the same content decoded per query (as ``Store.product_for`` does)."""
DATA_BY_DIGEST = (
    "SELECT objects.data FROM objects WHERE objects.digest = ? AND objects.data IS NOT NULL"
)
"""SQLAlchemy's ``queries.DATA_BY_DIGEST`` as it compiles for SQLite (a test holds them equal)."""
PRODUCTS_WITH_CONTENT = (
    "SELECT objects.digest, objects.data FROM products "
    "JOIN objects ON objects.id = products.id "
    "LEFT OUTER JOIN runs ON runs.id = products.run WHERE products.content = ? "
    "ORDER BY runs.started_ns IS NULL, runs.started_ns DESC, objects.digest LIMIT ? OFFSET ?"
)
"""``queries.products_with_content()`` as it compiles for SQLite (a test holds them equal)."""
PUT_OBJECTS = (
    f"INSERT INTO objects ({', '.join(layout.OBJECT_COLUMNS)}) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (digest) DO UPDATE SET kind = excluded.kind, size = excluded.size, "
    "data = excluded.data WHERE objects.data IS NULL"
)
"""An object's row; a digest referred to before it was stored is filled in."""
_INSERTS = {
    table: f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
    f"VALUES ({', '.join('?' for _ in columns)})"
    for table, columns in layout.COLUMNS.items()
    if table != "objects"
}
_INTERN = "INSERT OR IGNORE INTO objects (digest) VALUES (?)"
_IDS = "SELECT digest, id FROM objects WHERE digest IN ({marks})"
_TOP = "SELECT max(id) FROM objects"
_CHUNK = 500


def configure(dbapi_conn: Any) -> None:
    """Apply :data:`PRAGMAS` to a new ``sqlite3`` connection that may write."""
    dbapi_conn.isolation_level = None  # provstore emits BEGIN itself
    cursor = dbapi_conn.cursor()
    for pragma in PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def error_kind(message: str) -> str | None:
    """What a SQLite error message says: ``"full"``, ``"read-only"``, ``"busy"`` or None."""
    text = message.lower()
    if "database or disk is full" in text:
        return "full"
    if "readonly database" in text or "read-only file system" in text:
        return "read-only"
    if "database is locked" in text or "database is busy" in text:
        return "busy"
    return None


def filesystem_type(directory: str) -> str:
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


def refuse_network_fs(path: str) -> None:
    """Raise :class:`UnsupportedStoreError` when ``path`` is on a network file system."""
    fstype = filesystem_type(os.path.dirname(os.path.abspath(path)))
    if fstype in _NETWORK_FS:
        raise UnsupportedStoreError(
            f"{path} is on a network file system ({fstype}); SQLite's locking is not safe "
            "there. Use PostgreSQL or MariaDB for a shared store, or spool mode for "
            "nodes that cannot reach one."
        )


def plain_file(url: str) -> str | None:
    """The file a SQLite URL (or a bare path) names, when it names one and nothing else.

    None for anything that needs the full dialect: other databases, in-memory stores, URI
    parameters (``?mode=ro``), percent-escapes.  The path is what SQLAlchemy would read from
    the same URL (a test holds them equal).
    """
    match = _PLAIN_URL.fullmatch(url)
    path = match["path"] if match else bare_path(url)
    if not path or path.startswith(_MEMORY):
        return None
    return path


def open_writer(url: str) -> DirectWriter | None:
    """A writer for the SQLite store at ``url``, or None when it must be opened in full.

    Only a plain file that holds a store of the current schema is opened here; a missing
    file, another schema version or any error opening it is left to
    :class:`provstore.store.Store`, which creates, upgrades or refuses it with its own
    message.  A file on a network file system is refused as the dialect refuses it.
    """
    path = plain_file(url)
    if path is None or not os.path.isfile(path):
        return None
    refuse_network_fs(path)
    try:
        conn = sqlite3.connect(
            f"file:{urllib.parse.quote(path)}?mode=rw",
            uri=True,
            timeout=60,
            isolation_level=None,
            check_same_thread=False,  # one writer per tracker, used under its lock
        )
    except sqlite3.Error:
        return None
    try:
        configure(conn)
        found = conn.execute(
            "SELECT value FROM provstore_meta WHERE key = 'schema_version'"
        ).fetchone()
    except sqlite3.Error:
        found = None
    if found is None or found[0] != str(layout.SCHEMA_VERSION):
        conn.close()
        return None
    return DirectWriter(conn, path)


class DirectWriter:
    """One SQLite store's writes, and the two reads a tracker makes most.

    Writes: objects and their index rows, one transaction a batch.  Reads: an object by its
    digest, the product for a file's bytes.
    """

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.path = path
        self.shown = f"sqlite+pysqlite:///{path}"
        """The URL as messages show it (as :class:`provstore.store.Store` renders it)."""
        self._conn: sqlite3.Connection | None = conn
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._known: dict[bytes, int] = {}  # ids of committed rows (layout.remember)

    def put(self, items: Sequence[Sealed]) -> None:
        """Store objects and their index rows in one transaction (idempotent).

        A busy database is waited for (the busy timeout, then a bounded, jittered retry);
        a full or read-only one is :class:`StoreFullError` or :class:`ReadOnlyStoreError`,
        and nothing of the batch is kept.
        """
        if items:
            self.put_packed(layout.pack(layout.columns_of(items)))

    def put_packed(self, batch: layout.Packed) -> None:
        """:meth:`put` of a batch :func:`provstore.db.layout.pack` made (a pipe's batch)."""
        for attempt in range(_ATTEMPTS):
            try:
                with self._lock:
                    self._write(batch)
                return
            except sqlite3.Error as exc:
                kind = error_kind(str(exc))
                if kind == "busy" and attempt < _ATTEMPTS - 1:
                    time.sleep(min(2.0, 0.01 * 2**attempt) * (0.5 + random.random()))
                    continue
                raise self._error(exc, kind) from None

    def get(self, digest: bytes) -> Sealed | None:
        """The verified object with this full digest, or None when it is not stored."""
        from provstore.core.objects import load

        with self._lock:
            found = self._connection().execute(DATA_BY_DIGEST, (digest,)).fetchone()
        return None if found is None else load(digest, bytes(found[0]))

    def product_for(self, content: bytes, path: str) -> Sealed | None:
        """The product for a file with these bytes: :meth:`provstore.store.Store.product_for`.

        The newest recorded at ``path``, else the newest from any path, else None.
        """
        from provstore.core.objects import Product, load

        first: Sealed | None = None
        offset = 0
        while True:
            with self._lock:
                cursor = self._connection().execute(PRODUCTS_WITH_CONTENT, (content, PAGE, offset))
                rows = cursor.fetchall()
            for digest, data in rows:
                item = load(bytes(digest), bytes(data))
                if isinstance(item.obj, Product) and item.obj.path == path:
                    return item
                if first is None:
                    first = item
            if len(rows) < PAGE:
                return first
            offset += PAGE

    def close(self) -> None:
        """Close the connection (not one a forked parent still uses)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with suppress(sqlite3.Error):
                conn.close()

    def _write(self, batch: layout.Packed) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        learned: dict[bytes, int] = {}
        try:
            _write_packed(conn, batch, self._known, learned)
            conn.execute("COMMIT")
            layout.remember(self._known, learned)
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        """The open connection; a forked child opens its own, a closed writer refuses."""
        if self._conn is None:
            raise StoreError(f"the store at {self.shown} was closed")
        if self._pid != os.getpid():
            fresh = open_writer(self.path)
            if fresh is None:
                raise StoreError(f"cannot open the store at {self.shown} again after fork")
            self._conn, self._pid = fresh._conn, os.getpid()
            assert self._conn is not None
        return self._conn

    def _error(self, exc: sqlite3.Error, kind: str | None) -> StoreError:
        detail = " ".join(str(exc).split())
        if kind == "full":
            return StoreFullError(f"the store at {self.shown}", detail)
        if kind == "read-only":
            return ReadOnlyStoreError(f"the store at {self.shown}", detail)
        return StoreError(f"cannot write to the store at {self.shown}: {detail}")


def _write_packed(
    conn: sqlite3.Connection,
    batch: layout.Packed,
    known: dict[bytes, int],
    learned: dict[bytes, int],
) -> None:
    """Write a packed batch in the open transaction: :func:`layout.write_rows`, column-wise.

    Objects first, in digest order: when the largest id grew by exactly their number (nothing
    is ever deleted, so each row made a new one, in order), their ids are known at once,
    else looked up.  Digests referred to outside the batch take their ids from ``known``
    (committed rows), else are looked up, else are given new ``objects`` rows without data.
    Then each index table's rows are its columns, references mapped to ids a column at a
    time, zipped: no Python code runs per row.  The ids given or looked up go into ``learned``.
    """
    objects, tables = batch
    digests = objects[0]
    top = _top(conn)
    conn.executemany(PUT_OBJECTS, zip(*objects, strict=True))
    own: Sequence[int]
    if _top(conn) - top == len(digests):
        own = range(top + 1, top + 1 + len(digests))
    else:
        found = _ids(conn, digests)
        own = [found[digest] for digest in digests]
    ids: dict[Any, int | None] = dict(zip(digests, own, strict=True))
    learned.update(ids)  # a dict's entries with their hashes: sooner than zipping again
    wanted: set[Any] = set()
    for table, columns in tables.items():
        for position in layout.REFS[table][1:]:  # the first is the row's own object
            wanted.update(columns[position])
    wanted.difference_update(ids)
    wanted.discard(None)
    ids[None] = None
    earlier = set(filter(known.__contains__, wanted))  # not wanted & known: walks all known
    ids.update(zip(earlier, map(known.__getitem__, earlier), strict=True))
    rest = wanted - earlier
    if rest:
        fetched = _ids(conn, rest)
        missing = sorted(rest - fetched.keys())
        if missing:
            conn.executemany(_INTERN, [(digest,) for digest in missing])
            fetched.update(_ids(conn, missing))
        learned.update(fetched)
        ids.update(fetched)
    for table, columns in tables.items():
        refs = layout.REFS[table]
        values = [
            _as_ids(column, digests, own, ids) if position in refs else column
            for position, column in enumerate(columns)
        ]
        conn.executemany(_INSERTS[table], zip(*values, strict=True))


def _as_ids(
    column: Sequence[Any], digests: Sequence[bytes], own: Sequence[int], ids: dict[Any, int | None]
) -> Iterable[int | None]:
    """A column of digests as ids; the batch's own, in order, when it is their digests."""
    return own if column == digests else map(ids.__getitem__, column)


def _top(conn: sqlite3.Connection) -> int:
    top: int | None = conn.execute(_TOP).fetchone()[0]
    return top or 0


def _ids(conn: sqlite3.Connection, digests: Iterable[bytes]) -> dict[bytes, int]:
    """The id of each of ``digests`` that has an ``objects`` row."""
    wanted = sorted(set(digests))
    found: dict[bytes, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        sql = _IDS.format(marks=", ".join("?" * len(part)))
        found.update(conn.execute(sql, part).fetchall())
    return found
