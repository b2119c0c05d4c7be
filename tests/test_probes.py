"""The probes: pure readers of fake trees; missing is absent, malformed is unreadable."""

from __future__ import annotations

import json
import os
import types

import pytest
from fakenode import APPTAINER, DRIVER, IMAGE, MODELS, SLURM, apptainer, conda_prefix, nvidia_proc

from provstore.capture import conda, probes
from provstore.capture.conda import channel_name, conda_packages


def test_nothing_there_is_absent(tmp_path):
    assert probes.gpu_facts(str(tmp_path)) is None
    assert probes.container_facts({}, str(tmp_path)) is None
    assert probes.job_facts({}, str(tmp_path)) is None
    assert probes.device_facts({}) is None
    assert probes.cuda_runtimes({}) is None
    assert conda_packages(str(tmp_path)) is None


def test_nvidia_driver_and_models(tmp_path):
    nvidia_proc(tmp_path)
    assert probes.gpu_facts(str(tmp_path)) == {
        "vendor": "nvidia",
        "driver": DRIVER,
        "models": list(MODELS),
    }


@pytest.mark.parametrize(
    "breakage, reason",
    [
        ("version", "names no driver version"),
        ("information", "names no model"),
        ("unreadable", "ermission denied"),
    ],
)
def test_a_malformed_nvidia_tree_is_unreadable_with_the_reason(tmp_path, breakage, reason):
    nvidia_proc(tmp_path)
    base = tmp_path / "proc" / "driver" / "nvidia"
    if breakage == "version":
        (base / "version").write_text("garbage\n")
    elif breakage == "information":
        next((base / "gpus").iterdir()).joinpath("information").write_text("IRQ: 1\n")
    else:
        if os.geteuid() == 0:  # root reads anything: a directory where a file should be
            (base / "version").unlink()
            (base / "version").mkdir()
            reason = "directory"
        else:
            (base / "version").chmod(0)
    facts = probes.gpu_facts(str(tmp_path))
    assert facts is not None and facts["vendor"] == "nvidia"
    assert reason in facts["unreadable"]


def test_devices_the_run_was_given():
    assert probes.device_facts({"CUDA_VISIBLE_DEVICES": "2,3", "HOME": "/root"}) == {
        "CUDA_VISIBLE_DEVICES": "2,3"
    }


def test_cuda_runtime_of_frameworks_already_imported_only():
    torch = types.SimpleNamespace(version=types.SimpleNamespace(cuda="12.1"))
    cpu_torch = types.SimpleNamespace(version=types.SimpleNamespace(cuda=None))

    class Broken:
        @property
        def cuda(self):
            raise RuntimeError("no CUDA driver")

    assert probes.cuda_runtimes({"torch": torch}) == {"torch": "12.1"}
    assert probes.cuda_runtimes({"torch": cpu_torch}) is None
    found = probes.cuda_runtimes({"cupy": Broken()})
    assert found is not None and "no CUDA driver" in found["cupy"]


def test_apptainer_image_and_labels(tmp_path):
    apptainer(tmp_path)
    facts = probes.container_facts(APPTAINER, str(tmp_path))
    assert facts is not None
    assert facts["runtime"] == "apptainer" and facts["image"] == IMAGE
    assert facts["labels"]["org.label-schema.usage.apptainer.version"] == "1.3.4"
    assert facts["digest"] == "sha256:" + "ab" * 32


def test_malformed_labels_are_unreadable_not_a_crash(tmp_path):
    apptainer(tmp_path)
    (tmp_path / ".singularity.d" / "labels.json").write_text("{not json")
    facts = probes.container_facts(APPTAINER, str(tmp_path))
    assert facts is not None and facts["image"] == IMAGE
    assert facts["unreadable"].startswith("labels.json:")


def test_podman_image_not_container_id(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").write_text(
        'engine="podman-4.9.3"\nname="eager_turing"\nid="0123abcd"\n'
        'image="docker.io/library/python:3.11"\nimageid="sha256:feed"\nrootless=1\n'
    )
    facts = probes.container_facts({}, str(tmp_path))
    assert facts == {
        "runtime": "podman",
        "engine": "podman-4.9.3",
        "image": "docker.io/library/python:3.11",
        "digest": "sha256:feed",
    }


def test_docker_and_kubernetes(tmp_path):
    (tmp_path / ".dockerenv").write_text("")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAME": "train-7f9", "POD_NAMESPACE": "ml"}
    assert probes.container_facts(env, str(tmp_path)) == {
        "runtime": "docker",
        "orchestrator": "kubernetes",
    }
    assert probes.job_facts(env, str(tmp_path)) == {
        "scheduler": "kubernetes",
        "id": "train-7f9",
        "namespace": "ml",
    }


def test_slurm_job():
    assert probes.job_facts(SLURM) == {
        "scheduler": "slurm",
        "id": "12345",
        "array_id": "12340",
        "task_id": "5",
        "cluster": "hpc1",
        "partition": "gpu",
        "nodes": "gpu[01-02]",
    }


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"PBS_JOBID": "77.pbs01", "PBS_QUEUE": "batch", "PBS_ARRAYID": "3"},
         {"scheduler": "pbs", "id": "77.pbs01", "queue": "batch", "task_id": "3"}),
        ({"LSB_JOBID": "4242", "LSB_JOBINDEX": "0", "LSB_QUEUE": "normal"},
         {"scheduler": "lsf", "id": "4242", "task_id": "0", "queue": "normal"}),
        ({"JOB_ID": "99", "SGE_ROOT": "/opt/sge", "SGE_TASK_ID": "undefined", "QUEUE": "all.q"},
         {"scheduler": "sge", "id": "99", "queue": "all.q"}),
        ({"JOB_ID": "99"}, None),  # JOB_ID alone is not Grid Engine
    ],
)  # fmt: skip
def test_other_schedulers(env, expected):
    assert probes.job_facts(env) == expected


def test_htcondor_job_ad(tmp_path):
    ad = tmp_path / "job.ad"
    ad.write_text('ClusterId = 812\nProcId = 3\nGlobalJobId = "sched#812.3#1700000000"\n')
    facts = probes.job_facts({"_CONDOR_JOB_AD": str(ad)}, "/")
    assert facts == {"scheduler": "htcondor", "id": "812.3", "array_id": "812",
                     "global_id": "sched#812.3#1700000000"}  # fmt: skip
    ad.write_text("nonsense\n")
    broken = probes.job_facts({"_CONDOR_JOB_AD": str(ad)}, "/")
    assert broken is not None and "ClusterId" in broken["unreadable"]
    missing = probes.job_facts({"_CONDOR_JOB_AD": str(tmp_path / "gone")}, "/")
    assert missing is not None and "does not exist" in missing["unreadable"]


def test_values_that_no_store_keeps_are_cleaned():
    facts = probes.job_facts({"SLURM_JOB_ID": "1\x002", "SLURM_JOB_NAME": b"caf\xe9"})
    assert facts == {"scheduler": "slurm", "id": "12", "name": "caf\ufffd"}


# -- conda -------------------------------------------------------------------------------------


def test_conda_packages_of_a_prefix(tmp_path):
    conda_prefix(tmp_path, packages=20)
    packages, unreadable = conda_packages(str(tmp_path))
    assert len(packages) == 20 and unreadable == ()
    assert ("mkl", "2024.0.0", "ha957f24_49657", "conda-forge") in packages
    assert list(packages) == sorted(packages)


def test_a_malformed_record_is_listed_with_the_reason(tmp_path):
    conda_prefix(tmp_path, packages=5)
    meta = tmp_path / "conda-meta"
    (meta / "broken-1-0.json").write_text("{")
    (meta / "nameless-1-0.json").write_text(json.dumps({"version": "1"}))
    packages, unreadable = conda_packages(str(tmp_path))
    assert len(packages) == 5
    assert [name for name, _ in unreadable] == ["broken-1-0.json", "nameless-1-0.json"]
    assert "no name" in unreadable[1][1]


def test_conda_scan_is_cached_by_the_directory_state(tmp_path, monkeypatch):
    conda_prefix(tmp_path, packages=10)
    first = conda_packages(str(tmp_path))
    conda._MEMO.clear()  # a new process: the on-disk cache answers, no record is read
    monkeypatch.setattr(conda, "_scan", lambda meta: pytest.fail("rescanned"))
    assert conda_packages(str(tmp_path)) == first
    monkeypatch.undo()
    meta = tmp_path / "conda-meta"
    (meta / "extra-1.0-0.json").write_text(json.dumps({"name": "extra", "version": "1.0"}))
    with (meta / "history").open("a") as history:
        history.write("+conda-forge/linux-64::extra-1.0-0\n")
    again = conda_packages(str(tmp_path))
    assert again is not None and len(again[0]) == 11


@pytest.mark.parametrize(
    "channel, name",
    [
        ("https://conda.anaconda.org/conda-forge/linux-64", "conda-forge"),
        ("https://conda.anaconda.org/t/tk-0123456789abcdef/private/noarch", "private"),
        ("https://alice:s3cret@mirror.example/conda/main/linux-64",
         "https://mirror.example/conda/main"),
        ("https://repo.anaconda.com/pkgs/main/linux-64", "main"),
        ("conda-forge", "conda-forge"),
    ],
)  # fmt: skip
def test_channels_are_names_without_credentials(channel, name):
    assert channel_name(channel) == name
