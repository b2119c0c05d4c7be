"""Probes: what else a result depends on, read from files and variables only.

Each probe is a pure reader of files under ``root`` (``/`` on a live machine, a fake tree in
tests) and of a variables map; it imports no framework and starts no process.  A source that
is not there is silently absent (``None``); one that is there but cannot be read or parsed is
recorded as ``{"unreadable": reason}``, never an exception.

* :func:`gpu_facts` — NVIDIA driver version and GPU models (``/proc/driver/nvidia``): the
  environment.
* :func:`container_facts` — Docker/Podman, Apptainer/Singularity and Kubernetes: the image
  identity goes to the environment (never a container id, never a hash of the image file).
* :func:`job_facts` — the batch job (Slurm, PBS/Torque, LSF, SGE, HTCondor) or pod: the run.
* :func:`device_facts` — which GPUs the run was given (``CUDA_VISIBLE_DEVICES``, ...): the run.
* :func:`cuda_runtimes` — the CUDA runtime of frameworks the process has already imported,
  read at the run's end: the run's end.

The conda probe lives in :mod:`provstore.capture.conda`, the imported distributions in
:mod:`provstore.capture.imports`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

__all__ = [
    "container_facts",
    "cuda_runtimes",
    "device_facts",
    "gpu_facts",
    "job_facts",
]

Facts = dict[str, Any]
Variables = Mapping[str, Any]
_MAX_READ = 1 << 20  # a probe's file larger than this is not what it should be


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _clean(value: str) -> str:
    """Text a store can keep: no NUL, no surrogates, no surrounding blanks."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()


def _var(variables: Variables, name: str) -> str | None:
    value = variables.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip():
        return None
    return _clean(value)


def _read_text(path: str) -> str | None:
    """The file's text; ``None`` when it does not exist; OSError/ValueError when unreadable."""
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_READ + 1)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    if len(data) > _MAX_READ:
        raise ValueError(f"{path} is larger than {_MAX_READ} bytes")
    return data.decode("utf-8", "replace")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return _clean(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    return _clean(str(exc) or type(exc).__name__)


# -- GPUs ----------------------------------------------------------------------------------------


def gpu_facts(root: str = "/") -> Facts | None:
    """The NVIDIA driver version and the GPU models, in bus order; ``None`` without a driver."""
    base = _under(root, "/proc/driver/nvidia")
    if not os.path.isdir(base):
        return None
    facts: Facts = {"vendor": "nvidia"}
    try:
        version = _read_text(os.path.join(base, "version"))
        if version is not None:
            driver = _driver_version(version)
            if driver is None:
                raise ValueError("version file names no driver version")
            facts["driver"] = driver
        gpus = os.path.join(base, "gpus")
        models = []
        for bus in sorted(os.listdir(gpus)) if os.path.isdir(gpus) else ():
            info = _read_text(os.path.join(gpus, bus, "information"))
            model = _field(info or "", "Model")
            if model is None:
                raise ValueError(f"gpus/{bus}/information names no model")
            models.append(model)
        facts["models"] = models
    except (OSError, ValueError) as exc:
        return {"vendor": "nvidia", "unreadable": _reason(exc)}
    return facts


def _driver_version(text: str) -> str | None:
    # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 ..."
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            for word in line.split():
                if word[:1].isdigit() and "." in word:
                    return _clean(word)
    return None


def _field(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key and value.strip():
            return _clean(value)
    return None


def device_facts(variables: Variables) -> Facts | None:
    """The devices a run was given by its scheduler or container (volatile: the run)."""
    names = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
             "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")  # fmt: skip
    found = {name: value for name in names if (value := _var(variables, name)) is not None}
    return found or None


def cuda_runtimes(modules: Mapping[str, Any] | None = None) -> Facts | None:
    """Each already imported framework's CUDA runtime version (never imports one).

    Read at the run's end, from ``sys.modules``; a framework built without CUDA is left out.
    """
    modules = sys.modules if modules is None else modules
    found: Facts = {}
    for name, read in _RUNTIME_READERS.items():
        module = modules.get(name)
        if module is None:
            continue
        try:
            version = read(module)
        except Exception as exc:  # a framework's own failure must not fail the run's end
            found[name] = f"unreadable: {_reason(exc)}"
            continue
        if version:
            found[name] = _clean(str(version))
    return found or None


def _torch(module: Any) -> Any:
    return module.version.cuda


def _cupy(module: Any) -> Any:
    return module.cuda.runtime.runtimeGetVersion()


def _tensorflow(module: Any) -> Any:
    return module.sysconfig.get_build_info().get("cuda_version")


def _jax(module: Any) -> Any:
    versions = sys.modules.get("jax._src.lib")
    return getattr(versions, "cuda_runtime_version", None) if versions else None


_RUNTIME_READERS = {"torch": _torch, "cupy": _cupy, "tensorflow": _tensorflow, "jax": _jax}


# -- containers ---------------------------------------------------------------------------------


def container_facts(variables: Variables, root: str = "/") -> Facts | None:
    """The container image this process runs in, when it runs in one.

    Only the image's identity (name, image id or digest, labels), never the container's own
    id or name: a hundred containers of one image are one environment.
    """
    facts = _apptainer(variables, root) or _podman(root) or _docker(root)
    if _var(variables, "KUBERNETES_SERVICE_HOST") is not None:
        facts = dict(facts or {"runtime": "unknown"})
        facts["orchestrator"] = "kubernetes"
    return facts


def _apptainer(variables: Variables, root: str) -> Facts | None:
    image = _var(variables, "APPTAINER_CONTAINER") or _var(variables, "SINGULARITY_CONTAINER")
    marker = _under(root, "/.singularity.d")
    if image is None and not os.path.isdir(marker):
        return None
    runtime = "apptainer" if _var(variables, "APPTAINER_CONTAINER") else "singularity"
    facts: Facts = {"runtime": runtime}
    if image is not None:
        facts["image"] = image
    name = _var(variables, "APPTAINER_NAME") or _var(variables, "SINGULARITY_NAME")
    if name is not None:
        facts["name"] = name
    try:
        text = _read_text(os.path.join(marker, "labels.json"))
        if text is not None:
            labels = json.loads(text)
            if not isinstance(labels, dict):
                raise ValueError("labels.json does not hold a map")
            facts["labels"] = {_clean(str(k)): _clean(str(v)) for k, v in labels.items()}
            digest = _label_digest(facts["labels"])
            if digest is not None:
                facts["digest"] = digest
    except (OSError, ValueError) as exc:
        facts["unreadable"] = f"labels.json: {_reason(exc)}"
    return facts


def _label_digest(labels: Mapping[str, str]) -> str | None:
    """An image digest the build recorded among its labels (never computed: images are GBs)."""
    for key in sorted(labels):
        if key.lower().endswith("digest") and labels[key]:
            return labels[key]
    return None


def _podman(root: str) -> Facts | None:
    path = _under(root, "/run/.containerenv")
    try:
        text = _read_text(path)
    except (OSError, ValueError) as exc:
        return {"runtime": "podman", "unreadable": _reason(exc)}
    if text is None:
        return None
    facts: Facts = {"runtime": "podman"}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        value = value.strip().strip('"')
        if not sep or not value:
            continue
        if key.strip() == "image":
            facts["image"] = _clean(value)
        elif key.strip() == "imageid":
            facts["digest"] = _clean(value)
        elif key.strip() == "engine":
            facts["engine"] = _clean(value)
    return facts


def _docker(root: str) -> Facts | None:
    # Docker exposes no image name or digest inside the container; only that it is one.
    return {"runtime": "docker"} if os.path.exists(_under(root, "/.dockerenv")) else None


# -- batch jobs ---------------------------------------------------------------------------------

_JOB_VARIABLES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("slurm", "SLURM_JOB_ID", {
        "array_id": "SLURM_ARRAY_JOB_ID", "task_id": "SLURM_ARRAY_TASK_ID",
        "step_id": "SLURM_STEP_ID", "name": "SLURM_JOB_NAME", "cluster": "SLURM_CLUSTER_NAME",
        "partition": "SLURM_JOB_PARTITION", "nodes": "SLURM_JOB_NODELIST"}),
    ("pbs", "PBS_JOBID", {
        "array_id": "PBS_ARRAY_ID", "task_id": "PBS_ARRAY_INDEX", "name": "PBS_JOBNAME",
        "queue": "PBS_QUEUE", "server": "PBS_SERVER", "nodes": "PBS_NODEFILE"}),
    ("lsf", "LSB_JOBID", {
        "task_id": "LSB_JOBINDEX", "name": "LSB_JOBNAME", "queue": "LSB_QUEUE",
        "cluster": "LSF_CLUSTER_NAME", "nodes": "LSB_HOSTS"}),
    ("sge", "JOB_ID", {
        "task_id": "SGE_TASK_ID", "name": "JOB_NAME", "queue": "QUEUE", "cell": "SGE_CELL"}),
)  # fmt: skip


def job_facts(variables: Variables, root: str = "/") -> Facts | None:
    """The batch job (or pod) this process belongs to: volatile facts of the run."""
    for scheduler, id_variable, others in _JOB_VARIABLES:
        ident = _var(variables, id_variable)
        if ident is None:
            continue
        if scheduler == "sge" and _var(variables, "SGE_ROOT") is None:
            continue  # JOB_ID alone is too common a name to mean Grid Engine
        facts: Facts = {"scheduler": scheduler, "id": ident}
        for key, name in others.items():
            value = _var(variables, name)
            if value is not None and value != "undefined":  # SGE says so outside arrays
                facts[key] = value
        if scheduler == "pbs" and _var(variables, "PBS_ARRAYID") is not None:
            facts["task_id"] = _var(variables, "PBS_ARRAYID")  # Torque's spelling
        return facts
    condor = _condor(variables, root)
    if condor is not None:
        return condor
    pod = _var(variables, "POD_NAME") or (
        _var(variables, "HOSTNAME") if _var(variables, "KUBERNETES_SERVICE_HOST") else None
    )
    if pod is not None and _var(variables, "KUBERNETES_SERVICE_HOST") is not None:
        facts = {"scheduler": "kubernetes", "id": pod}
        namespace = _var(variables, "POD_NAMESPACE") or _namespace(root)
        if namespace is not None:
            facts["namespace"] = namespace
        return facts
    return None


def _namespace(root: str) -> str | None:
    path = _under(root, "/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        text = _read_text(path)
    except (OSError, ValueError):
        return None
    return _clean(text) if text and text.strip() else None


def _condor(variables: Variables, root: str) -> Facts | None:
    """HTCondor: the job ad file it names in ``_CONDOR_JOB_AD`` (``ClusterId = 12`` lines)."""
    ad = _var(variables, "_CONDOR_JOB_AD")
    if ad is None:
        return None
    facts: Facts = {"scheduler": "htcondor"}
    try:
        text = _read_text(_under(root, ad) if os.path.isabs(ad) else ad)
        if text is None:
            raise ValueError(f"the job ad {ad} does not exist")
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"')
        cluster, proc = values.get("ClusterId"), values.get("ProcId")
        if cluster is None:
            raise ValueError("the job ad names no ClusterId")
        facts["id"] = _clean(cluster if proc is None else f"{cluster}.{proc}")
        facts["array_id"] = _clean(cluster)
        for key, name in (("global_id", "GlobalJobId"), ("name", "JobBatchName")):
            if values.get(name):
                facts[key] = _clean(values[name])
    except (OSError, ValueError) as exc:
        facts["unreadable"] = _reason(exc)
    return facts
