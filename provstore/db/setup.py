"""Creating the schema once, and refusing a database written by another schema version.

:func:`ensure_schema` creates a missing schema (commands that write); :func:`check_schema`
only reads, and refuses a database without one (commands that only read).

Several processes may open a new store at once: creation happens under the dialect's schema
lock, inside one transaction, so each process finds the schema either whole or not begun.
Where the lock does not reach (two nodes of a Galera cluster: its named locks are each
node's own), every table and index is created only if missing and the version row inserted
idempotently, so racing creators both succeed and leave one schema.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import Table, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from provstore.core.errors import NoStoreError, SchemaVersionError, StoreError
from provstore.db import dialects, queries, schema
from provstore.db.engine import retrying, write_transaction
from provstore.db.index import INDEX_TABLES, rebuild

__all__ = ["check_schema", "ensure_schema"]

Reader = Callable[[], AbstractContextManager[Connection]]


def ensure_schema(engine: Engine, reader: Reader, shown_url: str) -> None:
    """Create the schema if the database has none, upgrade an older one, refuse a newer one."""
    dialect = dialects.of(engine)
    version = _read_version(reader)
    if version is None:
        retrying(lambda: _create_schema(engine, shown_url), dialect)
        version = _read_version(reader)
    if version in _UPGRADES:
        retrying(lambda: _upgrade(engine), dialect)
        version = _read_version(reader)
    if version != str(schema.SCHEMA_VERSION):
        raise SchemaVersionError(str(version), schema.SCHEMA_VERSION)


def check_schema(reader: Reader, shown_url: str) -> None:
    """Require a store of this schema version, creating nothing: for commands that only read."""
    version = _read_version(reader)
    if version is None:
        raise NoStoreError(shown_url, "the database has no provstore tables")
    if version != str(schema.SCHEMA_VERSION):
        upgradable = version in _UPGRADES
        raise SchemaVersionError(str(version), schema.SCHEMA_VERSION, upgradable=upgradable)


def _read_version(reader: Reader) -> str | None:
    try:  # the common case, one query; the inspector only when the table may be missing
        with reader() as conn:
            value: str | None = conn.execute(queries.SCHEMA_VERSION).scalar_one_or_none()
            return value
    except DBAPIError:
        with reader() as conn:
            if not inspect(conn).has_table(schema.meta.name):
                return None
            # created meanwhile by another process
            again: str | None = conn.execute(queries.SCHEMA_VERSION).scalar_one_or_none()
            return again


def _create_schema(engine: Engine, shown_url: str) -> None:
    dialect = dialects.of(engine)
    with write_transaction(engine) as conn:
        dialect.lock_schema(conn)
        try:
            # Under the lock another process's creation is either whole or not begun.
            found = inspect(conn)
            if not found.has_table(schema.meta.name) and found.has_table(schema.objects.name):
                raise StoreError(
                    f"{shown_url} holds an 'objects' table but no provstore schema "
                    "record; it is not a provstore store. Use another database."
                )
            dialect.prepare_schema(schema.metadata, conn)
            # The meta table first: a creator racing on another node (past the lock) then
            # never sees an 'objects' table without it and takes the store for a stranger's.
            dialect.create_tables(conn, schema.metadata, [schema.meta])
            dialect.create_tables(conn, schema.metadata)
            version_row = [("schema_version", str(schema.SCHEMA_VERSION))]
            dialect.insert_ignore(conn, schema.meta, version_row)
        finally:
            dialect.unlock_schema(conn)


def _upgrade(engine: Engine) -> None:
    """Bring a store up to :data:`~provstore.db.schema.SCHEMA_VERSION`, one version at a time.

    Under the schema lock, so concurrent openers upgrade once.  Each step is idempotent: on
    MySQL, where DDL commits as it goes, a step interrupted half-way is finished by the next
    opener.
    """
    dialect = dialects.of(engine)
    with write_transaction(engine) as conn:
        dialect.lock_schema(conn)
        try:
            version = conn.execute(queries.SCHEMA_VERSION).scalar_one()
            while version in _UPGRADES:
                _UPGRADES[version](conn)
                version = str(int(version) + 1)
                conn.execute(
                    schema.meta.update()
                    .where(schema.meta.c.key == "schema_version")
                    .values(value=version)
                )
        finally:
            dialect.unlock_schema(conn)


def _to_version_2(conn: Connection) -> None:
    """Drop schema 1's index tables and convert stored text (MySQL: compared without padding).

    Schema 2 changed the products table and added one end per run: the old index tables go.
    The index is derived again from the objects by the step to version 4, which every
    upgrade ends with (deriving it is simpler than altering it, and is what
    ``provstore reindex`` does anyway).  Where a store holds two ends for a run, the rebuilt
    index keeps the first and ``provstore fsck`` reports the other.
    """
    for table in reversed(INDEX_TABLES):
        table.drop(conn, checkfirst=True)
    dialects.of(conn).upgrade_text(conn, schema.metadata)


def _to_version_3(conn: Connection) -> None:
    """Add the runs' job columns: the index is derived again by the step to version 4.

    Runs recorded before version 3 carry no job, so their rows get none; the objects
    themselves are untouched, so everything stored keeps its digest and keeps verifying.
    """
    for table in reversed(INDEX_TABLES):
        table.drop(conn, checkfirst=True)


_OLD_OBJECTS = "provstore_objects_v3"


def _to_version_4(conn: Connection) -> None:
    """Give every object an integer id and key the index by ids: rebuilt from the objects.

    The objects are copied aside, ``objects`` is created again with its id column and filled
    from the copy in digest order, and the index tables are derived again.  The objects'
    bytes are untouched.  Idempotent: on MySQL, where DDL commits as it goes, an opener after
    an interruption finds either the old ``objects`` (and copies it again) or the copy.
    """
    dialect = dialects.of(conn)
    found = inspect(conn)
    has_old = found.has_table(schema.objects.name) and "id" not in {
        column["name"] for column in found.get_columns(schema.objects.name)
    }
    for table in reversed(INDEX_TABLES):
        table.drop(conn, checkfirst=True)
    if has_old:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_OLD_OBJECTS}")
        conn.exec_driver_sql(
            f"CREATE TABLE {_OLD_OBJECTS} AS SELECT digest, kind, size, data FROM objects"
        )
        conn.exec_driver_sql("DROP TABLE objects")
    dialect.prepare_schema(schema.metadata, conn)
    dialect.create_tables(conn, schema.metadata, [schema.objects, *INDEX_TABLES])
    if inspect(conn).has_table(_OLD_OBJECTS):
        copied: Table = schema.objects
        columns = "digest, kind, size, data"
        dialect.publish(
            conn,
            copied,
            columns.split(", "),
            f"SELECT {columns} FROM {_OLD_OBJECTS} WHERE 1 = 1 ORDER BY digest",
        )
        conn.exec_driver_sql(f"DROP TABLE {_OLD_OBJECTS}")
    rebuild(conn)


_UPGRADES: dict[str, Callable[[Connection], None]] = {
    "1": _to_version_2,
    "2": _to_version_3,
    "3": _to_version_4,
}
"""The step from each older schema version to the next."""
