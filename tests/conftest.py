"""Shared fixtures: an empty database on every backend, and a process environment that cannot
reach the user's real store.

Fixtures
--------
``backend_url``  parametrised ``sqlite`` / ``postgresql`` / ``mariadb``: the URL of an empty
                 database (a fresh SQLite file, or a server database emptied before and after).
``sqlite_url``   the URL of a SQLite file under ``tmp_path`` that does not exist yet.
``server_url``   like ``backend_url``, over ``postgresql`` / ``mariadb`` only.
``isolated_env`` autouse: XDG data and cache homes under ``tmp_path``, no ``PROVSTORE_*``
                 variables (except ``PROVSTORE_TEST_*``).

A server that cannot be reached skips its tests with the reason, or fails them when ``CI=true``.
``scripts/start-test-databases.sh`` starts the servers.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

CONNECT_TIMEOUT_SECONDS = 3
# How long emptying a database waits for a lock held by a connection a test left open.
LOCK_TIMEOUT_SECONDS = 15
# How long a test run waits for another run using the same server database to finish.
RUN_LOCK_WAIT_SECONDS = 900


@dataclass(frozen=True, slots=True)
class ServerBackend:
    """A database server the suite runs against, configured by an environment variable."""

    name: str
    label: str
    env_var: str
    default_url: str

    @property
    def url(self) -> str:
        return os.environ.get(self.env_var) or self.default_url

    @property
    def shown_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


SERVER_BACKENDS = {
    "postgresql": ServerBackend(
        "postgresql",
        "PostgreSQL",
        "PROVSTORE_TEST_PG_URL",
        "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    ),
    "mariadb": ServerBackend(
        "mariadb",
        "MariaDB",
        "PROVSTORE_TEST_MYSQL_URL",
        "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4",
    ),
}
BACKENDS = ["sqlite", *SERVER_BACKENDS]


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _unavailable(message: str) -> NoReturn:
    """Skip the test with a visible reason; in CI every backend is required, so fail instead."""
    if _in_ci():
        pytest.fail(f"{message} [CI=true: every backend is required]", pytrace=False)
    pytest.skip(message)


def _reason(err: BaseException) -> str:
    """The driver's own message on one line, without SQLAlchemy's SQL and background link."""
    orig = getattr(err, "orig", None) or err
    return " ".join(line.strip() for line in str(orig).splitlines() if line.strip())


def _probe(backend: ServerBackend) -> str | None:
    """Why the server cannot be used, after one attempt bounded by CONNECT_TIMEOUT_SECONDS."""
    timeouts = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if make_url(backend.url).get_backend_name() == "mysql":
        # PyMySQL's connect_timeout covers only the TCP connect, not the server's greeting.
        timeouts |= {
            "read_timeout": CONNECT_TIMEOUT_SECONDS,
            "write_timeout": CONNECT_TIMEOUT_SECONDS,
        }
    engine = sa.create_engine(backend.url, connect_args=timeouts, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as err:
        return _reason(err)
    finally:
        engine.dispose()
    return None


# --- one connection attempt per server per session ---------------------------------------------


class _Servers:
    """Engines for the server backends, made on first use and kept for the session.

    A failed connection attempt is remembered, so a server that is down costs one timeout per
    session rather than one per test. Each reachable server also gets a run lock: two test runs
    on one machine (say two developers' checkouts) would otherwise drop each other's tables
    mid-test, so the second waits for the first.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._engines: dict[str, Engine | str] = {}
        self._lock_connections: list[Connection] = []

    def engine(self, backend: ServerBackend) -> Engine:
        if backend.name not in self._engines:
            self._engines[backend.name] = self._connect(backend)
        engine = self._engines[backend.name]
        if isinstance(engine, str):
            _unavailable(engine)
        return engine

    def close(self) -> None:
        for connection in self._lock_connections:
            connection.close()  # ends the session, which releases its run lock
        for engine in self._engines.values():
            if isinstance(engine, Engine):
                engine.dispose()

    def _connect(self, backend: ServerBackend) -> Engine | str:
        problem = _probe(backend)
        if problem is not None:
            return (
                f"{backend.label} not reachable at {backend.shown_url}: {problem}"
                " (run scripts/start-test-databases.sh)"
            )
        engine = sa.create_engine(backend.url, pool_pre_ping=True)
        connection = engine.connect()
        self._lock_connections.append(connection)
        if not self._take_run_lock(connection, backend):
            return (
                f"{backend.label} database at {backend.shown_url} is in use by another test run"
                f" (waited {RUN_LOCK_WAIT_SECONDS}s for it to finish)"
            )
        return engine

    def _take_run_lock(self, connection: Connection, backend: ServerBackend) -> bool:
        """Hold a session-level lock named after the database until the test run ends."""
        key = f"provstore-tests:{make_url(backend.url).database}"
        if connection.dialect.name == "postgresql":
            number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
            attempt = sa.text("SELECT pg_try_advisory_lock(:n)").bindparams(n=number - 2**63)
        else:
            attempt = sa.text("SELECT GET_LOCK(:key, 0)").bindparams(key=key)
        deadline = time.monotonic() + RUN_LOCK_WAIT_SECONDS
        told = False
        while True:
            taken = bool(connection.execute(attempt).scalar())
            connection.commit()  # the lock outlives the transaction; no snapshot is kept open
            if taken:
                return True
            if time.monotonic() > deadline:
                return False
            if not told:
                self._tell(
                    f"waiting for another test run using {backend.label} at "
                    f"{backend.shown_url} to finish"
                )
                told = True
            time.sleep(1)

    def _tell(self, message: str) -> None:
        """Show a message on the terminal now, even though fixture output is being captured."""
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        capture = self._config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nconftest: {message}")


@pytest.fixture(scope="session")
def _servers(pytestconfig: pytest.Config) -> Iterator[_Servers]:
    servers = _Servers(pytestconfig)
    yield servers
    servers.close()


# --- emptying a server database ----------------------------------------------------------------


def _drop_everything(connection: Connection, lock_timeout: int) -> None:
    """Drop every table, view and sequence in the connection's database (or PG's public)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text(f"SET LOCAL lock_timeout = '{lock_timeout}s'"))
        connection.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
        return
    rows = connection.execute(
        sa.text(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE()"
        )
    ).all()
    if not rows:
        return
    quote = connection.dialect.identifier_preparer.quote
    connection.execute(sa.text(f"SET SESSION lock_wait_timeout = {lock_timeout}"))
    connection.execute(sa.text("SET SESSION FOREIGN_KEY_CHECKS = 0"))
    try:
        for name, kind in sorted(rows, key=lambda row: row[1] != "VIEW"):
            what = {"VIEW": "VIEW", "SEQUENCE": "SEQUENCE"}.get(kind, "TABLE")
            connection.execute(sa.text(f"DROP {what} IF EXISTS {quote(name)}"))
    finally:
        connection.execute(sa.text("SET SESSION FOREIGN_KEY_CHECKS = 1"))


def _empty_database(engine: Engine, backend: ServerBackend) -> None:
    """Empty the database; if a lock blocks that, collect leaked connections and try again."""
    try:
        with engine.begin() as connection:
            _drop_everything(connection, lock_timeout=2)
        return
    except sa.exc.DBAPIError:
        # A test may have dropped a Session or Connection mid-transaction; collecting it
        # returns the connection to its pool, which rolls back and frees its locks.
        gc.collect()
    try:
        with engine.begin() as connection:
            _drop_everything(connection, lock_timeout=LOCK_TIMEOUT_SECONDS)
        return
    except sa.exc.DBAPIError as err:
        reason = _reason(err)
    pytest.fail(
        f"could not empty the {backend.label} database at {backend.shown_url}: {reason}."
        " A connection left open by a test (or by another program) may hold a lock on a"
        " table: close stores and sessions when a test ends.",
        pytrace=False,
    )


def _empty_server_url(servers: _Servers, name: str) -> Iterator[str]:
    backend = SERVER_BACKENDS[name]
    engine = servers.engine(backend)
    _empty_database(engine, backend)
    yield backend.url
    _empty_database(engine, backend)


# --- the fixtures -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file in the test's own directory; the file does not exist yet."""
    return f"sqlite:///{tmp_path.as_posix()}/store.db"


@pytest.fixture(params=BACKENDS)
def backend_url(
    request: pytest.FixtureRequest, tmp_path: Path, _servers: _Servers
) -> Iterator[str]:
    """The URL of an empty database on each backend: ``sqlite``, ``postgresql``, ``mariadb``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path.as_posix()}/store.db"
    else:
        yield from _empty_server_url(_servers, request.param)


@pytest.fixture(params=list(SERVER_BACKENDS))
def server_url(request: pytest.FixtureRequest, _servers: _Servers) -> Iterator[str]:
    """The URL of an empty database on each server backend: ``postgresql``, ``mariadb``."""
    yield from _empty_server_url(_servers, request.param)


@dataclass(frozen=True, slots=True)
class IsolatedEnv:
    """Where the isolated environment points provstore's per-user directories."""

    data_home: Path
    cache_home: Path


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IsolatedEnv:
    """Keep every test away from the user's real store, cache and provstore settings."""
    env = IsolatedEnv(data_home=tmp_path / "xdg-data", cache_home=tmp_path / "xdg-cache")
    env.data_home.mkdir()
    env.cache_home.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(env.data_home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(env.cache_home))
    for name in list(os.environ):
        if name.startswith("PROVSTORE_") and not name.startswith("PROVSTORE_TEST_"):
            monkeypatch.delenv(name)
    return env


@dataclass(frozen=True, slots=True)
class Script:
    """The installed ``provstore`` script, run as a user runs it (a separate process)."""

    path: str

    def __call__(
        self,
        url: str,
        *args: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``provstore ARGS`` against the store at ``url``; text output captured."""
        full_env = {**os.environ, "PROVSTORE_URL": url, **(env or {})}
        return subprocess.run(
            [self.path, *args], capture_output=True, text=True, cwd=cwd, env=full_env,
            timeout=timeout,
        )  # fmt: skip


@pytest.fixture
def script() -> Script:
    """The ``provstore`` script installed beside this Python (``pip install -e .``)."""
    path = shutil.which("provstore", path=os.path.dirname(sys.executable))
    assert path is not None, "install the package (pip install -e .) to get the script"
    return Script(path)
