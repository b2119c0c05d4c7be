"""A closure as a Workflow Run RO-Crate: a Process Run Crate, built with ``rocrate``.

RO-Crate 1.1 with the Process Run Crate 0.5 profile: the newest pair the offline validator
(``roc-validator``) can check today (it has Process Run Crate 0.5, defined on RO-Crate 1.1;
Workflow Run Crate 0.6 on RO-Crate 1.3 is not in it yet).  The mapping:

* the root dataset ``conformsTo`` the profile and ``mentions`` one ``CreateAction`` per run;
* a run's action has the ``instrument`` (a ``SoftwareApplication``: the command, run by the
  interpreter, with the run's distributions as ``softwareRequirements``), ``object`` (the
  products it read), ``result`` (the products it made), ``startTime``/``endTime``, ``agent``
  (the account that ran it, a ``Person``), ``actionStatus`` and, when it failed, ``error``;
  the allow-listed environment variables are ``environment`` ``PropertyValue`` entries;
* a product is a ``File`` when it records bytes, carrying its digests (``identifier``
  ``urn:provstore:<digest>``, ``blake3`` in a ``PropertyValue``), else a ``CreativeWork``.
  With ``with_files`` a file still holding the recorded bytes is copied into the crate
  (``data/``); otherwise it is named by its ``file://`` URI and not included.

https://www.researchobject.org/workflow-run-crate/profiles/0.5/process_run_crate/
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from provstore.core.digests import to_hex
from provstore.core.errors import ConfigError
from provstore.core.objects import Product
from provstore.exchange.gathered import Gathered, RunView, file_digests, gather, iso, run_label

if TYPE_CHECKING:
    from provstore.exchange.transfer import ExportResult
    from provstore.store import Store

__all__ = ["PROFILE", "RO_CRATE_VERSION", "build", "write_directory", "write_zip"]

RO_CRATE_VERSION = "1.1"
PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
WFRUN_ENVIRONMENT = "https://w3id.org/ro/terms/workflow-run#environment"
_STATUS = {
    "succeeded": "http://schema.org/CompletedActionStatus",
    "failed": "http://schema.org/FailedActionStatus",
}


def _when(ns: int) -> str:
    """ISO 8601 to the second, UTC (what the profile's checks read)."""
    return iso(ns).split(".")[0] + "+00:00"


def _set(entity: Any, key: str, values: list[Any]) -> None:
    """A property: one value as itself (RO-Crate 1.1 prefers it), several as a list."""
    if values:
        entity[key] = values[0] if len(values) == 1 else values


def _rocrate() -> Any:
    try:
        from rocrate.rocrate import ROCrate
    except ImportError:
        raise ConfigError(
            "the ro-crate format needs the 'rocrate' package: pip install 'provstore[rocrate]'"
        ) from None
    return ROCrate


def build(store: Store, refs: Sequence[str | bytes], *, with_files: bool) -> Any:
    """The ``rocrate.ROCrate`` of the closure of ``refs`` (files added, not yet copied)."""
    roc = _rocrate()
    from rocrate.model.contextentity import ContextEntity

    gathered = gather(store, refs)
    crate = roc(version=RO_CRATE_VERSION)
    root = crate.root_dataset
    names = ", ".join(sorted({run_label(v.run) for v in gathered.runs})) or "no runs"
    root["name"] = f"provstore provenance of {len(gathered.roots)} objects ({names})"
    root["description"] = (
        "Runs recorded by provstore, with what each read and made. Roots: "
        + ", ".join(to_hex(r) for r in gathered.roots)
    )
    root["conformsTo"] = {"@id": PROFILE}
    # The workflow-run term the RO-Crate 1.1 context lacks, inline (no second context to fetch).
    crate.metadata.extra_terms["environment"] = WFRUN_ENVIRONMENT
    root["license"] = crate.add(ContextEntity(crate, "#license", properties={
        "@type": "CreativeWork",
        "name": "not recorded",
        "description": "provstore does not record the license of the data it describes; ask "
        "the people who made them.",
    }))  # fmt: skip
    crate.add(ContextEntity(crate, PROFILE, properties={
        "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5",
    }))  # fmt: skip
    entities = _products(crate, gathered, with_files)
    _set(root, "mentions", [_action(crate, gathered, view, entities) for view in gathered.runs])
    return crate


def _products(crate: Any, gathered: Gathered, with_files: bool) -> dict[bytes, Any]:
    from rocrate.model.contextentity import ContextEntity

    out: dict[bytes, Any] = {}
    taken: set[str] = set()
    for digest, product in sorted(gathered.products.items()):
        props = _product_properties(digest, product)
        if product.content is not None:
            blake = f"#blake3-{product.content.hex()}"
            if crate.dereference(blake) is None:
                crate.add(ContextEntity(crate, blake, properties={
                    "@type": "PropertyValue", "name": "blake3", "value": product.content.hex(),
                }))  # fmt: skip
            props["additionalProperty"] = {"@id": blake}
        source = product.path if with_files and file_digests(product) is not None else None
        if source is not None:
            dest = _unique(f"data/{os.path.basename(source)}", taken, digest)
            out[digest] = crate.add_file(source, dest_path=dest, properties=props)
        elif product.content is not None and product.path:
            props["@type"] = "File"
            out[digest] = crate.add(ContextEntity(crate, "file://" + product.path,
                                                  properties=props))  # fmt: skip
            crate.root_dataset.append_to("hasPart", out[digest])
        else:
            props["@type"] = "CreativeWork"
            out[digest] = crate.add(ContextEntity(crate, f"#product-{to_hex(digest)}",
                                                  properties=props))  # fmt: skip
    return out


def _unique(name: str, taken: set[str], digest: bytes) -> str:
    if name in taken:
        stem, dot, ext = name.rpartition(".")
        name = (
            f"{stem}-{to_hex(digest)[:12]}{dot}{ext}" if dot else f"{name}-{to_hex(digest)[:12]}"
        )
    taken.add(name)
    return name


def _product_properties(digest: bytes, product: Product) -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": product.name,
        "identifier": f"urn:provstore:{to_hex(digest)}",
    }
    if product.version is not None:
        props["version"] = product.version
    if product.size is not None:
        props["contentSize"] = str(product.size)
    kind = mimetypes.guess_type(product.path or product.name)[0]
    if kind is not None and product.content is not None:
        props["encodingFormat"] = kind
    return props


def _action(crate: Any, gathered: Gathered, view: RunView, entities: dict[bytes, Any]) -> Any:
    from rocrate.model.contextentity import ContextEntity

    run = view.run
    env = gathered.environments.get(run.environment)
    libs = gathered.librarysets.get(env.libraryset) if env else None
    tool_id = f"urn:provstore:{to_hex(run.environment)}"
    tool = crate.dereference(tool_id)
    if tool is None:
        tool_props: dict[str, Any] = {"@type": "SoftwareApplication", "name": "Python"}
        if env is not None:
            tool_props["name"] = f"{env.implementation} {env.python_version}"
            tool_props["softwareVersion"] = env.python_version
            tool_props["url"] = "https://www.python.org/"
            tool_props["operatingSystem"] = f"{env.system} {env.release} {env.machine}"
        tool = crate.add(ContextEntity(crate, tool_id, properties=tool_props))
        if libs is not None:
            dists = [_distribution(crate, name, version) for name, version in libs.distributions]
            _set(tool, "softwareRequirements", dists)
    person_id = f"#agent-{run.user}@{run.host}"
    person = crate.dereference(person_id) or crate.add(
        ContextEntity(crate, person_id, properties={"@type": "Person",
                                                    "name": f"{run.user}@{run.host}"})
    )  # fmt: skip
    props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"Run {run_label(run)}",
        "description": " ".join(run.command or run.argv),
        "identifier": f"urn:provstore:{to_hex(view.digest)}",
        "startTime": _when(run.started_ns),
    }
    if view.end is not None:
        props["endTime"] = _when(view.end.finished_ns)
        props["actionStatus"] = _STATUS[view.end.status]
        if view.end.status == "failed":
            props["error"] = view.end.error or f"exit code {view.end.exit_code}"
    action = crate.add(ContextEntity(crate, f"#run-{to_hex(view.digest)}", properties=props))
    action["instrument"] = tool
    action["agent"] = person
    _set(action, "object", [entities[d] for d in view.inputs if d in entities])
    _set(action, "result", [entities[d] for d in view.outputs])
    if env is not None:
        variables = []
        for name, value in sorted(env.variables.items()):
            text = value if isinstance(value, str) else value.decode("utf-8", "backslashreplace")
            var_id = f"#env-{to_hex(run.environment)[:12]}-{name}"
            variables.append(crate.dereference(var_id) or crate.add(ContextEntity(
                crate, var_id, properties={"@type": "PropertyValue", "name": name, "value": text}
            )))  # fmt: skip
        _set(action, "environment", variables)
    return action


def _distribution(crate: Any, name: str, version: str) -> Any:
    from rocrate.model.contextentity import ContextEntity

    url = f"https://pypi.org/project/{name}/{version}/"
    props = {"@type": "SoftwareApplication", "name": name, "softwareVersion": version, "url": url}
    return crate.dereference(url) or crate.add(ContextEntity(crate, url, properties=props))


def write_directory(
    store: Store, refs: Sequence[str | bytes], path: str, *, with_files: bool
) -> ExportResult:
    """Write the crate into the (empty) directory ``path``."""
    from provstore.exchange.transfer import ExportResult

    crate = build(store, refs, with_files=with_files)
    crate.write(path)
    roots = tuple(to_hex(store.resolve(ref)) for ref in refs)
    return ExportResult(roots, len(crate.get_entities()), "entities")


def write_zip(
    store: Store,
    refs: Sequence[str | bytes],
    fileobj: BinaryIO,
    *,
    with_files: bool,
) -> ExportResult:
    """Write the crate as a zip archive (``ro-crate-metadata.json`` at its top) to ``fileobj``."""
    temp = tempfile.mkdtemp(prefix="provstore-crate-")
    try:
        result = write_directory(store, refs, temp, with_files=with_files)
        with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED) as archive:
            for folder, _, files in sorted(os.walk(temp)):
                for name in sorted(files):
                    full = os.path.join(folder, name)
                    archive.write(full, os.path.relpath(full, temp))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return result
