"""Run the provstore benchmark suite.

Usage::

    python -m benchmarks [NAME ...] [--scale small|full] [--url URL ...] [--backend NAME ...]
                         [--out FILE] [--report docs/benchmarks.rst] [--plot FILE.png]
    python -m benchmarks --from RESULTS.json [--from ...] --report PAGE.rst [--plot FILE.png]

``--scale small`` finishes in about two minutes and runs in CI as a smoke test (it fails only
when a benchmark raises, never on speed); ``full`` is the run whose figures go into the docs.
``peers`` (MLflow and Sacred beside provstore, in a virtual environment of their own that the
first run installs with pip) is part of a full run, and of a small one only when named.
Backends: SQLite always; PostgreSQL and MariaDB at ``--url`` or at ``PROVSTORE_BENCH_PG_URL`` /
``PROVSTORE_BENCH_MYSQL_URL`` (default: database ``provstore_bench`` on the local servers)
when they answer; ``--backend`` keeps only the named ones.
``--from`` runs nothing: it writes the page from saved results of one or more runs (a long
full run may be taken in parts), each part listed on the page with its own command.

Scratch databases: the database a server URL names (the base) is only probed: created if
missing, and emptied.  The benchmarks work in databases of their own named after it:
``<base>_register``, ``<base>_register_raw``, ``<base>_register_naive``, ``<base>_storage``,
``<base>_storage_runs``, ``<base>_b_concurrency``, ``<base>_b_bundle``, ``<base>_b_galera``
(on MariaDB and on the Galera cluster of ``scripts/start-galera.sh``) and ``<base>_bigstore``
(with the default base, ``provstore_bench_register`` and so on), each created on first use and
emptied before and after it; ``<base>_bigstore`` is dropped when the run ends.  So setting
``PROVSTORE_BENCH_PG_URL`` / ``PROVSTORE_BENCH_MYSQL_URL`` (or ``--url``) to another database
moves every scratch database with it, and two runs with different bases never touch each
other's: the test suite's smoke run (``tests/test_benchmarks.py``) uses
``<test database>_bench``, beside the databases of ``PROVSTORE_TEST_PG_URL`` /
``PROVSTORE_TEST_MYSQL_URL``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.harness import RESULTS, Context, Row, reachable, server_url
from benchmarks.report import table, write_json

NAMES = [
    "start",
    "capture",
    "register",
    "lookup",
    "lineage",
    "concurrency",
    "hashing",
    "bundle",
    "storage",
    "status",
    "galera",
    "serve",
    "openlineage",
    "peers",
]
SMALL_DEFAULT = [name for name in NAMES if name != "peers"]
"""What a run that names no benchmark runs at ``--scale small``: all but ``peers``, which
installs MLflow and Sacred in an environment of its own (pip, once) and takes a minute or two;
name it to run it (``python -m benchmarks peers --scale small``)."""


def _backends(urls: list[str], only: list[str]) -> tuple[dict[str, str], list[str]]:
    backends = {"sqlite": "sqlite://"}
    notes = []
    candidates = {"postgresql": server_url("postgresql"), "mariadb": server_url("mariadb")}
    for url in urls:
        candidates["postgresql" if url.startswith("postgres") else "mariadb"] = url
    if only:
        backends = {k: v for k, v in backends.items() if k in only}
        candidates = {k: v for k, v in candidates.items() if k in only}
    for name, url in candidates.items():
        problem = reachable(url)
        if problem is None:
            backends[name] = url
        else:
            notes.append(f"{name} skipped: {problem}")
    return backends, notes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"some of: {', '.join(NAMES)}")
    parser.add_argument("--scale", choices=["small", "full"], default="small")
    parser.add_argument("--url", action="append", default=[], help="a PostgreSQL or MySQL URL")
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        choices=["sqlite", "postgresql", "mariadb"],
        help="run on this backend only (repeat for several; default: all that answer)",
    )
    parser.add_argument(
        "--from",
        dest="sources",
        action="append",
        type=Path,
        default=[],
        help="write --report/--plot from this saved results JSON instead of running (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/)")
    parser.add_argument("--report", type=Path, help="write the results page (reStructuredText)")
    parser.add_argument("--plot", type=Path, help="write a PNG plot (needs the bench extra)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if args.sources:
        if args.names or not (args.report or args.plot):
            parser.error("--from writes --report/--plot from saved results; name no benchmarks")
        return _from_saved(args.sources, args.report, args.plot)
    backends, notes = _backends(args.url, args.backend)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    rows: list[Row] = []
    errors: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="provstore-bench-") as work:
        ctx = Context(args.scale, backends, Path(work))
        default = SMALL_DEFAULT if args.scale == "small" else NAMES
        for name in args.names or default:
            module = importlib.import_module(f"benchmarks.b_{name}")
            print(f"== {name}: {module.DESCRIPTION}", file=sys.stderr, flush=True)
            begun = time.perf_counter()
            try:
                rows.extend(module.run(ctx))
            except Exception:  # noqa: BLE001 - reported, and the exit code says so
                errors.append(f"{name}: {traceback.format_exc()}")
                print(errors[-1], file=sys.stderr)
            print(f"   {time.perf_counter() - begun:.1f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    print(table(rows))
    out = args.out or RESULTS / f"{args.scale}.json"
    write_json(out, args.scale, rows, errors, seconds)
    print(f"\nwrote {out} ({seconds:.0f} s); {len(errors)} benchmark errors")
    if args.report or args.plot:
        _from_saved([out], args.report, args.plot)
    return 1 if errors else 0


def _from_saved(sources: list[Path], report: Path | None, plot: Path | None) -> int:
    from benchmarks.report import merge, write_plot, write_report

    try:
        data = merge([json.loads(path.read_text()) for path in sources])
    except (OSError, ValueError) as exc:
        print(f"error: cannot read results: {exc}", file=sys.stderr)
        return 2
    if report:
        write_report(data, report, plot)
        print(f"wrote {report}" + (f" and {plot}" if plot else ""))
    elif plot:
        write_plot(data, plot)
        print(f"wrote {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
