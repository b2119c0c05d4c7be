"""Environment capture, cold and warm, with 30 / 300 / 3,000 fake distributions on sys.path.

Every figure is one fresh interpreter timing ``provstore.capture.snapshot.capture_environment()``
in-process (imports excluded): *cold* with an empty ``PROVSTORE_CACHE_DIR`` (a new one per
process), *warm* with the cache a first process wrote.  The naive baseline, measured in the same
run on the same ``sys.path``, enumerates the distributions with ``importlib.metadata``
(``dist.metadata["Name"]`` and ``dist.version``), which parses every METADATA file whole.

The helpers here (fake distributions, the child environment) are shared with ``b_start``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Context, Row

DESCRIPTION = "environment capture cold/warm with 30-3,000 distributions vs importlib.metadata"

WARM_TARGET_MS = 20.0

# -- fake distributions -----------------------------------------------------------------------

_HEADERS = """\
Metadata-Version: 2.1
Name: {name}
Version: 1.{index}
Summary: Synthetic distribution number {index} for the provstore benchmarks
Home-page: https://example.org/{name}
Author: Benchmark Author
Author-email: bench@example.org
License: MIT
Classifier: Development Status :: 5 - Production/Stable
Classifier: Intended Audience :: Science/Research
Classifier: License :: OSI Approved :: MIT License
Classifier: Programming Language :: Python :: 3
Classifier: Programming Language :: Python :: 3.11
Classifier: Topic :: Scientific/Engineering
Requires-Python: >=3.9
Requires-Dist: numpy (>=1.22)
Requires-Dist: packaging
Requires-Dist: pytest ; extra == 'test'
Provides-Extra: test
Description-Content-Type: text/x-rst

"""
_BODY = """\
This package provides a small, well tested toolkit for reading, transforming and writing
tabular scientific data. It ships readers for CSV, Parquet and HDF5, a lazy expression
engine, and helpers to attach provenance to every intermediate result.

Installation
------------

    pip install {name}

Usage
-----

    import {name}
    table = {name}.read('input.csv')
    result = table.filter(lambda row: row['value'] > 0).aggregate('mean')

"""


def age(path: Path, seconds: float = 3600) -> None:
    """Set ``path``'s times into the past, as an installed directory's are.

    provstore scans but does not cache a path entry modified within the last seconds (its
    mtime could change again unseen), so a just-written directory is never "warm".
    """
    old = time.time() - seconds
    os.utime(path, (old, old))


def make_fake_dists(directory: Path, count: int) -> Path:
    """``count`` ``benchpkgNNNN-1.N.dist-info`` directories, each with a ~2.3 KB METADATA."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        name = f"benchpkg{index:04d}"
        info = directory / f"{name}-1.{index}.dist-info"
        info.mkdir()
        text = _HEADERS.format(name=name, index=index)
        body = _BODY.format(name=name)
        while len(text) < 2300:
            text += body
        (info / "METADATA").write_text(text, encoding="utf-8")
        (info / "INSTALLER").write_text("pip\n", encoding="utf-8")
    age(directory)
    return directory


def quiet_dir(path: Path) -> Path:
    """An aged working directory outside any git work tree and without a pyproject.toml."""
    path.mkdir(parents=True, exist_ok=True)
    age(path)
    return path


def child_env(work: Path, dists: Path | None, cache: Path) -> dict[str, str]:
    """The environment of a measured child: no PROVSTORE_* from outside, our own cache dirs.

    ``work`` is a directory inside ``ctx.work``; byte code is cached in ``ctx.work/pycache``.

    provstore is installed in the venv (editable), so the repository itself is not put on
    ``PYTHONPATH``: a path entry that changes while the suite runs would defeat the cache.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVSTORE_")}
    env.pop("PYTHONPATH", None)
    if dists is not None:
        env["PYTHONPATH"] = str(dists)
    env["XDG_CACHE_HOME"] = str(cache)
    env["PROVSTORE_CACHE_DIR"] = str(cache / "provstore")
    env["XDG_DATA_HOME"] = str(work / "xdg-data")
    # Byte-code caches as an installed package has them, kept out of the repository: this
    # workplace sets PYTHONDONTWRITEBYTECODE, and without a cache every start would compile
    # provstore from source (~100-200 ms).  (PYTHONPYCACHEPREFIX is not part of the captured
    # environment.)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work.parent / "pycache")
    return env


def run_py(code: str, env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- children ---------------------------------------------------------------------------------

_CAPTURE = r"""
import json, time
from provstore.capture.snapshot import capture_environment
t0 = time.perf_counter()
env = capture_environment()
t1 = time.perf_counter()
print(json.dumps({"ms": (t1 - t0) * 1e3, "dists": len(env.libraryset.obj.distributions)}))
"""

_NAIVE = r"""
import json, time
import importlib.metadata
t0 = time.perf_counter()
found = [(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()]
t1 = time.perf_counter()
print(json.dumps({"ms": (t1 - t0) * 1e3, "dists": len(found)}))
"""


def _capture_set(work: Path, count: int, repeat: int) -> dict[str, Any]:
    base = work / f"capture-{count}"
    dists = make_fake_dists(base / "site", count)
    cwd = quiet_dir(base / "cwd")
    cold, warm, naive, seen, naive_seen = [], [], [], set(), set()
    warm_env = child_env(base, dists, base / "cache-warm")
    run_py(_CAPTURE, warm_env, cwd)  # writes the cache
    naive_env = child_env(base, dists, base / "cache-naive")
    run_py(_NAIVE, naive_env, cwd)  # the same warm-up for the baseline
    for i in range(repeat):  # interleaved, so drift on a shared machine hits all three alike
        got = run_py(_CAPTURE, child_env(base, dists, base / f"cache-cold-{i}"), cwd)
        cold.append(got["ms"])
        seen.add(got["dists"])
        got = run_py(_CAPTURE, warm_env, cwd)
        warm.append(got["ms"])
        seen.add(got["dists"])
        got = run_py(_NAIVE, naive_env, cwd)
        naive.append(got["ms"])
        naive_seen.add(got["dists"])
    cache_written = any((base / "cache-cold-0" / "provstore").glob("*"))
    return {
        "cold": statistics.median(cold),
        "warm": statistics.median(warm),
        "naive": statistics.median(naive),
        "seen": sorted(seen),
        "naive_seen": sorted(naive_seen),
        "cache_written": cache_written,
    }


def run(ctx: Context) -> list[Row]:
    counts = ctx.pick((30, 300), (30, 300, 3000))
    repeat = ctx.pick(3, 7)
    rows = []
    for count in counts:
        got = _capture_set(ctx.work, count, repeat)
        seen = "/".join(map(str, got["seen"]))
        naive_seen = "/".join(map(str, got["naive_seen"]))
        note = (
            f"median of {repeat} fresh processes; {seen} distributions seen in all "
            f"({count} fake + the venv's); naive saw {naive_seen} (no de-duplication)"
        )
        if not got["cache_written"]:
            note += "; WARNING: a cold capture wrote no cache file"
        label = "importlib.metadata dist.metadata/version"
        rows.append(Row(
            "capture", f"cold capture_environment, {count} fake dists", got["cold"], "ms",
            baseline=got["naive"], baseline_label=label, note=note,
        ))  # fmt: skip
        target = f"<= {WARM_TARGET_MS:.0f} ms" if count == 300 else ""
        rows.append(Row(
            "capture", f"warm capture_environment, {count} fake dists", got["warm"], "ms",
            baseline=got["naive"], baseline_label=label, target=target,
            met=(got["warm"] <= WARM_TARGET_MS) if target else None, note=note,
        ))  # fmt: skip
    return rows
