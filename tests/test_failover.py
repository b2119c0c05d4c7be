"""Stores on several hosts: multi-host URLs, ``[tool.provstore]`` lists, reaching a live host
past a dead one, and what Galera asks of the schema (every table keyed).

The cluster itself (many writers, a node killed, racing schema creation) is tested in
``tests/test_galera.py``; these run on the ordinary test servers.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from provstore import Store, tracker
from provstore.config import resolve
from provstore.core.errors import ConfigError
from provstore.db import dialects, schema
from provstore.db.engine import connect, failover, retrying
from provstore.db.urls import multi_host, split_host

DEAD = "127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mysql://u@h1:3307,h2:3308,h3/db", "mysql://u@/db?host=h1:3307&host=h2:3308&host=h3"),
        ("mysql://u:p,w@h1,h2/db?charset=utf8mb4", "mysql://u:p,w@/db?host=h1&host=h2&charset=utf8mb4"),
        ("postgresql://h1,h2:5433/db", "postgresql:///db?host=h1&host=h2:5433"),
        ("mysql://u@h1/db", "mysql://u@h1/db"),
        ("sqlite:////tmp/a,b.db", "sqlite:////tmp/a,b.db"),
        ("./a,b.db", "./a,b.db"),
    ],
)  # fmt: skip
def test_a_host_list_becomes_host_parameters(text, expected):
    assert multi_host(text) == expected


def test_hosts_split_into_host_and_port():
    assert split_host("db1:3307") == ("db1", 3307)
    assert split_host("db1") == ("db1", None)
    assert split_host("[::1]:5432") == ("::1", 5432)
    with pytest.raises(ValueError):
        split_host("db1:x")


def test_a_multi_host_url_names_its_hosts_and_fails_over():
    url = "mysql://u@h1:3307,h2:3308/db"
    parsed = dialects.parse_url(url)
    assert parsed.drivername == "mysql+pymysql" and parsed.database == "db"
    assert dialects.hosts(parsed) == ("h1:3307", "h2:3308")
    assert failover(url) and not failover("mysql://u@h1/db")
    assert not failover("sqlite:////tmp/x.db")


@pytest.mark.parametrize("scheme", ["mysql", "postgresql"])
def test_a_port_that_is_no_number_is_a_config_error(scheme):
    with pytest.raises(ConfigError, match="'h2:x'"):
        dialects.parse_url(f"{scheme}://u@h1:1,h2:x/db")


def test_postgresql_hosts_go_to_libpq_which_keeps_the_primary():
    engine = connect("postgresql://u@h1:5432,h2:5433/db")
    try:
        args = engine.dialect.create_connect_args(engine.url)[1]
        assert args["host"] == "h1,h2" and args["port"] == "5432,5433"
        assert args["target_session_attrs"] == "read-write"  # never a standby
    finally:
        engine.dispose()
    engine = connect("postgresql://u@h1,h2/db?target_session_attrs=any")
    try:
        assert engine.url.query["target_session_attrs"] == "any"  # the URL's own choice stays
    finally:
        engine.dispose()


def test_mysql_hosts_are_tried_by_provstore():
    engine = connect("mysql://u@h1:3307,h2:3308/db")
    try:
        assert engine.url.host == "h1" and engine.url.port == 3307
        assert "host" not in engine.url.query  # PyMySQL takes one host: provstore picks it
    finally:
        engine.dispose()


def test_pyproject_may_list_the_nodes(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.provstore]\n"
        'url = ["mysql://prov@db1:3306/provenance", "mysql://prov@db2:3306/provenance"]\n'
    )
    monkeypatch.chdir(tmp_path)
    url = resolve().url
    assert url == "mysql://prov@db1:3306,db2:3306/provenance"
    assert dialects.hosts(dialects.parse_url(url)) == ("db1:3306", "db2:3306")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('url = ["mysql://a@db1/x", "mysql://b@db2/x"]', "host and port only"),
        ('url = ["mysql://a@db1/x", "mysql://a@db2/y"]', "host and port only"),
        ("url = []", "a string or a list"),
        ("url = [1]", "a string or a list"),
        ('url = ["store.db"]', "server URLs only"),
    ],
)
def test_a_list_of_urls_must_be_one_store(tmp_path, monkeypatch, body, says):
    (tmp_path / "pyproject.toml").write_text(f"[tool.provstore]\n{body}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=says):
        resolve()


def _behind_a_dead_host(server_url: str) -> str:
    """The same database, with a host that refuses connections listed before the server."""
    url = make_url(server_url)
    live = f"{url.host}:{url.port or (5432 if url.get_backend_name() == 'postgresql' else 3306)}"
    text = url.render_as_string(hide_password=False)
    netloc = f"{url.host}:{url.port}" if url.port else url.host
    return text.replace(f"@{netloc}/", f"@{DEAD},{live}/", 1)


def test_a_job_reaches_the_live_host_past_a_dead_one(server_url):
    url = _behind_a_dead_host(server_url)
    assert DEAD in url and failover(url)
    with tracker(url, git=False) as t:
        digest = t.register_data_product("past-the-dead-host", "1", {"n": 1})
        t.flush()
    with Store(server_url, create=False) as store:
        assert store.get(digest, kind="product").obj.name == "past-the-dead-host"


def test_only_dead_hosts_fail_after_bounded_retries(server_url, monkeypatch):
    url = make_url(server_url)
    text = url.render_as_string(hide_password=False)
    netloc = f"{url.host}:{url.port}" if url.port else url.host
    dead = text.replace(f"@{netloc}/", f"@{DEAD},127.0.0.1:2/", 1)
    sleeps: list[float] = []
    monkeypatch.setattr("provstore.db.engine.time.sleep", sleeps.append)
    with pytest.raises(Exception, match="cannot open the store"):
        Store(dead)
    assert 5 <= len(sleeps) <= 20  # it tried again, a bounded number of times


def test_lost_connections_are_retried_only_with_failover():
    dialect = dialects.DIALECTS["mysql"]
    lost = OperationalError("COMMIT", None, Exception(2013, "Lost connection"))
    calls = []

    def action():
        calls.append(1)
        if len(calls) < 3:
            raise lost
        return "done"

    assert dialect.is_connection_lost(lost) and not dialect.is_transient(lost)
    with pytest.raises(DBAPIError):
        retrying(action, dialect)
    assert len(calls) == 1
    assert retrying(action, dialect, failover=True) == "done"


def test_a_galera_certification_failure_is_retried():
    conflict = OperationalError("COMMIT", None, Exception(1213, "Deadlock found"))
    assert dialects.DIALECTS["mysql"].is_transient(conflict)


def test_every_table_has_a_primary_key():
    """Galera replicates rows by key: a table without one cannot be kept in step safely."""
    for table in schema.metadata.tables.values():
        assert table.primary_key.columns, table.name


def _kill_own_connection(conn) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
    else:
        conn.exec_driver_sql("KILL CONNECTION_ID()")


@pytest.mark.parametrize("hosts", ["several", "one"])
def test_a_flush_whose_connection_dies_runs_again_only_with_several_hosts(
    server_url, monkeypatch, hosts
):
    """The server drops the connection in the middle of the write transaction."""
    from provstore.db import index

    url = _behind_a_dead_host(server_url) if hosts == "several" else server_url
    real = index.write_items
    calls: list[int] = []

    def dying(conn, batch, *ids):
        calls.append(len(batch))
        if len(calls) == 1:  # the first flush of products dies
            _kill_own_connection(conn)
        return real(conn, batch, *ids)

    with tracker(url, git=False) as t:
        monkeypatch.setattr(index, "write_items", dying)
        digest = t.register_data_product("survives", "1", {"n": 1})
        if hosts == "one":
            with pytest.raises(Exception, match="(?i)connection|terminat|killed|lost|closed"):
                t.flush()
            monkeypatch.setattr(index, "write_items", real)
            t.flush()  # the product is still pending: written now
        else:
            t.flush()
            assert len(calls) == 2  # the flush that died, the same flush again
        monkeypatch.setattr(index, "write_items", real)
    with Store(server_url, create=False) as store:
        assert store.get(digest, kind="product").obj.name == "survives"
