"""Backend settings: SQLite pragmas and refusals, MySQL/MariaDB collations."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from provstore import Store
from provstore.core.errors import ConfigError, UnsupportedStoreError
from provstore.db import engine as backend
from provstore.db import sqlite_direct


def test_sqlite_is_wal_with_busy_timeout(sqlite_url):
    with Store(sqlite_url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_in_memory_sqlite_refused():
    with pytest.raises(ConfigError, match="in-memory"):
        Store("sqlite://")


def test_network_file_system_refused(sqlite_url, monkeypatch):
    monkeypatch.setattr(sqlite_direct, "filesystem_type", lambda directory: "nfs4")
    with pytest.raises(UnsupportedStoreError, match="PostgreSQL"):
        Store(sqlite_url)


def test_unknown_database_refused():
    with pytest.raises(ConfigError, match="unsupported database"):
        backend.connect("oracle://x/y")
    with pytest.raises(ConfigError, match="not a database URL"):
        backend.connect("::::")


@pytest.mark.parametrize("server_url", ["mariadb"], indirect=True)
def test_mysql_columns_use_binary_no_pad_collations(server_url):
    Store(server_url).close()
    engine = sa.create_engine(server_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT table_name, column_name, character_set_name, collation_name "
                "FROM information_schema.columns WHERE table_schema = DATABASE() "
                "AND collation_name IS NOT NULL"
            )
        ).all()
        types = dict(
            conn.execute(
                sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = DATABASE() AND table_name = 'objects'"
                )
            ).all()
        )
    engine.dispose()
    assert rows, "no text columns found"
    for table, column, charset, collation in rows:
        assert (charset, collation) == ("utf8mb4", "utf8mb4_nopad_bin"), (table, column)
    assert types["digest"].lower() == "binary" and types["data"].lower() == "longblob"
