"""The benchmark harness: rows of figures, fresh stores per backend, children, machine info.

Each benchmark module ``benchmarks/b_<name>.py`` defines ``DESCRIPTION`` and
``run(ctx: Context) -> list[Row]``.  A row carries its figure, the baseline measured in the
same run (a raw-driver floor or a naive implementation), and the target it is held to; the
harness prints them side by side, writes JSON and marks targets as met or missed.  Nothing
here asserts a timing: a benchmark fails only when it raises.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SEED = 20261123

SERVER_DEFAULTS = {
    "postgresql": (
        "PROVSTORE_BENCH_PG_URL",
        "postgresql+psycopg2://postgres@127.0.0.1:5432/provstore_bench",
    ),
    "mariadb": (
        "PROVSTORE_BENCH_MYSQL_URL",
        "mysql+pymysql://root@127.0.0.1:3306/provstore_bench",
    ),
}


@dataclass
class Row:
    """One figure: ``value`` in ``unit``, beside an optional baseline and target.

    ``higher_is_better`` decides how ``ratio`` reads; ``met`` is True/False when a target
    applies and None otherwise.
    """

    benchmark: str
    measure: str
    value: float | None
    unit: str
    backend: str = ""
    baseline: float | None = None
    baseline_label: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class Context:
    """What every benchmark gets: the scale, the backends to use, a scratch directory."""

    scale: str
    backends: dict[str, str]
    work: Path
    seed: int = SEED
    errors: list[str] = field(default_factory=list)

    @property
    def small(self) -> bool:
        return self.scale == "small"

    def pick(self, small: Any, full: Any) -> Any:
        """``small`` at ``--scale small``, ``full`` otherwise."""
        return small if self.small else full

    def fresh_url(self, backend: str, name: str = "store") -> str:
        """The URL of an empty store on ``backend`` (a new SQLite file, or a wiped database)."""
        if backend == "sqlite":
            path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work)) / "store.db"
            return f"sqlite:///{path}"
        url = self.backends[backend]
        wipe_database(url)
        return url


def server_url(backend: str) -> str:
    var, default = SERVER_DEFAULTS[backend]
    return os.environ.get(var, default)


def wipe_database(url: str) -> None:
    """Create the benchmark database if needed and drop everything in it."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin_db = "postgres" if parsed.get_backend_name() == "postgresql" else ""
    admin = sa.create_engine(parsed.set(database=admin_db), isolation_level="AUTOCOMMIT")
    name = parsed.database
    with admin.connect() as conn:
        if parsed.get_backend_name() == "postgresql":
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        else:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            conn.exec_driver_sql(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
    admin.dispose()
    if parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()


def reachable(url: str) -> str | None:
    """None when a server answers, else the reason."""
    try:
        wipe_database(url)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


# -- timing -----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def timed(func: Callable[[], Any], repeat: int = 1) -> list[float]:
    """Seconds per call, ``repeat`` times."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        out.append(time.perf_counter() - start)
    return out


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: the checkout importable, byte-code cached.

    This workplace sets PYTHONDONTWRITEBYTECODE, which would make every child compile provstore
    from source; users' installs have their byte code, so children get a cache of their own.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault(
        "PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "provstore-bench-pyc")
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_child(code: str, args: list[str] | None = None, env: dict[str, str] | None = None,
              timeout: float = 3600) -> Any:  # fmt: skip
    """Run ``code`` in a fresh interpreter; its last stdout line is parsed as JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *(args or [])],
        capture_output=True, text=True, env=env or child_env(), timeout=timeout, cwd=str(ROOT),
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wall(argv: list[str], env: dict[str, str] | None = None, repeat: int = 5) -> list[float]:
    """Wall seconds of whole commands, ``repeat`` times (after one warm-up)."""
    subprocess.run(argv, env=env or child_env(), capture_output=True, check=True)
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, env=env or child_env(), capture_output=True, check=True)
        out.append(time.perf_counter() - start)
    return out


def machine_info() -> dict[str, Any]:
    import sqlalchemy

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlalchemy": sqlalchemy.__version__,
    }
    try:
        with open("/proc/meminfo") as handle:
            info["memory_kib"] = int(handle.readline().split()[1])
        with open("/proc/cpuinfo") as handle:
            info["cpu"] = next(
                (ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return info


# -- output -----------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    header = (
        "benchmark",
        "backend",
        "measure",
        "value",
        "unit",
        "baseline",
        "ratio",
        "target",
        "",
    )
    lines = [header]
    for r in rows:
        verdict = {True: "met", False: "MISSED", None: ""}[r.met]
        base = f"{fmt(r.baseline)} ({r.baseline_label})" if r.baseline is not None else ""
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        lines.append(
            (
                r.benchmark,
                r.backend,
                r.measure,
                fmt(r.value),
                r.unit,
                base,
                ratio,
                r.target,
                verdict,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
        for line in lines
    )


def write_json(path: Path, scale: str, rows: list[Row], errors: list[str], seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "scale": scale,
        "machine": machine_info(),
        "seconds": round(seconds, 1),
        "command": " ".join(["python", "-m", "benchmarks", *sys.argv[1:]]),
        "errors": errors,
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
