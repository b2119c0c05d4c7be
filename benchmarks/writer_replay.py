"""The writer process alone: a tracker's recorded batches replayed into a new SQLite store.

Usage::

    python -m benchmarks.writer_replay record N FILE      # one block of N products, pipe on
    python -m benchmarks.writer_replay replay FILE [--root DIR]... [--repeat K] [--profile OUT]

``record`` runs ``b_register``'s workload in one tracker block with the writer process and
keeps every batch the tracker handed it (its objects, and where the tracker cut it into pieces)
and every batch it wrote itself.  ``replay`` makes, per root (a provstore checkout, e.g. a
``git worktree`` of an earlier commit; interleaved, a fresh process each), the messages that
root's :class:`~provstore.db.sqlite_pipe.PipedWriter` would send (timed: the tracker's side),
then starts that root's writer process on a new store with all of them waiting on its input,
so it never waits for a batch: the time between its confirmations is its own per batch.
Prints microseconds per product in the writer by ranges of the store's size, and in the
tracker's side of the pipe.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

_RECORD = r"""
import os, pickle, sys, tempfile
from benchmarks.b_register import parent_plan
from provstore import tracker
from provstore.db import sqlite_pipe
import provstore.tracking.tracker as tracking

n, out = int(sys.argv[1]), sys.argv[2]
tracking._spare_core = lambda: True
events, cuts = [], {}
real_stage, real_put = sqlite_pipe.PipedWriter.stage, sqlite_pipe.PipedWriter.put

def stage(self, items):
    real_stage(self, items)
    seen = cuts.setdefault(id(items), [])
    if not seen or seen[-1] != len(items):
        seen.append(len(items))

def put(self, items):
    sent = real_put(self, items)
    if sent:
        events.append(("pipe", [(i.digest, i.data) for i in items], cuts.pop(id(items))))
    return sent

sqlite_pipe.PipedWriter.stage, sqlite_pipe.PipedWriter.put = stage, put
with tempfile.TemporaryDirectory() as work:
    t = tracker(f"sqlite:///{os.path.join(work, 'store.db')}", name="b_register", git=False)
    t.__enter__()
    real_write = t._write
    def own(items):
        events.append(("own", [(i.digest, i.data) for i in items], None))
        real_write(items)
    t._write = own
    register, digests = t.register_data_product, []
    for i, parents in enumerate(parent_plan(n, 1)):
        digests.append(register(f"p{i}", "1", {"i": i}, parents=[digests[j] for j in parents]))
    t.__exit__(None, None, None)
with open(out, "wb") as f:
    pickle.dump(events, f, protocol=pickle.HIGHEST_PROTOCOL)
print(sum(e[0] == "pipe" for e in events), "batches piped,",
      sum(e[0] == "own" for e in events), "written by the tracker")
"""

# In a fresh process importing provstore from argv[1]: the messages, the writer, the timings.
_REPLAY = r"""
import json, os, pickle, resource, subprocess, sys, tempfile, time
root, recording, profile, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, root)
from provstore import open_store
from provstore.core.objects import load
from provstore.db import sqlite_direct, sqlite_pipe
if not sqlite_pipe.__file__.startswith(root):
    raise SystemExit(f"provstore imported from {sqlite_pipe.__file__}, not {root}")

class Sink:
    def __init__(self): self.parts = []
    def write(self, data): self.parts.append(bytes(data)); return len(data)

class Child:
    def __init__(self): self.stdin, self.stdout = Sink(), Sink()

with open(recording, "rb") as f:
    events = pickle.load(f)
first_pipe = next(i for i, e in enumerate(events) if e[0] == "pipe")
if size:  # the piped objects again, in batches of ``size`` cut every 256 products
    piped = [item for kind, items, _ in events if kind == "pipe" for item in items]
    again = [("pipe", piped[i : i + size], [*range(256, len(piped[i : i + size]), 256),
              len(piped[i : i + size])]) for i in range(0, len(piped), size)]
    events = ([e for e in events[:first_pipe]] + again
              + [e for e in events[first_pipe:] if e[0] == "own"])
loaded = [(kind, [load(d, data, hashed=True) for d, data in items], cuts)
          for kind, items, cuts in events]
child = Child()
pipe = sqlite_pipe.PipedWriter(child)
clock, tracker_side, products = time.perf_counter, 0.0, []
for kind, items, cuts in loaded[first_pipe:]:
    if kind != "pipe":
        continue
    batch = []
    for cut in cuts:
        batch.extend(items[len(batch):cut])
        start = clock()
        pipe.stage(batch)
        tracker_side += clock() - start
    start = clock()
    assert pipe.put(batch)
    tracker_side += clock() - start
    pipe._sent.clear()
    products.append(sum(1 for item in batch if item.kind == "product"))
child.stdin.write(sqlite_pipe._SIZE.pack(sqlite_pipe._DONE))
with tempfile.TemporaryDirectory() as work:
    path = os.path.join(work, "store.db")
    open_store(f"sqlite:///{path}").close()
    own = sqlite_direct.open_writer(f"sqlite:///{path}")
    for kind, items, _ in loaded[:first_pipe]:
        own.put(items)
    inbox = os.path.join(work, "messages")
    with open(inbox, "wb") as f:
        f.write(b"".join(child.stdin.parts))
    where = json.dumps([root, *sys.path])
    boot = sqlite_pipe._BOOT
    if profile != "-":
        boot = boot.replace("sys.exit(_serve(sys.argv[1]))",
            f"import cProfile; cProfile.run('_serve(sys.argv[1])', {profile!r})")
    with open(inbox, "rb") as stdin:
        writer = subprocess.Popen([sys.executable, "-I", "-S", "-c", boot, path, where],
                                  stdin=stdin, stdout=subprocess.PIPE)
        replies = []
        while (reply := sqlite_pipe._read(writer.stdout)) is not None:
            replies.append((reply, time.monotonic()))
        writer.wait()
    for kind, items, _ in loaded[first_pipe:]:
        if kind == "own":
            own.put(items)
    own.close()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    stored = open_store(f"sqlite:///{path}")
    counts = [stored.engine.connect().exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
              for t in ("objects", "products", "product_parents")]
    stored.close()
assert replies[0][0] == ("ready",), replies[0]
oks = [reply[1] for reply, _ in replies[1:] if reply[0] == "ok"]
assert len(oks) == len(products), (len(oks), len(products), replies[-1])
print(json.dumps({"products": products, "oks": oks, "ready": replies[0][1],
                  "tracker_side": tracker_side, "writer_cpu": cpu.ru_utime + cpu.ru_stime,
                  "writer_sys": cpu.ru_stime, "counts": counts}))
"""

RANGES = ((0, 60_000), (60_000, 120_000), (120_000, 200_000), (200_000, 10**12))


def record(n: int, out: Path) -> None:
    """One tracker block of ``n`` products, its batches kept in ``out``."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", _RECORD, str(n), str(out)], check=True, cwd=root)


def replay(root: Path, recording: Path, profile: str, size: int) -> dict[str, object]:
    """The recorded batches through ``root``'s pipe and writer; its figures."""
    out = subprocess.run(
        [sys.executable, "-c", _REPLAY, str(root), str(recording.resolve()), profile, str(size)],
        stdout=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def per_range(result: dict[str, object]) -> list[float]:
    """Writer µs per product over the batches ending in each of :data:`RANGES`."""
    products = result["products"]
    oks = result["oks"]
    assert isinstance(products, list) and isinstance(oks, list)
    ends = [result["ready"], *oks]
    out = []
    for lo, hi in RANGES:
        total, spent, done = 0, 0.0, 0
        for i, count in enumerate(products):
            done += count
            if lo < done <= hi:
                total += count
                spent += ends[i + 1] - ends[i]
        out.append(1e6 * spent / total if total else float("nan"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("n", type=int)
    rec.add_argument("file", type=Path)
    rep = sub.add_parser("replay")
    rep.add_argument("file", type=Path)
    rep.add_argument("--root", type=Path, action="append")
    rep.add_argument("--repeat", type=int, default=1)
    rep.add_argument("--batch", type=int, default=0, help="products a batch (as recorded: 0)")
    rep.add_argument("--profile", help="cProfile output of the (last) writer, per root")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.n, args.file)
        return 0
    roots = [path.resolve() for path in args.root or [Path(__file__).resolve().parent.parent]]
    seen: dict[Path, list[list[float]]] = {root: [] for root in roots}
    labels = " ".join(f"{lo // 1000:>4}k-" for lo, _ in RANGES)
    print(f"{'root':>12}  writer µs/product from {labels}  total s  CPU s (system)  tracker side")
    for _ in range(args.repeat):
        for root in roots:
            profile = f"{args.profile}.{root.name}" if args.profile else "-"
            r = replay(root, args.file, profile, args.batch)
            ranges = per_range(r)
            seen[root].append(ranges)
            products = r["products"]
            assert isinstance(products, list)
            total = r["oks"][-1] - r["ready"]  # type: ignore[index]
            side = 1e6 * r["tracker_side"] / sum(products)  # type: ignore[operator]
            cells = " ".join(f"{v:6.2f}" for v in ranges)
            cpu, system = r["writer_cpu"], r["writer_sys"]
            print(
                f"{root.name:>12}  {cells:>42}  {total:7.3f}  {cpu:6.2f} ({system:4.2f} sys)  "
                f"{side:5.2f}"
            )
    if args.repeat > 1:
        for root, runs in seen.items():
            medians = [statistics.median(run[k] for run in runs) for k in range(len(RANGES))]
            cells = " ".join(f"{v:6.2f}" for v in medians)
            print(f"{root.name:>12}  median {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
