"""The relational index: SQLAlchemy Core tables, one definition for SQLite, PostgreSQL, MySQL.

``objects`` holds every object's framed bytes (the truth); every other table is derived from
them and can be rebuilt by :func:`provstore.store.Store.reindex`.  Each digest is stored once,
in ``objects`` (a unique index), under an integer ``id`` given in insertion order; every other
table is keyed by, and refers through, those ids, so the tables grow at their end instead of
taking a random leaf per row; only the digest index (and indexes on values such as names or
parents) still takes inserts all over (schema 4).  A digest referred to before its object is
stored (or never stored) has an ``objects`` row without ``kind``, ``size`` and ``data``: it is
absent from the store until its object is written, which fills that row in.

Digests are binary columns (``BLOB``/``BYTEA``/``BINARY(32)``); on MySQL/MariaDB every text
column is ``utf8mb4`` with the binary collation without padding, so ``Pillow`` and ``pillow``
(and ``1.0`` and ``1.0 ``) stay different.  Product names and paths are indexed as text
compared byte for byte, so a name or a path prefix is one index range on every backend (MySQL
indexes their first 255 characters).

Tables declare what a database may do with them in ``info`` (``compact``: small rows under a
digest key; ``partial``: an index's ``WHERE`` clause; ``prefix``: how many leading characters
of a text column an index may hold where the database limits it); :mod:`provstore.db.dialects`
turns that into each database's DDL options.

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
)
from sqlalchemy.types import BINARY, TypeEngine

from provstore.db.dialects import MYSQL_BACKENDS, POSTGRESQL_BACKENDS
from provstore.db.layout import SCHEMA_VERSION

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

_MY = MYSQL_BACKENDS
_UNBOUNDED = 2**32 - 1  # MySQL turns TEXT(n)/BLOB(n) of this size into LONGTEXT/LONGBLOB


def _digest() -> TypeEngine[bytes]:
    return LargeBinary().with_variant(BINARY(32), *_MY)


def _text() -> TypeEngine[str]:
    # MySQL's collation comes from the table (set per server by the dialect: NO PAD, binary).
    return Text().with_variant(Text(_UNBOUNDED), *_MY)


def _searchable() -> TypeEngine[str]:
    """Text searched by prefix (names, paths): compared byte for byte on every backend.

    PostgreSQL's default collation orders by locale, so a prefix is not a range there; ``C``
    is.  SQLite's default and MySQL's table collation (set per server) are binary already.
    """
    return _text().with_variant(Text(collation="C"), *POSTGRESQL_BACKENDS)


def _id() -> TypeEngine[int]:
    """An object's integer id: ``INTEGER`` on SQLite, where that makes it the rowid."""
    return BigInteger().with_variant(Integer(), "sqlite")


def _short(length: int) -> TypeEngine[str]:
    return String(length)


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
    Column("id", _id(), primary_key=True, autoincrement=True),
    Column("digest", _digest(), nullable=False),
    Column("kind", _short(16), nullable=True),  # None: referred to, not stored
    Column("size", Integer, nullable=True),
    Column("data", LargeBinary().with_variant(LargeBinary(_UNBOUNDED), *_MY), nullable=True),
    Index("ux_objects_digest", "digest", unique=True),
    Index("ix_objects_kind", "kind"),
)

products = Table(
    "products",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=False),
    Column("name", _searchable(), nullable=False),
    Column("version", _text(), nullable=True),
    Column("content", _digest(), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("run", _id(), nullable=True),
    Column("path", _searchable(), nullable=True),
    Index("ix_products_name", "name", info={"prefix": 255}),
    Index("ix_products_content", "content", info={"partial": "content IS NOT NULL"}),
    Index("ix_products_run", "run"),
    Index("ix_products_path", "path", info={"partial": "path IS NOT NULL", "prefix": 255}),
)

product_parents = Table(
    "product_parents",
    metadata,
    Column("child", _id(), primary_key=True, autoincrement=False),
    Column("parent", _id(), primary_key=True, autoincrement=False),
    Index("ix_product_parents_parent", "parent", "child"),
    info={"compact": True},
)

runs = Table(
    "runs",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=False),
    Column("environment", _id(), nullable=False),
    Column("started_ns", BigInteger, nullable=False),
    Column("host", _text(), nullable=False),
    Column("user", _text(), nullable=False),
    Column("name", _searchable(), nullable=True),
    Column("job", _searchable(), nullable=True),
    Column("job_array", _searchable(), nullable=True),
    Index("ix_runs_environment", "environment"),
    Index("ix_runs_started", "started_ns"),
    Index("ix_runs_job", "job", info={"partial": "job IS NOT NULL", "prefix": 255}),
    Index(
        "ix_runs_job_array", "job_array", info={"partial": "job_array IS NOT NULL", "prefix": 255}
    ),
)

run_ends = Table(
    "run_ends",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=False),
    Column("run", _id(), nullable=False),
    Column("status", _short(16), nullable=False),
    Column("finished_ns", BigInteger, nullable=False),
    Index("ux_run_ends_run", "run", unique=True),  # a run ends once
)
