"""Engines and transactions, the same on every database (the differences are in dialects.py).

* :func:`connect` opens an engine with its dialect's settings;
* :func:`write_transaction` is one write transaction (``BEGIN IMMEDIATE`` on SQLite);
* :func:`retrying` runs a whole transaction again, a bounded number of times, when the
  dialect says its error is transient (deadlock, serialization failure, lock timeout).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from provstore.core.errors import StoreError
from provstore.db import dialects

__all__ = ["connect", "param_mark", "retrying", "write_transaction"]

T = TypeVar("T")
_RETRY_ATTEMPTS = 20


def connect(url: str, *, pooled: bool = True) -> Engine:
    """An engine for ``url`` with provstore's per-database settings applied.

    ``pooled=False`` (what a tracked job uses on a server) opens a connection per transaction
    and closes it after, so hundreds of jobs do not hold hundreds of idle server connections.
    """
    parsed = dialects.parse_url(url)
    return dialects.for_url(parsed).engine(parsed, pooled=pooled)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
    with engine.connect() as conn:
        conn = conn.execution_options(provstore_write=True)
        with conn.begin():
            yield conn


def retrying(action: Callable[[], T], dialect: dialects.Dialect) -> T:
    """Run a whole transaction, again on the dialect's transient errors (bounded, jittered)."""
    for attempt in range(_RETRY_ATTEMPTS):
        try:
            return action()
        except DBAPIError as exc:
            if not dialect.is_transient(exc) or attempt == _RETRY_ATTEMPTS - 1:
                raise
            time.sleep(min(2.0, 0.01 * 2**attempt) * (0.5 + random.random()))
    raise StoreError("unreachable")  # pragma: no cover


def param_mark(conn: Connection) -> str:
    """The driver's positional parameter mark, for plain SQL on its cursor."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"
