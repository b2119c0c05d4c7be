"""Opening a store only to read it: nothing is ever created or changed.

Commands that only read (``log``, ``show``, ``stats``, ``lineage``, ``verify``, ``fsck``, ...)
open the store with ``create=False``: a mistyped SQLite path is "no store there" (exit 2) and
no file or directory appears; someone else's database is refused and gets no tables.  A store
on read-only media is read through ``?immutable=1``.  Writing commands still create stores.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from provstore import NoStoreError, ReadOnlyStoreError, Store, open_store, tracker
from provstore.cli.main import main
from provstore.db import schema

READERS = [
    ("log",),
    ("stats",),
    ("show", "abcdef"),
    ("lineage", "abcdef"),
    ("verify", "abcdef"),
    ("fsck",),
    ("env", "--match"),
    ("diff", "abcdef"),
    ("export", "abcdef", "-o", "-"),
]


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("args", READERS, ids=lambda a: a[0])
def test_a_mistyped_sqlite_path_is_no_store_and_creates_nothing(tmp_path, args):
    url = f"sqlite:///{tmp_path}/typo/provstore.db"
    code, _, err = cli("--url", url, *args)
    assert code == 2, err
    assert "there is no provstore store at" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("args", READERS, ids=lambda a: a[0])
def test_someone_elses_sqlite_file_is_refused_unchanged(tmp_path, args):
    (tmp_path / "app").mkdir()
    path = tmp_path / "app" / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    before = _digest(path)
    code, _, err = cli("--url", f"sqlite:///{path}", *args)
    assert code == 2 and "no provstore tables" in err, err
    assert _digest(path) == before
    assert _tables(f"sqlite:///{path}") == ["users"]
    assert sorted(os.listdir(tmp_path / "app")) == ["app.db"]


def test_an_empty_file_is_no_store_and_stays_empty(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    code, _, err = cli("--url", f"sqlite:///{path}", "log")
    assert code == 2 and "no provstore tables" in err
    assert path.stat().st_size == 0


@pytest.mark.parametrize("args", [("log",), ("stats",), ("fsck",)], ids=lambda a: a[0])
def test_a_server_database_without_a_store_gets_no_tables(server_url, args):
    engine = sa.create_engine(server_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE app_users (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    code, _, err = cli("--url", server_url, *args)
    assert code == 2 and "no provstore tables" in err, err
    assert _tables(server_url) == ["app_users"]


def test_a_server_database_that_does_not_exist_is_no_store(server_url):
    url = sa.engine.make_url(server_url).set(database="provstore_no_such_db")
    shown = url.render_as_string(hide_password=False)
    for args in [("log",), ("import", "-")]:
        code, _, err = cli("--url", shown, *args)
        assert code == 2 and "no database of that name" in err, err


def test_store_and_open_store_with_create_false(tmp_path, backend_url):
    with pytest.raises(NoStoreError) as info:
        Store(backend_url, create=False)
    assert info.value.exit_code == 2
    if backend_url.startswith("sqlite"):
        assert not os.path.exists(backend_url.removeprefix("sqlite:///"))
    else:
        assert _tables(backend_url) == []
    with tracker(backend_url, git=False) as t:
        pass
    with open_store(backend_url, create=False) as store:
        assert store.get(t.run).kind == "run"


def test_reading_commands_leave_a_store_as_it_was(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with tracker(url, git=False) as t:
        product = t.register_data_product(name="p")
    before = _digest(tmp_path / "s.db")
    for args in [("log",), ("stats",), ("show", product), ("lineage", product), ("fsck",)]:
        code, _, err = cli("--url", url, *args)
        assert code == 0, (args, err)
    assert _digest(tmp_path / "s.db") == before


def test_writing_commands_still_create_a_store(tmp_path):
    url = f"sqlite:///{tmp_path}/new/s.db"
    code, _, err = cli("--url", url, "reindex")
    assert code == 0, err
    assert schema.meta.name in _tables(url)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``(writable, read_only)``: one directory, and a read-only bind mount of it (root)."""
    writable, mounted = tmp_path / "rw", tmp_path / "ro"
    writable.mkdir()
    mounted.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only file system")
    made = subprocess.run(["mount", "--bind", str(writable), str(mounted)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot bind-mount: {made.stderr.decode().strip()}")
    try:
        done = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(mounted)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")
        yield writable, mounted
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


def test_a_store_on_read_only_media_is_read_with_immutable(read_only_dir):
    writable, mounted = read_only_dir
    with tracker(f"sqlite:///{writable}/s.db", git=False) as t:
        product = t.register_data_product(name="archived")
    plain = f"sqlite:///{mounted}/s.db"
    code, _, err = cli("--url", plain, "show", product)
    assert code != 0 and "?immutable=1" in err and "Traceback" not in err
    for url in (f"{plain}?immutable=1", f"sqlite:///file:{mounted}/s.db?immutable=1&uri=true"):
        code, out, err = cli("--url", url, "show", product)
        assert code == 0 and "archived" in out, err
        code, out, err = cli("--url", url, "fsck")
        assert code == 0, err
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        with tracker(f"{plain}?immutable=1", git=False) as t:
            t.register_data_product(name="new")
    assert sorted(os.listdir(mounted)) == ["s.db"]


def test_immutable_on_a_writable_store_is_honoured_not_ignored(tmp_path):
    """SQLAlchemy ignores SQLite URI parameters without ``uri=true``: provstore does not."""
    url = f"sqlite:///{tmp_path}/s.db"
    with tracker(url, git=False):
        pass
    with pytest.raises(ReadOnlyStoreError):
        with tracker(f"{url}?immutable=1", git=False):
            pass
    code, out, _ = cli("--url", f"{url}?mode=ro", "log", "--json")
    assert code == 0 and out.startswith("[")
