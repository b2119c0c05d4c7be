"""Peak memory and time of ``Store.lineage`` against ``Store.iter_lineage`` on a big DAG.

Usage::

    python -m benchmarks.lineage_memory build URL [--products N]
    python -m benchmarks.lineage_memory measure URL [--at 10000 100000] [--repeat 3]

``build`` writes the DAG of :mod:`benchmarks._bigstore` (product ``i`` has 1-3 parents among
the 50 before it) into the store at ``URL``, then the digests of its products into
``URL``'s side file (a JSON list under the system's temporary directory, named after the URL).
``measure`` walks the ancestors of product ``i`` for each ``--at i`` (about ``i`` nodes, a few
thousand levels) both ways, each walk in a fresh process, interleaved, and prints, per walk:
the nodes, wall and CPU seconds, the peak traced by ``tracemalloc`` (a second walk, since
tracing slows Python) and the growth of the process's peak RSS during the untraced walk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks._bigstore import BATCH, Plan


def _side_file(url: str) -> Path:
    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"provstore-lineage-memory-{name}.json"


def build(url: str, products: int) -> None:
    from provstore.store import Store

    plan = Plan(seed=15)
    started = time.perf_counter()
    with Store(url) as store:
        store.put(plan.base)
        for k in range(-(-products // BATCH)):
            store.put(plan.dag_batch(k))
            plan.sealed.clear()
    _side_file(url).write_text(json.dumps([d.hex() for d in plan.dag[:products]]))
    print(f"{products:,} products in {time.perf_counter() - started:.1f} s")


def _walk(url: str, root: str, how: str, traced: bool) -> dict[str, float]:
    from provstore.store import Store

    with Store(url) as store:
        digest = store.resolve(root)
        store.get(digest)  # connections and caches opened before measuring
        if traced:
            tracemalloc.start()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = time.process_time()
        wall = time.perf_counter()
        if how == "lineage":
            nodes = len(store.lineage(digest))
        else:
            nodes = sum(1 for _ in store.iter_lineage(digest))
        out = {
            "nodes": nodes,
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "rss_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024,
        }
        if traced:
            out["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        return out


def measure(url: str, at: list[int], repeat: int) -> None:
    dag = json.loads(_side_file(url).read_text())
    for i in at:
        runs: dict[str, list[dict[str, float]]] = {"lineage": [], "iter_lineage": []}
        for _ in range(repeat):
            for how in runs:  # interleaved
                plain = _child(url, dag[i], how, traced=False)
                plain["peak_mib"] = _child(url, dag[i], how, traced=True)["peak_mib"]
                runs[how].append(plain)
        for how, results in runs.items():
            med = {key: statistics.median(r[key] for r in results) for key in results[0]}
            print(
                f"product {i:>7,}  {how:<12} {int(med['nodes']):>7,} nodes  "
                f"wall {med['wall']:6.2f} s  cpu {med['cpu']:6.2f} s  "
                f"traced peak {med['peak_mib']:7.2f} MiB  RSS growth {med['rss_mib']:7.1f} MiB"
            )


def _child(url: str, root: str, how: str, *, traced: bool) -> dict[str, float]:
    args = [sys.executable, "-m", "benchmarks.lineage_memory", "_walk", url, root, how]
    done = subprocess.run([*args, "1" if traced else "0"], check=True, capture_output=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lineage_memory")
    commands = parser.add_subparsers(dest="command", required=True)
    building = commands.add_parser("build")
    building.add_argument("url")
    building.add_argument("--products", type=int, default=120_000)
    measuring = commands.add_parser("measure")
    measuring.add_argument("url")
    measuring.add_argument("--at", type=int, nargs="+", default=[10_000, 100_000])
    measuring.add_argument("--repeat", type=int, default=3)
    walking = commands.add_parser("_walk")  # one measured walk, in its own process
    walking.add_argument("url")
    walking.add_argument("root")
    walking.add_argument("how", choices=["lineage", "iter_lineage"])
    walking.add_argument("traced", type=int)
    args = parser.parse_args()
    if args.command == "build":
        build(args.url, args.products)
    elif args.command == "measure":
        measure(args.url, args.at, args.repeat)
    else:
        print(json.dumps(_walk(args.url, args.root, args.how, bool(args.traced))))


if __name__ == "__main__":
    main()
