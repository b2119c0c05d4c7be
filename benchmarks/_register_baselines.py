"""The baselines of the registration benchmark: the raw-driver floor and a naive ORM.

**Raw-driver floor**: exactly the rows provstore wrote for a run (``objects``, ``products``,
``product_parents``) are read back and inserted into a fresh database with the same DDL, in the
same batches (one commit per provstore flush): ``sqlite3.executemany`` with provstore's
pragmas, psycopg2 ``execute_values``, pymysql ``executemany``.  Only the inserts and commits
are timed, batch by batch, so the floor has a timeline like provstore's.

**Naive**: a small SQLAlchemy ORM declarative model with the same columns, one
``session.commit()`` per product (its object, product and parent rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.harness import raw_connect, raw_sqlite, sqlite_path

TABLES = ("objects", "products", "product_parents")

# How a floor writes: insert rows into a table, commit, close.
Writer = tuple[Callable[[str, list[Any]], None], Callable[[], Any], Callable[[], None]]

# -- the raw-driver floor ----------------------------------------------------------------------

# Schema 3's DDL for the three tables, as provstore laid them out before schema 4 (every table
# keyed by 32-byte digests), taken from a store created by the last schema-3 commit (77c495a^1):
# the old layout's floor pays for these B-trees.
_OLD_INDEXES = (
    "CREATE INDEX ix_objects_kind ON objects (kind)",
    "CREATE INDEX ix_products_name ON products (name)",
    "CREATE INDEX ix_products_run ON products (run)",
    "CREATE INDEX ix_products_content ON products (content) WHERE content IS NOT NULL",
    "CREATE INDEX ix_products_path ON products (path) WHERE path IS NOT NULL",
    "CREATE INDEX ix_product_parents_parent ON product_parents (parent, child)",
)
OLD_DDL = {
    "sqlite": (
        "CREATE TABLE objects (digest BLOB NOT NULL, kind VARCHAR(16) NOT NULL, "
        "size INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (digest))",
        "CREATE TABLE products (digest BLOB NOT NULL, name TEXT NOT NULL, version TEXT, "
        "content BLOB, size BIGINT, run BLOB, path TEXT, PRIMARY KEY (digest)) WITHOUT ROWID",
        "CREATE TABLE product_parents (child BLOB NOT NULL, parent BLOB NOT NULL, "
        "PRIMARY KEY (child, parent)) WITHOUT ROWID",
        *_OLD_INDEXES,
    ),
    "postgresql": (
        "CREATE TABLE objects (digest bytea PRIMARY KEY, kind varchar(16) NOT NULL, "
        "size integer NOT NULL, data bytea NOT NULL)",
        'CREATE TABLE products (digest bytea PRIMARY KEY, name text COLLATE "C" NOT NULL, '
        'version text, content bytea, size bigint, run bytea, path text COLLATE "C")',
        "CREATE TABLE product_parents (child bytea NOT NULL, parent bytea NOT NULL, "
        "PRIMARY KEY (child, parent))",
        *_OLD_INDEXES,
    ),
}
OLD_COLUMNS = {
    "objects": "digest, kind, size, data",
    "products": "digest, name, version, content, size, run, path",
    "product_parents": "child, parent",
}

# One batch's rows of each table, read from the provstore database: ``{after}``..``{last}``
# are product ids (insertion order, so batch by batch), ``:run`` the run's id.
_IN_BATCH = "p.run = :run AND p.id > :after AND p.id <= :last"
_NEW_READS = {
    "objects": "SELECT {cols} FROM objects t JOIN products p ON t.id = p.id WHERE " + _IN_BATCH,
    "products": "SELECT {cols} FROM products t JOIN products p ON t.id = p.id WHERE " + _IN_BATCH,
    "product_parents": "SELECT {cols} FROM product_parents t JOIN products p ON t.child = p.id "
    "WHERE " + _IN_BATCH,
}
_OLD_READS = {
    "objects": "SELECT o.digest, o.kind, o.size, o.data FROM objects o "
    "JOIN products p ON o.id = p.id WHERE " + _IN_BATCH,
    "products": "SELECT o.digest, p.name, p.version, p.content, p.size, r.digest, p.path "
    "FROM products p JOIN objects o ON o.id = p.id JOIN objects r ON r.id = p.run "
    "WHERE " + _IN_BATCH,
    "product_parents": "SELECT c.digest, f.digest FROM product_parents t "
    "JOIN products p ON t.child = p.id JOIN objects c ON c.id = t.child "
    "JOIN objects f ON f.id = t.parent WHERE " + _IN_BATCH,
}


def _batches(url: str, run_hex: str, batches: list[int], old: bool) -> Iterator[dict[str, Any]]:
    """The run's rows cut into provstore's batches, one batch at a time (bounded memory).

    Products get ids in insertion order and a batch's products are all new, so the ``n``
    products after the last batch's, in id order, are exactly that batch's.  ``old``: the rows
    as schema 3 held them (digests instead of ids).
    """
    import sqlalchemy as sa

    from provstore.db import schema

    reads = {}
    for name in TABLES:
        cols = ", ".join(f"t.{c.name}" for c in schema.metadata.tables[name].columns)
        reads[name] = sa.text((_OLD_READS if old else _NEW_READS)[name].format(cols=cols))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            run = run_id(conn, run_hex)
            ids = sa.text(
                "SELECT id FROM products WHERE run = :run AND id > :after ORDER BY id LIMIT :n"
            )
            after = 0
            for size in batches:
                batch_ids = conn.execute(ids, {"run": run, "after": after, "n": size}).scalars()
                last = max(batch_ids)
                where = {"run": run, "after": after, "last": last}
                yield {
                    name: [tuple(_plain(v) for v in row) for row in conn.execute(q, where)]
                    for name, q in reads.items()
                }
                after = last
    finally:
        engine.dispose()


def run_id(conn: Any, run_hex: str) -> int:
    """The id of the run ``run_hex`` in the store ``conn`` reads."""
    import sqlalchemy as sa

    query = sa.text("SELECT id FROM objects WHERE digest = :d")
    return int(conn.execute(query, {"d": bytes.fromhex(run_hex)}).scalar_one())


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def raw_floor(
    backend: str,
    dst_url: str,
    src_url: str,
    run_hex: str,
    batches: list[int],
    old: bool = False,
    budget: float | None = None,
) -> dict[str, Any]:
    """Insert the run's rows with the raw driver into ``dst_url``; timeline per batch.

    ``old``: into schema 3's tables (digest keys), the rows as that layout held them.  Reading
    the rows back is not timed.  ``budget``: stop after that many seconds of inserting (the
    timeline then ends early and ``complete`` is False).
    """
    opener = {"sqlite": _sqlite_writer, "postgresql": _pg_writer, "mariadb": _mysql_writer}
    write, commit, close = opener[backend](dst_url, src_url, old)
    clock, spent, stored = time.perf_counter, 0.0, 0
    points: list[tuple[int, float]] = [(0, 0.0)]
    rows = dict.fromkeys(TABLES, 0)
    complete = True
    try:
        for batch in _batches(src_url, run_hex, batches, old):
            start = clock()
            for table in TABLES:
                key = (lambda r: r) if table == "product_parents" else (lambda r: r[0])
                write(table, sorted(batch[table], key=key))
            commit()
            spent += clock() - start
            stored += len(batch["products"])
            points.append((stored, spent))
            for table in TABLES:
                rows[table] += len(batch[table])
            if budget is not None and spent > budget and stored < sum(batches):
                complete = False
                break
    finally:
        close()
    return {
        "points": points,
        "products": stored,
        "rows": rows,
        "rate": stored / spent if spent else None,
        "complete": complete,
    }


def _sqlite_writer(dst_url: str, src_url: str, old: bool = False) -> Writer:
    conn, inserts = raw_sqlite(
        sqlite_path(dst_url), sqlite_path(src_url), TABLES, OLD_DDL["sqlite"] if old else None
    )

    def write(table: str, rows: list[Any]) -> None:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        conn.executemany(inserts[table], rows)

    return write, lambda: conn.execute("COMMIT"), conn.close


def _create_tables(url: str, old: bool = False) -> dict[str, str]:
    """provstore's DDL (``old``: schema 3's) for the three tables; each table's column list."""
    import sqlalchemy as sa

    from provstore.db import schema

    engine = sa.create_engine(url)
    try:
        if old:
            with engine.begin() as conn:
                for ddl in OLD_DDL[engine.dialect.name]:
                    conn.execute(sa.text(ddl))
            return dict(OLD_COLUMNS)
        tables = [schema.metadata.tables[t] for t in TABLES]
        schema.metadata.create_all(engine, tables=tables)
    finally:
        engine.dispose()
    return {t.name: ", ".join(c.name for c in t.columns) for t in tables}


def _pg_writer(dst_url: str, src_url: str, old: bool = False) -> Writer:
    from psycopg2.extras import execute_values

    cols = _create_tables(dst_url, old)
    conn = raw_connect("postgresql", dst_url, autocommit=False).conn
    cur = conn.cursor()

    def write(table: str, rows: list[Any]) -> None:
        sql = f"INSERT INTO {table} ({cols[table]}) VALUES %s ON CONFLICT DO NOTHING"
        execute_values(cur, sql, rows, page_size=1000)

    return write, conn.commit, conn.close


def _mysql_writer(dst_url: str, src_url: str, old: bool = False) -> Writer:
    if old:
        raise ValueError("no schema-3 floor on MariaDB")
    cols = _create_tables(dst_url)
    conn = raw_connect("mariadb", dst_url, autocommit=False).conn
    cur = conn.cursor()

    def write(table: str, rows: list[Any]) -> None:
        marks = ", ".join(["%s"] * len(cols[table].split(", ")))
        cur.executemany(f"INSERT IGNORE INTO {table} ({cols[table]}) VALUES ({marks})", rows)

    return write, conn.commit, conn.close


# -- the naive ORM baseline --------------------------------------------------------------------


def _naive_models() -> Any:
    """A declarative model with provstore's columns and indexes (imported lazily: the ORM)."""
    from sqlalchemy import Index
    from sqlalchemy.orm import DeclarativeBase, mapped_column

    from provstore.db import schema

    o, p = schema.objects.c, schema.products.c  # the naive model keys by digest, as schema 3

    class Base(DeclarativeBase):
        pass

    class ObjectRow(Base):
        __tablename__ = "objects"
        digest = mapped_column(o.digest.type, primary_key=True)
        kind = mapped_column(o.kind.type, index=True)
        size = mapped_column(o.size.type)
        data = mapped_column(o.data.type)

    class ProductRow(Base):
        __tablename__ = "products"
        digest = mapped_column(o.digest.type, primary_key=True)
        name = mapped_column(p.name.type)
        version = mapped_column(p.version.type)
        content = mapped_column(p.content.type, index=True)
        size = mapped_column(p.size.type)
        run = mapped_column(o.digest.type, index=True)
        path = mapped_column(p.path.type)
        __table_args__ = (
            Index("ix_naive_name", "name", mysql_length=255, mariadb_length=255),
            Index("ix_naive_path", "path", mysql_length=255, mariadb_length=255),
        )

    class ParentRow(Base):
        __tablename__ = "product_parents"
        __table_args__ = (Index("ix_naive_parent", "parent", "child"),)
        child = mapped_column(o.digest.type, primary_key=True)
        parent = mapped_column(o.digest.type, primary_key=True)

    return Base, ObjectRow, ProductRow, ParentRow


def naive_orm(url: str, plan: list[tuple[int, ...]]) -> dict[str, Any]:
    """One ``session.commit()`` per product (SQLAlchemy defaults): products/s and latency."""
    import blake3
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from provstore.core.objects import Product, seal

    base, object_row, product_row, parent_row = _naive_models()
    engine = sa.create_engine(url)
    base.metadata.create_all(engine)
    run = blake3.blake3(b"naive run").digest()
    digests, latencies = list[bytes](), list[float]()
    clock = time.perf_counter
    with Session(engine) as session:
        start = clock()
        for i, parents in enumerate(plan):
            t0 = clock()
            product = Product(
                name=f"p{i}",
                version="1",
                metadata={"i": i},
                content=None,
                size=None,
                path=None,
                run=run,
                parents=tuple(sorted({digests[j] for j in parents})),
            )
            item = seal(product)
            session.add(
                object_row(digest=item.digest, kind=item.kind, size=len(item.data), data=item.data)
            )
            session.add(
                product_row(
                    digest=item.digest,
                    name=product.name,
                    version=product.version,
                    content=None,
                    size=None,
                    run=run,
                )
            )
            for parent in product.parents:
                session.add(parent_row(child=item.digest, parent=parent))
            session.commit()
            digests.append(item.digest)
            latencies.append(clock() - t0)
        seconds = clock() - start
    engine.dispose()
    return {"rate": len(plan) / seconds, "latencies": latencies}
