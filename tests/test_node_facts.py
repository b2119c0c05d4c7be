"""End to end: conda, GPU, container and job facts land where docs/concepts.rst says.

A fake node (a 500-package conda prefix, an NVIDIA ``/proc``, an Apptainer container, Slurm
variables): the environment holds the stable facts, the run the volatile ones, ``show`` and
``log`` display them, and a hundred runs on the node share one environment.
"""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from fakenode import APPTAINER, DRIVER, IMAGE, MODELS, SLURM, apptainer, conda_prefix, nvidia_proc

from provstore import Store, tracker
from provstore.cli.main import main
from provstore.core.objects import CondaSet, Environment, ImportSet, Run, RunEnd


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def fake_node(tmp_path, monkeypatch):
    """Point every probe at fake trees: the conda prefix is ``sys.prefix``."""
    root = tmp_path / "root"
    nvidia_proc(root)
    apptainer(root)
    prefix = conda_prefix(tmp_path / "conda-env")
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setenv("PROVSTORE_PROBE_ROOT", str(root))
    for name, value in {**SLURM, **APPTAINER}.items():
        monkeypatch.setenv(name, value)
    return root


def test_facts_land_where_documented(backend_url, fake_node, monkeypatch):
    import types

    torch = types.SimpleNamespace(version=types.SimpleNamespace(cuda="12.1"))
    monkeypatch.setitem(sys.modules, "torch", torch)  # a framework the run already imported
    with tracker(backend_url, git=False) as t:
        t.register_data_product("model", "1")
    with Store(backend_url) as store:
        env = store.get(t.environment).obj
        run = store.get(t.run).obj
        assert isinstance(env, Environment) and isinstance(run, Run)
        # the environment: stable facts
        assert env.gpu == {"vendor": "nvidia", "driver": DRIVER, "models": list(MODELS)}
        assert env.container is not None and env.container["image"] == IMAGE
        conda = store.get(env.conda).obj  # type: ignore[arg-type]
        assert isinstance(conda, CondaSet) and len(conda.packages) == 500
        assert "SLURM_JOB_ID" not in env.variables and "CUDA_VISIBLE_DEVICES" not in env.variables
        # the run: volatile facts
        assert run.job is not None and run.job["id"] == "12345" and run.job["partition"] == "gpu"
        assert run.gpu == {"CUDA_VISIBLE_DEVICES": "0,1"}
        [end_digest] = store.run_ends([bytes.fromhex(t.run)])
        end = store.get(end_digest).obj
        assert isinstance(end, RunEnd) and end.imported is not None
        assert end.cuda == {"torch": "12.1"}
        assert isinstance(store.get(end.imported).obj, ImportSet)

    code, out, _ = cli("--url", backend_url, "show", t.environment)
    assert code == 0
    assert DRIVER in out and MODELS[0] in out and IMAGE in out
    assert "conda packages: 500 (" in out and "SLURM" not in out
    code, out, _ = cli("--url", backend_url, "show", t.run)
    assert code == 0
    assert "partition = gpu" in out and "CUDA_VISIBLE_DEVICES = 0,1" in out
    assert "imported: " in out and DRIVER not in out
    assert "cuda runtime (torch): 12.1" in out
    code, out, _ = cli("--url", backend_url, "log")
    assert code == 0 and "[slurm 12340_5]" in out


def test_log_filters_by_job(backend_url, fake_node, monkeypatch):
    with tracker(backend_url, git=False, name="task5"):
        pass
    monkeypatch.setenv("SLURM_JOB_ID", "12346")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "6")
    with tracker(backend_url, git=False, name="task6"):
        pass
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name)
    with tracker(backend_url, git=False, name="interactive"):
        pass

    def names(*args: str) -> list[str]:
        code, out, _ = cli("--url", backend_url, "log", "--json", *args)
        assert code == 0
        return sorted(row["name"] for row in json.loads(out))

    assert names("--job", "12345") == ["task5"]
    assert names("--job", "12340") == ["task5", "task6"]  # the whole array
    assert names("--job", "999") == []
    assert names() == ["interactive", "task5", "task6"]


def test_a_hundred_runs_on_one_node_share_one_environment(sqlite_url, fake_node, monkeypatch):
    envs = set()
    for task in range(100):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_JOB_ID", str(20000 + task))
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", str(task % 4))
        with tracker(sqlite_url, git=False) as t:
            envs.add(t.environment)
    assert len(envs) == 1
    with Store(sqlite_url) as store:
        counts = store.stats()["objects"]
    assert counts["environment"] == 1 and counts["condaset"] == 1 and counts["run"] == 100


def test_each_probe_can_be_switched_off(sqlite_url, fake_node):
    off = ["conda", "gpu", "container", "job", "imports"]
    with tracker(sqlite_url, git=False, probes_off=off) as t:
        pass
    with Store(sqlite_url) as store:
        env, run = store.get(t.environment).obj, store.get(t.run).obj
        [end_digest] = store.run_ends([bytes.fromhex(t.run)])
        end = store.get(end_digest).obj
    assert isinstance(env, Environment) and isinstance(run, Run) and isinstance(end, RunEnd)
    assert (env.conda, env.gpu, env.container) == (None, None, None)
    assert (run.job, run.gpu, end.imported, end.cuda) == (None, None, None, None)


def test_probes_off_in_pyproject_and_unknown_names(sqlite_url, fake_node, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.provstore]\nprobes_off = ["gpu"]\n')
    monkeypatch.chdir(tmp_path)
    with tracker(sqlite_url, git=False) as t:
        pass
    with Store(sqlite_url) as store:
        env = store.get(t.environment).obj
    assert isinstance(env, Environment) and env.gpu is None and env.conda is not None
    from provstore import ConfigError, UsageError

    with pytest.raises(ConfigError, match="unknown probe 'gpus'"):
        tracker(sqlite_url, probes_off=["gpus"])
    with pytest.raises(UsageError, match="list of probe names"):
        tracker(sqlite_url, probes_off="gpu")


def test_diff_shows_conda_changes_beside_pip(sqlite_url, fake_node):
    with tracker(sqlite_url, git=False) as t:
        pass
    meta = sys.prefix + "/conda-meta"
    import os

    os.remove(f"{meta}/mkl-2024.0.0-ha957f24_49657.json")
    with open(f"{meta}/mkl-2024.1.0-h0_0.json", "w") as record:
        json.dump({"name": "mkl", "version": "2024.1.0", "build": "h0_0",
                   "channel": "conda-forge"}, record)  # fmt: skip
    code, out, err = cli("--url", sqlite_url, "diff", t.run)
    assert code == 0, err
    assert "~ mkl" in out and "2024.0.0" in out and "2024.1.0" in out
    code, out, _ = cli("--url", sqlite_url, "diff", t.run, "--json")
    changed = json.loads(out)["conda"]
    assert [c["name"] for c in changed] == ["mkl"]


def test_a_secret_in_a_container_label_is_redacted(sqlite_url, fake_node):
    labels = fake_node / ".singularity.d" / "labels.json"
    labels.write_text(json.dumps({"source": "https://alice:hunter2hunter2@git.example/repo"}))
    with tracker(sqlite_url, git=False) as t:
        pass
    with Store(sqlite_url) as store:
        env = store.get(t.environment)
    assert b"hunter2hunter2" not in env.data
    assert isinstance(env.obj, Environment) and env.obj.container is not None
    assert "git.example" in env.obj.container["labels"]["source"]
