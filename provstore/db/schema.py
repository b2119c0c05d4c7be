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
from sqlalchemy.types import BINARY, TypeEngine

__all__ = [
    "SCHEMA_VERSION",
    "metadata",
    "meta",
    "objects",
    "prepare",
    "product_parents",
    "products",
    "run_ends",
    "runs",
]

SCHEMA_VERSION = 1
_MY = ("mysql", "mariadb")
_UNBOUNDED = 2**32 - 1  # MySQL turns TEXT(n)/BLOB(n) of this size into LONGTEXT/LONGBLOB


def _digest() -> TypeEngine[bytes]:
    return LargeBinary().with_variant(BINARY(32), *_MY)


def _text() -> TypeEngine[str]:
    return Text().with_variant(Text(_UNBOUNDED, collation="utf8mb4_bin"), *_MY)


def _short(length: int) -> TypeEngine[str]:
    return String(length).with_variant(String(length, collation="utf8mb4_bin"), *_MY)


metadata = MetaData()

meta = Table(
    "provstore_meta",
    metadata,
    Column("key", _short(64), primary_key=True),
    Column("value", _text(), nullable=False),
)

objects = Table(
    "objects",
    metadata,
    Column("digest", _digest(), primary_key=True),
    Column("kind", _short(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary().with_variant(LargeBinary(_UNBOUNDED), *_MY), nullable=False),
    Index("ix_objects_kind", "kind"),
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
    Index("ix_products_content", "content"),
    Index("ix_products_run", "run"),
)

product_parents = Table(
    "product_parents",
    metadata,
    Column("child", _digest(), primary_key=True),
    Column("parent", _digest(), primary_key=True),
    Index("ix_product_parents_parent", "parent", "child"),
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
)

run_ends = Table(
    "run_ends",
    metadata,
    Column("digest", _digest(), primary_key=True),
    Column("run", _digest(), nullable=False),
    Column("status", _short(16), nullable=False),
    Column("finished_ns", BigInteger, nullable=False),
    Index("ix_run_ends_run", "run"),
)


def prepare(dialect: str) -> None:
    """Attach one dialect's DDL options before creating tables.

    Kept out of the table definitions because naming a dialect's options there imports that
    dialect (PostgreSQL's pulls in asyncio: ~90 ms on every process start).
    """
    small_rows = (products, product_parents, runs, run_ends)
    content_index = next(i for i in products.indexes if i.name == "ix_products_content")
    if dialect == "sqlite":
        for table in small_rows:  # 32-byte keys and small rows: no separate rowid b-tree
            table.dialect_kwargs["sqlite_with_rowid"] = False
        content_index.dialect_kwargs["sqlite_where"] = text("content IS NOT NULL")
    elif dialect == "postgresql":
        content_index.dialect_kwargs["postgresql_where"] = text("content IS NOT NULL")
    elif dialect in _MY:
        for table in metadata.tables.values():
            table.dialect_kwargs[f"{dialect}_engine"] = "InnoDB"
            table.dialect_kwargs[f"{dialect}_charset"] = "utf8mb4"
            table.dialect_kwargs[f"{dialect}_collate"] = "utf8mb4_bin"
