"""The benchmark suite's smoke run: every benchmark runs at small scale without an error.

Timings are never asserted here; the suite reports them (see docs/benchmarks.rst).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_small_scale_suite_runs_without_errors(tmp_path):
    out = tmp_path / "small.json"
    report = tmp_path / "benchmarks.rst"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scale", "small", "--out", str(out),
         "--report", str(report)],
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
