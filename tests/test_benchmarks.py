"""The benchmark suite's smoke run: every benchmark runs at small scale without an error.

Timings are never asserted here; the suite reports them (see docs/benchmarks.rst).
"""

from __future__ import annotations

import json
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
    from benchmarks.__main__ import NAMES

    assert {row["benchmark"] for row in data["rows"]} == set(NAMES)
    assert all(row["value"] is not None or row["note"] for row in data["rows"])
    page = report.read_text()
    assert page.startswith("Benchmarks\n==========") and "targets:" in page


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
