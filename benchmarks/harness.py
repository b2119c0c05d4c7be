"""The benchmark harness: rows of figures, scratch stores, children, fixtures, machine info.

Each benchmark module ``benchmarks/b_<name>.py`` defines ``DESCRIPTION`` and
``run(ctx: Context) -> list[Row]``.  A row carries its figure, the baseline measured in the
same run (a raw-driver floor or a naive implementation), and the target it is held to;
:mod:`benchmarks.report` prints them side by side, writes JSON and marks targets as met or
missed.  Nothing here asserts a timing: a benchmark fails only when it raises.

Every helper more than one benchmark needs is here, once: scratch databases named after the
base URL's database, the environment and runner of measured child processes, fake installed
distributions, the raw ``sqlite3`` floor's connection and the raw driver connections.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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

# provstore's own pragmas for a SQLite store (provstore.db.engine), for the raw floors.
SQLITE_PRAGMAS = (
    "busy_timeout = 60000",
    "journal_mode = WAL",
    "synchronous = NORMAL",
    "cache_size = -65536",
    "wal_autocheckpoint = 10000",
)


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

    @property
    def small(self) -> bool:
        return self.scale == "small"

    def pick(self, small: Any, full: Any) -> Any:
        """``small`` at ``--scale small``, ``full`` otherwise."""
        return small if self.small else full

    def scratch_url(self, backend: str, name: str) -> str:
        """An empty store of our own: a new SQLite file, or the database ``<base>_<name>``.

        ``<base>`` is the database of the backend's URL, so another base URL moves every
        scratch database with it.  A server database is created on first use and emptied, not
        dropped (PostgreSQL's DROP DATABASE waits for a checkpoint of the whole cluster).
        """
        if backend == "sqlite":
            path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work)) / "store.db"
            return f"sqlite:///{path}"
        from sqlalchemy.engine import make_url

        base = make_url(self.backends[backend])
        url = base.set(database=f"{base.database}_{name}").render_as_string(hide_password=False)
        wipe_database(url)
        return url

    @contextmanager
    def scratch(self, backend: str, name: str) -> Iterator[str]:
        """:meth:`scratch_url` for the block, emptied after it."""
        url = self.scratch_url(backend, name)
        try:
            yield url
        finally:
            empty_scratch(url)


# -- databases --------------------------------------------------------------------------------


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


def empty_scratch(url: str) -> None:
    """Empty a scratch database (a SQLite file's directory goes)."""
    if url.startswith("sqlite"):
        shutil.rmtree(Path(sqlite_path(url)).parent, ignore_errors=True)
    else:
        wipe_database(url)


def reachable(url: str) -> str | None:
    """None when a server answers, else the reason."""
    try:
        wipe_database(url)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def sqlite_path(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


@dataclass
class Raw:
    """A persistent DBAPI connection and the driver's parameter mark."""

    backend: str
    conn: Any
    mark: str

    def close(self) -> None:
        self.conn.close()


def raw_connect(backend: str, url: str, autocommit: bool = True) -> Raw:
    """A plain sqlite3 / psycopg2 / pymysql connection to the store at ``url``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if backend == "sqlite":
        conn = sqlite3.connect(parsed.database, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA cache_size = -65536")
        return Raw(backend, conn, "?")
    login = {"host": parsed.host, "user": parsed.username, "password": parsed.password or ""}
    if backend == "postgresql":
        import psycopg2

        conn = psycopg2.connect(port=parsed.port or 5432, dbname=parsed.database, **login)
        conn.autocommit = autocommit
        return Raw(backend, conn, "%s")
    import pymysql

    conn = pymysql.connect(port=parsed.port or 3306, database=parsed.database,
                           charset="utf8mb4", autocommit=autocommit, **login)  # fmt: skip
    return Raw(backend, conn, "%s")


def raw_sqlite(
    path: str, like: str, tables: Sequence[str], ddl: Sequence[str] | None = None
) -> tuple[sqlite3.Connection, dict[str, str]]:
    """The raw ``sqlite3`` floor's connection and each table's ``INSERT OR IGNORE``.

    A new database at ``path`` with provstore's pragmas and the DDL of ``tables`` (indexes
    included) copied from the provstore database at ``like``: the floor pays for the same
    B-trees as provstore, nothing else.  ``ddl``: these statements instead.
    """
    if ddl is None:
        src = sqlite3.connect(like)
        try:
            marks = ", ".join("?" * len(tables))
            ddl = [sql for (sql,) in src.execute(
                f"SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN ({marks}) "
                "ORDER BY type = 'index', name",
                tuple(tables),
            )]  # fmt: skip
        finally:
            src.close()
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    for sql in ddl:
        conn.execute(sql)
    inserts = {}
    for table in tables:
        cols = [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
        inserts[table] = (f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) "
                          f"VALUES ({', '.join('?' * len(cols))})")  # fmt: skip
    return conn, inserts


# -- timing -----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


@contextmanager
def phase(label: str) -> Iterator[None]:
    """Say on stderr how long a step took (progress for the long full-scale run)."""
    start = time.perf_counter()
    yield
    print(f"     {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


# -- child processes --------------------------------------------------------------------------


def child_env(cache: Path, dists: Path | None = None, checkout: bool = True) -> dict[str, str]:
    """The environment of a measured child: no PROVSTORE_* from outside, caches of its own.

    provstore's cache (and the XDG cache and data homes) go under ``cache``; ``dists`` (fake
    installed distributions) comes first on ``PYTHONPATH``, then, with ``checkout``, the
    repository, so that a child can import ``benchmarks``.  Children that time provstore's
    scan of ``sys.path`` leave the repository out: a path entry that changes while the suite
    runs would defeat the scan's cache.

    This workplace sets PYTHONDONTWRITEBYTECODE, which would make every child compile provstore
    from source; users' installs have their byte code, so children get a cache of their own,
    out of the repository (PYTHONPYCACHEPREFIX is not part of the captured environment).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVSTORE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault(
        "PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "provstore-bench-pyc")
    )
    path = [str(dists) if dists else None]
    path += [str(ROOT), env.get("PYTHONPATH")] if checkout else []
    env["PYTHONPATH"] = os.pathsep.join(filter(None, path))
    if not env["PYTHONPATH"]:
        del env["PYTHONPATH"]
    env["XDG_CACHE_HOME"] = str(cache)
    env["PROVSTORE_CACHE_DIR"] = str(cache / "provstore")
    env["XDG_DATA_HOME"] = str(cache / "xdg-data")
    return env


def child_result(returncode: int, stdout: str, stderr: str) -> Any:
    """What a child printed last, as JSON; a failed child raises with its stderr."""
    if returncode != 0:
        raise RuntimeError(f"benchmark child failed ({returncode}):\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def run_child(code: str, args: Sequence[str], env: dict[str, str], cwd: Path = ROOT,
              timeout: float = 3600) -> Any:  # fmt: skip
    """Run ``code`` in a fresh interpreter; its last stdout line is parsed as JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=str(cwd),
    )  # fmt: skip
    return child_result(proc.returncode, proc.stdout, proc.stderr)


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


# -- fake installed distributions -------------------------------------------------------------

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


def make_conda_prefix(directory: Path, count: int) -> Path:
    """A conda environment: ``count`` package records in ``conda-meta`` as conda writes them
    (each lists its files, as real ones do), and a ``history`` file; aged, so caches keep it."""
    meta = directory / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        name, version, build = f"condapkg{index:04d}", f"1.{index}.0", f"h{index:04x}_0"
        record = {
            "name": name, "version": version, "build": build, "build_number": 0,
            "channel": "https://conda.anaconda.org/conda-forge/linux-64",
            "depends": ["libgcc-ng >=12", "libstdcxx-ng >=12"],
            "files": [f"lib/lib{name}.so.{n}" for n in range(60)],
            "paths_data": {"paths": [{"_path": f"lib/lib{name}.so.{n}", "sha256": "0" * 64}
                                     for n in range(60)]},
        }  # fmt: skip
        (meta / f"{name}-{version}-{build}.json").write_text(json.dumps(record))
    (meta / "history").write_text("==> 2026-11-01 10:00:00 <==\n")
    for path in meta.iterdir():
        age(path)
    age(meta)
    return directory


def quiet_dir(path: Path) -> Path:
    """An aged working directory outside any git work tree and without a pyproject.toml."""
    path.mkdir(parents=True, exist_ok=True)
    age(path)
    return path
