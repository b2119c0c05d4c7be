"""Environment capture, cold and warm, with 30 / 300 / 3,000 fake distributions on sys.path.

Every figure is one fresh interpreter timing ``provstore.capture.snapshot.capture_environment()``
in-process (imports excluded): *cold* with an empty ``PROVSTORE_CACHE_DIR`` (a new one per
process), *warm* with the cache a first process wrote.  The naive baseline, measured in the same
run on the same ``sys.path``, enumerates the distributions with ``importlib.metadata``
(``dist.metadata["Name"]`` and ``dist.version``), which parses every METADATA file whole.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmarks.harness import Context, Row, child_env, make_fake_dists, quiet_dir, run_child

DESCRIPTION = "environment capture cold/warm with 30-3,000 distributions vs importlib.metadata"

WARM_TARGET_MS = 20.0

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

    def measure(code: str, cache: str) -> dict[str, Any]:
        env = child_env(base / cache, dists, checkout=False)
        result: dict[str, Any] = run_child(code, [], env, cwd, timeout=600)
        return result

    cold, warm, naive, seen, naive_seen = [], [], [], set(), set()
    measure(_CAPTURE, "cache-warm")  # writes the cache
    measure(_NAIVE, "cache-naive")  # the same warm-up for the baseline
    for i in range(repeat):  # interleaved, so drift on a shared machine hits all three alike
        got = measure(_CAPTURE, f"cache-cold-{i}")
        cold.append(got["ms"])
        seen.add(got["dists"])
        got = measure(_CAPTURE, "cache-warm")
        warm.append(got["ms"])
        seen.add(got["dists"])
        got = measure(_NAIVE, "cache-naive")
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
