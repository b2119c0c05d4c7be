"""Hashing files through a stat cache, as git's index and DVC's state database do.

A file's content digest is remembered with what ``stat`` said when it was hashed: device,
inode, size, modification and change times (nanoseconds).  While all five are unchanged the
bytes are taken as unchanged and not read again; ``ctime`` cannot be set by a user, so a
rewrite that restores an old ``mtime`` still shows.  A file changed within
:data:`RACY_NS` of being hashed is not cached (the change could share its timestamp).

The cache is a small SQLite file in provstore's cache directory (``$PROVSTORE_CACHE_DIR``, else
``$XDG_CACHE_HOME/provstore``); ``PROVSTORE_NO_CACHE=1`` turns it off.  It is only a cache: if
it cannot be read or written, files are hashed as if it were empty.
"""

from __future__ import annotations

import os
import sqlite3
import stat as stat_module
import time
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType

from provstore.core.digests import hash_file

__all__ = ["RACY_NS", "FileHasher", "cache_path"]

RACY_NS = 2_000_000_000
_FALSE = ("", "0", "false", "no")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, "
    "size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, digest BLOB) WITHOUT ROWID"
)

_SNAPSHOTS = (
    "CREATE TABLE IF NOT EXISTS snapshots (key TEXT PRIMARY KEY, saved_ns INTEGER NOT NULL, "
    "meta BLOB NOT NULL, report BLOB NOT NULL, detail BLOB NOT NULL)"
)
SNAPSHOTS_KEPT = 8
"""Status snapshots kept (the most recently saved); each is one ``status`` argument list
and takes about 125 bytes per file (12.5 MB for 100,000 files)."""

Key = tuple[int, int, int, int, int]


def cache_path() -> str | None:
    """Where the hash cache lives, or None when caching is turned off."""
    if os.environ.get("PROVSTORE_NO_CACHE", "").strip().lower() not in _FALSE:
        return None
    base = os.environ.get("PROVSTORE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "provstore",
    )
    return os.path.join(base, "hashes.sqlite")


def _key(info: os.stat_result) -> Key:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class FileHasher:
    """Content digests of files, read from the cache when ``stat`` says nothing changed.

    Use as a context manager (or call :meth:`close`): new digests are written to the cache in
    one transaction at the end.  ``hashed`` counts the files actually read.
    """

    def __init__(self, path: str | None = "", *, clock: Callable[[], int] = time.time_ns) -> None:
        self._db: sqlite3.Connection | None = None
        self._pending: dict[str, tuple[Key, bytes]] = {}  # hashed now, written at close
        self._known: dict[str, tuple[Key, bytes]] = {}  # read by preload()
        self._preloaded: list[str] = []
        self._snapshot: tuple[str, bytes, bytes, bytes] | None = None  # written at close
        self._meta: tuple[str, bytes] | None = None  # a snapshot's new meta, written at close
        self._clock = clock
        self.hashed = 0
        where = cache_path() if path == "" else path
        if where is not None:
            with suppress(OSError, sqlite3.Error):
                os.makedirs(os.path.dirname(where), exist_ok=True)
                self._db = sqlite3.connect(where, timeout=5, isolation_level=None)
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute(_SCHEMA)
                self._db.execute(_SNAPSHOTS)

    def __enter__(self) -> FileHasher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def preload(self, directory: str) -> None:
        """Read every cached entry below ``directory`` at once (for a walk over a tree)."""
        if self._db is None:
            return
        root = os.path.abspath(directory).rstrip(os.sep) + os.sep
        try:
            rows = self._db.execute(
                "SELECT path, dev, ino, size, mtime_ns, ctime_ns, digest FROM hashes "
                "WHERE path >= ? AND path < ?",
                (root, root[:-1] + chr(ord(os.sep) + 1)),
            ).fetchall()
        except sqlite3.Error:
            return
        known = self._known
        for name, dev, ino, size, mtime, ctime, digest in rows:
            known[name] = ((dev, ino, size, mtime, ctime), digest)
        self._preloaded.append(root)

    def hash(self, path: str | os.PathLike[str], *, absolute: bool = False) -> tuple[bytes, int]:
        """The BLAKE3 digest and size of the file's bytes (:class:`PathError` if unreadable).

        ``absolute`` says ``path`` is absolute and normal already (a walk's own paths).
        """
        name = os.fspath(path) if absolute else os.path.abspath(os.fspath(path))
        with suppress(OSError):
            info = os.stat(name)
            if stat_module.S_ISREG(info.st_mode):
                key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
                known = self._known.get(name)  # the common case of a walk over a cached tree
                if known is not None and known[0] == key and name not in self._pending:
                    return known[1], info.st_size
                cached = self._lookup(name, key)
                if cached is not None:
                    return cached, info.st_size
        digest, size = hash_file(name)
        self.hashed += 1
        self._remember(name, digest)
        return digest, size

    def _lookup(self, name: str, key: Key) -> bytes | None:
        known = self._pending.get(name) or self._known.get(name)
        if known is not None:
            return known[1] if known[0] == key else None
        if self._db is None or name.startswith(tuple(self._preloaded)):
            return None
        try:
            row = self._db.execute(
                "SELECT dev, ino, size, mtime_ns, ctime_ns, digest FROM hashes WHERE path = ?",
                (name,),
            ).fetchone()
        except sqlite3.Error:
            return None
        if row is None or tuple(row[:5]) != key:  # also when preload() found nothing
            return None
        return bytes(row[5])

    def _remember(self, name: str, digest: bytes) -> None:
        """Cache the digest under the file's ``stat`` after hashing, unless it is racy."""
        try:
            info = os.stat(name)
        except OSError:
            return
        if self._clock() - max(info.st_mtime_ns, info.st_ctime_ns) < RACY_NS:
            return  # changed so recently that a further change could share the timestamp
        self._pending[name] = (_key(info), digest)

    def now(self) -> int:
        """The time by this hasher's clock (ns): what a racy window is measured from."""
        return self._clock()

    def snapshot(self, key: str, part: str) -> bytes | None:
        """One part (``meta``, ``report`` or ``detail``) of the snapshot saved under ``key``."""
        if self._db is None or part not in ("meta", "report", "detail"):
            return None
        try:
            row = self._db.execute(
                f"SELECT {part} FROM snapshots WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else bytes(row[0])

    def keep_snapshot(self, key: str, meta: bytes, report: bytes, detail: bytes) -> None:
        """Save a snapshot under ``key`` at :meth:`close` (with the digests hashed)."""
        self._snapshot = (key, meta, report, detail)

    def keep_snapshot_meta(self, key: str, meta: bytes) -> None:
        """Replace only the ``meta`` part of the snapshot under ``key``, at :meth:`close`."""
        self._meta = (key, meta)

    def close(self) -> None:
        """Write what was hashed (and a snapshot) into the cache in one transaction; close it."""
        db, self._db = self._db, None
        if db is None:
            return
        rows = [(name, *key, digest) for name, (key, digest) in self._pending.items()]
        snapshot, self._pending, self._snapshot = self._snapshot, {}, None
        meta, self._meta = self._meta, None
        with suppress(sqlite3.Error):
            if rows or snapshot or meta:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                if snapshot is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                        (snapshot[0], self._clock(), *snapshot[1:]),
                    )
                    db.execute(
                        "DELETE FROM snapshots WHERE key NOT IN (SELECT key FROM snapshots "
                        "ORDER BY saved_ns DESC LIMIT ?)",
                        (SNAPSHOTS_KEPT,),
                    )
                if meta is not None:
                    db.execute("UPDATE snapshots SET meta = ? WHERE key = ?", (meta[1], meta[0]))
                db.execute("COMMIT")
        db.close()
