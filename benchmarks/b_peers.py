"""Peers: provstore beside MLflow and Sacred, the tools a user would pick instead.

Three tasks, each a whole Python process started from scratch, as a user's script is:

* **one short tracked process**: 10 parameters and one 1 MB output file;
* **sequential processes**: that process again and again (200 at full scale), each after the
  last, into a store that grows;
* **outputs in one run**: one process that writes and records 1,000 small files (1 KiB each;
  100 at small scale), one call per file as they are made.

provstore writes to a SQLite store, its parameters as the output's metadata; MLflow
(``mlflow-skinny``) logs parameters and artifacts to a SQLite tracking URI (MLflow's default
backend since the file store went into maintenance mode); Sacred uses a
``FileStorageObserver``.  Each tool keeps its defaults otherwise (Sacred reads the git state
and the host, MLflow its run context; provstore captures the environment and the run).

MLflow and Sacred live in a virtual environment of their own, created on first use with pip
from the package index and kept for later runs (``~/.cache/provstore-bench/peers-venv``, or
``PROVSTORE_BENCH_PEERS_VENV``); provstore runs in the suite's own interpreter.  The three
tools take turns in every round (in rotating order), so drift on a shared machine hits each
alike; each tool is run once first, unmeasured, to create its store and warm the caches.
Besides wall time, each process's CPU time (user + system, from ``wait4``) is reported: it
is what the process itself cost, whatever else the machine was doing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.harness import Context, Row, child_env, quiet_dir

DESCRIPTION = "peers: provstore beside MLflow and Sacred, whole processes interleaved"

REQUIREMENTS = ("mlflow-skinny>=3,<4", "sacred>=0.8.7,<0.9", "sqlalchemy>=2", "alembic")
"""What the peers' environment holds (MLflow's SQLite backend needs SQLAlchemy and Alembic)."""
VENV_VARIABLE = "PROVSTORE_BENCH_PEERS_VENV"
_MARKER = "provstore-peers.json"
TOOLS = ("provstore", "MLflow", "Sacred")
PEERS = ("MLflow", "Sacred")

_COMMON = """\
import os, sys
PARAMS = {f"param{i}": i * 0.5 for i in range(10)}
mode, store, out = sys.argv[1], sys.argv[2], sys.argv[3]
count = int(sys.argv[4]) if len(sys.argv) > 4 else 0

def output(name, size):
    path = os.path.join(out, name)
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
    return path
"""

# fmt: off
SCRIPTS = {
    "provstore": _COMMON + textwrap.dedent("""
        from provstore import tracker

        with tracker(store, name="peers") as t:
            if mode == "one":
                t.register_data_product("model", "1", PARAMS, path=output("model.bin", 1 << 20))
            else:
                for i in range(count):
                    t.register_data_product(f"out{i:04d}", path=output(f"out{i:04d}.bin", 1024))
    """),
    "MLflow": _COMMON + textwrap.dedent("""
        import mlflow

        mlflow.set_tracking_uri(store)
        with mlflow.start_run(run_name="peers"):
            if mode == "one":
                mlflow.log_params(PARAMS)
                mlflow.log_artifact(output("model.bin", 1 << 20))
            else:
                for i in range(count):
                    mlflow.log_artifact(output(f"out{i:04d}.bin", 1024))
    """),
    "Sacred": _COMMON + textwrap.dedent("""
        from sacred import Experiment
        from sacred.observers import FileStorageObserver

        ex = Experiment("peers")
        ex.observers.append(FileStorageObserver(store))
        if mode == "one":
            ex.add_config(PARAMS)

        @ex.main
        def main(_run):
            if mode == "one":
                _run.add_artifact(output("model.bin", 1 << 20))
            else:
                for i in range(count):
                    _run.add_artifact(output(f"out{i:04d}.bin", 1024))

        ex.run()
    """),
}
# fmt: on


def venv_dir() -> Path:
    """Where the peers' environment lives (kept between runs)."""
    given = os.environ.get(VENV_VARIABLE)
    if given:
        return Path(given).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "provstore-bench" / "peers-venv"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / "python"


def ensure_venv(venv: Path) -> dict[str, str]:
    """The peers' environment, created (or completed) when it lacks :data:`REQUIREMENTS`.

    Returns the installed versions of the peers.
    """
    python = _venv_python(venv)
    marker = venv / _MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        recorded = {}
    if not python.exists() or recorded.get("requirements") != list(REQUIREMENTS):
        print(f"     setting up {venv} (pip, once)", file=sys.stderr, flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *REQUIREMENTS],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    versions = json.loads(subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
         "{n: m.version(n) for n in ('mlflow-skinny', 'sacred')}))"],
        check=True, capture_output=True, text=True,
    ).stdout)  # fmt: skip
    marker.write_text(json.dumps({"requirements": list(REQUIREMENTS), "versions": versions}))
    return {"MLflow": versions["mlflow-skinny"], "Sacred": versions["sacred"]}


class _Tool:
    """One tool's interpreter, script, environment and scratch places."""

    def __init__(self, name: str, python: str, base: Path, env: dict[str, str]) -> None:
        self.name = name
        self.python = python
        self.env = env
        self.cwd = quiet_dir(base / name / "cwd")
        self.out = quiet_dir(base / name / "out")
        self.script = base / name / "script.py"
        self.script.write_text(SCRIPTS[name])
        stores = base / name / "store"
        stores.mkdir()
        self.store = {
            "provstore": f"sqlite:///{stores / 'provstore.db'}",
            "MLflow": f"sqlite:///{stores / 'mlflow.db'}",
            "Sacred": str(stores / "runs"),
        }[name]

    def run(self, mode: str, count: int = 0) -> tuple[float, float]:
        """Wall and CPU milliseconds of one process doing ``mode``."""
        args = [self.python, str(self.script), mode, self.store, str(self.out)]
        if count:
            args.append(str(count))
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(args, env=self.env, cwd=self.cwd,
                                    stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = (time.perf_counter() - start) * 1e3
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} {mode} exited {proc.returncode}:\n{tail}")
        return wall, (usage.ru_utime + usage.ru_stime) * 1e3


def _tools(base: Path, peer_python: str) -> dict[str, _Tool]:
    mine = child_env(base / "cache", checkout=False)
    theirs = {k: v for k, v in mine.items() if k != "PYTHONPATH"}
    theirs.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                  GIT_PYTHON_REFRESH="quiet")  # fmt: skip
    return {
        "provstore": _Tool("provstore", sys.executable, base, mine),
        "MLflow": _Tool("MLflow", peer_python, base, theirs),
        "Sacred": _Tool("Sacred", peer_python, base, theirs),
    }


def _rounds(tools: dict[str, _Tool], rounds: int, mode: str, count: int = 0
            ) -> dict[str, list[tuple[float, float]]]:  # fmt: skip
    """``rounds`` processes per tool, the tools taking turns in rotating order."""
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
    names = list(tools)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(tools[name].run(mode, count))
    return out


def _pass_ms(python: str, env: dict[str, str], repeat: int) -> float:
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([python, "-c", "pass"], env=env, check=True)
        walls.append((time.perf_counter() - start) * 1e3)
    return statistics.median(walls)


def run(ctx: Context) -> list[Row]:
    versions = ensure_venv(venv_dir())
    peer_python = str(_venv_python(venv_dir()))
    tools = _tools(ctx.work / "peers", peer_python)
    label = {"provstore": "provstore", **{p: f"{p} {versions[p]}" for p in PEERS}}
    for tool in tools.values():  # unmeasured: creates each store, warms the caches
        tool.run("one")
    sequential = ctx.pick(5, 200)
    outputs = ctx.pick(100, 1000)
    outputs_repeat = ctx.pick(1, 3)
    one = _rounds(tools, sequential, "one")
    many = _rounds(tools, outputs_repeat, "outputs", outputs)
    floors = {
        "provstore": _pass_ms(sys.executable, tools["provstore"].env, 5),
        "peers": _pass_ms(peer_python, tools["MLflow"].env, 5),
    }
    return _rows(one, many, label, floors, sequential, outputs)


def _rows(one: dict[str, list[tuple[float, float]]], many: dict[str, list[tuple[float, float]]],
          label: dict[str, str], floors: dict[str, float], sequential: int,
          outputs: int) -> list[Row]:  # fmt: skip
    task = "one short tracked process (10 params, 1 MB output)"
    wall = {name: statistics.median(w for w, _c in runs) for name, runs in one.items()}
    cpu = {name: statistics.median(c for _w, c in runs) for name, runs in one.items()}
    total = {name: sum(w for w, _c in runs) / 1e3 for name, runs in one.items()}
    many_wall = {name: statistics.median(w for w, _c in runs) / 1e3 for name, runs in many.items()}
    many_cpu = {name: statistics.median(c for _w, c in runs) / 1e3 for name, runs in many.items()}
    rows = []

    def values(name: str, runs: list[tuple[float, float]], index: int) -> str:
        return ", ".join(f"{run[index]:.0f}" for run in sorted(runs, key=lambda r: r[index]))

    for name in TOOLS:
        floor = floors["provstore" if name == "provstore" else "peers"]
        rows.append(Row("peers", f"{label[name]}: {task}", wall[name], "ms", "sqlite", floor,
                        "python -c pass", note=f"wall, median of {sequential} processes "
                        f"({values(name, one[name], 0)} ms)"))  # fmt: skip
    for name in TOOLS:
        rows.append(Row("peers", f"{label[name]}: {task}, CPU time", cpu[name], "ms", "sqlite",
                        note=f"user + system of the process, median of {sequential} "
                        f"({values(name, one[name], 1)} ms)"))  # fmt: skip
    for peer in PEERS:
        for what, mine, theirs in (("wall", wall, wall), ("CPU time", cpu, cpu)):
            rows.append(Row(
                "peers", f"provstore against {label[peer]}: {task}, {what}", mine["provstore"],
                "ms", "sqlite", theirs[peer], label[peer], f"<= 1x {peer}",
                mine["provstore"] <= theirs[peer], "ratio < 1: provstore is faster",
            ))  # fmt: skip
    for name in TOOLS:
        rows.append(Row("peers", f"{label[name]}: {sequential} sequential processes", total[name],
                        "s", "sqlite",
                        total["provstore"] if name != "provstore" else None,
                        "provstore" if name != "provstore" else "",
                        note="sum of the wall times above, one process after another; "
                        "ratio: times provstore's"))  # fmt: skip
    for name in TOOLS:
        mine = name == "provstore"
        rows.append(Row("peers", f"{label[name]}: {outputs:,} outputs in one run", many_wall[name],
                        "s", "sqlite", None if mine else many_wall["provstore"],
                        "" if mine else "provstore",
                        note=f"1 KiB files, one call each; wall (CPU {many_cpu[name]:.2f} s), "
                        f"median of {len(many[name])}; ratio: times provstore's"))  # fmt: skip
    return rows
