"""Fake trees for the probes: a conda prefix, an NVIDIA ``/proc``, an Apptainer container.

Shared by the probe tests, the end-to-end tests and the benchmark that measures a warm
``tracker()`` entry with a 500-package conda environment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DRIVER = "535.104.05"
MODELS = ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB")
IMAGE = "/images/analysis-2.1.sif"
SLURM = {
    "SLURM_JOB_ID": "12345",
    "SLURM_ARRAY_JOB_ID": "12340",
    "SLURM_ARRAY_TASK_ID": "5",
    "SLURM_CLUSTER_NAME": "hpc1",
    "SLURM_JOB_PARTITION": "gpu",
    "SLURM_JOB_NODELIST": "gpu[01-02]",
    "CUDA_VISIBLE_DEVICES": "0,1",
}
APPTAINER = {"APPTAINER_CONTAINER": IMAGE, "APPTAINER_NAME": "analysis-2.1.sif"}


def conda_prefix(root: Path, packages: int = 500) -> Path:
    """A conda environment with ``packages`` records (``pkg-000`` ..., plus mkl and python)."""
    meta = root / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    names = [("mkl", "2024.0.0", "ha957f24_49657"), ("python", "3.11.9", "hb806964_0_cpython")]
    names += [(f"pkg-{i:03d}", f"1.{i}.0", f"h{i:04x}_0") for i in range(packages - len(names))]
    for name, version, build in names:
        record = {
            "name": name,
            "version": version,
            "build": build,
            "channel": "https://conda.anaconda.org/conda-forge/linux-64",
            "files": [f"lib/lib{name}.so.{n}" for n in range(40)],  # real records list files
            "depends": ["libgcc-ng >=12"],
        }
        (meta / f"{name}-{version}-{build}.json").write_text(json.dumps(record))
    (meta / "history").write_text("==> 2026-11-01 10:00:00 <==\n")
    past = 1_700_000_000  # settled long ago, so the caches keep it
    for path in (*meta.iterdir(), meta):
        os.utime(path, (past, past))
    return root


def nvidia_proc(root: Path) -> Path:
    """``/proc/driver/nvidia`` with a driver version and two GPUs."""
    base = root / "proc" / "driver" / "nvidia"
    base.mkdir(parents=True, exist_ok=True)
    (base / "version").write_text(
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {DRIVER}  Sat Aug 19 01:15:15 UTC "
        "2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    for index, model in enumerate(MODELS):
        gpu = base / "gpus" / f"0000:{0x3B + index:02x}:00.0"
        gpu.mkdir(parents=True)
        (gpu / "information").write_text(
            f"Model: \t\t {model}\nIRQ:   \t\t 156\nGPU UUID: \t GPU-{index}\n"
            f"Bus Location: \t 0000:{0x3B + index:02x}:00.0\n"
        )
    return root


def apptainer(root: Path) -> Path:
    """``/.singularity.d/labels.json`` as Apptainer leaves it inside a container."""
    folder = root / ".singularity.d"
    folder.mkdir(parents=True, exist_ok=True)
    labels = {
        "org.label-schema.build-date": "Friday_1_November_2026_10:0:0_UTC",
        "org.label-schema.usage.apptainer.version": "1.3.4",
        "org.opencontainers.image.base.digest": "sha256:" + "ab" * 32,
    }
    (folder / "labels.json").write_text(json.dumps(labels))
    return root
