"""Store URLs: plain scheme names reach the installed drivers, a bare path is a SQLite file,
and every URL provstore cannot use is a one-line error with the forms that work."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from provstore import Store
from provstore.cli.main import main
from provstore.core.errors import ConfigError
from provstore.db.dialects import for_url, parse_url

FORMS = ("sqlite:///PATH", "postgresql://USER@HOST/DB", "mysql://USER@HOST/DB")


@pytest.mark.parametrize(
    ("url", "drivername", "dialect"),
    [
        ("postgresql://u@h/d", "postgresql+psycopg2", "postgresql"),
        ("postgres://u@h/d", "postgresql+psycopg2", "postgresql"),
        ("postgresql+psycopg2://u@h/d", "postgresql+psycopg2", "postgresql"),
        ("mysql://u@h/d", "mysql+pymysql", "mysql"),
        ("mariadb://u@h/d", "mariadb+pymysql", "mysql"),
        ("mysql+pymysql://u@h/d", "mysql+pymysql", "mysql"),
        ("sqlite:////tmp/x.db", "sqlite+pysqlite", "sqlite"),
        ("sqlite+pysqlite:////tmp/x.db", "sqlite+pysqlite", "sqlite"),
    ],
)
def test_plain_schemes_name_the_installed_drivers(url, drivername, dialect):
    parsed = parse_url(url)
    assert parsed.drivername == drivername
    assert parsed.host == make_url(url).host and parsed.database == make_url(url).database
    assert for_url(url).name == dialect


def test_sqlalchemy_alone_would_pick_drivers_that_are_not_installed():
    """Why plain schemes need provstore's mapping: SQLAlchemy 2.1 picks psycopg 3 and MySQLdb."""
    for url in ("postgresql://u@h/d", "mysql://u@h/d"):
        with pytest.raises(ImportError):
            make_url(url).get_dialect().import_dbapi()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+asyncpg://u@h/d", "psycopg2"),
        ("postgresql+psycopg://u@h/d", "psycopg2"),
        ("mysql+mysqldb://u@h/d", "pymysql"),
        ("mariadb+mysqlconnector://u@h/d", "pymysql"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite:///PATH"),
    ],
)
def test_a_driver_provstore_does_not_use_is_refused_with_the_forms_that_work(url, says):
    with pytest.raises(ConfigError) as caught:
        parse_url(url)
    message = str(caught.value)
    assert says in message and "\n" not in message


@pytest.mark.parametrize("url", ["oracle://a@b/c", "mongodb://h/db", "foo://x", "::::"])
def test_another_scheme_is_refused_with_every_form(url):
    with pytest.raises(ConfigError) as caught:
        for_url(url)
    assert all(form in str(caught.value) for form in FORMS)


def test_a_password_is_never_echoed():
    for url in ("postgresql+asyncpg://u:hunter2@h/d", "postgresql://u:hunter2@h:port/d",
                "oracle://u:hunter2@h/d"):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            parse_url(url)
        assert "hunter2" not in str(caught.value)


def test_mysql_needs_a_database_and_speaks_utf8mb4():
    with pytest.raises(ConfigError, match="mysql://USER@HOST/DB"):
        parse_url("mysql://root@127.0.0.1:3306")
    with pytest.raises(ConfigError, match="utf8mb4"):
        parse_url("mysql://root@127.0.0.1/x?charset=latin1")
    assert parse_url("mysql://root@h/x?charset=utf8mb4").query["charset"] == "utf8mb4"


@pytest.mark.parametrize("text", ["store.db", "./store", "sub/store.sqlite", "~/x.db"])
def test_a_bare_path_is_a_sqlite_file(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    parsed = parse_url(text)
    assert parsed.drivername == "sqlite+pysqlite"
    expected = os.path.abspath(os.path.expanduser(text))
    assert parsed.database == expected and os.path.isabs(parsed.database)


def test_a_bare_path_opens_a_store_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Store("odd ?#name.db") as store:
        assert store.stats()["bytes"] == 0
    assert (tmp_path / "odd ?#name.db").is_file()


def test_a_bare_word_is_not_guessed_at():
    with pytest.raises(ConfigError, match="sqlite:///PATH"):
        parse_url("postgresql")


# --- the installed script: one line on stderr, never a traceback ---------------------------


def _one_line_error(proc, code: int = 2) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.returncode == code, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+asyncpg://u:hunter2@127.0.0.1/d", "postgresql://USER@HOST/DB"),
        ("mysql+mysqldb://root@127.0.0.1/d", "mysql://USER@HOST/DB"),
        ("oracle://a@b/c", "sqlite:///PATH"),
        ("localhost:5432/db", "sqlite:///PATH"),
        ("results", "sqlite:///PATH"),
        ("mysql://root@127.0.0.1/d?charset=nonsense", "utf8mb4"),
        ("mysql://root@127.0.0.1:3306", "mysql://USER@HOST/DB"),
    ],
)
def test_script_refuses_a_url_on_one_line(script, tmp_path, url, says):
    err = _one_line_error(script(url, "log", cwd=str(tmp_path)))
    assert says in err and "hunter2" not in err


def test_script_driver_option_errors_are_one_line(script, tmp_path):
    err = _one_line_error(script("mysql://root@127.0.0.1/d?no_such_option=1", "log"))
    assert "no_such_option" in err


def test_script_connection_failures_are_one_line(script):
    _one_line_error(script("postgresql://postgres@127.0.0.1:1/d", "log"), code=1)
    _one_line_error(script("mysql://root@127.0.0.1:1/d", "log"), code=1)


def test_script_opens_a_bare_path(script, tmp_path):
    proc = script("stores/mine.db", "reindex", cwd=str(tmp_path))  # a command that writes
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "stores" / "mine.db").is_file()
    assert script("stores/mine.db", "stats", cwd=str(tmp_path)).returncode == 0


@pytest.fixture
def plain_server_url(server_url):
    """The server's URL with the scheme alone, as provstore's messages suggest it."""
    url = make_url(server_url)
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=False)


def test_plain_scheme_opens_a_real_server(plain_server_url, script):
    assert "+" not in plain_server_url.split("://")[0]
    with Store(plain_server_url) as store:
        assert store.stats()["bytes"] == 0
    proc = script(plain_server_url, "stats", "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db?timeout=abc",
        "sqlite:////proc/no/such/dir/x.db",
        "sqlite://",
        "sqlite:///.",
        "mysql://root@127.0.0.1/d?connect_timeout=abc",
        "mysql://root@127.0.0.1/d?local_infile=maybe",
        "mysql://root@127.0.0.1/d?ssl_ca=/no/such/ca.pem",
        "mysql://root@127.0.0.1/d?charset=utf8&charset=latin1",
        "mysql+pymysql://",
        "postgresql://postgres@127.0.0.1/d?connect_timeout=abc",
        "postgresql://u:hunter2@h:port/d",
        "+://",
        "://x",
        "",
        "~",
    ],
)
def test_no_url_gives_a_traceback(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--url", url, "stats"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (1, 2), result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "hunter2" not in result.stderr
