"""OpenLineage run events (spec 2-0-2) for recorded runs: a START and a COMPLETE or FAIL each.

The events are plain JSON-ready maps built here without the OpenLineage client, so exporting
needs no extra package; live emission (:mod:`provstore.tracking.lineage_events`) hands the
same maps to the official client.

* ``run.runId`` is a UUID derived from the run's digest (:func:`~provstore.exchange.gathered.
  run_uuid`): every export of a run, and its live events, carry the same id.
* ``job`` is the configured namespace and the run's name (else its command).
* Inputs and outputs are datasets: a product with a path is ``file`` + its path (OpenLineage's
  naming for a local file), one without is the job namespace + the product's name.  The
  standard ``version`` facet holds the content digest (``blake3:<hex>``; the product's digest
  when it records no bytes).
* Custom facets (``provstore_run``, ``provstore_environment``, ``provstore_git``,
  ``provstore_product``) carry the digests; their ``_schemaURL`` points at the JSON Schema
  shipped with the documentation (``docs/_static/openlineage-facets-1.json``).

https://openlineage.io/spec/2-0-2/OpenLineage.json
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, BinaryIO

from provstore.core.digests import to_hex
from provstore.core.objects import Environment, LibrarySet, Product, Run, RunEnd
from provstore.exchange.gathered import gather, iso, run_label, run_uuid

if TYPE_CHECKING:
    from provstore.exchange.transfer import ExportResult
    from provstore.store import Store

__all__ = [
    "FACETS_SCHEMA",
    "RUN_EVENT_SCHEMA",
    "complete_event",
    "producer",
    "run_events",
    "start_event",
    "write_events",
]

RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
VERSION_FACET_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
    "#/$defs/DatasetVersionDatasetFacet"
)
ERROR_FACET_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json"
    "#/$defs/ErrorMessageRunFacet"
)
JOB_TYPE_FACET_SCHEMA = (
    "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"
)
FACETS_SCHEMA = "https://provstore.readthedocs.io/en/latest/_static/openlineage-facets-1.json"
"""The JSON Schema of provstore's custom facets (a copy is in ``docs/_static``)."""

Event = dict[str, Any]
_PRODUCT_FACET = f"{FACETS_SCHEMA}#/$defs/ProvstoreProductFacet"


@functools.cache
def producer() -> str:
    """The ``producer`` URI: this provstore release (looked up once: it reads metadata)."""
    try:
        release = version("provstore")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        release = "unknown"
    return f"https://pypi.org/project/provstore/{release}/"


def _facet(schema: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {"_producer": producer(), "_schemaURL": schema, **fields}


def _custom(name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return _facet(f"{FACETS_SCHEMA}#/$defs/{name}", fields)


def _job(run: Run, namespace: str) -> dict[str, Any]:
    job_type = {"processingType": "BATCH", "integration": "PROVSTORE", "jobType": "RUN"}
    return {
        "namespace": namespace,
        "name": run_label(run),
        "facets": {"jobType": _facet(JOB_TYPE_FACET_SCHEMA, job_type)},
    }


def _run_facets(
    digest: bytes,
    run: Run,
    env: Environment | None,
    libs: LibrarySet | None,
) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "provstore_run": _custom(
            "ProvstoreRunFacet",
            {
                "digest": to_hex(digest),
                "host": run.host,
                "user": run.user,
                "argv": list(run.argv),
                "command": None if run.command is None else list(run.command),
                "cwd": run.cwd,
                "executable": run.executable,
            },
        )
    }
    env_fields: dict[str, Any] = {"digest": to_hex(run.environment)}
    if env is not None:
        env_fields.update(
            implementation=env.implementation,
            pythonVersion=env.python_version,
            system=env.system,
            release=env.release,
            machine=env.machine,
            libraryset=to_hex(env.libraryset),
        )
    if libs is not None:
        env_fields["distributions"] = [f"{name}=={ver}" for name, ver in libs.distributions]
    facets["provstore_environment"] = _custom("ProvstoreEnvironmentFacet", env_fields)
    if run.code is not None:
        code = run.code
        facets["provstore_git"] = _custom(
            "ProvstoreGitFacet",
            {
                "root": code.root,
                "commit": code.commit,
                "branch": code.branch,
                "dirty": code.dirty,
                "diffDigest": None if code.diff_digest is None else code.diff_digest.hex(),
            },
        )
    return facets


def _dataset(digest: bytes, product: Product, namespace: str) -> dict[str, Any]:
    """A product as a dataset, built without ``None`` in it (thousands per event: kept lean)."""
    by = producer()
    stamp = f"blake3:{product.content.hex()}" if product.content else to_hex(digest)
    fields: dict[str, Any] = {
        "_producer": by,
        "_schemaURL": _PRODUCT_FACET,
        "digest": to_hex(digest),
        "name": product.name,
    }
    if product.version is not None:
        fields["version"] = product.version
    if product.size is not None:
        fields["size"] = product.size
    return {
        "namespace": "file" if product.path else namespace,
        "name": product.path or product.name,
        "facets": {
            "version": {
                "_producer": by,
                "_schemaURL": VERSION_FACET_SCHEMA,
                "datasetVersion": stamp,
            },
            "provstore_product": fields,
        },
    }


def _drop_none(value: Any) -> Any:
    """No ``null`` anywhere: the spec's optional fields are left out, not null."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def start_event(
    digest: bytes,
    run: Run,
    namespace: str,
    env: Environment | None = None,
    libs: LibrarySet | None = None,
) -> Event:
    """The START event of a run, at its start time."""
    event: Event = _drop_none({
        "eventType": "START",
        "eventTime": iso(run.started_ns),
        "producer": producer(),
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": str(run_uuid(digest)), "facets": _run_facets(digest, run, env, libs)},
        "job": _job(run, namespace),
        "inputs": [],
        "outputs": [],
    })  # fmt: skip
    return event


def complete_event(
    digest: bytes,
    run: Run,
    end: RunEnd,
    namespace: str,
    inputs: Sequence[tuple[bytes, Product]],
    outputs: Sequence[tuple[bytes, Product]],
    env: Environment | None = None,
    libs: LibrarySet | None = None,
) -> Event:
    """The COMPLETE (or FAIL) event of a run, at its end, with what it read and made."""
    facets = _run_facets(digest, run, env, libs)
    if end.status == "failed":
        message = end.error or f"exit code {end.exit_code}"
        fields = {"message": message, "programmingLanguage": "PYTHON"}
        facets["errorMessage"] = _facet(ERROR_FACET_SCHEMA, fields)
    event: Event = _drop_none({
        "eventType": "COMPLETE" if end.status == "succeeded" else "FAIL",
        "eventTime": iso(end.finished_ns),
        "producer": producer(),
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": str(run_uuid(digest)), "facets": facets},
        "job": _job(run, namespace),
    })  # fmt: skip
    event["inputs"] = [_dataset(d, p, namespace) for d, p in inputs]  # no None in these
    event["outputs"] = [_dataset(d, p, namespace) for d, p in outputs]
    return event


def run_events(store: Store, refs: Sequence[str | bytes], namespace: str) -> list[Event]:
    """START and COMPLETE/FAIL events for every run in the closure of ``refs``, in time order.

    A run with no recorded end (still running, or killed) has a START event only.
    """
    gathered = gather(store, refs)
    events: list[Event] = []
    for view in gathered.runs:
        env = gathered.environments.get(view.run.environment)
        libs = gathered.librarysets.get(env.libraryset) if env else None
        events.append(start_event(view.digest, view.run, namespace, env, libs))
        if view.end is not None:
            products = gathered.products
            inputs = [(d, products[d]) for d in view.inputs if d in products]
            outputs = [(d, products[d]) for d in view.outputs]
            events.append(
                complete_event(
                    view.digest, view.run, view.end, namespace, inputs, outputs, env, libs
                )
            )
    events.sort(key=lambda event: event["eventTime"])
    return events


def write_events(
    store: Store, refs: Sequence[str | bytes], fileobj: BinaryIO, *, namespace: str
) -> ExportResult:
    """The closure's run events as JSON Lines (one event a line, as the file transport does)."""
    from provstore.exchange.transfer import ExportResult

    events = run_events(store, refs, namespace)
    for event in events:
        line = json.dumps(event, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        fileobj.write(line.encode("utf-8") + b"\n")
    roots = tuple(to_hex(store.resolve(ref)) for ref in refs)
    return ExportResult(roots, len(events), "events")
