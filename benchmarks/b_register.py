"""Product registration throughput: batched, beside a raw-driver floor and a naive ORM.

Per backend:

1. **Batched**: one ``tracker(url, git=False)`` block registers N products with 1-3 parents
   each (deterministic RNG, parents among earlier products), in a fresh process.  The rate is
   taken in windows as the store grows (the first 10k, around 100k, 1M and at 10M at full
   scale; the first 5k and the last 5k of 20k (SQLite) or 10k (servers) at small scale), and
   over the whole block including its exit.  ``PROVSTORE_BENCH_REGISTER_PRODUCTS`` sets N at
   full scale (default 10,000,000: about 10 GB of disk on SQLite, 15-30 minutes per layer).
   Windows are measured between the ends of provstore's batches (when products become
   durable), the points nearest to each window's ends: a tracker writes a batch per half
   second, so a window is at least one batch wide.  The first window is also measured in
   more short blocks (each a new store, the same workload, its own floor; 6 at full scale,
   2 at small) and reported as the median over them and the big block: one pause of the
   machine moves a window of a few tenths of a second by a tenth or more.
2. **Raw-driver floor**: exactly the rows provstore wrote (``objects``, ``products``,
   ``product_parents`` of that run) are read back and inserted into a fresh database with the
   same DDL, in the same batches (one commit per provstore flush): ``sqlite3.executemany`` with
   provstore's pragmas, psycopg2 ``execute_values``, pymysql ``executemany``.  On SQLite and
   PostgreSQL the same rows go a second time into **schema 3's layout** (every table keyed by
   32-byte digests, as provstore stored them before schema 4): what the layout bought, in
   the same run.  At full scale each floor stops after ``FLOOR_BUDGET`` seconds of inserting
   (``PROVSTORE_BENCH_FLOOR_SECONDS``; its later windows are then reported as not reached):
   past a few million products both are bound by the pages their random-keyed indexes
   rewrite per commit, as provstore is, and would double the run.
3. **Naive**: a small SQLAlchemy ORM declarative model with the same columns, one
   ``session.commit()`` per product (its object, product and parent rows), for a few thousand
   products: products/s and per-product latency.

4. **Lookups at the end**: ``Store.get(full hex)`` of random products of the grown store,
   p50 and p99, beside the raw driver's ``SELECT data FROM objects WHERE digest = ?``.
5. **Durable one at a time**: ``register_data_product(...)`` then ``t.flush()`` each time, into
   the store grown by (1): p50/p99 latency.

(2) and (3) are in :mod:`benchmarks._register_baselines`.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from benchmarks._register_baselines import naive_orm, raw_floor, run_id
from benchmarks.harness import Context, Row, child_env, median, percentile, phase, run_child

DESCRIPTION = "products/s in one tracker block (windows as the store grows) vs raw driver, ORM"
NAME = "register"
SQLITE_TARGET = "≥50% of raw floor, ≥20,000/s"
SLOWDOWN_TARGET = "≤20% slower"
FULL_PRODUCTS = 10_000_000
FLOOR_BUDGET = 1800.0  # seconds of inserting per raw floor at full scale (then it stops)
OLD_FLOOR_BACKENDS = ("sqlite", "postgresql")
LOOKUPS = 2000
FIRST_BLOCKS = (2, 6)  # more short blocks whose first window is measured (small, full)

# The batched run, in a fresh interpreter: argv = url, n, seed.  Prints the timeline
# ``points`` (products written, seconds) at each batch's commit, whether the tracker wrote it
# or its writer process did (provstore's batches: a rate between two points is a rate of
# products made durable), the products in each batch and the run's digest.
_CHILD_BATCHED = r"""
import json, sys, time
from benchmarks.b_register import parent_plan
from provstore import tracker
from provstore.db import sqlite_pipe

url, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
plan = parent_plan(n, seed)
pipes, written = [], []  # a writer process's; the tracker's own (products, when durable)
real_start = sqlite_pipe.start
sqlite_pipe.start = lambda path: pipes.append(real_start(path)) or pipes[-1]
clock = time.monotonic  # the writer process's clock too (CLOCK_MONOTONIC)
t = tracker(url, name="b_register", git=False)
t.__enter__()
real_write = t._write

def counting_write(items):
    real_write(items)
    written.append((sum(1 for item in items if item.kind == "product"), clock()))

t._write = counting_write
register, digests = t.register_data_product, []
began = clock()
append = digests.append
try:
    for i, parents in enumerate(plan):
        append(register(f"p{i}", "1", {"i": i}, parents=[digests[j] for j in parents]))
except BaseException:
    t.__exit__(*sys.exc_info())
    raise
looped = clock()
t.__exit__(None, None, None)
done = clock()
durable = sorted(written + [c for pipe in pipes if pipe is not None for c in pipe.commits],
                 key=lambda c: c[1])
points, total = [(0, began)], 0
for count, when in durable:
    if count:
        total += count
        points.append((total, when))
print(json.dumps({"points": points, "loop_end": looped, "end": done, "run": t.run,
                  "batches": [count for count, _ in durable if count],
                  "piped": bool(pipes and pipes[0] is not None)}))
"""


# -- the workload (b_storage's too) ----------------------------------------------------------


def parent_plan(n: int, seed: int) -> list[tuple[int, ...]]:
    """For each product, 1-3 distinct parents among the earlier ones (none for the first)."""
    rng = random.Random(seed)
    plan: list[tuple[int, ...]] = [()]
    for i in range(1, n):
        plan.append(tuple(rng.sample(range(i), min(i, rng.randint(1, 3)))))
    return plan[:n]


# -- windows -----------------------------------------------------------------------------------


def windows(
    ctx: Context, backend: str, total: int | None = None
) -> tuple[int, list[tuple[str, int, int]]]:
    """Total products and the (label, from, to) windows the rate is measured in.

    Small scale keeps the servers (slower per product) to 10k so the suite stays short.
    """
    if total is None:
        total = ctx.pick(20_000 if backend == "sqlite" else 10_000, _full_products())
    first = ctx.pick(5_000, 10_000)
    out = [(f"first {_k(first)}", 0, first)]
    sizes = [n for n in (100_000, 1_000_000, 10_000_000) if n < total] + [total]
    for size in ctx.pick((total,), sizes):
        half = max(first, size // 20)
        lo, hi = max(0, size - half), min(total, size + half)
        out.append((f"at {_k(size)} ({_k(lo)}-{_k(hi)})", lo, hi))
    return total, out


def _k(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n == 0:
        return "0"
    return f"{n // 1000}k" if n % 1000 == 0 or n >= 10_000 else f"{n:,}"


def window_rate(points: list[tuple[int, float]], lo: int, hi: int) -> float | None:
    """Products/s between the timeline points that bracket ``lo`` .. ``hi``.

    The last point at or before ``lo`` and the first at or after ``hi`` (the ends of the
    timeline when there is none), so a window narrower than a batch spans that batch.
    """
    return span_rate(points, lo, hi)[0]


def span_rate(points: list[tuple[int, float]], lo: int, hi: int) -> tuple[float | None, int, int]:
    """:func:`window_rate`, and the products at the points it measured between."""
    a = max((p for p in points if p[0] <= lo), default=points[0], key=lambda p: p[0])
    b = min((p for p in points if p[0] >= hi), default=points[-1], key=lambda p: p[0])
    if b[0] <= a[0] or b[1] <= a[1]:
        return None, a[0], b[0]
    return (b[0] - a[0]) / (b[1] - a[1]), a[0], b[0]


# -- lookups in the grown store ----------------------------------------------------------------


def lookups(backend: str, url: str, run_hex: str, n: int, seed: int) -> dict[str, list[float]]:
    """Seconds per ``Store.get(full hex)`` and per raw-driver read of random products' bytes.

    Interleaved (one of each per product) so a noisy moment hits both; every answer checked.
    """
    import sqlalchemy as sa

    from benchmarks.b_lookup import _raw_getter
    from provstore.store import Store

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            run = run_id(conn, run_hex)
            lo, hi = conn.execute(
                sa.text("SELECT min(id), max(id) FROM products WHERE run = :r"), {"r": run}
            ).one()
            rng = random.Random(seed)
            picked = sorted({rng.randint(lo, hi) for _ in range(n)})
            digests = [
                bytes(d)
                for (d,) in conn.execute(
                    sa.text("SELECT digest FROM objects WHERE id IN :ids").bindparams(
                        sa.bindparam("ids", expanding=True)
                    ),
                    {"ids": picked},
                )
            ]
    finally:
        engine.dispose()
    rng.shuffle(digests)
    raw_get, close = _raw_getter(backend, url)
    clock = time.perf_counter
    times: dict[str, list[float]] = {"get": [], "raw": []}
    try:
        with Store(url) as store:
            for digest in digests:
                t0 = clock()
                got = store.get(digest.hex())
                t1 = clock()
                data = raw_get(digest)
                t2 = clock()
                if got.digest != digest or data is None:
                    raise AssertionError("a lookup returned another object")
                times["get"].append(t1 - t0)
                times["raw"].append(t2 - t1)
    finally:
        close()
    return times


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


def first_blocks(ctx: Context, backend: str) -> list[tuple[float | None, float | None]]:
    """(provstore, floor) products/s over the first window of more short blocks, each new.

    The first window of a block is a few tenths of a second, so one pause of the machine
    moves its rate by a tenth or more; the median over several blocks measures the code.
    Each block is the batched phase's workload (same seed: the same first products and
    parents) in a new store, twice the window long, so that a batch ends after the window
    and before the block's exit; its rows are then replayed by the raw floor as in the
    big block.
    """
    _, wins = windows(ctx, backend)
    _, lo, hi = wins[0]
    out = []
    for _ in range(ctx.pick(*FIRST_BLOCKS)):
        with ctx.scratch(backend, "register_first") as url:
            prov = _batched(ctx, url, 2 * hi)
            with ctx.scratch(backend, "register_first_raw") as dst:
                raw = raw_floor(backend, dst, url, prov["run"], prov["batches"])
        points = [(int(c), float(t)) for c, t in prov["points"]]
        out.append((window_rate(points, lo, hi), window_rate(raw["points"], lo, hi)))
    return out


def _first_row(
    backend: str, label: str, pairs: list[tuple[float | None, float | None]], block: int
) -> Row | None:
    """The median first-window rate and floor over ``pairs`` (the big block's first, then
    those of :func:`first_blocks`, blocks of ``block`` products)."""
    whole = [(mine, floor) for mine, floor in pairs if mine and floor]
    if not whole:
        return None
    mine, floor = median([m for m, _ in whole]), median([f for _, f in whole])
    row = _rate_row(backend, f"batched products/s, {label}, median of {len(whole)} blocks",
                    mine, floor, backend == "sqlite")  # fmt: skip
    ratios = sorted(m / f for m, f in whole)
    ratio = median(ratios)
    if row.met is not None:
        row.met = ratio >= 0.5 and mine >= 20_000
    row.note = (f"median of the ratios to the floor {ratio:.2f} (each block: "
                f"{', '.join(f'{r:.2f}' for r in ratios)}); the big block's window and "
                f"{len(pairs) - 1} more blocks of {_k(block)} products, "
                "each in a new store")  # fmt: skip
    return row


def _batched(ctx: Context, url: str, total: int) -> dict[str, Any]:
    env = child_env(ctx.work / "register-cache")
    result: dict[str, Any] = run_child(_CHILD_BATCHED, [url, str(total), str(ctx.seed)], env)
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
        mine, a, b = span_rate(points, lo, hi)
        floor = window_rate(raw["points"], lo, hi) if hi <= raw["products"] else None
        rates.append((mine, floor, a, b))
        row = _rate_row(backend, f"batched products/s, {label}", mine, floor, sqlite)
        row.note = f"between batches ending at {_k(a)} and {_k(b)} products"
        if floor is None:
            row.note += f"; the floor stopped at its time limit, after {_k(raw['products'])}"
        rows.append(row)
    overall = total / (prov["end"] - points[0][1])
    note = f"{len(prov['batches'])} batches; floor: same rows and batches, raw driver"
    if not raw["complete"]:
        note += f" (its rate over the first {_k(raw['products'])}: it stopped at its time limit)"
    row = _rate_row(
        backend,
        f"batched products/s, whole block of {_k(total)} incl. exit",
        overall,
        raw["rate"],
        sqlite,
    )
    row.note = note
    rows.append(row)
    (first, floor_first, _, first_end), (last, floor_last, last_start, _) = rates[0], rates[-1]
    if first and last and floor_first and floor_last and last_start >= first_end:
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


def _old_rows(
    backend: str, wins: list[tuple[str, int, int]], new: dict[str, Any], old: dict[str, Any]
) -> list[Row]:
    """Schema 3's floor per window, beside schema 4's (both raw driver, same rows, batches)."""
    rows, rates, spans = [], [], []
    reached = old["products"]
    for label, lo, hi in wins:
        mine, a, b = span_rate(old["points"], lo, hi)
        if hi > reached:
            mine = None
        rates.append(mine)
        spans.append((a, b))
        note = "" if mine is not None else f"not reached: stopped after {_k(reached)} products"
        rows.append(
            Row(
                NAME,
                f"raw floor, schema 3 layout (digest keys), products/s, {label}",
                mine,
                "products/s",
                backend,
                baseline=window_rate(new["points"], lo, hi),
                baseline_label="raw floor, schema 4 layout",
                note=note,
            )
        )
    first, last = rates[0], rates[-1]
    if first and last and spans[-1][0] >= spans[0][1]:
        new_first = window_rate(new["points"], wins[0][1], wins[0][2])
        new_last = window_rate(new["points"], wins[-1][1], wins[-1][2])
        rows.append(
            Row(
                NAME,
                f"raw floor slowdown, schema 3 layout, {wins[-1][0]} vs {wins[0][0]}",
                (first / last - 1) * 100,
                "%",
                backend,
                baseline=(new_first / new_last - 1) * 100 if new_first and new_last else None,
                baseline_label="raw floor, schema 4 layout",
            )
        )
    return rows


def _lookup_rows(backend: str, total: int, times: dict[str, list[float]]) -> list[Row]:
    rows = []
    for pct in (50, 99):
        value = percentile(times["get"], pct) * 1e3
        rows.append(
            Row(
                NAME,
                f"Store.get(full hex) p{pct} in the store of {_k(total)}",
                value,
                "ms",
                backend,
                baseline=percentile(times["raw"], pct) * 1e3,
                baseline_label="raw driver SELECT data by digest",
                target="≤1 ms" if pct == 50 else "",
                met=value <= 1 if pct == 50 else None,
                note=f"{len(times['get']):,} random products" if pct == 50 else "",
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
    total, _ = windows(ctx, backend)
    with ctx.scratch(backend, "register") as url:
        with phase(f"{backend}: batched, {total:,} products"):
            prov = _batched(ctx, url, total)
        (ctx.work / f"register-{backend}-batched.json").write_text(json.dumps(prov))
        return after_batched(ctx, backend, url, prov)


def after_batched(ctx: Context, backend: str, url: str, prov: dict[str, Any]) -> list[Row]:
    """Every phase after the batched one, on the store it grew at ``url``, and all the rows.

    Separate so that a batched phase saved by an earlier run (its JSON is left in the work
    directory as ``register-<backend>-batched.json``) can be finished without repeating it.
    """
    total, wins = windows(ctx, backend)
    sqlite = backend == "sqlite"
    n_durable = ctx.pick(300 if sqlite else 30, 5000 if sqlite else 2000)
    n_naive = ctx.pick(30, 3000)
    budget = ctx.pick(None, float(os.environ.get("PROVSTORE_BENCH_FLOOR_SECONDS", FLOOR_BUDGET)))
    with phase(f"{backend}: raw-driver floor"), ctx.scratch(backend, "register_raw") as dst:
        raw = raw_floor(backend, dst, url, prov["run"], prov["batches"], False, budget)
    if raw["complete"] and raw["products"] != total:
        raise RuntimeError(f"{backend}: provstore stored {raw['products']} of {total}")
    old = None
    if backend in OLD_FLOOR_BACKENDS:
        with phase(f"{backend}: raw-driver floor, schema 3 layout"):
            with ctx.scratch(backend, "register_old") as dst:
                old = raw_floor(backend, dst, url, prov["run"], prov["batches"], True, budget)
    with phase(f"{backend}: first window of {ctx.pick(*FIRST_BLOCKS)} more short blocks"):
        firsts = first_blocks(ctx, backend)
    n_lookups = ctx.pick(200, LOOKUPS)
    with phase(f"{backend}: {n_lookups:,} lookups"):
        looked = lookups(backend, url, prov["run"], n_lookups, ctx.seed)
    with phase(f"{backend}: durable, {n_durable:,} products"):
        lat = durable(url, n_durable, ctx.seed)
    with phase(f"{backend}: naive ORM, {n_naive:,} products"):
        with ctx.scratch(backend, "register_naive") as naive_url:
            naive = naive_orm(naive_url, parent_plan(n_naive, ctx.seed))
    rows = _rate_rows(backend, total, wins, prov, raw)
    big = (window_rate(prov["points"], *wins[0][1:]), window_rate(raw["points"], *wins[0][1:]))
    first = _first_row(backend, wins[0][0], [big, *firsts], 2 * wins[0][2])
    if first is not None:
        rows.insert(1, first)
    if old is not None:
        rows.extend(_old_rows(backend, wins, raw, old))
    rows.extend(_lookup_rows(backend, total, looked))
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


def timeline_rows(backend: str, prov: dict[str, Any], total: int) -> list[Row]:
    """The batched phase's own rows (no floor): its rate per window, whole block, slowdown.

    For a saved batched phase (``register-<backend>-batched.json``) whose floors were not run.
    """
    _, wins = windows(Context("full", {}, Path(".")), backend, total)
    points = [(int(c), float(t)) for c, t in prov["points"]]
    rows, rates = [], []
    for label, lo, hi in wins:
        rate, a, b = span_rate(points, lo, hi)
        rates.append((rate, a, b))
        rows.append(Row(NAME, f"batched products/s, {label}", rate, "products/s", backend,
                        note=f"between batches ending at {_k(a)} and {_k(b)} products; "
                             "no floor in this run"))  # fmt: skip
    overall = total / (prov["end"] - points[0][1])
    rows.append(Row(NAME, f"batched products/s, whole block of {_k(total)} incl. exit", overall,
                    "products/s", backend, note=f"{len(prov['batches'])} batches"))  # fmt: skip
    (first, _, first_end), (last, last_start, _) = rates[0], rates[-1]
    if first and last and last_start >= first_end:
        rows.append(Row(NAME, f"slowdown {wins[-1][0]} vs {wins[0][0]}", (first / last - 1) * 100,
                        "%", backend, target=SLOWDOWN_TARGET,
                        met=(first / last - 1) * 100 <= 20))  # fmt: skip
    return rows


def _full_products() -> int:
    return int(os.environ.get("PROVSTORE_BENCH_REGISTER_PRODUCTS", FULL_PRODUCTS))


if __name__ == "__main__":  # python -m benchmarks.b_register BATCHED.json BACKEND OUT.json
    import sys

    from benchmarks.report import write_json

    saved = json.loads(Path(sys.argv[1]).read_text())
    n = sum(saved["batches"])
    write_json(Path(sys.argv[3]), "full", timeline_rows(sys.argv[2], saved, n), [], 0.0)
