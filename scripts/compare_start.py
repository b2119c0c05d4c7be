"""Process start before and after a change, side by side in one run.

    python scripts/compare_start.py BEFORE_CHECKOUT AFTER_CHECKOUT [--repeat 15]

Each checkout runs with its own interpreter (``CHECKOUT/.venv/bin/python``) against a SQLite
store of its own that already holds this environment, with 300 fake distributions on
``PYTHONPATH`` (as :mod:`benchmarks.b_start` does).  Every command runs once per round for
each checkout, the two taking turns in alternating order, so load on a shared machine hits
both alike.  Reported per command: the median wall time of the whole process and its median
CPU time (user + system, from ``wait4``: what the process itself cost, whatever else ran),
and for ``with tracker(URL): pass`` the entry and exit timed inside the process (wall and
CPU).  Run it from the repository root (it uses :mod:`benchmarks.harness`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import child_env, make_fake_dists, quiet_dir  # noqa: E402

_SETUP = """
import sys
from provstore import tracker
with tracker(sys.argv[1], name="setup"):
    pass
"""
_ENTRY = """
import sys, time
from provstore import tracker
wall, cpu = time.perf_counter(), time.process_time()
with tracker(sys.argv[1]):
    pass
print((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3)
"""
_SHORT = """
import os, sys
from provstore import tracker
with tracker(sys.argv[1]) as t:
    path = os.path.join(sys.argv[2], "model.bin")
    with open(path, "wb") as handle:
        handle.write(os.urandom(1 << 20))
    t.register_data_product("model", "1", {f"p{i}": i for i in range(10)}, path=path)
"""


def _timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = (time.perf_counter() - start) * 1e3
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{args} exited {proc.returncode}: {err.read().decode()[-2000:]}")
        return wall, (usage.ru_utime + usage.ru_stime) * 1e3, out.read().decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the samples here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="compare-start-"))
    dists = make_fake_dists(work / "site", 300)
    cwd = quiet_dir(work / "cwd")
    sides = {}
    for label, checkout in (("before", args.before), ("after", args.after)):
        python = str(checkout.resolve() / ".venv" / "bin" / "python")
        env = child_env(work / f"cache-{label}", dists, checkout=False)
        url = f"sqlite:///{work / label / 'store.db'}"
        (work / label).mkdir()
        _timed([python, "-c", _SETUP, url], env, cwd)
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "import tracker": [python, "-c", "from provstore import tracker"],
            "with tracker(URL): pass": [python, "-c", _ENTRY, url],
            "short tracked process (10 params, 1 MB output)": [
                python, "-c", _SHORT, url, str(work / label)],
        }  # fmt: skip
        for command in commands.values():  # warm the page and byte-code caches
            _timed(command, env, cwd)
        sides[label] = (commands, env)
    samples: dict[str, dict[str, list[tuple[float, ...]]]] = {}
    for r in range(args.repeat):
        for name in sides["before"][0]:
            for label in ("before", "after") if r % 2 == 0 else ("after", "before"):
                commands, env = sides[label]
                wall, cpu, out = _timed(commands[name], env, cwd)
                inner = tuple(map(float, out.split())) if name.startswith("with") else ()
                samples.setdefault(name, {}).setdefault(label, []).append((wall, cpu, *inner))
    print(f"medians of {args.repeat} processes each, ms: before -> after")
    for name, by_side in samples.items():
        cells = []
        for index, what in enumerate(("wall", "CPU", "entry+exit wall", "entry+exit CPU")):
            if index >= len(by_side["before"][0]):
                break
            before = statistics.median(s[index] for s in by_side["before"])
            after = statistics.median(s[index] for s in by_side["after"])
            cells.append(f"{what} {before:.1f} -> {after:.1f}")
        print(f"{name}: " + "; ".join(cells))
    if args.json:
        args.json.write_text(json.dumps(samples, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
