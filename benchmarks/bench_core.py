"""Core provstore benchmarks: environment capture, tracker entry, products/s beside raw sqlite3.

Usage::

    python benchmarks/bench_core.py [--products N] [--dists N] [--out FILE.json] [--url URL]
                                    [--repeat N] [--profile]

Prints a table and writes JSON (default ``benchmarks/results/bench_core.json``).  Timings are
reported, never asserted: the machine is shared and noisy, so compare ratios taken in one run.

1. Environment capture with ``--dists`` fake distributions prepended to ``sys.path``
   (``PYTHONPATH``), each measurement in a fresh process: cold (empty cache dir), warm
   (cache present), ``tracker()`` entry/exit on a SQLite store that already holds this
   environment, and the import time of ``provstore.tracking.tracker`` beside ``sqlalchemy``.
2. Products/s in one ``tracker()`` block on a SQLite file: ``--products`` products with 1-2
   parents among earlier ones, timed from the first registration to the end of ``__exit__``.
3. The raw sqlite3 floor for exactly the rows provstore wrote in that run, inserted with plain
   ``sqlite3`` (same DDL, WAL, synchronous=NORMAL, ``executemany`` per table, batches of
   ``provstore.tracking.tracker.FLUSH_EVERY`` products, keys sorted, one commit per batch).
4. With ``--url``, products/s against that (e.g. PostgreSQL) URL as well.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "bench_core.json"
SEED = 20261123

# --------------------------------------------------------------------------------------------
# fake distributions
# --------------------------------------------------------------------------------------------

_BODY_PARAGRAPH = (
    "This package provides a small, well tested toolkit for reading, transforming and writing\n"
    "tabular scientific data. It ships readers for CSV, Parquet and HDF5, a lazy expression\n"
    "engine, and helpers to attach provenance to every intermediate result.\n\n"
    "Installation\n------------\n\n    pip install {name}\n\n"
    "Usage\n-----\n\n    import {name}\n    table = {name}.read('input.csv')\n"
    "    result = table.filter(lambda row: row['value'] > 0).aggregate('mean')\n\n"
)


def _metadata_text(index: int) -> str:
    name = f"pkg{index:03d}"
    headers = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        "Version: 1.0",
        f"Summary: Synthetic distribution number {index} for the provstore benchmark",
        f"Home-page: https://example.org/{name}",
        "Author: Benchmark Author",
        "Author-email: bench@example.org",
        "License: MIT",
        "Classifier: Development Status :: 5 - Production/Stable",
        "Classifier: Intended Audience :: Science/Research",
        "Classifier: License :: OSI Approved :: MIT License",
        "Classifier: Programming Language :: Python :: 3",
        "Classifier: Programming Language :: Python :: 3.11",
        "Classifier: Topic :: Scientific/Engineering",
        "Requires-Python: >=3.9",
        "Requires-Dist: numpy (>=1.22)",
        "Requires-Dist: packaging",
        "Requires-Dist: pytest ; extra == 'test'",
        "Provides-Extra: test",
        "Description-Content-Type: text/x-rst",
    ]
    body = _BODY_PARAGRAPH.format(name=name)
    text = "\n".join(headers) + "\n\n"
    while len(text) < 2300:
        text += body
    return text


def make_fake_dists(directory: Path, count: int) -> None:
    """``count`` ``pkgNNN-1.0.dist-info`` directories with a ~2 KB METADATA each."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        info = directory / f"pkg{index:03d}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(_metadata_text(index), encoding="utf-8")
        (info / "INSTALLER").write_text("pip\n", encoding="utf-8")
    # Entries modified in the last seconds are scanned but not cached ("racy" mtimes); an
    # installed site-packages is older than that, so age the directory like one.
    old = time.time() - 3600
    os.utime(directory, (old, old))


# --------------------------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------------------------

_CHILD_CAPTURE = r"""
import json, sys, time
from provstore.capture import dists
from provstore.capture.snapshot import capture_environment
if sys.argv[1] == "dists":  # only the distribution scan / cache read
    t0 = time.perf_counter()
    n = len(dists.distributions())
else:
    t0 = time.perf_counter()
    n = len(capture_environment().libraryset.obj.distributions)
t1 = time.perf_counter()
print(json.dumps({"ms": (t1 - t0) * 1e3, "dists": n}))
"""

_CHILD_ENTRY = r"""
import json, sys, time
import provstore.tracking.tracker
from provstore import tracker
url, git = sys.argv[1], sys.argv[2] == "1"
t0 = time.perf_counter()
t = tracker(url=url, git=git)
t.__enter__()
t1 = time.perf_counter()
t.__exit__(None, None, None)
t2 = time.perf_counter()
print(json.dumps({"enter_ms": (t1 - t0) * 1e3, "exit_ms": (t2 - t1) * 1e3}))
"""

# The steps of Tracker.__enter__, timed one by one (a separate process from the one above).
_CHILD_ENTRY_STEPS = r"""
import json, sys, time
import provstore.tracking.tracker
from provstore.config import resolve
from provstore.capture.snapshot import capture_environment, capture_run
from provstore.store import Store
url = sys.argv[1]
p = time.perf_counter
t0 = p(); settings = resolve(url)
t1 = p(); env = capture_environment(settings)
t2 = p(); run = capture_run(env, settings, git=False)
t3 = p(); store = Store(settings.url)
t4 = p(); store.put([env.libraryset, env.environment, run.variables, run.run])
t5 = p(); store.close()
ms = lambda a, b: (b - a) * 1e3
print(json.dumps({"resolve": ms(t0, t1), "capture_environment": ms(t1, t2),
                  "capture_run": ms(t2, t3), "Store()": ms(t3, t4), "put": ms(t4, t5)}))
"""


def _child_env(dists_dir: Path | None, cache_dir: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVSTORE_")}
    if dists_dir is not None:
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(dists_dir) + (os.pathsep + old if old else "")
    env["XDG_CACHE_HOME"] = str(cache_dir)
    env["PROVSTORE_CACHE_DIR"] = str(cache_dir / "provstore")
    env["XDG_DATA_HOME"] = str(data_dir)
    return env


def _run_child(code: str, args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _wall(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1e3


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": [round(v, 3) for v in values],
    }


def bench_capture(work: Path, n_dists: int, repeat: int) -> dict[str, Any]:
    dists_dir = work / "fake-site"
    make_fake_dists(dists_dir, n_dists)
    cwd = work / "cwd"  # not inside a git work tree, no pyproject.toml
    cwd.mkdir()
    # sys.path[0] of `python -c` is the working directory: age it as well, or provstore sees
    # a just-modified path entry and (rightly) declines to cache the scan.
    old = time.time() - 3600
    os.utime(cwd, (old, old))
    data_dir = work / "data"
    out: dict[str, Any] = {}

    seen: set[int] = set()
    for what in ("full", "dists"):
        # cold: a new, empty cache dir for every process
        cold = []
        for i in range(repeat):
            cache = work / f"cache-cold-{what}-{i}"
            env = _child_env(dists_dir, cache, data_dir)
            result = _run_child(_CHILD_CAPTURE, [what], env, cwd)
            cold.append(result["ms"])
            seen.add(result["dists"])
            if not any((cache / "provstore").glob("dists-*")):
                out.setdefault("warnings", []).append("cold capture did not write its cache file")
        # warm: one shared cache dir, primed by a first process
        env = _child_env(dists_dir, work / f"cache-warm-{what}", data_dir)
        _run_child(_CHILD_CAPTURE, [what], env, cwd)
        warm = [_run_child(_CHILD_CAPTURE, [what], env, cwd)["ms"] for _ in range(repeat)]
        suffix = "" if what == "full" else "_distributions_only"
        out[f"cold{suffix}_ms"] = _summary(cold)
        out[f"warm{suffix}_ms"] = _summary(warm)
    out["distributions_seen"] = sorted(seen)

    # tracker() entry/exit on a SQLite store that already holds this environment
    env = _child_env(dists_dir, work / "cache-warm-full", data_dir)
    url = f"sqlite:///{work / 'entry' / 'provstore.db'}"
    _run_child(_CHILD_ENTRY, [url, "1"], env, cwd)  # warm-up: cache + environment stored
    runs = [_run_child(_CHILD_ENTRY, [url, "1"], env, cwd) for _ in range(repeat)]
    out["entry_ms"] = _summary([r["enter_ms"] for r in runs])
    out["exit_ms"] = _summary([r["exit_ms"] for r in runs])
    steps = [_run_child(_CHILD_ENTRY_STEPS, [url], env, cwd) for _ in range(repeat)]
    out["entry_steps_ms"] = {k: statistics.median(s[k] for s in steps) for k in steps[0]}

    # the same from a script inside a git work tree (this repository): git status (+ diff)
    git_env = dict(env)
    git_runs = [
        _run_child(_CHILD_ENTRY, [url, "1"], git_env, ROOT) for _ in range(max(3, repeat // 2))
    ]
    out["entry_in_git_tree_ms"] = _summary([r["enter_ms"] for r in git_runs])

    # process start context
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("PROVSTORE_")}
    py = sys.executable
    imports: dict[str, Any] = {}
    for label, stmt in (
        ("python -c pass", "pass"),
        ('python -c "import provstore.tracking.tracker"', "import provstore.tracking.tracker"),
        ('python -c "import sqlalchemy"', "import sqlalchemy"),
    ):
        _wall([py, "-c", stmt], plain_env, cwd)  # page cache warm-up
        imports[label] = _summary([_wall([py, "-c", stmt], plain_env, cwd) for _ in range(repeat)])
    out["process_wall_ms"] = imports
    return out


# --------------------------------------------------------------------------------------------
# products/s
# --------------------------------------------------------------------------------------------


def _parent_plan(n: int, seed: int) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    plan: list[tuple[int, ...]] = []
    for i in range(n):
        k = min(i, rng.choice((1, 2)))
        plan.append(tuple(rng.sample(range(i), k)) if k else ())
    return plan


def run_products(url: str, plan: list[tuple[int, ...]], profile: bool = False) -> dict[str, Any]:
    """One tracker() block registering len(plan) products; times registration → end of exit."""
    from provstore import tracker

    t = tracker(url=url, name="bench_core", git=False)
    t.__enter__()
    store = t.store
    real_put = store.put
    batches: list[int] = []
    put_seconds = [0.0]

    def counting_put(items: Any) -> None:
        batches.append(len(items))
        start = time.perf_counter()
        try:
            real_put(items)
        finally:
            put_seconds[0] += time.perf_counter() - start

    store.put = counting_put  # type: ignore[method-assign]
    register = t.register_data_product
    digests: list[str] = []
    append = digests.append
    profiler = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        for i, parents in enumerate(plan):
            append(
                register(
                    name=f"p{i}",
                    version="1",
                    metadata={"i": i},
                    parents=[digests[j] for j in parents],
                )
            )
    except BaseException:
        t.__exit__(*sys.exc_info())
        raise
    t_loop = time.perf_counter()
    t.__exit__(None, None, None)
    t1 = time.perf_counter()
    if profiler is not None:
        profiler.disable()
    result: dict[str, Any] = {
        "seconds": t1 - t0,
        "loop_seconds": t_loop - t0,
        "exit_seconds": t1 - t_loop,
        "put_seconds": put_seconds[0],
        "batches": batches[:-1],  # the last put is the RunEnd
        "run": t.run,
        "products_per_s": len(plan) / (t1 - t0),
    }
    if profiler is not None:
        result["profiler"] = profiler
    return result


def _sqlite_path(url: str) -> str:
    return url[len("sqlite:///") :]


def _key1(row: tuple[Any, ...]) -> Any:
    return row[0]


def _key2(row: tuple[Any, ...]) -> Any:
    return row[:2]


def raw_sqlite_floor(src_db: str, run_hex: str, batch: int, dst_db: str) -> dict[str, Any]:
    """Insert exactly the rows provstore wrote for ``run_hex`` with plain sqlite3."""
    run = bytes.fromhex(run_hex)
    src = sqlite3.connect(src_db)
    try:
        tables = ("objects", "products", "product_parents")
        ddl = src.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN "
            "(?, ?, ?) ORDER BY type = 'index', name",
            tables,
        ).fetchall()
        products = src.execute("SELECT * FROM products WHERE run = ?", (run,)).fetchall()
        objects = src.execute(
            "SELECT o.* FROM objects o JOIN products p ON o.digest = p.digest WHERE p.run = ?",
            (run,),
        ).fetchall()
        parents = src.execute(
            "SELECT e.* FROM product_parents e JOIN products p ON e.child = p.digest "
            "WHERE p.run = ?",
            (run,),
        ).fetchall()
        columns = {t: len(src.execute(f"SELECT * FROM {t} LIMIT 0").description) for t in tables}
    finally:
        src.close()

    # registration order (names are p<i>), then batches of `batch` products as provstore makes
    order = {row[0]: int(row[2][1:]) for row in products}
    by_digest_obj = {row[0]: row for row in objects}
    edges: dict[bytes, list[tuple[Any, ...]]] = {}
    for row in parents:
        edges.setdefault(row[0], []).append(row)
    ordered = sorted(products, key=lambda row: order[row[0]])
    Rows = list[tuple[Any, ...]]
    plan: list[tuple[Rows, Rows, Rows]] = []
    for start in range(0, len(ordered), batch):
        chunk = ordered[start : start + batch]
        plan.append(
            (
                [by_digest_obj[p[0]] for p in chunk],
                list(chunk),
                [e for p in chunk for e in edges.get(p[0], ())],
            )
        )

    if os.path.exists(dst_db):
        os.unlink(dst_db)
    conn = sqlite3.connect(dst_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for _type, _name, sql in ddl:
        conn.execute(sql)
    inserts = {
        t: f"INSERT OR IGNORE INTO {t} VALUES ({', '.join('?' * columns[t])})" for t in tables
    }
    t0 = time.perf_counter()
    for obj_rows, prod_rows, edge_rows in plan:
        conn.execute("BEGIN IMMEDIATE")
        for table, batch_rows, key in (
            ("objects", obj_rows, _key1),
            ("products", prod_rows, _key1),
            ("product_parents", edge_rows, _key2),
        ):
            ordered_rows: list[tuple[Any, ...]] = sorted(batch_rows, key=key)
            conn.executemany(inserts[table], ordered_rows)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - t0
    conn.close()
    rows = len(objects) + len(products) + len(parents)
    return {
        "seconds": seconds,
        "products": len(products),
        "rows": {
            "objects": len(objects),
            "products": len(products),
            "product_parents": len(parents),
        },
        "products_per_s": len(products) / seconds,
        "rows_per_s": rows / seconds,
        "batches": len(plan),
    }


def bench_products(work: Path, n: int, repeat: int, profile: bool) -> dict[str, Any]:
    from provstore.tracking.tracker import FLUSH_AFTER, FLUSH_EVERY

    plan = _parent_plan(n, SEED)
    prov_runs, raw_runs = [], []
    for rep in range(repeat):
        url = f"sqlite:///{work / f'products-{rep}' / 'provstore.db'}"
        result = run_products(url, plan)
        prov_runs.append(result)
        raw_runs.append(
            raw_sqlite_floor(
                _sqlite_path(url), result["run"], FLUSH_EVERY, str(work / f"raw-{rep}.db")
            )
        )
        if raw_runs[-1]["products"] != n:
            raise RuntimeError(f"provstore stored {raw_runs[-1]['products']} products, not {n}")
    rates = [r["products_per_s"] for r in prov_runs]
    raw_rates = [r["products_per_s"] for r in raw_runs]
    out: dict[str, Any] = {
        "products": n,
        "edges": sum(len(p) for p in plan),
        "flush_every": FLUSH_EVERY,
        "flush_after_s": FLUSH_AFTER,
        "provstore_products_per_s": _summary(rates),
        "provstore_seconds": _summary([r["seconds"] for r in prov_runs]),
        "provstore_put_seconds": _summary([r["put_seconds"] for r in prov_runs]),
        "provstore_exit_seconds": _summary([r["exit_seconds"] for r in prov_runs]),
        "provstore_batches": [r["batches"] for r in prov_runs],
        "raw_products_per_s": _summary(raw_rates),
        "raw_rows_per_s": _summary([r["rows_per_s"] for r in raw_runs]),
        "raw_rows": raw_runs[0]["rows"],
        "ratio_median": statistics.median(rates) / statistics.median(raw_rates),
        "ratio_per_run": [a / b for a, b in zip(rates, raw_rates, strict=True)],
    }
    if profile:
        url = f"sqlite:///{work / 'profile' / 'provstore.db'}"
        result = run_products(url, plan, profile=True)
        stream = io.StringIO()
        stats = pstats.Stats(result["profiler"], stream=stream)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(30)
        out["profile_text"] = stream.getvalue()
    return out


def bench_url(url: str, n: int, repeat: int) -> dict[str, Any]:
    plan = _parent_plan(n, SEED)
    runs = [run_products(url, plan) for _ in range(repeat)]
    return {
        "url": _hide_password(url),
        "products_per_s": _summary([r["products_per_s"] for r in runs]),
        "seconds": _summary([r["seconds"] for r in runs]),
        "put_seconds": _summary([r["put_seconds"] for r in runs]),
        "batches": [r["batches"] for r in runs],
    }


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<url>"


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import sqlalchemy

    import provstore

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        commit = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "provstore": provstore.__version__,
        "git_commit": commit,
    }


def _rows(results: dict[str, Any]) -> list[tuple[str, float | None, float | None, str]]:
    rows: list[tuple[str, float | None, float | None, str]] = []
    cap = results.get("capture")
    if cap:
        n = cap["n_fake_dists"]
        rows.append(
            (f"capture cold ({n} dists)", cap["cold_ms"]["median"], cap["cold_ms"]["min"], "ms")
        )
        rows.append(
            (f"capture warm ({n} dists)", cap["warm_ms"]["median"], cap["warm_ms"]["min"], "ms")
        )
        c, w = cap["cold_distributions_only_ms"], cap["warm_distributions_only_ms"]
        rows.append(("  of which distributions() cold", c["median"], c["min"], "ms"))
        rows.append(("  of which distributions() warm", w["median"], w["min"], "ms"))
        rows.append(
            ("tracker() warm entry", cap["entry_ms"]["median"], cap["entry_ms"]["min"], "ms")
        )
        for step, value in cap["entry_steps_ms"].items():
            rows.append((f"  step {step}", value, None, "ms"))
        rows.append(("tracker() exit", cap["exit_ms"]["median"], cap["exit_ms"]["min"], "ms"))
        g = cap["entry_in_git_tree_ms"]
        rows.append(("tracker() entry in a git work tree", g["median"], g["min"], "ms"))
        for label, s in cap["process_wall_ms"].items():
            rows.append((f"wall: {label}", s["median"], s["min"], "ms"))
    prod = results.get("products")
    if prod:
        p, r = prod["provstore_products_per_s"], prod["raw_products_per_s"]
        rows.append(
            (f"products/s provstore (sqlite, n={prod['products']})", p["median"], p["max"], "/s")
        )
        put = prod["provstore_put_seconds"]["median"] / prod["provstore_seconds"]["median"]
        rows.append(("  share of time in Store.put", put * 100, None, "%"))
        rows.append(("products/s raw sqlite3 floor", r["median"], r["max"], "/s"))
        rr = prod["raw_rows_per_s"]
        rows.append(("rows/s raw sqlite3 floor", rr["median"], rr["max"], "/s"))
        rows.append(("ratio provstore / raw", prod["ratio_median"], None, ""))
    url = results.get("url")
    if url:
        p = url["products_per_s"]
        rows.append(
            (f"products/s provstore ({url['url'].split(':')[0]})", p["median"], p["max"], "/s")
        )
        put = url["put_seconds"]["median"] / url["seconds"]["median"]
        rows.append(("  share of time in Store.put", put * 100, None, "%"))
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "/s":
        return f"{value:,.0f}"
    if unit == "":
        return f"{value:.2f}"
    return f"{value:.1f}"


def print_table(results: dict[str, Any]) -> None:
    print()
    print(f"{'measure':<46}{'median':>12}{'best':>12}  unit")
    for label, value, best, unit in _rows(results):
        print(f"{label:<46}{_fmt(value, unit):>12}{_fmt(best, unit):>12}  {unit}")
    print("(best = min for times, max for rates)")
    for warning in sorted(set(results.get("capture", {}).get("warnings", []))):
        print(f"warning: {warning}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--dists", type=int, default=300)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--url", help="also measure products/s against this store URL")
    parser.add_argument("--repeat", type=int, default=7, help="processes per capture measure")
    parser.add_argument("--product-repeat", type=int, default=3, help="runs of the products bench")
    parser.add_argument("--profile", action="store_true", help="cProfile one extra products run")
    parser.add_argument("--skip-capture", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(), "args": {
        "products": args.products, "dists": args.dists, "repeat": args.repeat,
        "product_repeat": args.product_repeat, "seed": SEED,
    }}  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="provstore-bench-"))
    try:
        if not args.skip_capture:
            print(
                f"capture: {args.dists} fake distributions, {args.repeat} processes each ...",
                flush=True,
            )
            results["capture"] = bench_capture(work / "capture", args.dists, args.repeat)
            results["capture"]["n_fake_dists"] = args.dists
        print(f"products: {args.products} x {args.product_repeat} runs on SQLite ...", flush=True)
        results["products"] = bench_products(
            work / "products", args.products, args.product_repeat, args.profile
        )
        if args.url:
            where = _hide_password(args.url)
            print(
                f"products: {args.products} x {args.product_repeat} runs on {where} ...",
                flush=True,
            )
            results["url"] = bench_url(args.url, args.products, args.product_repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = time.perf_counter() - started

    print_table(results)
    profile_text = results.get("products", {}).get("profile_text")
    if profile_text:
        print("\ncProfile of one products run (registration loop + exit):")
        print(profile_text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
