"""Storage: bytes per product, per run and per environment; deduplication over many runs.

Per backend, in one fresh process per backend (the backends at once: only bytes are measured),
each measurement in its own empty store:

1. **Bytes per product**: the store's size before and after one ``tracker()`` block that adds
   N products (1-3 parents each, as in ``b_register``), beside the encoded size of the product
   objects themselves.
2. **Deduplication**: R runs (``tracker()`` blocks) in one environment; the process sees 300
   extra distributions (a typical scientific environment), so the library set is a realistic
   size.  The environment, library set and variables objects must stay at one each while the
   runs grow.  The naive baseline is what the seed tool did: a full copy of the environment
   variables and the library list with every run, estimated from the actual encoded sizes of
   the ``libraryset`` and ``variables`` objects times the runs.  Then K new environments (one
   library version and one variable changed each, with a run each) give bytes per environment.

Sizes: SQLite, the file plus its ``-wal`` after ``PRAGMA wal_checkpoint(TRUNCATE)``;
PostgreSQL, ``pg_total_relation_size`` summed over provstore's tables after ``VACUUM ANALYZE``;
MariaDB, ``data_length + index_length`` from ``information_schema`` after ``ANALYZE TABLE``
(InnoDB counts whole 16 KiB pages, so small deltas are coarse there).
"""

from __future__ import annotations

import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from benchmarks.b_register import parent_plan
from benchmarks.harness import (
    Context,
    Row,
    child_env,
    make_fake_dists,
    phase,
    run_child,
    sqlite_path,
)

DESCRIPTION = "bytes per product, run and environment; dedup of environments over many runs"
NAME = "storage"
FAKE_DISTS = 300
KINDS = ("environment", "libraryset", "variables", "run", "runend", "product")

# Everything for one backend, in a fresh interpreter that sees the fake distributions:
# argv = products URL, runs URL, products, runs, variants, seed.  Prints measure()'s result.
_CHILD = r"""
import json, sys
from benchmarks.b_storage import measure

urls, numbers = sys.argv[1:3], [int(a) for a in sys.argv[3:]]
print(json.dumps(measure(*urls, *numbers)))
"""


# -- measuring a store ---------------------------------------------------------------------------


def store_size(url: str) -> tuple[int, dict[str, int]]:
    """Bytes the store takes on its backend, in all and per table (indexes included)."""
    from sqlalchemy.engine import make_url

    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite_size(sqlite_path(url))
    return _server_size(url, backend == "postgresql")


def _sqlite_size(path: str) -> tuple[int, dict[str, int]]:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        per_table = conn.execute(
            "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s "
            "JOIN sqlite_master m ON m.name = s.name GROUP BY m.tbl_name"
        ).fetchall()
    finally:
        conn.close()
    total = sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    return total, {name: int(size) for name, size in per_table}


def _server_size(url: str, postgres: bool) -> tuple[int, dict[str, int]]:
    import sqlalchemy as sa

    from provstore.db import schema

    names = list(schema.metadata.tables)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for name in names:
                sql = f'VACUUM ANALYZE "{name}"' if postgres else f"ANALYZE TABLE `{name}`"
                conn.exec_driver_sql(sql).close()
            if postgres:
                query = (
                    "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                    "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
                )
            else:
                query = (
                    "SELECT table_name, data_length + index_length FROM information_schema.tables"
                    " WHERE table_schema = DATABASE()"
                )
            found = {str(n): int(s) for n, s in conn.exec_driver_sql(query)}
    finally:
        engine.dispose()
    per_table = {n: found[n] for n in names if n in found}
    return sum(per_table.values()), per_table


def objects_by_kind(url: str) -> dict[str, list[int]]:
    """``kind -> [count, encoded bytes]`` of the stored objects."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = (
                "SELECT kind, COUNT(*), SUM(size) FROM objects WHERE kind IS NOT NULL "
                "GROUP BY kind"
            )
            found = {str(k): [int(n), int(b)] for k, n, b in conn.exec_driver_sql(query)}
    finally:
        engine.dispose()
    return {kind: found.get(kind, [0, 0]) for kind in KINDS}


# -- bytes per product ---------------------------------------------------------------------------


def measure(products_url: str, runs_url: str, n: int, runs: int, variants: int, seed: int
            ) -> dict[str, Any]:  # fmt: skip
    """Both measurements on one backend (each in its own empty store)."""
    return {
        "products": _products_part(products_url, n, seed),
        "runs": _runs_part(runs_url, runs, variants),
    }


def _products_part(url: str, n: int, seed: int) -> dict[str, Any]:
    """Sizes before and after one tracker block adding ``n`` products."""
    from provstore import tracker

    plan = parent_plan(n, seed)
    with tracker(url, name="b_storage setup", git=False):
        pass
    before = store_size(url)
    with tracker(url, name="b_storage products", git=False) as t:
        digests: list[str] = []
        for i, parents in enumerate(plan):
            refs = [digests[j] for j in parents]
            digests.append(t.register_data_product(f"p{i}", "1", {"i": i}, parents=refs))
    after = store_size(url)
    edges = sum(len(p) for p in plan)
    return {"before": before, "after": after, "kinds": objects_by_kind(url), "edges": edges}


def _runs_part(url: str, runs: int, variants: int) -> dict[str, Any]:
    """Sizes with the schema only, after the first run, after all runs, after the variants."""
    from provstore import tracker
    from provstore.store import Store

    Store(url).close()
    sizes = [store_size(url)[0]]
    for i in range(runs):
        with tracker(url, name=f"b_storage {i}", git=False):
            pass
        if i == 0:
            sizes.append(store_size(url)[0])
    sizes.append(store_size(url)[0])
    kinds = objects_by_kind(url)
    add_environment_variants(url, variants)
    sizes.append(store_size(url)[0])
    return {"sizes": sizes, "kinds": kinds}


def _product_rows(backend: str, n: int, result: dict[str, Any]) -> list[Row]:
    (before, tables_before), (after, tables_after) = result["before"], result["after"]
    count, encoded = result["kinds"]["product"]
    if count != n:
        raise RuntimeError(f"{backend}: {count} products stored, not {n}")
    split = ", ".join(
        f"{name} {(tables_after[name] - tables_before.get(name, 0)) / n:.0f}"
        for name in ("objects", "products", "product_parents")
        if name in tables_after
    )
    note = f"B/product by table: {split}; {result['edges'] / n:.2f} parents/product"
    return [
        Row(NAME, f"bytes per product ({n:,} products)", (after - before) / n, "B", backend,
            baseline=encoded / n, baseline_label="encoded product object", note=note),
    ]  # fmt: skip


# -- deduplication over runs ---------------------------------------------------------------------


def add_environment_variants(url: str, count: int) -> None:
    """Store ``count`` new environments, each one library upgrade and one variable away from
    this process's, with a run and a run end each (what a tracker block would write)."""
    import dataclasses

    from provstore.capture.snapshot import capture_environment, capture_run
    from provstore.core.objects import Environment, LibrarySet, Run, RunEnd, Variables, seal
    from provstore.store import Store

    env = capture_environment()
    run = capture_run(env, git=False)
    libraryset, environment = env.libraryset.obj, env.environment.obj
    variables, base_run = run.variables.obj, run.run.obj
    assert isinstance(libraryset, LibrarySet) and isinstance(environment, Environment)
    assert isinstance(variables, Variables) and isinstance(base_run, Run)
    dists = list(libraryset.distributions)
    with Store(url) as store:
        for k in range(count):
            changed = list(dists)
            name, version = changed[k % len(changed)]
            changed[k % len(changed)] = (name, f"{version}.post{k + 1}")
            libs = seal(LibrarySet(tuple(changed)))
            new_env = seal(dataclasses.replace(environment, libraryset=libs.digest))
            new_vars = seal(
                Variables({**variables.variables, "BENCH_VARIANT": str(k)}, variables.redacted)
            )
            new_run = seal(
                dataclasses.replace(
                    base_run,
                    environment=new_env.digest,
                    variables=new_vars.digest,
                    started_ns=time.time_ns(),
                )
            )
            store.put([libs, new_env, new_vars, new_run])
            end = RunEnd(new_run.digest, "succeeded", time.time_ns(), None, None, ())
            store.put([seal(end)])


def _child(ctx: Context, backend: str, urls: list[str], numbers: list[int]) -> dict[str, Any]:
    env = child_env(ctx.work / f"storage-cache-{backend}", ctx.work / "storage-fake-site")
    with phase(f"{backend}: {numbers[0]:,} products, {numbers[1]:,} runs, {numbers[2]} envs"):
        result: dict[str, Any] = run_child(_CHILD, [*urls, *map(str, numbers)], env)
    return result


def _fast_connect(url: str) -> str:
    """``url`` with TLS off for PyMySQL on loopback: only bytes are measured here, and PyMySQL
    otherwise builds a new default SSL context (~60-150 ms) for every connection."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_driver_name() != "pymysql" or parsed.host not in ("127.0.0.1", "localhost"):
        return url
    fast = parsed.update_query_dict({"ssl_disabled": "1"})
    return fast.render_as_string(hide_password=False)


def _dedup_rows(backend: str, runs: int, variants: int, result: dict[str, Any]) -> list[Row]:
    empty, after_first, after_runs, after_variants = result["sizes"]
    kinds = {k: tuple(v) for k, v in result["kinds"].items()}
    libs, variables = kinds["libraryset"][1], kinds["variables"][1]
    total = after_runs - empty
    naive_total = total + (runs - 1) * (libs + variables)
    record = (kinds["run"][1] + kinds["runend"][1]) / max(1, kinds["run"][0])
    shared = kinds["environment"][1] + libs + variables
    per_env = (after_variants - after_runs) / variants
    steady = (per_env + libs + variables) / per_env
    sizes = f"encoded: libraryset {libs:,} B ({FAKE_DISTS}+ distributions), variables "
    sizes += f"{variables:,} B, environment {kinds['environment'][1]:,} B"
    rows = [
        Row(NAME, f"bytes per run ({runs:,} runs, one environment)", total / runs, "B", backend,
            baseline=naive_total / runs, baseline_label="naive: full copy per run",
            note=sizes),
        Row(NAME, f"saving vs naive copy per run ({runs:,} runs)", naive_total / total, "x",
            backend, note="naive = this store + (runs-1) x (libraryset + variables), encoded "
            f"bytes; a run with its own environment vs one more copy: {steady:.1f}x"),
        Row(NAME, "bytes per additional run (same environment)",
            (after_runs - after_first) / max(1, runs - 1), "B", backend, baseline=record,
            baseline_label="encoded run + run end"),
        Row(NAME, f"bytes per new environment (+ its run; {variants} variants)", per_env, "B",
            backend, baseline=shared + record, baseline_label="encoded env+libs+vars+run",
            note="each: one library version and one variable changed"),
    ]  # fmt: skip
    for kind in ("environment", "libraryset", "variables", "run"):
        want = runs if kind == "run" else 1
        rows.append(
            Row(NAME, f"{kind} objects after {runs:,} runs", kinds[kind][0], "objects", backend,
                target=f"= {want:,}", met=kinds[kind][0] == want)
        )  # fmt: skip
    return rows


def run(ctx: Context) -> list[Row]:
    """Each backend in its own child process, all at once: only bytes are measured here."""
    n, runs, variants = ctx.pick(3_000, 100_000), ctx.pick(50, 1_000), ctx.pick(10, 200)
    make_fake_dists(ctx.work / "storage-fake-site", FAKE_DISTS)
    with ExitStack() as stack:
        urls = {
            backend: [
                _fast_connect(stack.enter_context(ctx.scratch(backend, name)))
                for name in ("storage", "storage_runs")
            ]
            for backend in ctx.backends
        }
        with ThreadPoolExecutor(max_workers=len(urls)) as pool:
            futures = {
                backend: pool.submit(_child, ctx, backend, pair, [n, runs, variants, ctx.seed])
                for backend, pair in urls.items()
            }
            results = {backend: future.result() for backend, future in futures.items()}
    rows: list[Row] = []
    for backend, result in results.items():
        rows.extend(_product_rows(backend, n, result["products"]))
        rows.extend(_dedup_rows(backend, runs, variants, result["runs"]))
    return rows
