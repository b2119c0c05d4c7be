"""Point lookups in a big store: get by digest and prefix, by name, environment match, lineage.

On each backend a store of 1M products (small: 10k; :mod:`benchmarks._bigstore`) is read with
random keys: ``Store.get(full hex)`` (a verified read), ``Store.get(12-char prefix)``,
``Store.find_products(name=...)`` (four products share a name), ``Store.match_environment``
and ``Store.lineage(product, depth=1)``.  Reported: p50 and p99 in ms.

Baselines in the same run, same keys distribution: the raw driver fetching the object's bytes
by digest on a persistent connection with a parameterised (PostgreSQL: prepared) statement,
and a naive ORM ``session.get(Model, digest)`` on a declarative model mapped to ``objects``.
Two more figures say where a lookup's time goes: the same select and verification with the
statement built once, (a) through the pool per call (checkout; on the servers
``pool_pre_ping`` makes that a round trip; BEGIN; reset on return), which is how Store read
before it held a read connection on servers (SQLite still reads this way), and (b) on one
connection held open, which is how Store reads on PostgreSQL and MariaDB now.

The measures are interleaved in chunks so a noisy moment on the shared machine hits them all.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from benchmarks._bigstore import BigStore, bigstore
from benchmarks.harness import Context, Row, percentile, raw_connect

DESCRIPTION = "point lookups at 1M products: get/prefix/name/environment/lineage p50, p99"
NAME = "lookup"
TARGET_MS = 1.0
CHUNK = 25
MIN_SAMPLES = 100

Measure = Callable[[int], None]  # one lookup of the product at an index, its answer checked


def _orm_getter(url: str) -> tuple[Callable[[bytes], Any], Callable[[], None]]:
    """A naive ORM: declarative model on ``objects``, ``session.get`` per lookup."""
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, Session

    class Base(DeclarativeBase):
        pass

    class StoredObject(Base):
        __tablename__ = "objects"
        digest = sa.Column(sa.LargeBinary, primary_key=True)
        kind = sa.Column(sa.String(16))
        size = sa.Column(sa.Integer)
        data = sa.Column(sa.LargeBinary)

    engine = sa.create_engine(url)
    session = Session(engine)

    def get(digest: bytes) -> Any:
        obj = session.get(StoredObject, digest)
        data = obj.data if obj is not None else None
        session.expunge_all()  # every lookup goes to the database, not the identity map
        return data

    def close() -> None:
        session.close()
        engine.dispose()

    return get, close


def _raw_getter(backend: str, url: str) -> tuple[Callable[[bytes], Any], Callable[[], None]]:
    raw = raw_connect(backend, url)
    cursor = raw.conn.cursor()
    if backend == "postgresql":
        cursor.execute("PREPARE bench_get(bytea) AS SELECT data FROM objects WHERE digest = $1")
        sql = "EXECUTE bench_get(%s)"
    else:
        sql = f"SELECT data FROM objects WHERE digest = {raw.mark}"

    def get(digest: bytes) -> Any:
        cursor.execute(sql, (digest,))
        row = cursor.fetchone()
        return None if row is None else row[0]

    def close() -> None:
        cursor.close()
        raw.close()

    return get, close


def _prebuilt_getters(store: Any) -> tuple[Callable[[bytes], Any], Callable[[bytes], Any],
                                           Callable[[], None]]:  # fmt: skip
    """Store.get's select and verification with a statement built once: per call through the
    pool (checkout, BEGIN, reset on return, as Store does), and on one connection held open."""
    from sqlalchemy import bindparam, select

    from provstore.core.objects import load
    from provstore.db import schema

    table = schema.objects
    query = select(table.c.data).where(table.c.digest == bindparam("d"))
    engine = store.engine
    held = engine.connect()

    def pooled(digest: bytes) -> Any:
        with engine.connect() as conn:
            data = conn.execute(query, {"d": digest}).scalar()
        return load(digest, bytes(data))

    def kept(digest: bytes) -> Any:
        return load(digest, bytes(held.execute(query, {"d": digest}).scalar()))

    return pooled, kept, held.close


def _store_measures(store: Any, big: BigStore, dag: list[bytes]) -> dict[str, Measure]:
    """The Store calls measured, each checking its answer, by product index."""
    from provstore.core.objects import seal

    names, parents, env = big.plan.dag_names, big.plan.dag_parents, big.env
    env_hex = seal(env).hex

    def get_full(i: int) -> None:
        digest = dag[i]
        if store.get(digest.hex()).digest != digest:
            raise AssertionError("get returned another object")

    def get_prefix(i: int) -> None:
        digest = dag[i]
        if store.get(digest.hex()[:12]).digest != digest:
            raise AssertionError("prefix get returned another object")

    def find_name(i: int) -> None:
        found = store.find_products(name=names[i])
        if dag[i] not in {f.digest for f in found}:
            raise AssertionError("find_products missed a product")

    def match_env(_i: int) -> None:
        if store.match_environment(env) != env_hex:
            raise AssertionError("match_environment missed the stored environment")

    def lineage1(i: int) -> None:
        got = store.lineage(dag[i].hex(), depth=1)
        if len(got.depths) != 1 + len(parents[i]):
            raise AssertionError("lineage(depth=1) returned the wrong nodes")

    return {"get_full": get_full, "get_prefix": get_prefix, "find_name": find_name,
            "match_env": match_env, "lineage1": lineage1,
            **_listing_measures(store, names)}  # fmt: skip


def _listing_measures(store: Any, names: list[str]) -> dict[str, Measure]:
    """``provstore products --name GLOB --limit 50``: the library call behind it, by pattern."""
    from provstore.db.listing import ProductFilter

    def page(pattern: str, expect: bool) -> None:
        rows = store.products(where=ProductFilter(name=pattern), limit=50)
        if bool(rows) != expect:
            raise AssertionError(f"products(name={pattern!r}) answered {len(rows)} rows")

    def prefix(i: int) -> None:  # 'dataset/part-00123*': 100 names, 400 products
        page(names[i][: len("dataset/part-") + 5] + "*", True)

    return {
        "products_prefix": prefix,
        "products_none": lambda _i: page("x*", False),
        "products_all": lambda _i: page("*", True),
    }


def _measure(big: BigStore, lookups: int, budget: float, seed: int) -> dict[str, list[float]]:
    from provstore.store import Store

    dag = big.dag
    store = Store(big.url)
    raw_get, raw_close = _raw_getter(big.backend, big.url)
    orm_get, orm_close = _orm_getter(big.url)
    pooled_get, held_get, held_close = _prebuilt_getters(store)

    def raw(i: int) -> None:
        if raw_get(dag[i]) is None:
            raise AssertionError("raw lookup found nothing")

    def orm(i: int) -> None:
        if orm_get(dag[i]) is None:
            raise AssertionError("ORM lookup found nothing")

    def pooled(i: int) -> None:
        pooled_get(dag[i])

    def held(i: int) -> None:
        held_get(dag[i])

    try:
        measures = {**_store_measures(store, big, dag), "raw": raw, "orm": orm,
                    "pooled": pooled, "held": held}  # fmt: skip
        return _sample(measures, len(dag), lookups, budget, random.Random(seed))
    finally:
        raw_close()
        orm_close()
        held_close()
        store.close()


def _sample(measures: dict[str, Measure], n: int, lookups: int, budget: float,
            rng: random.Random) -> dict[str, list[float]]:  # fmt: skip
    """Milliseconds per call of every measure, on random keys, interleaved in chunks."""
    plan = {name: [rng.randrange(n) for _ in range(lookups)] for name in measures}
    for name, func in measures.items():  # warm-up: connections, compiled statements
        for i in plan[name][:5]:
            func(i)
    times: dict[str, list[float]] = {name: [] for name in measures}
    spent = dict.fromkeys(measures, 0.0)
    clock = time.perf_counter
    for start in range(0, lookups, CHUNK):
        for name, func in measures.items():
            if spent[name] > budget and len(times[name]) >= MIN_SAMPLES:
                continue  # a slow measure stops early (the row says how many it took)
            out = times[name]
            for i in plan[name][start : start + CHUNK]:
                t0 = clock()
                func(i)
                out.append((clock() - t0) * 1e3)
            spent[name] += sum(out[-CHUNK:]) / 1e3
    return times


_LABELS = {
    "get_full": "Store.get(full hex)",
    "get_prefix": "Store.get(12-char prefix)",
    "find_name": "Store.find_products(name=...)",
    "match_env": "Store.match_environment(env)",
    "lineage1": "Store.lineage(product, depth=1)",
    "products_prefix": "Store.products(name='dataset/part-NNNNN*', limit=50)",
    "products_none": "Store.products(name='x*', limit=50)",
    "products_all": "Store.products(name='*', limit=50)",
}
TARGETS_MS = {"products_prefix": 50.0, "products_none": 50.0, "products_all": 50.0}
_DRIVERS = {"sqlite": "sqlite3", "postgresql": "psycopg2 PREPARE", "mariadb": "pymysql"}


def run(ctx: Context) -> list[Row]:
    size = ctx.pick(10_000, 1_000_000)
    lookups = ctx.pick(200, 2_000)
    budget = ctx.pick(0.15, 60.0)  # seconds per measure per backend, then it stops sampling
    rows: list[Row] = []
    for backend in ctx.backends:
        big = bigstore(ctx, backend, size)
        times = _measure(big, lookups, budget, ctx.seed)
        p50 = {k: percentile(v, 50) for k, v in times.items()}
        p99 = {k: percentile(v, 99) for k, v in times.items()}
        raw_label = f"raw {_DRIVERS[backend]}"
        where = f"{len(big.dag):,} products"
        for key, label in _LABELS.items():
            note = f"{where}, {len(times[key])} random lookups; ORM p50 {p50['orm']:.3f} ms"
            target = TARGETS_MS.get(key, TARGET_MS)
            rows.append(Row(NAME, f"{label} p50", p50[key], "ms", backend, p50["raw"], raw_label,
                            f"<= {target:g} ms p50", p50[key] <= target, note))  # fmt: skip
            rows.append(Row(NAME, f"{label} p99", p99[key], "ms", backend, p99["raw"],
                            f"{raw_label} p99"))  # fmt: skip
        rows.append(Row(NAME, "baseline: raw driver point lookup p50", p50["raw"], "ms", backend,
                        note=f"{raw_label}, persistent connection; "
                             f"p99 {p99['raw']:.3f} ms"))  # fmt: skip
        rows.append(Row(NAME, "baseline: naive ORM session.get p50", p50["orm"], "ms", backend,
                        p50["raw"], raw_label, note=f"p99 {p99['orm']:.3f} ms"))  # fmt: skip
        get = p50["get_full"]
        for key, label, note in _where_time_goes(backend, get, p50["pooled"], p50["held"]):
            rows.append(Row(NAME, label, p50[key], "ms", backend, get, "Store.get(full hex) p50",
                            note=note))  # fmt: skip
    return rows


def _where_time_goes(
    backend: str, get: float, pooled: float, held: float
) -> list[tuple[str, str, str]]:
    """(key, measure, note) of the two rows that split a lookup's time."""
    way = "pool checkout per call" if backend == "sqlite" else "a held autocommit connection"
    checkout = pooled - held
    return [
        ("pooled", "get's query prebuilt, pool checkout per call, p50",
         f"checkout + BEGIN + reset cost ~{checkout:.3f} ms per call over a held connection; "
         f"Store reads on {backend} through {way}"),
        ("held", "get's query prebuilt, connection held, p50",
         f"Store.get spends ~{get - held:.3f} ms more ({(get - held) / get:.0%} of a get): "
         "the reference parsing, the call and, where it reads through the pool, the checkout"),
    ]  # fmt: skip
