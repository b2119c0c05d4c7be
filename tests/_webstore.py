"""A small pipeline for the web tests: two runs in two environments, hostile names included.

raw.csv (source) -> clean-table (run "prepare", TZ=UTC) -> model and a product whose name is a
``<script>`` tag (run "train", TZ=Europe/Paris, so its environment differs).
"""

from __future__ import annotations

import os
from pathlib import Path

from provstore import tracker

HOSTILE_NAME = '<script>alert("pwned")</script>'
HOSTILE_META = {"note": "<b>bold</b> \"quoted\" 'single' {{ 7*7 }}", "rows": 3}
HOSTILE_PATH_NAME = "odd <b> 'q' {{x}}.txt"


def build(url: str, work: Path) -> dict[str, str]:
    """Record the pipeline on ``url`` with files under ``work``; digests of what it made."""
    work.mkdir(parents=True, exist_ok=True)
    raw = work / "raw.csv"
    raw.write_text("station,temperature\ns1,12.5\ns2,13.0\n")
    clean = work / "clean.csv"
    clean.write_text("station,temperature\ns1,12.5\n")
    model = work / "model.json"
    model.write_text('{"mean": 12.5}\n')
    odd = work / HOSTILE_PATH_NAME
    odd.write_text("odd\n")
    saved = os.environ.get("TZ")
    saved_job = os.environ.pop("SLURM_JOB_ID", None)
    try:
        os.environ["TZ"] = "UTC"
        with tracker(url, name="prepare") as t:
            source = t.use(raw)
            table = t.register_data_product(
                name="clean-table", version="1.0", metadata=HOSTILE_META, path=clean,
                parents=[source],
            )  # fmt: skip
            run_a, env_a = t.run, t.environment
        os.environ["TZ"] = "Europe/Paris"
        os.environ["SLURM_JOB_ID"] = "4242"  # train ran as a batch job
        with tracker(url, name="train") as t:
            t.use(clean)
            made = t.track(model, parents=[table], name="model", version="2.0")
            hostile = t.register_data_product(name=HOSTILE_NAME, parents=[made])
            odd_product = t.track(odd, parents=[table])
            run_b, env_b = t.run, t.environment
    finally:
        os.environ.pop("SLURM_JOB_ID", None)
        if saved_job is not None:
            os.environ["SLURM_JOB_ID"] = saved_job
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
    return {
        "raw": source, "clean": table, "model": made, "hostile": hostile, "odd": odd_product,
        "run_a": run_a, "run_b": run_b, "env_a": env_a, "env_b": env_b,
    }  # fmt: skip
