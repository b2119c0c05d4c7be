"""The bundle benchmark's machinery: bundles built without a store, measured children.

A bundle of N objects holds a library set, an environment, variables and a run, then N-4
products with 1-2 parents among earlier products (deterministic RNG), sealed one at a time and
written in dependency order with :class:`provstore.exchange.bundle.BundleWriter` to an
uncompressed and a zlib file at once; only the products' digests are kept (for parents).

Every import and export runs in a fresh process that reports its time and memory: RSS right
after its imports and ``Store()`` (the baseline), its peak RSS at the end (``ru_maxrss`` and
``VmHWM``) and SQLite's own heap high-water mark (its page cache, read through ctypes from the
very libsqlite3 the ``sqlite3`` module uses).  Children are started by a small launcher process
so that their ``ru_maxrss`` is their own (see ``_LAUNCHER``).
"""

from __future__ import annotations

import atexit
import itertools
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, child_result

# -- building bundles without a store ---------------------------------------------------------


def _head_objects() -> list[Any]:
    """LibrarySet, Environment, Variables, Run: sealed, in dependency order.

    The run's argv and name still say ``bench_bundle``, the script this came from: they are
    bytes in every bundle, and the bytes per object should compare with earlier runs.
    """
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


def _products(count: int, run: bytes, seed: int) -> Iterator[Any]:
    """``count`` sealed products, each with 1-2 parents among the earlier ones."""
    import blake3

    from provstore.core.objects import Product, seal

    rng = random.Random(seed)
    digests = bytearray()  # product i's digest at [32 i, 32 i + 32): the only thing kept
    for i in range(count):
        k = min(i, rng.choice((1, 2)))
        parents = (
            tuple(sorted(bytes(digests[j * 32 : j * 32 + 32]) for j in rng.sample(range(i), k)))
            if k
            else ()
        )
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
        yield item


def build_bundles(work: Path, n: int, seed: int) -> dict[str, Any]:
    """Write ``bundle-N.psb`` (uncompressed) and ``bundle-N.psb.z`` (zlib) side by side."""
    from provstore.exchange.bundle import BundleWriter

    head = _head_objects()
    run = head[-1].digest
    paths = {"none": work / f"bundle-{n}.psb", "zlib": work / f"bundle-{n}.psb.z"}
    with open(paths["none"], "wb") as plain, open(paths["zlib"], "wb") as packed:
        writers = [
            BundleWriter(plain, [run], compress=False),
            BundleWriter(packed, [run], compress=True),
        ]
        for item in itertools.chain(head, _products(n - len(head), run, seed)):
            for writer in writers:
                writer.add(item.digest, item.data)
        for writer in writers:
            count = writer.close()
            if count != n:
                raise RuntimeError(f"wrote {count} objects, not {n}")
    sizes = {k: p.stat().st_size for k, p in paths.items()}
    return {
        "root": run.hex(),
        "paths": {k: str(p) for k, p in paths.items()},
        "bytes": sizes,
        "compression_ratio": sizes["none"] / sizes["zlib"],
    }


# -- the measured children --------------------------------------------------------------------

_CHILD_PRELUDE = r"""
import ctypes, gc, json, os, resource, sys, time
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
    _lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    _lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    def sqlite_high_mib():
        return _lib.sqlite3_memory_highwater(0) / 1048576
except OSError:
    def sqlite_high_mib():
        return None
"""

_CHILD_IMPORT = (
    _CHILD_PRELUDE
    + r"""
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
from provstore.exchange.transfer import import_bundle
from provstore.store import Store
store = Store(url)
gc.collect()
base_rss = rss_mib()
clock = time.perf_counter
cpu0 = time.process_time()
t0 = clock()
with open(path, "rb") as handle:
    result = import_bundle(store, handle)
t1 = clock()
print(json.dumps({
    "seconds": t1 - t0,
    "cpu_seconds": time.process_time() - cpu0,
    "objects_per_s": n / (t1 - t0),
    "added": result.added,
    "baseline_rss_mib": base_rss,
    "peak_rss_mib": maxrss_mib(),
    "vmhwm_mib": hwm_mib(),
    "sqlite_highwater_mib": sqlite_high_mib(),
}))
store.close()
"""
)

_CHILD_EXPORT = (
    _CHILD_PRELUDE
    + r"""
url, root, path, compress = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
import provstore.exchange.transfer as transfer
from provstore.store import Store
store = Store(url)
gc.collect()
clock = time.perf_counter
marks = {}
real_write = transfer.write_bundle
def timed_write(*args, **kwargs):  # called once the closure and its order are known
    marks["stream_start"] = clock()
    return real_write(*args, **kwargs)
transfer.write_bundle = timed_write
t0 = clock()
with open(path, "wb") as handle:
    result = transfer.export_bundle(store, [root], handle, compress=compress)
t1 = clock()
print(json.dumps({
    "seconds": t1 - t0,
    "objects": result.objects,
    "objects_per_s": result.objects / (t1 - t0),
    "graph_seconds": marks["stream_start"] - t0,
    "peak_rss_mib": maxrss_mib(),
}))
"""
)

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

    def run(self, argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"argv": argv, "env": env, "cwd": str(ROOT), "timeout": timeout}
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


def _run_child(code: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = _get_launcher().run([sys.executable, "-c", code, *args], env, timeout=3600)
    result: dict[str, Any] = child_result(proc["rc"], proc["stdout"], proc["stderr"])
    return result


def import_child(url: str, path: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    """Import the bundle at ``path`` (``n`` objects) into the store at ``url``, measured."""
    result = _run_child(_CHILD_IMPORT, [url, path, str(n)], env)
    if result["added"] != n:
        raise RuntimeError(f"import added {result['added']} objects, expected {n}")
    result["growth_mib"] = result["vmhwm_mib"] - result["baseline_rss_mib"]
    return result


def export_child(url: str, root: str, path: str, env: dict[str, str]) -> dict[str, Any]:
    """Export the closure of ``root`` from the store at ``url`` to a zlib bundle, measured."""
    return _run_child(_CHILD_EXPORT, [url, root, path, "1"], env)
