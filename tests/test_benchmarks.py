"""The benchmark suite's smoke run: every benchmark runs at small scale without an error.

Timings are never asserted here; the suite reports them (see docs/benchmarks.rst).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


def _server_urls() -> list[str]:
    """``--url`` for each server: database ``<test database>_bench``, so the smoke run's
    scratch databases (named after it) are never a hand-run benchmark's (``provstore_bench_*``)
    nor another test run's that uses other test databases."""
    from conftest import SERVER_BACKENDS

    args = []
    for backend in SERVER_BACKENDS.values():
        url = make_url(backend.url)
        bench = url.set(database=f"{url.database}_bench")
        args += ["--url", bench.render_as_string(hide_password=False)]
    return args


@pytest.mark.slow
def test_small_scale_suite_runs_without_errors(tmp_path):
    out = tmp_path / "small.json"
    report = tmp_path / "benchmarks.rst"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scale", "small", *_server_urls(),
         "--out", str(out), "--report", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    data = json.loads(out.read_text())
    assert data["errors"] == []
    from benchmarks.__main__ import SMALL_DEFAULT

    assert {row["benchmark"] for row in data["rows"]} == set(SMALL_DEFAULT)
    assert all(row["value"] is not None or row["note"] for row in data["rows"])
    page = report.read_text()
    assert page.startswith("Benchmarks\n==========") and "targets:" in page


PEERS_VARIABLE = "PROVSTORE_TEST_PEERS"


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get(PEERS_VARIABLE) != "1",
    reason=f"set {PEERS_VARIABLE}=1 to run the peers benchmark (pip installs MLflow and Sacred "
    "into ~/.cache/provstore-bench/peers-venv once; then about a minute)",
)
def test_peers_benchmark_runs_at_small_scale(tmp_path):
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "peers", "--scale", "small", "--backend", "sqlite",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = json.loads(out.read_text())["rows"]
    measures = [row["measure"] for row in rows]
    for tool in ("provstore", "MLflow", "Sacred"):
        assert any(m.startswith(tool) and "one short tracked process" in m for m in measures)
    against = [row for row in rows if row["measure"].startswith("provstore against")]
    assert len(against) == 4 and all(row["met"] is not None for row in against)


def test_peers_rows_carry_the_ratios_the_page_shows():
    from benchmarks.b_peers import _rows

    one = {"provstore": [(100.0, 50.0), (120.0, 60.0)], "MLflow": [(2000.0, 1500.0)] * 2,
           "Sacred": [(300.0, 200.0)] * 2}  # fmt: skip
    many = {"provstore": [(1000.0, 800.0)], "MLflow": [(9000.0, 7000.0)],
            "Sacred": [(3000.0, 2000.0)]}  # fmt: skip
    label = {"provstore": "provstore", "MLflow": "MLflow 3", "Sacred": "Sacred 0.8"}
    rows = _rows(one, many, label, {"provstore": 20.0, "peers": 10.0}, 2, 100)
    by = {row.measure: row for row in rows}
    task = "one short tracked process (10 params, 1 MB output)"
    mlflow = by[f"provstore against MLflow 3: {task}, wall"]
    assert (mlflow.value, mlflow.baseline, mlflow.met) == (110.0, 2000.0, True)
    sacred = by[f"provstore against Sacred 0.8: {task}, CPU time"]
    assert (sacred.value, sacred.baseline, sacred.met) == (55.0, 200.0, True)
    assert by["Sacred 0.8: 2 sequential processes"].ratio == pytest.approx(600 / 220)
    assert by["MLflow 3: 100 outputs in one run"].ratio == pytest.approx(9.0)


def test_peers_is_in_the_registry_and_on_the_page_order():
    from benchmarks.__main__ import NAMES, SMALL_DEFAULT
    from benchmarks.report import _ORDER

    assert "peers" in NAMES and "peers" not in SMALL_DEFAULT and "peers" in _ORDER


def _run(benchmark: str, command: str, value: float, backend: str = "sqlite") -> dict:
    row = {"benchmark": benchmark, "measure": "m", "backend": backend, "value": value,
           "unit": "ms", "baseline": None, "baseline_label": "", "target": "", "met": None,
           "note": "", "ratio": None}  # fmt: skip
    return {"scale": "full", "machine": {"date": "d"}, "seconds": 10.0, "command": command,
            "errors": [], "rows": [row]}  # fmt: skip


def test_saved_runs_merge_into_one_page_with_every_command(tmp_path):
    from benchmarks.report import merge

    first = _run("lookup", "python -m benchmarks lookup", 1.0)
    second = _run("start", "python -m benchmarks start", 2.0)
    again = _run("lookup", "python -m benchmarks lookup --backend sqlite", 3.0)
    more = _run("lookup", "python -m benchmarks lookup --backend mariadb", 4.0, "mariadb")
    data = merge([first, second, again, more])
    # suite order; a benchmark run twice on a backend keeps only its latest figures
    assert [(r["benchmark"], r["backend"], r["value"]) for r in data["rows"]] == [
        ("start", "sqlite", 2.0),
        ("lookup", "sqlite", 3.0),
        ("lookup", "mariadb", 4.0),
    ]
    assert data["seconds"] == 30.0  # the first run contributes nothing any more
    paths = []
    for i, run in enumerate([first, second, again, more]):
        paths += ["--from", str(tmp_path / f"{i}.json")]
        (tmp_path / f"{i}.json").write_text(json.dumps(run))
    page = tmp_path / "page.rst"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", *paths, "--report", str(page)],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert "taken in 3 runs" in text
    assert all(f"``{run['command']}``" in text for run in (second, again, more))
    assert f"``{first['command']}``" not in text


def test_runs_of_different_scales_are_refused():
    from benchmarks.report import merge

    small = {**_run("start", "a", 1.0), "scale": "small"}
    with pytest.raises(ValueError, match="different scales"):
        merge([small, _run("lookup", "b", 1.0)])
    missing = ["--from", "/nonexistent.json", "--report", "/tmp/x.rst"]
    proc = subprocess.run([sys.executable, "-m", "benchmarks", *missing],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "cannot read results" in proc.stderr
