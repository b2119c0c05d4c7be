"""Product registration throughput: batched, beside a raw-driver floor and a naive ORM.

Per backend:

1. **Batched**: one ``tracker(url, git=False)`` block registers N products with 1-3 parents
   each (deterministic RNG, parents among earlier products), in a fresh process.  The rate is
   taken in windows as the store grows (the first 10k, around 100k and at 1M at full scale;
   the first 5k and the last 5k of 20k (SQLite) or 10k (servers) at small scale), and over the
   whole block including its exit.
2. **Raw-driver floor**: exactly the rows provstore wrote (``objects``, ``products``,
   ``product_parents`` of that run) are read back and inserted into a fresh database with the
   same DDL, in the same batches (one commit per provstore flush): ``sqlite3.executemany`` with
   provstore's pragmas, psycopg2 ``execute_values``, pymysql ``executemany``.
3. **Naive**: a small SQLAlchemy ORM declarative model with the same columns, one
   ``session.commit()`` per product (its object, product and parent rows), for a few thousand
   products: products/s and per-product latency.
4. **Durable one at a time**: ``register_data_product(...)`` then ``t.flush()`` each time, into
   the store grown by (1): p50/p99 latency.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Context,
    Row,
    child_env,
    percentile,
    run_child,
    wipe_database,
)

DESCRIPTION = "products/s in one tracker block (windows as the store grows) vs raw driver, ORM"
NAME = "register"
TABLES = ("objects", "products", "product_parents")
SQLITE_TARGET = "≥50% of raw floor, ≥20,000/s"
SLOWDOWN_TARGET = "≤20% slower"

# The batched run, in a fresh interpreter: argv = url, n, seed, step.  Prints the timeline
# ``points`` (products registered, seconds) every ``step`` products, the products in each
# Store.put (provstore's batches) and the run's digest.
_CHILD_BATCHED = r"""
import json, sys, time
from benchmarks.b_register import parent_plan
from provstore import tracker

url, n, seed, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
plan = parent_plan(n, seed)
t = tracker(url, name="b_register", git=False)
t.__enter__()
store, batches = t.store, []
real_put = store.put

def counting_put(items):
    items = list(items)
    batches.append(sum(1 for item in items if item.kind == "product"))
    real_put(items)

store.put = counting_put
register, digests, clock = t.register_data_product, [], time.perf_counter
append = digests.append
points = [(0, clock())]
try:
    for i, parents in enumerate(plan):
        append(register(f"p{i}", "1", {"i": i}, parents=[digests[j] for j in parents]))
        if (i + 1) % step == 0:
            points.append((i + 1, clock()))
except BaseException:
    t.__exit__(*sys.exc_info())
    raise
looped = clock()
t.__exit__(None, None, None)
done = clock()
print(json.dumps({"points": points, "loop_end": looped, "end": done, "run": t.run,
                  "batches": [b for b in batches if b]}))
"""


# -- shared helpers (b_storage uses them too) --------------------------------------------------


def parent_plan(n: int, seed: int) -> list[tuple[int, ...]]:
    """For each product, 1-3 distinct parents among the earlier ones (none for the first)."""
    rng = random.Random(seed)
    plan: list[tuple[int, ...]] = [()]
    for i in range(1, n):
        plan.append(tuple(rng.sample(range(i), min(i, rng.randint(1, 3)))))
    return plan[:n]


def scratch_url(ctx: Context, backend: str, name: str) -> str:
    """An empty database of our own: a new SQLite file, or ``<bench db>_<name>``, wiped."""
    if backend == "sqlite":
        return ctx.fresh_url("sqlite", name=name)
    from sqlalchemy.engine import make_url

    parsed = make_url(ctx.backends[backend])
    database = f"{parsed.database}_{name}"
    url = parsed.set(database=database).render_as_string(hide_password=False)
    wipe_database(url)
    return url


def drop_scratch(url: str) -> None:
    """Empty a scratch database (a SQLite file's directory goes).

    Server databases are emptied, not dropped: PostgreSQL's DROP DATABASE waits for a
    checkpoint of the whole cluster, seconds when others are writing.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        shutil.rmtree(Path(parsed.database or "").parent, ignore_errors=True)
    else:
        wipe_database(url)


@contextmanager
def scratch(ctx: Context, backend: str, name: str) -> Iterator[str]:
    url = scratch_url(ctx, backend, name)
    try:
        yield url
    finally:
        drop_scratch(url)


def driver_connect(url: str) -> Any:
    """A raw DB-API connection (psycopg2 or pymysql) to a server URL, autocommit off."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    params = {"host": u.host, "port": u.port, "user": u.username, "password": u.password}
    params = {k: v for k, v in params.items() if v is not None}
    if u.get_backend_name() == "postgresql":
        import psycopg2

        return psycopg2.connect(dbname=u.database, **params)
    import pymysql

    return pymysql.connect(database=u.database, charset="utf8mb4", autocommit=False, **params)


def sqlite_path(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


@contextmanager
def phase(label: str) -> Iterator[None]:
    """Say on stderr how long a step took (progress for the long full-scale run)."""
    start = time.perf_counter()
    yield
    print(f"     {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


# -- windows -----------------------------------------------------------------------------------


def windows(ctx: Context, backend: str) -> tuple[int, list[tuple[str, int, int]]]:
    """Total products and the (label, from, to) windows the rate is measured in.

    Small scale keeps the servers (slower per product) to 10k so the suite stays short.
    """
    total = ctx.pick(20_000 if backend == "sqlite" else 10_000, 1_000_000)
    first = ctx.pick(5_000, 10_000)
    out = [(f"first {_k(first)}", 0, first)]
    for size in ctx.pick((total,), (100_000, 1_000_000)):
        half = max(first, size // 20)
        lo, hi = max(0, size - half), min(total, size + half)
        out.append((f"at {_k(size)} ({_k(lo)}-{_k(hi)})", lo, hi))
    return total, out


def _k(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def window_rate(points: list[tuple[int, float]], lo: int, hi: int) -> float | None:
    """Products/s between the timeline points nearest to ``lo`` and ``hi``."""
    a = min(points, key=lambda p: abs(p[0] - lo))
    b = min(points, key=lambda p: abs(p[0] - hi))
    if b[0] <= a[0] or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


# -- the raw-driver floor ----------------------------------------------------------------------


def _read_rows(url: str, run_hex: str) -> dict[str, list[tuple[Any, ...]]]:
    """The objects, products and parent rows of one run, in table column order."""
    import sqlalchemy as sa

    from provstore.db import schema

    joins = {
        "objects": "JOIN products p ON t.digest = p.digest",
        "products": "JOIN products p ON t.digest = p.digest",
        "product_parents": "JOIN products p ON t.child = p.digest",
    }
    engine = sa.create_engine(url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            for name in TABLES:
                cols = ", ".join(f"t.{c.name}" for c in schema.metadata.tables[name].columns)
                sql = f"SELECT {cols} FROM {name} t {joins[name]} WHERE p.run = :run"
                rows = conn.execute(sa.text(sql), {"run": bytes.fromhex(run_hex)})
                out[name] = [tuple(_plain(v) for v in row) for row in rows]
    finally:
        engine.dispose()
    return out


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _replay_plan(rows: dict[str, list[tuple[Any, ...]]], batches: list[int]) -> list[Any]:
    """The rows cut into provstore's batches, in registration order (names are p<i>)."""
    order = sorted(rows["products"], key=lambda r: int(r[2][1:]))
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
    inserter = {"sqlite": _raw_sqlite, "postgresql": _raw_pg, "mariadb": _raw_mysql}[backend]
    points = inserter(dst_url, src_url, plan)
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


def _raw_sqlite(dst_url: str, src_url: str, plan: list[Any]) -> list[tuple[int, float]]:
    src = sqlite3.connect(sqlite_path(src_url))
    ddl = src.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN (?, ?, ?) "
        "ORDER BY type = 'index', name",
        TABLES,
    ).fetchall()
    src.close()
    conn = sqlite3.connect(sqlite_path(dst_url), isolation_level=None)
    for pragma in (
        "busy_timeout = 60000",
        "journal_mode = WAL",
        "synchronous = NORMAL",
        "cache_size = -65536",
        "wal_autocheckpoint = 10000",
    ):
        conn.execute(f"PRAGMA {pragma}")
    for (sql,) in ddl:
        conn.execute(sql)
    width = {t: len(conn.execute(f"SELECT * FROM {t} LIMIT 0").description) for t in TABLES}
    sql = {t: f"INSERT OR IGNORE INTO {t} VALUES ({', '.join('?' * width[t])})" for t in TABLES}

    def write(table: str, rows: list[Any]) -> None:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql[table], rows)

    try:
        return _timed_batches(plan, write, lambda: conn.execute("COMMIT"))
    finally:
        conn.close()


def _create_tables(url: str) -> dict[str, str]:
    """provstore's DDL for the three tables in ``url``; returns each table's column list."""
    import sqlalchemy as sa

    from provstore.db import schema

    tables = [schema.metadata.tables[t] for t in TABLES]
    engine = sa.create_engine(url)
    schema.metadata.create_all(engine, tables=tables)
    engine.dispose()
    return {t.name: ", ".join(c.name for c in t.columns) for t in tables}


def _raw_pg(dst_url: str, src_url: str, plan: list[Any]) -> list[tuple[int, float]]:
    from psycopg2.extras import execute_values

    cols = _create_tables(dst_url)
    conn = driver_connect(dst_url)
    cur = conn.cursor()

    def write(table: str, rows: list[Any]) -> None:
        sql = f"INSERT INTO {table} ({cols[table]}) VALUES %s ON CONFLICT DO NOTHING"
        execute_values(cur, sql, rows, page_size=1000)

    try:
        return _timed_batches(plan, write, conn.commit)
    finally:
        conn.close()


def _raw_mysql(dst_url: str, src_url: str, plan: list[Any]) -> list[tuple[int, float]]:
    cols = _create_tables(dst_url)
    conn = driver_connect(dst_url)
    cur = conn.cursor()

    def write(table: str, rows: list[Any]) -> None:
        marks = ", ".join(["%s"] * len(cols[table].split(", ")))
        cur.executemany(f"INSERT IGNORE INTO {table} ({cols[table]}) VALUES ({marks})", rows)

    try:
        return _timed_batches(plan, write, conn.commit)
    finally:
        conn.close()


# -- the naive ORM baseline --------------------------------------------------------------------


def _naive_models() -> Any:
    """A declarative model with provstore's columns and indexes (imported lazily: the ORM)."""
    from sqlalchemy import Index
    from sqlalchemy.orm import DeclarativeBase, mapped_column

    from provstore.db import schema

    o, p, e = schema.objects.c, schema.products.c, schema.product_parents.c

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
        digest = mapped_column(p.digest.type, primary_key=True)
        name_key = mapped_column(p.name_key.type, index=True)
        name = mapped_column(p.name.type)
        version = mapped_column(p.version.type)
        content = mapped_column(p.content.type, index=True)
        size = mapped_column(p.size.type)
        run = mapped_column(p.run.type, index=True)

    class ParentRow(Base):
        __tablename__ = "product_parents"
        __table_args__ = (Index("ix_naive_parent", "parent", "child"),)
        child = mapped_column(e.child.type, primary_key=True)
        parent = mapped_column(e.parent.type, primary_key=True)

    return Base, ObjectRow, ProductRow, ParentRow


def naive_orm(url: str, n: int, seed: int) -> dict[str, Any]:
    """One ``session.commit()`` per product (SQLAlchemy defaults): products/s and latency."""
    import blake3
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from provstore.core.objects import Product, seal

    base, object_row, product_row, parent_row = _naive_models()
    engine = sa.create_engine(url)
    base.metadata.create_all(engine)
    run = blake3.blake3(b"naive run").digest()
    plan, digests, latencies = parent_plan(n, seed), list[bytes](), list[float]()
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
                    name_key=blake3.blake3(product.name.encode()).digest(),
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
    return {"rate": n / seconds, "latencies": latencies}


# -- durable one at a time ---------------------------------------------------------------------


def durable(url: str, n: int, seed: int) -> list[float]:
    """Seconds per ``register_data_product`` + ``flush`` (each product committed)."""
    from provstore import tracker

    plan, digests, latencies = parent_plan(n, seed + 1), list[str](), list[float]()
    clock = time.perf_counter
    with tracker(url, name="b_register durable", git=False) as t:
        for i, parents in enumerate(plan):
            t0 = clock()
            digests.append(
                t.register_data_product(
                    f"d{i}", "1", {"i": i}, parents=[digests[j] for j in parents]
                )
            )
            t.flush()
            latencies.append(clock() - t0)
    return latencies


# -- rows --------------------------------------------------------------------------------------


def _batched(ctx: Context, url: str, total: int) -> dict[str, Any]:
    env = {k: v for k, v in child_env().items() if not k.startswith("PROVSTORE_")}
    env["PROVSTORE_CACHE_DIR"] = str(ctx.work / "provstore-cache")
    result: dict[str, Any] = run_child(
        _CHILD_BATCHED, [url, str(total), str(ctx.seed), "1000"], env=env
    )
    return result


def _rate_rows(
    backend: str,
    total: int,
    wins: list[tuple[str, int, int]],
    prov: dict[str, Any],
    raw: dict[str, Any],
) -> list[Row]:
    rows = []
    points = [(int(c), float(t)) for c, t in prov["points"]]
    sqlite = backend == "sqlite"
    rates = []
    for label, lo, hi in wins:
        mine, floor = window_rate(points, lo, hi), window_rate(raw["points"], lo, hi)
        rates.append((mine, floor))
        rows.append(_rate_row(backend, f"batched products/s, {label}", mine, floor, sqlite))
    overall = total / (prov["end"] - points[0][1])
    note = (
        f"{raw['rows']['product_parents']:,} parent links; {len(prov['batches'])} batches; "
        f"floor: same rows and batches, raw driver"
    )
    row = _rate_row(
        backend,
        f"batched products/s, whole block of {_k(total)} incl. exit",
        overall,
        raw["rate"],
        sqlite,
    )
    row.note = note
    rows.append(row)
    (first, floor_first), (last, floor_last) = rates[0], rates[-1]
    if first and last and floor_first and floor_last:
        slow = (first / last - 1) * 100
        rows.append(
            Row(
                NAME,
                f"slowdown {wins[-1][0]} vs {wins[0][0]}",
                slow,
                "%",
                backend,
                baseline=(floor_first / floor_last - 1) * 100,
                baseline_label="raw floor",
                target=SLOWDOWN_TARGET,
                met=slow <= 20,
            )
        )
    return rows


def _rate_row(
    backend: str, measure: str, value: float | None, floor: float | None, sqlite: bool
) -> Row:
    met = None
    if sqlite and value is not None and floor:
        met = value >= 0.5 * floor and value >= 20_000
    return Row(
        NAME,
        measure,
        value,
        "products/s",
        backend,
        baseline=floor,
        baseline_label="raw driver",
        target=SQLITE_TARGET if sqlite else "",
        met=met,
    )


def _backend_rows(ctx: Context, backend: str) -> list[Row]:
    total, wins = windows(ctx, backend)
    sqlite = backend == "sqlite"
    n_durable = ctx.pick(300 if sqlite else 30, 5000 if sqlite else 2000)
    n_naive = ctx.pick(30, 3000)
    with scratch(ctx, backend, "register") as url:
        with phase(f"{backend}: batched, {total:,} products"):
            prov = _batched(ctx, url, total)
        with phase(f"{backend}: raw-driver floor"), scratch(ctx, backend, "register_raw") as dst:
            raw = raw_floor(backend, dst, url, prov["run"], prov["batches"])
        if raw["products"] != total:
            raise RuntimeError(f"{backend}: provstore stored {raw['products']} of {total}")
        with phase(f"{backend}: durable, {n_durable:,} products"):
            lat = durable(url, n_durable, ctx.seed)
    with phase(f"{backend}: naive ORM, {n_naive:,} products"):
        with scratch(ctx, backend, "register_naive") as naive_url:
            naive = naive_orm(naive_url, n_naive, ctx.seed)
    rows = _rate_rows(backend, total, wins, prov, raw)
    overall = total / (prov["end"] - prov["points"][0][1])
    rows.append(
        Row(
            NAME,
            "batched vs naive ORM, one commit per product",
            overall,
            "products/s",
            backend,
            baseline=naive["rate"],
            baseline_label=f"naive ORM, {n_naive}",
            note="naive: SQLAlchemy ORM defaults, add + commit per product",
        )
    )
    where = f"{n_durable} products into the store of {_k(total)}"
    if not sqlite:
        where += "; a tracker on a server opens a connection per transaction"
    for pct in (50, 99):
        value = percentile(lat, pct) * 1e3
        target, met = ("≤2 ms", value <= 2) if backend == "sqlite" and pct == 50 else ("", None)
        rows.append(
            Row(
                NAME,
                f"register+flush (durable) p{pct}",
                value,
                "ms",
                backend,
                baseline=percentile(naive["latencies"], pct) * 1e3,
                baseline_label="naive ORM commit",
                target=target,
                met=met,
                note=where if pct == 50 else "",
            )
        )
    return rows


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    for backend in ctx.backends:
        rows.extend(_backend_rows(ctx, backend))
    return rows
