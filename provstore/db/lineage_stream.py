"""A lineage walk that streams its nodes, level by level, keeping the visited set in the database.

:func:`provstore.db.lineage.walk` returns a whole neighbourhood at once: every node, its level
and every edge, held in memory, which grows with the neighbourhood.  :func:`stream` yields the
same nodes with the same levels, but holds at most one page of digests: the walk's state lives
in three temporary tables on its own connection, one transaction long (one snapshot).

- ``lineage_seen (id)``: every node reached so far;
- two level tables ``(digest, id)``, keyed by digest: the level being read, and the next one,
  filled from it by one ``INSERT … SELECT DISTINCT`` over ``product_parents`` that leaves out
  the nodes seen.  Each statement names each temporary table once (MariaDB cannot open a
  temporary table twice in one statement).

A level is read in digest order by keyset pages (``WHERE digest > last ORDER BY digest
LIMIT n``: a range of the level table's key), so the nodes come out as
:class:`provstore.store.Lineage` iterates them: by level, then by digest.  Edges are not
streamed: the edges among a neighbourhood are what :func:`walk` holds whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Column, MetaData, Table
from sqlalchemy.engine import Connection, Engine

from provstore.db import dialects, schema
from provstore.db.engine import param_mark
from provstore.db.index import ids_of

__all__ = ["PAGE", "stream"]

PAGE = 1000
"""Digests read per query: what the walk holds in memory at once."""

_tables = MetaData()
_SEEN = Table(
    "lineage_seen",
    _tables,
    Column("id", schema.objects.c.id.type, primary_key=True, autoincrement=False),
    prefixes=["TEMPORARY"],
)
_LEVELS = tuple(
    Table(
        name,
        _tables,
        Column("digest", schema.objects.c.digest.type, primary_key=True),
        Column("id", schema.objects.c.id.type, nullable=False),
        prefixes=["TEMPORARY"],
    )
    for name in ("lineage_level_a", "lineage_level_b")
)


def stream(
    engine: Engine, root: bytes, direction: str, depth: int | None, page: int = PAGE
) -> Iterator[tuple[bytes, int]]:
    """``(digest, level)`` of each node within ``depth`` levels of ``root`` (all when None).

    ``direction`` is ``ancestors`` (follow parents) or ``descendants``.  The root comes first
    at level 0, even when the index has no row for it (then alone); each level follows in
    digest order.  Levels are the shortest distances, as :func:`provstore.db.lineage.walk`
    gives them.
    """
    yield root, 0
    near, far = ("child", "parent") if direction == "ancestors" else ("parent", "child")
    with _walking(engine) as conn:
        ids = ids_of(conn, [root])
        if root not in ids:
            return
        here, following = _LEVELS
        dialect = dialects.of(conn)
        join = dialect.ordered_join
        conn.execute(_SEEN.insert(), {"id": ids[root]})
        conn.execute(here.insert(), {"digest": root, "id": ids[root]})
        level = 0
        while depth is None or level < depth:
            level += 1
            conn.exec_driver_sql(
                f"INSERT INTO {following.name} (digest, id) "
                f"SELECT DISTINCT o.digest, o.id FROM {here.name} h "
                f"{join} product_parents e ON e.{near} = h.id "
                f"{join} objects o ON o.id = e.{far} "
                f"WHERE NOT EXISTS (SELECT 1 FROM {_SEEN.name} s WHERE s.id = e.{far})"
            )
            conn.exec_driver_sql(f"INSERT INTO {_SEEN.name} (id) SELECT id FROM {following.name}")
            dialect.empty(conn, here)
            here, following = following, here
            found = False
            for digest in _pages(conn, here, page):
                found = True
                yield digest, level
            if not found:
                return


@contextmanager
def _walking(engine: Engine) -> Iterator[Connection]:
    """A connection of its own holding the walk's tables, in one read snapshot.

    Its own, so that a caller may use the store between two nodes; one transaction, so that
    every level comes from the same state of a store that others write to.  The tables are
    dropped when the walk ends or is abandoned; after an error they may outlive it on a
    pooled connection (MariaDB keeps temporary tables through a rollback), so a walk drops
    any left before it creates its own.
    """
    dialect = dialects.of(engine)
    with engine.connect() as conn:
        if dialect.long_read_isolation is not None:
            conn.execution_options(isolation_level=dialect.long_read_isolation)
        with conn.begin():
            dialect.join_by_keys(conn)
            _drop(conn)
            for table in _tables.tables.values():
                table.create(conn)
            try:
                yield conn
            except GeneratorExit:  # the caller stopped early: the transaction is sound
                _drop(conn)
                raise
            _drop(conn)


def _drop(conn: Connection) -> None:
    dialect = dialects.of(conn)
    for table in _tables.tables.values():
        dialect.drop_stage(conn, table.name)


def _pages(conn: Connection, level: Table, page: int) -> Iterator[bytes]:
    """The digests in ``level``, in order, ``page`` per query."""
    first = f"SELECT digest FROM {level.name} ORDER BY digest LIMIT {page}"
    after = f"SELECT digest FROM {level.name} WHERE digest > {{}} ORDER BY digest LIMIT {page}"
    after = after.format(param_mark(conn))
    rows = conn.exec_driver_sql(first).fetchall()
    while rows:
        digests = [bytes(digest) for (digest,) in rows]
        yield from digests
        if len(rows) < page:
            return
        rows = conn.exec_driver_sql(after, (digests[-1],)).fetchall()
