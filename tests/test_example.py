"""The example pipeline and ``scripts/demo.sh``, which README's set-up runs: tracked, verified,
and kept away from the user's own store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scripts" / "example_pipeline.py"
DEMO = ROOT / "scripts" / "demo.sh"


def test_example_pipeline_tracks_and_verifies(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path)], capture_output=True,
                          text=True, env=dict(os.environ), timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 ancestors recorded" in proc.stdout
    assert "verified" in proc.stdout.splitlines()[-1]
    assert (tmp_path / "summary.json").exists()


def run_demo(tmp_path: Path, python: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """``demo.sh --python PYTHON`` (no install) with a new home and temporary directory."""
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PROVSTORE_"))}
    env |= {"HOME": str(home), "TMPDIR": str(scratch)}  # the defaults: ~/.local/share, ~/.cache
    proc = subprocess.run(["bash", str(DEMO), "--python", python], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    return proc, home, scratch


def test_demo_uses_a_store_of_its_own_and_removes_it(tmp_path):
    proc, home, scratch = run_demo(tmp_path, sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified" in proc.stdout
    assert "removed its scratch store and files" in proc.stdout
    assert list(home.rglob("*")) == []  # no ~/.local/share/provstore, no ~/.cache/provstore
    assert list(scratch.iterdir()) == []


def test_demo_removes_its_scratch_files_when_it_fails(tmp_path):
    failing = shutil.which("false")
    assert failing is not None
    proc, home, scratch = run_demo(tmp_path, failing)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert list(home.rglob("*")) == []
    assert list(scratch.iterdir()) == []
