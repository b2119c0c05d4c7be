"""Errors reach the user typed, in one line, and saying the right thing.

A full disk is a :class:`StoreFullError` (never SQLAlchemy's ``OperationalError`` or a bare
``OSError``), bad metadata a :class:`UsageError` or an :class:`EncodingError` naming the bad
key, a rejected bundle does not talk about metadata, and an old store is not answered with
"upgrade provstore".
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import textwrap

import blake3
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from provstore import (
    EncodingError,
    SchemaVersionError,
    Store,
    StoreFullError,
    UsageError,
    tracker,
)
from provstore.cli.main import main
from provstore.core.digests import frame
from provstore.core.errors import ProvstoreError
from provstore.db import schema, sqlite_direct
from provstore.exchange.bundle import write_bundle
from provstore.tracking import tracker as tracking


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


# -- a full disk -------------------------------------------------------------------------------


def _limit_growth(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the SQLite store at ``url`` grow by two pages at most (``max_page_count``)."""
    with tracker(url, git=False):
        pass
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    engine.dispose()
    original = sqlite_direct.configure

    def limited(dbapi_conn):  # every writing connection: the engine's and a tracker's own
        original(dbapi_conn)
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    monkeypatch.setattr(sqlite_direct, "configure", limited)
    # a writer process would open its own connection without the limit: tracker's own writes
    monkeypatch.setattr(tracking, "_spare_core", lambda: False)


def test_a_full_database_is_a_store_full_error(sqlite_url, monkeypatch):
    _limit_growth(sqlite_url, monkeypatch)
    with pytest.raises(StoreFullError, match="no room left") as info:
        with tracker(sqlite_url, git=False) as t:
            for i in range(3000):
                t.register_data_product(name=f"p{i}", metadata={"pad": "x" * 200})
    assert "database or disk is full" in str(info.value)
    assert not isinstance(info.value, sa.exc.SQLAlchemyError)


def test_a_full_database_on_the_command_line_is_one_typed_line(sqlite_url, tmp_path, monkeypatch):
    source = f"sqlite:///{tmp_path}/source.db"
    with tracker(source, git=False) as t:
        for i in range(3000):
            t.register_data_product(name=f"p{i}", metadata={"pad": "x" * 200})
    bundle = tmp_path / "b.psb"
    with Store(source) as store, open(bundle, "wb") as handle:
        store.export_bundle([t.run], handle)  # the run brings the products it made
    _limit_growth(sqlite_url, monkeypatch)
    code, _, err = cli("--url", sqlite_url, "import", str(bundle))
    assert code == 1
    assert err.startswith("provstore: error: no room left to write the store")
    assert len(err.strip().splitlines()) == 1 and "OperationalError" not in err


def test_a_full_spool_disk_is_a_store_full_error(tmp_path, monkeypatch):
    from provstore.tracking import spool

    class FullFile:
        def __init__(self, inner):
            self._inner = inner

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._inner, name)

    real_fdopen = os.fdopen
    monkeypatch.setattr(spool.os, "fdopen", lambda fd, mode: FullFile(real_fdopen(fd, "wb")))
    with pytest.raises(StoreFullError, match="No space left on device"):
        with tracker(spool=str(tmp_path / "spool"), git=False) as t:
            t.register_data_product(name="p")
    assert not [n for n in os.listdir(tmp_path / "spool") if n.endswith(".tmp")]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_exporting_to_a_full_disk_is_one_typed_line(sqlite_url, script):
    with tracker(sqlite_url, git=False) as t:
        product = t.register_data_product(name="p")
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [script.path, "--url", sqlite_url, "export", product, "-o", "-"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("provstore: error: no room left to write the export")


@pytest.fixture
def tiny_tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount tmpfs: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk(tiny_tmpfs, tmp_path):
    with pytest.raises(StoreFullError):
        with tracker(f"sqlite:///{tiny_tmpfs}/s.db", git=False) as t:
            for i in range(20_000):
                t.register_data_product(name=f"p{i}", metadata={"pad": "x" * 100})
                if i % 500 == 0:
                    t.flush()
    with pytest.raises(StoreFullError):
        with tracker(spool=str(tiny_tmpfs / "spool"), git=False) as t:
            for i in range(20_000):
                t.register_data_product(name=f"p{i}", metadata={"pad": "x" * 100})


# -- metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metadata", ["ab", [1, 2], "", [], 7])
def test_metadata_that_is_not_a_mapping_is_a_usage_error(sqlite_url, metadata):
    with tracker(sqlite_url, git=False) as t:
        with pytest.raises(UsageError, match="metadata must be a mapping"):
            t.register_data_product(name="p", metadata=metadata)
        with pytest.raises(UsageError, match="metadata must be a mapping"):
            t.track(__file__, metadata=metadata)


def test_metadata_is_checked_even_without_contracts(sqlite_url):
    """``python -O`` turns contracts off; the metadata check must not go with them."""
    code = textwrap.dedent(f"""
        from provstore import tracker, UsageError
        with tracker({sqlite_url!r}, git=False) as t:
            for bad in ("ab", [1, 2], "", []):
                try:
                    t.register_data_product(name="p", metadata=bad)
                except UsageError as exc:
                    print("refused", type(exc).__name__)
                else:
                    print("accepted", repr(bad))
    """)
    done = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == ["refused UsageError"] * 4


def test_an_unencodable_metadata_key_is_named(sqlite_url):
    with tracker(sqlite_url, git=False) as t:
        with pytest.raises(EncodingError, match=r"metadata key 'bad\\udcff'") as info:
            t.register_data_product(name="p", metadata={"ok": 1, "bad\udcff": 2})
        assert "not valid Unicode" in str(info.value)
        with pytest.raises(EncodingError, match=r"metadata\['a'\] key 'k\\udcff'"):
            t.register_data_product(name="p", metadata={"a": {"k\udcff": 1}})


# -- bundles and schema versions --------------------------------------------------------------


def test_a_non_canonical_object_in_a_bundle_is_not_about_metadata(sqlite_url):
    body = b"\x82\xa1b\x01\xa1a\x02"  # a map with unsorted keys
    data = frame("libraryset", 1, body)
    digest = blake3.blake3(data).digest()
    buf = io.BytesIO()
    write_bundle(buf, [digest], [(digest, data)])
    with Store(sqlite_url) as store:
        with pytest.raises(ProvstoreError, match="invalid object") as info:
            store.import_bundle(io.BytesIO(buf.getvalue()))
    message = str(info.value)
    assert "canonical" in message
    assert "etadata" not in message and "cannot encode" not in message


@pytest.mark.parametrize(
    ("found", "advice"),
    [
        ("0", "older"),
        (str(schema.SCHEMA_VERSION + 1), "Upgrade provstore"),
        ("banana", "not a schema version"),
    ],  # fmt: skip
)
def test_schema_version_messages_fit_the_version(sqlite_url, found, advice):
    Store(sqlite_url).close()
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(schema.meta.update().values(value=found))
    engine.dispose()
    with pytest.raises(SchemaVersionError) as info:
        Store(sqlite_url)
    assert advice in str(info.value)
    if found != str(schema.SCHEMA_VERSION + 1):
        assert "upgrade provstore" not in str(info.value).lower()
    code, _, err = cli("--url", sqlite_url, "log")
    assert code == 1 and advice in err and len(err.strip().splitlines()) == 1


# -- the command line -------------------------------------------------------------------------


def test_an_unexpected_database_error_is_one_line(sqlite_url, monkeypatch):
    Store(sqlite_url).close()
    from provstore import store as store_module

    def broken(self, limit=20, **kwargs):
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("line one\nline two"))

    monkeypatch.setattr(store_module.Store, "runs", broken)
    code, _, err = cli("--url", sqlite_url, "log")
    assert code == 1 and err.strip() == "provstore: database error: line one line two"


def test_an_os_error_is_one_line_not_a_traceback(sqlite_url, tmp_path):
    with tracker(sqlite_url, git=False) as t:
        product = t.register_data_product(name="p")
    code, _, err = cli("--url", sqlite_url, "export", product, "-o", f"{tmp_path}/no/such/b.psb")
    assert code == 2 and "Traceback" not in err  # a named file that cannot be written
    assert err.startswith("provstore: error:") and len(err.strip().splitlines()) == 1
