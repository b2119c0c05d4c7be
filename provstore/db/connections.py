"""Connections for reads: on a server, one held per thread in autocommit mode.

A pooled connection costs a lookup four round trips on PostgreSQL and MariaDB (the pool's
pre-ping, ``BEGIN``, the ``SELECT``, the ``ROLLBACK`` on return); a held autocommit connection
costs one.  Objects are immutable and a store only grows, so statements read in separate
snapshots still see a consistent store.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

__all__ = ["IDLE_CHECK_S", "MAX_HELD", "Readers"]

T = TypeVar("T")

IDLE_CHECK_S = 5.0  # a held read connection idle this long is checked before use
MAX_HELD = 4  # threads that hold a read connection; more read through the pool


class Readers:
    """Read connections of one engine; ``hold=False`` (SQLite, jobs) means the pool's."""

    def __init__(self, engine: Engine, *, hold: bool) -> None:
        self.engine = engine
        self.hold = hold
        self.held: dict[Connection, threading.Thread] = {}
        self._local = threading.local()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        self._worker_pid = 0

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for reads that need no transaction of their own.

        SQLite, stores opened with ``pooled=False`` (jobs on a server, which must not hold
        idle connections) and threads beyond the first :data:`MAX_HELD` take one from the
        engine's pool.  A held connection that raised is dropped: the next read starts afresh.
        """
        conn = self._held_connection() if self.hold else None
        if conn is None:
            with self.engine.connect() as pooled:
                yield pooled
            return
        try:
            yield conn
        except BaseException:
            self._drop(conn)
            raise

    def aside(self, work: Callable[[Connection], T]) -> Future[T]:
        """Run ``work`` on a read connection of its own, in a worker thread; the result later.

        For a long read that can overlap the calling thread's own (a deep lineage walk's
        digests, fetched while it walks on).  One worker per store and process (a forked
        child starts its own); it holds its read connection as any thread does.
        """
        with self._lock:
            if self._worker is None or self._worker_pid != os.getpid():
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="provstore-read")
                self._worker_pid = os.getpid()
            worker = self._worker
        return worker.submit(self._read, work)

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self.connection() as conn:
            return work(conn)

    def close(self) -> None:
        """Close every held connection (not those a forked parent still uses)."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None and self._worker_pid == os.getpid():
            worker.shutdown(cancel_futures=True)  # waits for a read under way
        with self._lock:
            held, self.held = self.held, {}
        if self._pid == os.getpid():
            for conn in held:
                with suppress(Exception):  # a connection the server already dropped
                    conn.close()

    def _held_connection(self) -> Connection | None:
        """The calling thread's read connection (opened, checked or replaced as needed)."""
        local = self._local
        if self._pid != os.getpid():  # a forked child: the parent's connections stay its own
            with self._lock:
                self.held, self._pid = {}, os.getpid()
            local.conn = None
        conn: Connection | None = getattr(local, "conn", None)
        now = time.monotonic()
        if conn is not None and (conn.invalidated or conn.closed):
            self._drop(conn)
            conn = None
        if conn is not None and now - local.used > IDLE_CHECK_S:
            try:  # idle a while: the server may have closed it or restarted since
                conn.exec_driver_sql("SELECT 1").close()
            except DBAPIError:
                self._drop(conn)
                conn = None
        if conn is None:
            with self._lock:
                for other, owner in list(self.held.items()):
                    if not owner.is_alive():  # its thread ended with the store still open
                        del self.held[other]
                        with suppress(Exception):
                            other.close()
                if len(self.held) >= MAX_HELD:
                    return None
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                self.held[conn] = threading.current_thread()
            local.conn = conn
        local.used = now
        return conn

    def _drop(self, conn: Connection) -> None:
        """Forget and close this thread's read connection."""
        self._local.conn = None
        with self._lock:
            self.held.pop(conn, None)
        with suppress(Exception):
            conn.close()
