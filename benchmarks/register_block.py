"""One tracker block of N products on a new SQLite store, with or without the writer process.

Usage::

    python -m benchmarks.register_block N [--mode pipe|own] [--root DIR] [--repeat K]

The workload is ``b_register``'s (product ``i`` has 1-3 parents drawn among the earlier ones).
Each block runs in a fresh process; ``--mode own`` keeps the tracker from starting a writer
process (:data:`provstore.tracking.tracker.PIPE_FROM` out of reach), ``pipe`` lets it start one
when a core is free.  ``--root`` imports provstore from another checkout (a ``git worktree`` of
an earlier commit) to compare with.  Prints, per block: products/s over the whole block
(its exit included), the loop and the exit, CPU microseconds per product in the tracker's
process and in its children (the writer), the writer's batches and the load average.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, os, resource, sqlite3, sys, tempfile, time
root, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, root)
from benchmarks.b_register import parent_plan
from provstore import tracker
import provstore.tracking.tracker as tracking
if not tracking.__file__.startswith(root):
    raise SystemExit(f"provstore imported from {tracking.__file__}, not {root}")
if mode == "own" and hasattr(tracking, "PIPE_FROM"):
    tracking.PIPE_FROM = 10**12
with tempfile.TemporaryDirectory() as work:
    path = os.path.join(work, "store.db")
    plan = parent_plan(n, 1)
    t = tracker(f"sqlite:///{path}", name="register_block", git=False)
    t.__enter__()
    register, digests = t.register_data_product, []
    cpu = lambda r: r.ru_utime + r.ru_stime
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i, parents in enumerate(plan):
        digests.append(register(f"p{i}", "1", {"i": i}, parents=[digests[j] for j in parents]))
    looped = time.perf_counter()
    pipe = getattr(t, "_pipe", None)
    t.__exit__(None, None, None)
    end = time.perf_counter()
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    conn = sqlite3.connect(path)
    stored = conn.execute("SELECT count(*) FROM products").fetchone()[0]
    conn.close()
print(json.dumps({
    "rate": n / (end - start), "loop": looped - start, "exit": end - looped,
    "cpu_us": 1e6 * (cpu(mine) - cpu(before)) / n, "writer_cpu_us": 1e6 * cpu(children) / n,
    "batches": len(pipe.commits) if pipe is not None else None, "stored": stored,
    "load": os.getloadavg()[0],
}))
"""


def run(root: Path, n: int, mode: str) -> dict[str, float]:
    """One block in a fresh process; its figures."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), str(n), mode],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    if result["stored"] != n:
        raise RuntimeError(f"{result['stored']} products stored of {n}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="products in the block")
    parser.add_argument("--mode", choices=("pipe", "own"), action="append")
    parser.add_argument("--root", type=Path, action="append", help="a provstore checkout")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    roots = args.root or [Path(__file__).resolve().parent.parent]
    for _ in range(args.repeat):  # interleaved: every root and mode once per round
        for root in (path.resolve() for path in roots):
            for mode in args.mode or ["pipe", "own"]:
                r = run(root, args.n, mode)
                batches = "-" if r["batches"] is None else f"{r['batches']:.0f}"
                print(
                    f"{root.name:>12} {mode:4} {r['rate']:9,.0f} products/s  loop "
                    f"{r['loop']:6.2f} s  exit {r['exit']:5.2f} s  CPU {r['cpu_us']:5.1f} + "
                    f"{r['writer_cpu_us']:5.1f} µs/product  batches {batches:>3}  load "
                    f"{r['load']:.2f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
