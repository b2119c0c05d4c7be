"""A closure as a W3C PROV-JSON document (https://www.w3.org/submissions/prov-json/).

The mapping, one PROV record per stored fact:

* a :class:`~provstore.core.objects.Product` is an ``entity`` (``prov:type``
  ``provstore:Product``) named by its digest; its metadata is flattened into
  ``provstore:meta_<key>`` attributes;
* a :class:`~provstore.core.objects.Run` is an ``activity``; its
  :class:`~provstore.core.objects.RunEnd` (when among the objects) adds
  ``prov:endTime``, the status and the inputs it ``used``;
* the environment, its library set and the run's variables are entities the run ``used``
  (roles ``environment`` and ``variables``).  The variables entity names the redacted variables
  and gives the count, not the values: they are in the store (and in bundles) under its digest,
  and a PROV document is often shared more widely than either;
* a :class:`~provstore.core.objects.Signature` (who vouched for an imported bundle) is an
  ``entity`` of type ``provstore:Signature`` naming the key, the signer and the roots;
* the account ``user@host`` that started a run is an ``agent`` of type ``prov:Person``
  (``wasAssociatedWith``).  An account may belong to a service rather than a person, but it is
  the "who ran this" a reader of the document looks for, and the software that ran is described
  by the environment entity already; a ``prov:SoftwareAgent`` would say it twice.

Identifiers are ``provstore:<64-hex digest>`` (the prefix expands to ``urn:provstore:``); the
ids of relations are blank nodes numbered in digest order, so a closure always gives the same
document, whatever order its objects come in.  Values that JSON cannot carry as a PROV scalar
are typed literals: bytes as ``xsd:hexBinary``, lists, maps and None as ``rdf:JSON`` text.
"""

from __future__ import annotations

import datetime
import json
import shlex
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provstore.core.digests import to_hex
from provstore.core.objects import (
    CondaSet,
    Environment,
    ImportSet,
    LibrarySet,
    Product,
    Run,
    RunEnd,
    Sealed,
    Signature,
    Variables,
)

__all__ = ["PREFIXES", "PROV_MAPPING", "to_prov_json"]

PREFIXES: dict[str, str] = {
    "provstore": "urn:provstore:",
    "prov": "http://www.w3.org/ns/prov#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
}
_EPOCH = datetime.datetime(1970, 1, 1)
# Characters a PROV-N local name (and an IRI) carries as they are; the rest are %-encoded.
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

Attributes = dict[str, Any]


def to_prov_json(objects: Mapping[bytes, Sealed]) -> dict[str, Any]:
    """The objects of a closure (any kinds) as one PROV-JSON document, ready for ``json.dumps``.

    Relations are stated by the object that records them (a product names its run and
    parents, a run end its inputs), even when the other end is not among ``objects``.
    """
    doc = _Document()
    for item in sorted(objects.values(), key=lambda item: item.digest):
        PROV_MAPPING[item.kind](doc, item)
    for run in sorted(doc.runs.keys() | doc.ends.keys()):
        _add_run(doc, run, doc.runs.get(run), sorted(doc.ends.get(run, ()), key=_end_order))
    return doc.render()


@dataclass(slots=True)
class _Document:
    """Elements by identifier and relations as sets of digest tuples, numbered at the end."""

    entity: dict[str, Attributes] = field(default_factory=dict)
    activity: dict[str, Attributes] = field(default_factory=dict)
    agent: dict[str, Attributes] = field(default_factory=dict)
    generated: set[tuple[bytes, bytes]] = field(default_factory=set)  # (product, run)
    used: set[tuple[bytes, bytes, str]] = field(default_factory=set)  # (run, entity, role)
    derived: set[tuple[bytes, bytes, bytes | None]] = field(default_factory=set)
    associated: set[tuple[bytes, str]] = field(default_factory=set)  # (run, agent id)
    runs: dict[bytes, Run] = field(default_factory=dict)  # gathered, then one activity each
    ends: dict[bytes, list[tuple[bytes, RunEnd]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def render(self) -> dict[str, Any]:
        """The PROV-JSON map: prefixes, elements, then relations with deterministic ids."""
        out: dict[str, Any] = {"prefix": dict(PREFIXES)}
        for name in ("entity", "activity", "agent"):
            elements: dict[str, Attributes] = getattr(self, name)
            if elements:
                out[name] = dict(sorted(elements.items()))
        relations = {
            "wasGeneratedBy": ("wgb", [_generation(*r) for r in sorted(self.generated)]),
            "used": ("used", [_usage(*r) for r in sorted(self.used)]),
            "wasDerivedFrom": ("wdf", [_derivation(*r) for r in sorted(self.derived, key=_key)]),
            "wasAssociatedWith": ("waw", [_association(*r) for r in sorted(self.associated)]),
        }
        for name, (tag, records) in relations.items():
            if records:
                out[name] = {f"_:{tag}{n}": record for n, record in enumerate(records, 1)}
        return out


def _key(relation: tuple[bytes, bytes, bytes | None]) -> tuple[bytes, bytes, bytes]:
    return relation[0], relation[1], relation[2] or b""


def _generation(product: bytes, run: bytes) -> Attributes:
    return {"prov:entity": _id(product), "prov:activity": _id(run)}


def _usage(run: bytes, entity: bytes, role: str) -> Attributes:
    record = {"prov:activity": _id(run), "prov:entity": _id(entity)}
    return {**record, "prov:role": role} if role else record


def _derivation(product: bytes, parent: bytes, run: bytes | None) -> Attributes:
    record = {"prov:generatedEntity": _id(product), "prov:usedEntity": _id(parent)}
    return record if run is None else {**record, "prov:activity": _id(run)}


def _association(run: bytes, agent: str) -> Attributes:
    return {"prov:activity": _id(run), "prov:agent": agent}


# -- elements ---------------------------------------------------------------------------------


def _add_product(doc: _Document, digest: bytes, product: Product) -> None:
    attrs: Attributes = {"prov:type": _qname("provstore:Product"), "prov:label": product.name}
    _put(attrs, "provstore:version", product.version)
    _put(attrs, "provstore:contentDigest", _hex(product.content))
    _put(attrs, "provstore:size", product.size)
    _put(attrs, "provstore:path", product.path)
    for key in sorted(product.metadata):
        attrs[f"provstore:meta_{_local(key)}"] = _value(product.metadata[key])
    doc.entity[_id(digest)] = attrs
    if product.run is not None:
        doc.generated.add((digest, product.run))
        doc.used.update((product.run, parent, "") for parent in product.parents)
    doc.derived.update((digest, parent, product.run) for parent in product.parents)


def _add_run(
    doc: _Document, digest: bytes, run: Run | None, ends: list[tuple[bytes, RunEnd]]
) -> None:
    """The activity for a run, from the run itself and its end records (latest last)."""
    attrs: Attributes = {"prov:type": _qname("provstore:Run")}
    if run is not None:
        attrs.update(_run_attributes(run))
        account = f"{run.user}@{run.host}"
        agent = f"provstore:agent_{_local(account)}"
        doc.agent[agent] = {
            "prov:type": _qname("prov:Person"),
            "prov:label": account,
            "provstore:user": run.user,
            "provstore:host": run.host,
        }
        doc.associated.add((digest, agent))
        doc.used.add((digest, run.environment, "environment"))
        doc.used.add((digest, run.variables, "variables"))
    if ends:
        attrs.update(_end_attributes(ends))
    for _, end in ends:
        doc.used.update((digest, product, "") for product in end.inputs)
    doc.activity[_id(digest)] = attrs


def _run_attributes(run: Run) -> Attributes:
    shown = run.command if run.command is not None else run.argv
    attrs: Attributes = {
        "prov:label": run.name or shlex.join(shown) or "run",
        "prov:startTime": _iso(run.started_ns),
        "provstore:host": run.host,
        "provstore:user": run.user,
        "provstore:argv": shlex.join(run.argv),
        "provstore:cwd": run.cwd,
        "provstore:executable": run.executable,
        "provstore:pid": run.pid,
    }
    _put(attrs, "provstore:name", run.name)
    _put(attrs, "provstore:command", None if run.command is None else shlex.join(run.command))
    code = run.code
    if code is not None:
        attrs["provstore:codeRoot"] = code.root
        _put(attrs, "provstore:codeCommit", code.commit)
        _put(attrs, "provstore:codeBranch", code.branch)
        attrs["provstore:codeDirty"] = code.dirty
        _put(attrs, "provstore:codeDiffDigest", _hex(code.diff_digest))
    if run.job:
        attrs["provstore:job"] = _json_literal(dict(run.job))
    if run.gpu:
        attrs["provstore:gpu"] = _json_literal(dict(run.gpu))
    return attrs


def _end_order(end: tuple[bytes, RunEnd]) -> tuple[int, bytes]:
    return end[1].finished_ns, end[0]


def _end_attributes(ends: list[tuple[bytes, RunEnd]]) -> Attributes:
    """How the run ended, from the latest end record; every record's digest is listed."""
    last = ends[-1][1]
    attrs: Attributes = {"prov:endTime": _iso(last.finished_ns), "provstore:status": last.status}
    _put(attrs, "provstore:exitCode", last.exit_code)
    _put(attrs, "provstore:error", last.error)
    if last.imported is not None:
        attrs["provstore:imported"] = _qname(_id(last.imported))
    if last.cuda:
        attrs["provstore:cudaRuntime"] = _json_literal(dict(last.cuda))
    digests = [to_hex(digest) for digest, _ in ends]
    attrs["provstore:runEnd"] = digests[0] if len(digests) == 1 else digests
    return attrs


def _environment(env: Environment) -> Attributes:
    label = f"{env.implementation} {env.python_version} on {env.system} {env.machine}"
    attrs: Attributes = {
        "prov:type": _qname("provstore:Environment"),
        "prov:label": label,
        "provstore:implementation": env.implementation,
        "provstore:pythonVersion": env.python_version,
        "provstore:system": env.system,
        "provstore:release": env.release,
        "provstore:machine": env.machine,
        "provstore:libc": env.libc,
        "provstore:libraryset": _qname(_id(env.libraryset)),
    }
    if env.variables:
        attrs["provstore:variables"] = _json_literal(_text_variables(env.variables))
    _put(attrs, "provstore:redacted", _many(env.redacted))
    if env.conda is not None:
        attrs["provstore:conda"] = _qname(_id(env.conda))
    if env.gpu:
        attrs["provstore:gpu"] = _json_literal(dict(env.gpu))
    if env.container:
        attrs["provstore:container"] = _json_literal(dict(env.container))
    return attrs


def _condaset(conda: CondaSet) -> Attributes:
    attrs: Attributes = {
        "prov:type": _qname("provstore:CondaSet"),
        "prov:label": f"{len(conda.packages)} conda packages",
    }
    _put(attrs, "provstore:package", _many(f"{n}={v}={b}" for n, v, b, _ in conda.packages))
    return attrs


def _libraryset(libs: LibrarySet) -> Attributes:
    attrs: Attributes = {
        "prov:type": _qname("provstore:LibrarySet"),
        "prov:label": f"{len(libs.distributions)} distributions",
    }
    _put(attrs, "provstore:distribution", _many(f"{n}=={v}" for n, v in libs.distributions))
    return attrs


def _variables(variables: Variables) -> Attributes:
    count = len(variables.variables)
    attrs: Attributes = {
        "prov:type": _qname("provstore:Variables"),
        "prov:label": f"{count} environment variables",
        "provstore:count": count,
    }
    _put(attrs, "provstore:redacted", _many(variables.redacted))
    return attrs


def _map_product(doc: _Document, item: Sealed) -> None:
    assert isinstance(item.obj, Product)
    _add_product(doc, item.digest, item.obj)


def _map_run(doc: _Document, item: Sealed) -> None:
    assert isinstance(item.obj, Run)
    doc.runs[item.digest] = item.obj


def _map_run_end(doc: _Document, item: Sealed) -> None:
    assert isinstance(item.obj, RunEnd)
    doc.ends[item.obj.run].append((item.digest, item.obj))


def _map_environment(doc: _Document, item: Sealed) -> None:
    assert isinstance(item.obj, Environment)
    doc.entity[_id(item.digest)] = _environment(item.obj)


def _map_libraryset(doc: _Document, item: Sealed) -> None:
    assert isinstance(item.obj, LibrarySet)
    doc.entity[_id(item.digest)] = _libraryset(item.obj)


def _importset(used: ImportSet) -> Attributes:
    attrs: Attributes = {
        "prov:type": _qname("provstore:ImportSet"),
        "prov:label": f"{len(used.distributions)} distributions imported",
    }
    _put(attrs, "provstore:distribution", _many(f"{n}=={v}" for n, v in used.distributions))
    return attrs


def _map_importset(doc: _Document, item: Sealed) -> None:
    assert isinstance(item.obj, ImportSet)
    doc.entity[_id(item.digest)] = _importset(item.obj)


def _map_condaset(doc: _Document, item: Sealed) -> None:
    assert isinstance(item.obj, CondaSet)
    doc.entity[_id(item.digest)] = _condaset(item.obj)


def _map_variables(doc: _Document, item: Sealed) -> None:
    assert isinstance(item.obj, Variables)
    doc.entity[_id(item.digest)] = _variables(item.obj)


def _map_signature(doc: _Document, item: Sealed) -> None:
    """A signature is an entity: who (which key) vouched for which roots, and when."""
    sig = item.obj
    assert isinstance(sig, Signature)
    doc.entity[_id(item.digest)] = {
        "prov:type": _qname("provstore:Signature"),
        "prov:label": f"signed by {sig.signer}" if sig.signer else "signature",
        "provstore:algorithm": sig.algorithm,
        "provstore:publicKey": sig.public_key.hex(),
        "provstore:signer": sig.signer,
        "provstore:signedAt": _iso(sig.signed_ns),
        "provstore:bundleChecksum": sig.checksum.hex(),
        "provstore:bundleObjects": sig.count,
        "provstore:root": [_id(root) for root in sig.roots],
    }


PROV_MAPPING: dict[str, Callable[[_Document, Sealed], None]] = {
    "product": _map_product,
    "run": _map_run,
    "runend": _map_run_end,
    "environment": _map_environment,
    "libraryset": _map_libraryset,
    "condaset": _map_condaset,
    "importset": _map_importset,
    "variables": _map_variables,
    "signature": _map_signature,
}
"""How each kind becomes PROV records: one entry per kind in ``provstore.core.objects.KINDS``."""


# -- values -----------------------------------------------------------------------------------


def _id(digest: bytes) -> str:
    return f"provstore:{to_hex(digest)}"


def _qname(name: str) -> dict[str, str]:
    return {"$": name, "type": "prov:QUALIFIED_NAME"}


def _hex(digest: bytes | None) -> str | None:
    return None if digest is None else digest.hex()


def _put(attrs: Attributes, name: str, value: Any) -> None:
    if value is not None:
        attrs[name] = value


def _many(values: Iterable[str]) -> list[str] | None:
    """A multi-valued attribute, or None (PROV has no empty value) when there are none."""
    return sorted(values) or None


def _local(text: str) -> str:
    """``text`` as a PROV-N local name: %-encoded UTF-8 beyond ``[A-Za-z0-9_-]``, reversibly."""
    return "".join(
        char if char in _PLAIN else "".join(f"%{b:02X}" for b in char.encode("utf-8"))
        for char in text
    )


def _iso(ns: int) -> str:
    """Integer nanoseconds UTC as an ``xsd:dateTime``, keeping every digit."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = (_EPOCH + datetime.timedelta(seconds=seconds)).isoformat()
    return f"{text}.{nanos:09d}".rstrip("0").rstrip(".") + "Z"


def _value(value: Any) -> Any:
    """A metadata value as a PROV attribute value."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, bytes):
        return {"$": value.hex(), "type": "xsd:hexBinary"}
    return _json_literal(value)


def _json_literal(value: Any) -> dict[str, str]:
    text = json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_bytes_hex
    )
    return {"$": text, "type": "rdf:JSON"}


def _bytes_hex(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _text_variables(variables: Mapping[str, str | bytes]) -> dict[str, str]:
    """Undecodable (bytes) values as escaped text, as ``provstore show`` prints them."""
    return {
        name: value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
        for name, value in variables.items()
    }
