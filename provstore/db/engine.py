"""Engines and transactions, the same on every database (the differences are in dialects.py).

* :func:`connect` opens an engine with its dialect's settings;
* :func:`write_transaction` is one write transaction (``BEGIN IMMEDIATE`` on SQLite);
* :func:`retrying` runs a whole transaction again, a bounded number of times, when the
  dialect says its error is transient (deadlock, serialization failure, lock timeout, a
  Galera certification failure) or, for a URL naming several hosts, when the connection was
  lost (the next attempt connects to another host; writes are idempotent, so a transaction
  that did commit before the connection dropped is harmless to run again).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from provstore.core.errors import (
    NoStoreError,
    ProvstoreError,
    ReadOnlyStoreError,
    StoreError,
    StoreFullError,
)
from provstore.db import dialects

__all__ = [
    "connect",
    "failover",
    "param_mark",
    "retrying",
    "storage_error",
    "write_transaction",
]

T = TypeVar("T")
_RETRY_ATTEMPTS = 20


def connect(url: str, *, pooled: bool = True, read_only: bool = False) -> Engine:
    """An engine for ``url`` with provstore's per-database settings applied.

    ``pooled=False`` (what a tracked job uses on a server) opens a connection per transaction
    and closes it after, so hundreds of jobs do not hold hundreds of idle server connections.
    ``read_only`` creates nothing (no SQLite file or directory) and opens SQLite read-only.
    """
    parsed = dialects.parse_url(url)
    return dialects.for_url(parsed).engine(parsed, pooled=pooled, read_only=read_only)


def failover(url: str) -> bool:
    """Whether ``url`` names several hosts (a lost connection is retried on another one)."""
    return len(dialects.hosts(dialects.parse_url(url))) > 1


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success.

    A full disk or a read-only store raises :class:`StoreFullError` or
    :class:`ReadOnlyStoreError` (the transaction is rolled back: nothing of it is kept).
    """
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(provstore_write=True)
            with conn.begin():
                yield conn
    except DBAPIError as exc:
        error = storage_error(exc, engine)
        if error is None:
            raise
        raise error from None


def storage_error(exc: DBAPIError, engine: Engine) -> ProvstoreError | None:
    """The provstore error for a database error that says what is wrong with the store.

    Full, read-only, or not there at all (a server database that does not exist); else None.
    """
    kind = dialects.of(engine).storage_error(exc)
    url = engine.url.render_as_string(hide_password=True)
    detail = " ".join(str(exc.orig).split())
    if kind == "missing":
        return NoStoreError(url, "the server has no database of that name (create it first)")
    if kind == "full":
        return StoreFullError(f"the store at {url}", detail)
    if kind == "read-only":
        return ReadOnlyStoreError(f"the store at {url}", detail)
    return None


def retrying(action: Callable[[], T], dialect: dialects.Dialect, *, failover: bool = False) -> T:
    """Run a whole transaction, again on the dialect's transient errors (bounded, jittered).

    ``failover`` (a URL naming several hosts): also when the connection was lost or could
    not be made, so that the next attempt reaches another host.
    """
    for attempt in range(_RETRY_ATTEMPTS):
        try:
            return action()
        except DBAPIError as exc:
            again = dialect.is_transient(exc) or (failover and dialect.is_connection_lost(exc))
            if not again or attempt == _RETRY_ATTEMPTS - 1:
                raise
            time.sleep(min(2.0, 0.01 * 2**attempt) * (0.5 + random.random()))
    raise StoreError("unreachable")  # pragma: no cover


def param_mark(conn: Connection) -> str:
    """The driver's positional parameter mark, for plain SQL on its cursor."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"
