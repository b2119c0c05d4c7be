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
from collections.abc import Callable
from typing import Any

from benchmarks.harness import raw_connect, raw_sqlite, sqlite_path

TABLES = ("objects", "products", "product_parents")

# How a floor writes: insert rows into a table, commit, close.
Writer = tuple[Callable[[str, list[Any]], None], Callable[[], Any], Callable[[], None]]

# -- the raw-driver floor ----------------------------------------------------------------------


def _read_rows(url: str, run_hex: str) -> dict[str, list[tuple[Any, ...]]]:
    """The objects, products and parent rows of one run, in table column order."""
    import sqlalchemy as sa

    from provstore.db import schema

    joins = {
        "objects": "JOIN products p ON t.id = p.id",
        "products": "JOIN products p ON t.id = p.id",
        "product_parents": "JOIN products p ON t.child = p.id",
    }
    engine = sa.create_engine(url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            for name in TABLES:
                cols = ", ".join(f"t.{c.name}" for c in schema.metadata.tables[name].columns)
                sql = (
                    f"SELECT {cols} FROM {name} t {joins[name]} "
                    "WHERE p.run = (SELECT id FROM objects WHERE digest = :run)"
                )
                rows = conn.execute(sa.text(sql), {"run": bytes.fromhex(run_hex)})
                out[name] = [tuple(_plain(v) for v in row) for row in rows]
    finally:
        engine.dispose()
    return out


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _products_columns() -> Any:
    from provstore.db import schema

    return schema.products.columns


def _replay_plan(rows: dict[str, list[tuple[Any, ...]]], batches: list[int]) -> list[Any]:
    """The rows cut into provstore's batches, in registration order (names are p<i>)."""
    name = [c.name for c in _products_columns()].index("name")
    order = sorted(rows["products"], key=lambda r: int(r[name][1:]))
    objs = {r[0]: r for r in rows["objects"]}
    edges: dict[bytes, list[tuple[Any, ...]]] = {}
    for edge in rows["product_parents"]:
        edges.setdefault(edge[0], []).append(edge)
    plan, start = [], 0
    for size in batches:
        chunk = order[start : start + size]
        start += size
        plan.append(
            {
                "objects": [objs[p[0]] for p in chunk],
                "products": chunk,
                "product_parents": [e for p in chunk for e in edges.get(p[0], ())],
            }
        )
    return plan


def raw_floor(
    backend: str, dst_url: str, src_url: str, run_hex: str, batches: list[int]
) -> dict[str, Any]:
    """Insert the run's rows with the raw driver into ``dst_url``; timeline per batch."""
    rows = _read_rows(src_url, run_hex)
    plan = _replay_plan(rows, batches)
    opener = {"sqlite": _sqlite_writer, "postgresql": _pg_writer, "mariadb": _mysql_writer}
    write, commit, close = opener[backend](dst_url, src_url)
    try:
        points = _timed_batches(plan, write, commit)
    finally:
        close()
    stored = sum(len(b["products"]) for b in plan)
    return {
        "points": points,
        "products": stored,
        "rows": {t: len(v) for t, v in rows.items()},
        "rate": stored / (points[-1][1] - points[0][1]),
    }


def _timed_batches(plan: list[Any], write: Any, commit: Any) -> list[tuple[int, float]]:
    clock = time.perf_counter
    points, done = [(0, clock())], 0
    for batch in plan:
        for table in TABLES:
            key = (lambda r: r) if table == "product_parents" else (lambda r: r[0])
            write(table, sorted(batch[table], key=key))
        commit()
        done += len(batch["products"])
        points.append((done, clock()))
    return points


def _sqlite_writer(dst_url: str, src_url: str) -> Writer:
    conn, inserts = raw_sqlite(sqlite_path(dst_url), sqlite_path(src_url), TABLES)

    def write(table: str, rows: list[Any]) -> None:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        conn.executemany(inserts[table], rows)

    return write, lambda: conn.execute("COMMIT"), conn.close


def _create_tables(url: str) -> dict[str, str]:
    """provstore's DDL for the three tables in ``url``; returns each table's column list."""
    import sqlalchemy as sa

    from provstore.db import schema

    tables = [schema.metadata.tables[t] for t in TABLES]
    engine = sa.create_engine(url)
    schema.metadata.create_all(engine, tables=tables)
    engine.dispose()
    return {t.name: ", ".join(c.name for c in t.columns) for t in tables}


def _pg_writer(dst_url: str, src_url: str) -> Writer:
    from psycopg2.extras import execute_values

    cols = _create_tables(dst_url)
    conn = raw_connect("postgresql", dst_url, autocommit=False).conn
    cur = conn.cursor()

    def write(table: str, rows: list[Any]) -> None:
        sql = f"INSERT INTO {table} ({cols[table]}) VALUES %s ON CONFLICT DO NOTHING"
        execute_values(cur, sql, rows, page_size=1000)

    return write, conn.commit, conn.close


def _mysql_writer(dst_url: str, src_url: str) -> Writer:
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
