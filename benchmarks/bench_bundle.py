"""Bundle benchmarks: write, import (objects/s, peak memory vs bundle size), export, raw floors.

Usage::

    python benchmarks/bench_bundle.py [--objects N ...] [--url URL] [--out FILE.json]
                                      [--tracemalloc] [--no-export] [--no-full-floor] [--keep]

Prints a table and writes JSON (default ``benchmarks/results/bench_bundle.json``).  Timings are
reported, never asserted: the machine is shared and noisy, so compare ratios taken in one run.

For every N (default 10,000 / 100,000 / 1,000,000):

1. Build a bundle of N objects without a store: one LibrarySet, Environment, Variables and Run,
   then N-4 Products with 1-2 parents among earlier products (deterministic RNG), sealed one at
   a time and written in dependency order with
   :class:`provstore.exchange.bundle.BundleWriter` to an uncompressed and a zlib file at once.
   Only the products' digests are kept (for parents).
2. Import each file into a fresh SQLite file store in a fresh process
   (``Store(url).import_bundle(f)``): wall time, objects/s (overall, and per 5% of the bundle),
   and the child's memory: RSS right after the imports and ``Store()`` (baseline), peak RSS at
   the end (``ru_maxrss`` and ``VmHWM``), RSS sampled during the import, and SQLite's own heap
   high-water mark (its page cache, read through ctypes from the very libsqlite3 the
   ``sqlite3`` module uses).  Children are started by a small launcher process so that their
   ``ru_maxrss`` is their own (see ``_LAUNCHER``).
3. Raw sqlite3 floors, same DDL and pragmas as provstore, ``executemany`` in batches of 2000
   objects sorted by key, one transaction, only the inserts and the commit timed: the
   ``objects`` rows alone, and (unless ``--no-full-floor``) every row an import writes
   (``objects`` + ``products`` + ``product_parents``).
4. Export of the largest store back to a zlib bundle, in a fresh process: time (closure walk
   vs streaming), objects/s, memory.
5. With ``--url postgresql+psycopg2://...``: the zlib bundles imported into a scratch database
   ``provstore_bench_bundle`` (created and dropped here, recreated for every N).

``--tracemalloc`` adds one import per N under :mod:`tracemalloc` (slower; not timed) and reports
the Python-heap peak and the biggest allocation sites still alive at the end of the import.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import platform
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "bench_bundle.json"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
SEED = 20261123
RAW_BATCH = 2000
SCRATCH_DB = "provstore_bench_bundle"
MIB = 1 << 20

# --------------------------------------------------------------------------------------------
# building bundles without a store
# --------------------------------------------------------------------------------------------


def _head_objects() -> list[Any]:
    """LibrarySet, Environment, Variables, Run: sealed, in dependency order."""
    from provstore.core.objects import Environment, LibrarySet, Run, Variables, seal

    libs = seal(LibrarySet(tuple((f"pkg{i:03d}", f"1.{i % 7}.{i % 3}") for i in range(300))))
    env = seal(
        Environment(
            implementation="CPython",
            python_version="3.11.7",
            system="Linux",
            release="6.1.0-bench",
            machine="x86_64",
            libc="glibc 2.36",
            libraryset=libs.digest,
            variables={"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
            redacted=(),
        )
    )
    variables = seal(
        Variables(
            variables={f"VAR_{i:02d}": f"value-{i}-" + "x" * (i % 30) for i in range(60)},
            redacted=("AWS_SECRET_ACCESS_KEY",),
        )
    )
    run = seal(
        Run(
            environment=env.digest,
            variables=variables.digest,
            host="bench-host",
            user="bench",
            argv=("bench_bundle.py", "--objects", "N"),
            cwd="/work/bench",
            executable="/usr/bin/python3",
            pid=4242,
            started_ns=1_795_000_000_000_000_000,
            code=None,
            name="bench_bundle",
        )
    )
    return [libs, env, variables, run]


def build_bundles(work: Path, n: int, seed: int = SEED) -> dict[str, Any]:
    """Write ``bundle-N.psb`` (uncompressed) and ``bundle-N.psb.z`` (zlib) side by side."""
    import blake3

    from provstore.core.objects import Product, seal
    from provstore.exchange.bundle import BundleWriter

    if n < 5:
        raise SystemExit("--objects must be at least 5 (4 head objects + products)")
    head = _head_objects()
    run = head[-1].digest
    paths = {"none": work / f"bundle-{n}.psb", "zlib": work / f"bundle-{n}.psb.z"}
    files = {k: open(p, "wb") for k, p in paths.items()}  # noqa: SIM115
    writers = {
        "none": BundleWriter(files["none"], [run], compress=False),
        "zlib": BundleWriter(files["zlib"], [run], compress=True),
    }
    add_none, add_zlib = writers["none"].add, writers["zlib"].add
    spent = {"none": 0.0, "zlib": 0.0}
    clock = time.perf_counter
    rng = random.Random(seed)
    digests = bytearray()  # product i's digest at [32 i, 32 i + 32): the only thing kept
    edges = 0
    payload = 0
    t_start = clock()
    for item in head:
        t0 = clock()
        add_none(item.digest, item.data)
        t1 = clock()
        add_zlib(item.digest, item.data)
        t2 = clock()
        spent["none"] += t1 - t0
        spent["zlib"] += t2 - t1
        payload += len(item.data)
    for i in range(n - len(head)):
        k = min(i, rng.choice((1, 2)))
        parents = (
            tuple(sorted(bytes(digests[j * 32 : j * 32 + 32]) for j in rng.sample(range(i), k)))
            if k
            else ()
        )
        edges += len(parents)
        item = seal(
            Product(
                name=f"p{i}",
                version="1",
                metadata={"i": i, "step": "bench"},
                content=blake3.blake3(b"content %d" % i).digest(),
                size=1000 + i,
                path=f"/data/bench/p{i}.bin",
                run=run,
                parents=parents,
            )
        )
        digests += item.digest
        payload += len(item.data)
        t0 = clock()
        add_none(item.digest, item.data)
        t1 = clock()
        add_zlib(item.digest, item.data)
        t2 = clock()
        spent["none"] += t1 - t0
        spent["zlib"] += t2 - t1
    for key, writer in writers.items():
        t0 = clock()
        count = writer.close()
        files[key].close()
        spent[key] += clock() - t0
        if count != n:
            raise RuntimeError(f"wrote {count} objects, not {n}")
    total = clock() - t_start
    sizes = {k: p.stat().st_size for k, p in paths.items()}
    return {
        "objects": n,
        "products": n - len(head),
        "parent_links": edges,
        "payload_bytes": payload,
        "root": run.hex(),
        "paths": {k: str(p) for k, p in paths.items()},
        "bytes": sizes,
        "compression_ratio": sizes["none"] / sizes["zlib"],
        "write_seconds": spent,
        "seal_seconds": total - spent["none"] - spent["zlib"],
        "total_seconds": total,
        "write_objects_per_s": {k: n / v for k, v in spent.items()},
    }


# --------------------------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------------------------

_CHILD_PRELUDE = r"""
import resource
START_MAXRSS = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import ctypes, gc, json, os, sys, time
_PAGE = os.sysconf("SC_PAGE_SIZE")
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 1048576
def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
def hwm_mib():  # this process image's own peak RSS (not inherited through fork/exec)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
try:  # the libsqlite3 the sqlite3 module is linked against (same process, same instance)
    _lib = ctypes.CDLL("libsqlite3.so.0")
    _lib.sqlite3_memory_used.restype = ctypes.c_int64
    _lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    _lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    def sqlite_mib():
        return _lib.sqlite3_memory_used() / 1048576, _lib.sqlite3_memory_highwater(0) / 1048576
except OSError:
    def sqlite_mib():
        return None, None
"""

_CHILD_IMPORT = (
    _CHILD_PRELUDE
    + r"""
mode, url, path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import provstore.exchange.transfer as transfer
from provstore.api import Store
trace = mode == "tracemalloc"
if trace:
    import tracemalloc
    tracemalloc.start(1)
store = Store(url)
gc.collect()
base_rss, base_max = rss_mib(), maxrss_mib()
base_sqlite = sqlite_mib()[0]
if trace:
    tracemalloc.reset_peak()
    traced_base = tracemalloc.get_traced_memory()[0]

# Light accounting of where the time goes (wrapped module functions; <1% overhead).
spent = {}
clock = time.perf_counter
def timed(name, real):
    spent[name] = 0.0
    def wrapper(*args, **kwargs):
        t0 = clock()
        try:
            return real(*args, **kwargs)
        finally:
            spent[name] += clock() - t0
    return wrapper
for attr, name in (("load", "load"), ("_write_batch", "write_batch"),
                   ("write_items", "write_items"), ("_absent", "absent")):
    if hasattr(transfer, attr):
        setattr(transfer, attr, timed(name, getattr(transfer, attr)))

samples = []
done = [0]
step = max(2000, n // 20)
def progress(k):
    before = done[0]
    done[0] += k
    if done[0] // step != before // step:
        row = [done[0], round(clock() - t0, 4), round(rss_mib(), 1),
               round(sqlite_mib()[0] or 0, 1)]
        if trace:
            row.append(round(tracemalloc.get_traced_memory()[0] / 1048576, 1))
        samples.append(row)

t0 = clock()
with open(path, "rb") as handle:
    result = store.import_bundle(handle, on_progress=progress)
t1 = clock()
end_rss = rss_mib()
sqlite_used, sqlite_high = sqlite_mib()
out = {
    "seconds": t1 - t0,
    "objects_per_s": n / (t1 - t0),
    "added": result.added,
    "present": result.present,
    "baseline_rss_mib": base_rss,
    "baseline_maxrss_mib": base_max,
    "baseline_sqlite_mib": base_sqlite,
    "end_rss_mib": end_rss,
    "peak_rss_mib": maxrss_mib(),
    "vmhwm_mib": hwm_mib(),
    "start_maxrss_mib": START_MAXRSS,
    "sqlite_used_end_mib": sqlite_used,
    "sqlite_highwater_mib": sqlite_high,
    "samples": samples,
    "spent": spent,
}
if trace:
    current, peak = tracemalloc.get_traced_memory()
    out["traced_base_mib"] = traced_base / 1048576
    out["traced_end_mib"] = current / 1048576
    out["traced_peak_mib"] = peak / 1048576
    snap = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ])
    out["top_alive_at_end"] = [
        {"kib": round(s.size / 1024, 1), "count": s.count, "where": str(s.traceback[0])}
        for s in snap.statistics("lineno")[:12]
    ]
store.close()
out["after_close_rss_mib"] = rss_mib()
print(json.dumps(out))
"""
)

_CHILD_EXPORT = (
    _CHILD_PRELUDE
    + r"""
url, root, path, compress = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
import provstore.exchange.transfer as transfer
from provstore.api import Store
store = Store(url)
gc.collect()
base_rss, base_max = rss_mib(), maxrss_mib()
clock = time.perf_counter
marks = {}
real_graph = transfer._references
def timed_graph(*args, **kwargs):  # the closure walk (loads and checks every object)
    marks["graph_start"] = clock()
    try:
        return real_graph(*args, **kwargs)
    finally:
        marks["graph_end"] = clock()
        marks["rss_after_graph"] = rss_mib()
        marks["hwm_after_graph"] = hwm_mib()
transfer._references = timed_graph
real_write = transfer.write_bundle
def timed_write(*args, **kwargs):  # called once the closure and its order are known
    marks["stream_start"] = clock()
    marks["rss_before_stream"] = rss_mib()
    marks["maxrss_before_stream"] = maxrss_mib()
    return real_write(*args, **kwargs)
transfer.write_bundle = timed_write
t0 = clock()
with open(path, "wb") as handle:
    result = store.export_bundle([root], handle, compress=compress)
t1 = clock()
print(json.dumps({
    "seconds": t1 - t0,
    "objects": result.objects,
    "objects_per_s": result.objects / (t1 - t0),
    "graph_seconds": marks["stream_start"] - t0,
    "walk_seconds": marks["graph_end"] - marks["graph_start"],
    "stream_seconds": t1 - marks["stream_start"],
    "rss_after_walk_mib": marks["rss_after_graph"],
    "hwm_after_walk_mib": marks["hwm_after_graph"],
    "baseline_rss_mib": base_rss,
    "baseline_maxrss_mib": base_max,
    "rss_before_stream_mib": marks["rss_before_stream"],
    "maxrss_before_stream_mib": marks["maxrss_before_stream"],
    "end_rss_mib": rss_mib(),
    "peak_rss_mib": maxrss_mib(),
    "vmhwm_mib": hwm_mib(),
    "start_maxrss_mib": START_MAXRSS,
    "sqlite_highwater_mib": sqlite_mib()[1],
    "bytes": os.path.getsize(path),
}))
"""
)


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROVSTORE_")}


# Children are started by this small, long-lived launcher, never by the benchmark process
# itself: on Linux a child's ru_maxrss starts at the RSS high-water mark of the process image
# it was exec'd from (exec records the old mm's peak in signal->maxrss; with vfork that mm is
# the parent's).  Spawned from a benchmark holding 100+ MiB, every child would report at least
# that much "peak" before doing anything.
_LAUNCHER = r"""
import json, subprocess, sys
for line in sys.stdin:
    req = json.loads(line)
    try:
        p = subprocess.run(req["argv"], env=req["env"], cwd=req["cwd"], capture_output=True,
                           text=True, timeout=req["timeout"])
        out = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    except subprocess.TimeoutExpired as exc:
        out = {"rc": -1, "stdout": "", "stderr": f"timeout: {exc}"}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class Launcher:
    """A tiny process that runs the measured children (see above)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"argv": argv, "env": _child_env(), "cwd": str(ROOT), "timeout": timeout}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the launcher process died")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


_launcher: Launcher | None = None


def _get_launcher() -> Launcher:
    """The launcher, started on first use (its own ru_maxrss may be inherited; its children's
    is not, since they are exec'd from the launcher's small process image)."""
    global _launcher
    if _launcher is None or _launcher.proc.poll() is not None:
        _launcher = Launcher()
        atexit.register(_launcher.close)
    return _launcher


def _run_child(code: str, args: list[str], timeout: float = 3600) -> dict[str, Any]:
    argv = [sys.executable, "-c", code, *args]
    t0 = time.perf_counter()
    proc = _get_launcher().run(argv, timeout)
    rc, stdout, stderr = proc["rc"], proc["stdout"], proc["stderr"]
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"child failed ({rc}):\n{stderr}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["process_wall_seconds"] = wall
    return result


def import_child(url: str, path: str, n: int, mode: str = "timed") -> dict[str, Any]:
    result = _run_child(_CHILD_IMPORT, [mode, url, path, str(n)])
    if mode == "timed" and result["added"] != n:
        raise RuntimeError(f"import added {result['added']} objects, expected {n}")
    result["growth_mib"] = result["vmhwm_mib"] - result["baseline_rss_mib"]
    high = result.get("sqlite_highwater_mib")
    if high is not None:
        result["growth_excluding_sqlite_mib"] = result["growth_mib"] - (
            high - (result.get("baseline_sqlite_mib") or 0)
        )
    return result


def export_child(url: str, root: str, path: str, compress: bool) -> dict[str, Any]:
    return _run_child(_CHILD_EXPORT, [url, root, path, "1" if compress else "0"])


# --------------------------------------------------------------------------------------------
# raw sqlite3 floor
# --------------------------------------------------------------------------------------------


def _raw_records(path: str) -> Any:
    """``(digest, data)`` from an uncompressed bundle, no checks (the floor's input)."""
    size_of = struct.Struct(">I").unpack
    with open(path, "rb") as f:
        _magic, _version, codec, nroots = struct.unpack(">8sBBI", f.read(14))
        if codec != 0:
            raise ValueError("the raw floor reads uncompressed bundles")
        f.read(32 * nroots)
        read = f.read
        while True:
            (size,) = size_of(read(4))
            if size == 0xFFFFFFFF:
                return
            digest = read(32)
            yield digest, read(size)


def _product_rows(digest: bytes, data: bytes) -> tuple[tuple[Any, ...], list[tuple[bytes, bytes]]]:
    """The products row and product_parents rows provstore derives from a product."""
    import blake3
    import msgpack

    body = msgpack.unpackb(data[data.index(b"\0") + 1 :])
    name = body["name"]
    row = (digest, blake3.blake3(name.encode("utf-8")).digest(), name, body["version"],
           body["content"], body["size"], body["run"])  # fmt: skip
    return row, [(digest, parent) for parent in body["parents"]]


_FLOOR_TABLES = {
    "objects": ("digest", "kind", "size", "data"),
    "products": ("digest", "name_key", "name", "version", "content", "size", "run"),
    "product_parents": ("child", "parent"),
}


def raw_sqlite_floor(
    bundle: str, ddl_src: str, dst: str, *, full: bool = False, expected: int = 0
) -> dict[str, Any]:
    """Plain sqlite3, provstore's DDL and pragmas, one transaction, batches of RAW_BATCH objects.

    ``full=False``: the ``objects`` rows only.  ``full=True``: also the ``products`` and
    ``product_parents`` rows provstore derives (everything an import writes but one ``runs``
    row).  Rows are prepared (and sorted by key) outside the timed region; only the
    ``executemany`` calls and the commit are timed.
    """
    tables = list(_FLOOR_TABLES) if full else ["objects"]
    src = sqlite3.connect(ddl_src)
    try:
        marks = ", ".join("?" for _ in tables)
        ddl = [
            sql
            for (sql,) in src.execute(
                f"SELECT sql FROM sqlite_master WHERE tbl_name IN ({marks}) AND sql IS NOT NULL "
                "ORDER BY type = 'index', name",
                tables,
            )
        ]
    finally:
        src.close()
    _unlink_db(Path(dst))
    conn = sqlite3.connect(dst, isolation_level=None)
    for pragma in (  # provstore's own (backend._sqlite_engine)
        "journal_mode = WAL",
        "synchronous = NORMAL",
        "cache_size = -65536",
        "wal_autocheckpoint = 10000",
    ):
        conn.execute(f"PRAGMA {pragma}")
    for sql in ddl:
        conn.execute(sql)
    inserts = {
        t: f"INSERT OR IGNORE INTO {t} ({', '.join(_FLOOR_TABLES[t])}) "
        f"VALUES ({', '.join('?' for _ in _FLOOR_TABLES[t])})"
        for t in tables
    }
    clock = time.perf_counter
    spent = 0.0
    counts = dict.fromkeys(tables, 0)
    samples: list[list[float]] = []
    batch: dict[str, list[tuple[Any, ...]]] = {t: [] for t in tables}
    objects = 0

    def flush() -> float:
        for rows in batch.values():
            rows.sort()
        t0 = clock()
        for table, rows in batch.items():
            conn.executemany(inserts[table], rows)
        took = clock() - t0
        for table, rows in batch.items():
            counts[table] += len(rows)
            rows.clear()
        return took

    t0 = clock()
    conn.execute("BEGIN IMMEDIATE")
    spent += clock() - t0
    step = max(RAW_BATCH, expected // 20 // RAW_BATCH * RAW_BATCH)
    for digest, data in _raw_records(bundle):
        kind = data[: data.index(b" ")].decode("ascii")
        batch["objects"].append((digest, kind, len(data), data))
        if full and kind == "product":
            row, edges = _product_rows(digest, data)
            batch["products"].append(row)
            batch["product_parents"].extend(edges)
        objects += 1
        if len(batch["objects"]) >= RAW_BATCH:
            spent += flush()
            if objects % step == 0:
                samples.append([objects, round(spent, 4)])
    spent += flush()
    t0 = clock()
    conn.execute("COMMIT")
    spent += clock() - t0
    stored = conn.execute("SELECT count(*) FROM objects").fetchone()[0]
    conn.close()
    if stored != objects:
        raise RuntimeError(f"raw floor stored {stored} objects, not {objects}")
    return {
        "tables": tables,
        "seconds": spent,
        "objects": objects,
        "rows": counts,
        "objects_per_s": objects / spent,
        "rows_per_s": sum(counts.values()) / spent,
        "samples": samples,
        "ddl": ddl,
    }


# --------------------------------------------------------------------------------------------
# PostgreSQL scratch database
# --------------------------------------------------------------------------------------------


def _pg_admin(url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(url, isolation_level="AUTOCOMMIT")


def _pg_reset(admin: Any, create: bool) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
        if create:
            conn.exec_driver_sql(f'CREATE DATABASE "{SCRATCH_DB}"')


def _pg_scratch_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=SCRATCH_DB).render_as_string(hide_password=False)


def _pg_server_version(admin: Any) -> str | None:
    try:
        with admin.connect() as conn:
            return str(conn.exec_driver_sql("SHOW server_version").scalar())
    except Exception:
        return None


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
    import importlib.metadata as md

    import sqlalchemy

    import provstore

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        commit = None
    try:
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "provstore"],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout.strip()
        )  # fmt: skip
    except Exception:
        dirty = None
    versions: dict[str, str | None] = {}
    for dist in ("blake3", "msgpack", "psycopg2-binary"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MIB
    except (ValueError, OSError):
        mem = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "memory_mib": mem,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        **versions,
        "provstore": provstore.__version__,
        "git_commit": commit,
        "provstore_tree_dirty": dirty,
    }


Row = tuple[str, list[Any], str]


def _rows(results: dict[str, Any]) -> list[Row]:
    by = results["sizes"]

    def col(fn: Any) -> list[Any]:
        out = []
        for s in by:
            try:
                out.append(fn(s))
            except (KeyError, TypeError, ZeroDivisionError):
                out.append(None)
        return out

    def at(*path: str, scale: float = 1.0) -> list[Any]:
        def get(entry: dict[str, Any]) -> Any:
            value: Any = entry
            for key in path:
                value = value[key]
            return value if scale == 1.0 else value / scale

        return col(get)

    def share(key: str, part: str) -> list[Any]:
        return col(lambda s: 100 * s[key]["spent"][part] / s[key]["seconds"])

    rows: list[Row] = [
        ("objects in the bundle", at("objects"), "n"),
        ("  parent links", at("build", "parent_links"), "n"),
        ("build: seal objects (shared by both)", at("build", "seal_seconds"), "s"),
        ("build: BundleWriter uncompressed", at("build", "write_seconds", "none"), "s"),
        ("build: BundleWriter zlib", at("build", "write_seconds", "zlib"), "s"),
        ("  writer objects/s uncompressed", at("build", "write_objects_per_s", "none"), "/s"),
        ("  writer objects/s zlib", at("build", "write_objects_per_s", "zlib"), "/s"),
        ("bundle size uncompressed", at("build", "bytes", "none", scale=MIB), "MiB"),
        ("bundle size zlib", at("build", "bytes", "zlib", scale=MIB), "MiB"),
        ("compression ratio", at("build", "compression_ratio"), "x"),
    ]
    for variant, label in (("none", "uncompressed"), ("zlib", "zlib")):
        key = f"import_sqlite_{variant}"
        rows += [
            (f"import sqlite ({label}) objects/s", at(key, "objects_per_s"), "/s"),
            ("  import time", at(key, "seconds"), "s"),
            ("  objects/s over the last 10%", col(lambda s, k=key: _tail_rate(s[k])), "/s"),
            ("  child RSS after imports+Store()", at(key, "baseline_rss_mib"), "MiB"),
            ("  child peak RSS (ru_maxrss)", at(key, "peak_rss_mib"), "MiB"),
            ("  child peak RSS (VmHWM)", at(key, "vmhwm_mib"), "MiB"),
            ("  peak - baseline", at(key, "growth_mib"), "MiB"),
            ("  SQLite heap high-water (page cache)", at(key, "sqlite_highwater_mib"), "MiB"),
            ("  peak - baseline - SQLite heap", at(key, "growth_excluding_sqlite_mib"), "MiB"),
            ("  share of time in load() (decode+check)", share(key, "load"), "%"),
            ("  share of time in _write_batch (SQL)", share(key, "write_batch"), "%"),
        ]
    rows += [
        ("raw sqlite3, objects rows only: objects/s", at("raw_sqlite", "objects_per_s"), "/s"),
        ("  ratio import(uncompressed) / raw", at("ratio_import_raw"), "x"),
    ]
    if any("raw_sqlite_full" in s for s in by):
        full = "raw_sqlite_full"
        rows += [
            ("raw sqlite3, all rows an import writes: obj/s", at(full, "objects_per_s"), "/s"),
            ("  rows/s", at(full, "rows_per_s"), "/s"),
            ("  objects/s over the last 10%", col(lambda s: _tail_rate_floor(s[full])), "/s"),
            ("  ratio import(uncompressed) / raw full", at("ratio_import_raw_full"), "x"),
        ]
    if any("tracemalloc" in s for s in by):
        rows += [
            ("tracemalloc: Python heap at start", at("tracemalloc", "traced_base_mib"), "MiB"),
            ("tracemalloc: Python heap peak", at("tracemalloc", "traced_peak_mib"), "MiB"),
            ("tracemalloc: Python heap at end", at("tracemalloc", "traced_end_mib"), "MiB"),
        ]
    if any("import_pg" in s for s in by):
        pg = "import_pg"
        rows += [
            ("import postgresql (zlib) objects/s", at(pg, "objects_per_s"), "/s"),
            ("  import time", at(pg, "seconds"), "s"),
            ("  objects/s over the last 10%", col(lambda s: _tail_rate(s[pg])), "/s"),
            ("  child RSS after imports+Store()", at(pg, "baseline_rss_mib"), "MiB"),
            ("  child peak RSS (ru_maxrss)", at(pg, "peak_rss_mib"), "MiB"),
            ("  child peak RSS (VmHWM)", at(pg, "vmhwm_mib"), "MiB"),
            ("  peak - baseline", at(pg, "growth_mib"), "MiB"),
            ("  share of time in load() (decode+check)", share(pg, "load"), "%"),
            ("  share of time in _write_batch (SQL)", share(pg, "write_batch"), "%"),
        ]
    if any("export" in s for s in by):
        ex = "export"
        rows += [
            ("export sqlite -> zlib bundle objects/s", at(ex, "objects_per_s"), "/s"),
            ("  export time", at(ex, "seconds"), "s"),
            ("    closure + order (before streaming)", at(ex, "graph_seconds"), "s"),
            ("      of which the closure walk (_graph)", at(ex, "walk_seconds"), "s"),
            ("    streaming rows -> bundle", at(ex, "stream_seconds"), "s"),
            ("  child RSS after imports+Store()", at(ex, "baseline_rss_mib"), "MiB"),
            ("  peak RSS (VmHWM) after the closure walk", at(ex, "hwm_after_walk_mib"), "MiB"),
            ("  RSS when streaming starts", at(ex, "rss_before_stream_mib"), "MiB"),
            ("  child peak RSS (ru_maxrss)", at(ex, "peak_rss_mib"), "MiB"),
            ("  child peak RSS (VmHWM)", at(ex, "vmhwm_mib"), "MiB"),
        ]
    return rows


def _tail_rate(entry: dict[str, Any]) -> float | None:
    """objects/s between the last sample at or before 90% and the end of the import."""
    samples, n = entry.get("samples") or [], entry.get("added", 0) + entry.get("present", 0)
    before = [row for row in samples if row[0] <= 0.9 * n]
    if not before or not n:
        return None
    done, at = before[-1][0], before[-1][1]
    return (n - done) / (entry["seconds"] - at) if entry["seconds"] > at else None


def _tail_rate_floor(entry: dict[str, Any]) -> float | None:
    samples, n = entry.get("samples") or [], entry["objects"]
    before = [row for row in samples if row[0] <= 0.9 * n]
    if not before:
        return None
    done, at = before[-1]
    return (n - done) / (entry["seconds"] - at) if entry["seconds"] > at else None


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.0f}"
    if unit in ("/s", "n"):
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}"
    if unit == "s":
        return f"{value:.2f}"
    return f"{value:.1f}"


def print_table(results: dict[str, Any]) -> None:
    by = results["sizes"]
    width = 15
    print()
    print(f"{'measure':<44}" + "".join(f"{'N=' + format(s['objects'], ','):>{width}}" for s in by)
          + "  unit")  # fmt: skip
    for label, values, unit in _rows(results):
        cells = [_fmt(value, unit) for value in values]
        print(f"{label:<44}" + "".join(f"{c:>{width}}" for c in cells) + f"  {unit}")
    largest = max(by, key=lambda x: x["objects"])
    for key in ("import_sqlite_none", "import_sqlite_zlib", "import_pg"):
        samples = largest.get(key, {}).get("samples")
        if not samples:
            continue
        print(f"{key}, N={largest['objects']:,}: at [k objects] RSS MiB / objects/s since before")
        cells = []
        last = [0, 0.0]
        for row in samples:
            rate = (row[0] - last[0]) / (row[1] - last[1]) if row[1] > last[1] else 0.0
            last = row
            cells.append(f"[{row[0] // 1000}k] {row[2]:.0f}/{rate:,.0f}")
        for start in range(0, len(cells), 5):
            print("  " + "  ".join(f"{c:<22}" for c in cells[start : start + 5]).rstrip())
    for s in by:
        top = s.get("tracemalloc", {}).get("top_alive_at_end")
        if top:
            print(
                f"tracemalloc, biggest allocation sites alive after import (N={s['objects']:,}):"
            )
            for t in top[:6]:
                print(f"  {t['kib']:>10,.0f} KiB {t['count']:>9,}  {t['where']}")
    phases = {k: round(v, 1) for k, v in results["phases"].items()}
    print(f"phase wall times (s): {json.dumps(phases)}")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--url", help="also import into this PostgreSQL server (scratch db)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tracemalloc", action="store_true", help="one extra traced import per N")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument(
        "--no-full-floor",
        action="store_true",
        help="skip the raw sqlite3 floor that writes all the rows an import writes",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--workdir", type=Path, help="where bundles and stores go (default: tmp)")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.objects))

    _get_launcher()  # first, while this process is still small (see _LAUNCHER)
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, t0: float) -> None:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

    results: dict[str, Any] = {
        "machine": machine_info(),
        "args": {"objects": sizes, "seed": SEED, "raw_batch": RAW_BATCH,
                 "url": _hide_password(args.url) if args.url else None},
        "sizes": [],
        "phases": phases,
    }  # fmt: skip
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="provstore-bench-bundle-", dir=args.workdir))
    admin = None
    try:
        largest = sizes[-1]
        for n in sizes:
            entry: dict[str, Any] = {"objects": n}
            results["sizes"].append(entry)
            print(f"N={n:,}: building bundles ...", flush=True)
            t0 = time.perf_counter()
            entry["build"] = build = build_bundles(work, n)
            phase("build", t0)
            dbs = {}
            for variant in ("none", "zlib"):
                print(f"N={n:,}: importing the {variant} bundle into SQLite ...", flush=True)
                db = work / f"import-{n}-{variant}.db"
                dbs[variant] = db
                t0 = time.perf_counter()
                entry[f"import_sqlite_{variant}"] = import_child(
                    f"sqlite:///{db}", build["paths"][variant], n
                )
                phase("import_sqlite", t0)
                entry[f"db_bytes_{variant}"] = db.stat().st_size
            print(f"N={n:,}: raw sqlite3 floor ...", flush=True)
            t0 = time.perf_counter()
            entry["raw_sqlite"] = raw_sqlite_floor(
                build["paths"]["none"], str(dbs["none"]), str(work / f"raw-{n}.db"), expected=n
            )
            phase("raw_sqlite", t0)
            entry["ratio_import_raw"] = (
                entry["import_sqlite_none"]["objects_per_s"] / entry["raw_sqlite"]["objects_per_s"]
            )
            _unlink_db(work / f"raw-{n}.db")
            if not args.no_full_floor:
                print(f"N={n:,}: raw sqlite3 floor, all rows ...", flush=True)
                t0 = time.perf_counter()
                entry["raw_sqlite_full"] = raw_sqlite_floor(
                    build["paths"]["none"],
                    str(dbs["none"]),
                    str(work / f"raw-{n}.db"),
                    full=True,
                    expected=n,
                )
                phase("raw_sqlite_full", t0)
                entry["ratio_import_raw_full"] = (
                    entry["import_sqlite_none"]["objects_per_s"]
                    / entry["raw_sqlite_full"]["objects_per_s"]
                )
                _unlink_db(work / f"raw-{n}.db")
            if args.tracemalloc:
                print(f"N={n:,}: traced import (tracemalloc) ...", flush=True)
                t0 = time.perf_counter()
                traced_db = work / f"traced-{n}.db"
                entry["tracemalloc"] = import_child(
                    f"sqlite:///{traced_db}", build["paths"]["zlib"], n, mode="tracemalloc"
                )
                phase("tracemalloc", t0)
                _unlink_db(traced_db)
            if n == largest and not args.no_export:
                print(f"N={n:,}: exporting the SQLite store to a zlib bundle ...", flush=True)
                t0 = time.perf_counter()
                entry["export"] = export_child(
                    f"sqlite:///{dbs['zlib']}",
                    build["root"],
                    str(work / f"export-{n}.psb.z"),
                    True,
                )
                phase("export", t0)
                if entry["export"]["objects"] != n:
                    raise RuntimeError(
                        f"export wrote {entry['export']['objects']} objects, not {n}"
                    )
            if args.url:
                print(f"N={n:,}: importing the zlib bundle into {_hide_password(args.url)} ...",
                      flush=True)  # fmt: skip
                t0 = time.perf_counter()
                if admin is None:
                    admin = _pg_admin(args.url)
                    results["machine"]["postgresql"] = _pg_server_version(admin)
                _pg_reset(admin, create=True)
                entry["import_pg"] = import_child(
                    _pg_scratch_url(args.url), build["paths"]["zlib"], n
                )
                phase("import_pg", t0)
            if not args.keep:
                for db in dbs.values():
                    _unlink_db(db)
                for p in (*build["paths"].values(), str(work / f"export-{n}.psb.z")):
                    if os.path.exists(p):
                        os.unlink(p)
    finally:
        if admin is not None:
            try:
                _pg_reset(admin, create=False)
            finally:
                admin.dispose()
        if _launcher is not None:
            _launcher.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = time.perf_counter() - started

    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} ({results['elapsed_s']:.0f} s)")
    return 0


def _unlink_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()


if __name__ == "__main__":
    sys.exit(main())
