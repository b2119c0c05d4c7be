"""Read connections: held per thread on a server, bounded, replaced when the server drops them."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from provstore import Store
from provstore.core.objects import LibrarySet, Variables, seal
from provstore.db.connections import MAX_HELD


def _base():
    """Two objects that refer to nothing."""
    return [seal(LibrarySet((("click", "8.1.0"),))), seal(Variables({"A": "1"}, ()))]


def _server_sessions(url: str) -> set[int]:
    """Ids of the server sessions connected to the test database, this one excluded."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                sql = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                sql += "AND pid <> pg_backend_pid()"
            else:
                sql = "SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                sql += "AND id <> CONNECTION_ID()"
            return {int(row[0]) for row in conn.exec_driver_sql(sql)}
    finally:
        engine.dispose()


def _kill(url: str, session: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({session})")
            else:
                conn.exec_driver_sql(f"KILL {session}")
    finally:
        engine.dispose()


def test_reads_survive_the_server_dropping_their_connection(server_url):
    """Reads on a server share one held connection; if it dies, the read is retried."""
    items = _base()
    others = _server_sessions(server_url)  # the test harness's own
    with Store(server_url) as store:
        store.put(items)
        assert store.get(items[0].hex).digest == items[0].digest
        held = _server_sessions(server_url) - others
        assert held
        for _ in range(5):  # every read uses the same session: no new connections
            store.contains(items[1].digest)
        assert _server_sessions(server_url) - others == held
        for session in held:
            _kill(server_url, session)
        for _ in range(50):  # the kill is asynchronous on PostgreSQL
            if not _server_sessions(server_url) & held:
                break
            time.sleep(0.05)
        assert store.get(items[0].hex).digest == items[0].digest  # reconnected, no error
        assert store.find_products(name="nothing") == []
    assert _server_sessions(server_url) == others  # close() released every connection


def test_jobs_on_a_server_hold_no_idle_connection(server_url):
    items = _base()
    others = _server_sessions(server_url)
    with Store(server_url, pooled=False) as store:
        store.put(items)
        assert store.get(items[0].hex).digest == items[0].digest
        assert _server_sessions(server_url) == others


def test_threads_hold_a_bounded_number_of_read_connections(server_url):
    """Each thread reads on its own connection, up to a cap; ended threads give theirs back."""

    items = _base()
    others = _server_sessions(server_url)
    with Store(server_url) as store:
        store.put(items)
        release = threading.Event()
        errors = []

        def reader():
            try:
                assert store.get(items[0].hex).digest == items[0].digest
                read_once.wait(30)
                release.wait(30)
                assert store.contains(items[1].digest)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(MAX_HELD + 3)]
        read_once = threading.Barrier(len(threads) + 1)
        for thread in threads:
            thread.start()
        read_once.wait(30)  # every thread has made its first read and waits
        during = _server_sessions(server_url) - others
        assert len(store._readers.held) == MAX_HELD  # the main thread's (opening the store) and 3
        release.set()
        for thread in threads:
            thread.join()
        assert errors == []
        # the held ones and at most a few pooled ones; never one per thread forever
        assert MAX_HELD <= len(during) <= MAX_HELD + 1 + 5
        assert len(store._readers.held) <= MAX_HELD
        late = threading.Thread(target=lambda: store.get(items[0].hex))
        late.start()
        late.join()  # a new reader: the connections of ended threads were closed first
        assert len(store._readers.held) == 2
        assert _server_sessions(server_url) - others <= during
    assert _server_sessions(server_url) == others


def test_a_read_aside_runs_on_a_worker_with_its_own_connection(backend_url):
    """``aside`` runs a read on one worker thread and its own connection; close() stops it."""
    store = Store(backend_url)
    try:
        with store._readers.connection() as mine:  # held by this thread meanwhile
            ours = mine.connection.dbapi_connection
            first = store._readers.aside(
                lambda conn: (threading.current_thread(), conn.connection.dbapi_connection)
            )
            thread, theirs = first.result(timeout=30)
        assert thread is not threading.current_thread()
        assert theirs is not ours
        again = store._readers.aside(lambda conn: threading.current_thread()).result(timeout=30)
        assert again is thread  # one worker, kept
        failing = store._readers.aside(lambda conn: 1 // 0)
        try:
            failing.result(timeout=30)
        except ZeroDivisionError:
            pass
        else:
            raise AssertionError("the worker's error did not reach the caller")
    finally:
        store.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
