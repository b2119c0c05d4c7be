"""The relational index: SQLAlchemy Core tables, one definition for SQLite, PostgreSQL, MySQL.

``objects`` holds every object's framed bytes (the truth); every other table is derived from
them and can be rebuilt by :func:`provstore.store.Store.reindex`.  Digests are binary columns
(``BLOB``/``BYTEA``/``BINARY(32)``); on MySQL/MariaDB every text column is ``utf8mb4`` with the
binary collation, so ``Pillow`` and ``pillow`` stay different.  Names are looked up through a
digest column (``name_key``), so names of any length can be indexed on every backend.

Core tables rather than ORM classes: every hot path is a batched insert or a prebuilt select,
and importing :mod:`sqlalchemy.orm` would add ~60-100 ms to every process start.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

__all__ = [
    "SCHEMA_VERSION",
    "metadata",
    "meta",
    "objects",
    "product_parents",
    "products",
    "run_ends",
    "runs",
]

SCHEMA_VERSION = 1
_MY = ("mysql", "mariadb")


def _digest() -> TypeEngine[bytes]:
    return LargeBinary().with_variant(mysql.BINARY(32), *_MY)


def _text() -> TypeEngine[str]:
    return Text().with_variant(mysql.LONGTEXT(collation="utf8mb4_bin"), *_MY)


def _short(length: int) -> TypeEngine[str]:
    return String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), *_MY)


_TABLE_OPTS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}
_SMALL_ROWS: dict[str, Any] = {**_TABLE_OPTS, "sqlite_with_rowid": False}

metadata = MetaData()

meta = Table(
    "provstore_meta",
    metadata,
    Column("key", _short(64), primary_key=True),
    Column("value", _text(), nullable=False),
    **_TABLE_OPTS,
)

objects = Table(
    "objects",
    metadata,
    Column("digest", _digest(), primary_key=True),
    Column("kind", _short(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary().with_variant(mysql.LONGBLOB(), *_MY), nullable=False),
    Index("ix_objects_kind", "kind"),
    **_TABLE_OPTS,
)

products = Table(
    "products",
    metadata,
    Column("digest", _digest(), primary_key=True),
    Column("name_key", _digest(), nullable=False),
    Column("name", _text(), nullable=False),
    Column("version", _text(), nullable=True),
    Column("content", _digest(), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("run", _digest(), nullable=True),
    Index("ix_products_name_key", "name_key"),
    Index(
        "ix_products_content",
        "content",
        sqlite_where=text("content IS NOT NULL"),
        postgresql_where=text("content IS NOT NULL"),
    ),
    Index("ix_products_run", "run"),
    **_SMALL_ROWS,
)

product_parents = Table(
    "product_parents",
    metadata,
    Column("child", _digest(), primary_key=True),
    Column("parent", _digest(), primary_key=True),
    Index("ix_product_parents_parent", "parent", "child"),
    **_SMALL_ROWS,
)

runs = Table(
    "runs",
    metadata,
    Column("digest", _digest(), primary_key=True),
    Column("environment", _digest(), nullable=False),
    Column("started_ns", BigInteger, nullable=False),
    Column("host", _text(), nullable=False),
    Column("user", _text(), nullable=False),
    Column("name", _text(), nullable=True),
    Index("ix_runs_environment", "environment"),
    Index("ix_runs_started", "started_ns"),
    **_SMALL_ROWS,
)

run_ends = Table(
    "run_ends",
    metadata,
    Column("digest", _digest(), primary_key=True),
    Column("run", _digest(), nullable=False),
    Column("status", _short(16), nullable=False),
    Column("finished_ns", BigInteger, nullable=False),
    Index("ix_run_ends_run", "run"),
    **_SMALL_ROWS,
)
