"""The example pipeline that README's demo command runs: tracked, then verified."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "scripts" / "example_pipeline.py"


def test_example_pipeline_tracks_and_verifies(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path)], capture_output=True,
                          text=True, env=dict(os.environ), timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 ancestors recorded" in proc.stdout
    assert "verified" in proc.stdout.splitlines()[-1]
    assert (tmp_path / "summary.json").exists()
