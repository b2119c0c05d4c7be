"""in-toto attestations: a product's provenance, signed.

An in-toto Statement v1 carrying a SLSA Provenance v1 predicate, in a DSSE envelope signed
with a local ed25519 key.

The subject is the product's file, digested with ``sha256`` (which every in-toto verifier
knows; the digest set does not list BLAKE3, and verifiers ignore algorithms they do not know)
and ``blake3`` (what provstore records).  The sha256 is computed now, from the file, in the
same read that checks the file still holds the recorded BLAKE3 digest: recording stays
BLAKE3-only.  Inputs carry ``sha256`` too when their files are still here and unchanged.

* https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
* https://slsa.dev/spec/v1.0/provenance
* https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
"""

from __future__ import annotations

import base64
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from provstore.core.digests import to_hex
from provstore.core.errors import CheckFailed, UsageError
from provstore.core.objects import Product
from provstore.exchange.gathered import RunView, file_digests, gather, iso
from provstore.exchange.signing import PrivateKey
from provstore.store import Store

__all__ = [
    "BUILD_TYPE",
    "PAYLOAD_TYPE",
    "attest",
    "pae",
    "sign_envelope",
    "statement",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:provstore:buildType:run:v1"
"""What ``externalParameters`` and ``internalParameters`` hold (docs/formats/in-toto.rst)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature is over."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_envelope(payload: bytes, key: PrivateKey) -> dict[str, Any]:
    """A DSSE envelope of an in-toto payload signed by ``key`` (its securesystemslib key id)."""
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": key.id, "sig": base64.b64encode(signature).decode("ascii")}],
    }


def statement(store: Store, ref: str | bytes, *, path: str | None = None) -> dict[str, Any]:
    """The in-toto Statement for the product ``ref`` (its file read at ``path`` if given)."""
    digest = store.get(ref, kind="product").digest
    gathered = gather(store, [digest])
    product = gathered.products[digest]
    digests = file_digests(product, path)
    if digests is None:
        where = path or product.path
        if product.content is None or where is None:
            raise UsageError(f"product {to_hex(digest)} records no file, so there is no subject")
        raise CheckFailed(
            f"{where} is missing or no longer holds the bytes recorded for product "
            f"{to_hex(digest)}; an attestation must name the recorded bytes"
        )
    view = next((v for v in gathered.runs if v.digest == product.run), None)
    subject = {"name": product.path or product.name, "digest": dict(digests)}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [subject],
        "predicateType": PREDICATE_TYPE,
        "predicate": _provenance(gathered.products, digest, product, view),
    }


def _provenance(
    products: dict[bytes, Product], digest: bytes, product: Product, view: RunView | None
) -> dict[str, Any]:
    external: dict[str, Any] = {"product": {"name": product.name, "digest": to_hex(digest)}}
    internal: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    builder = "urn:provstore:builder:unknown"
    dependencies = [_dependency(p, products[p]) for p in product.parents if p in products]
    if view is not None:
        run = view.run
        external.update({"command": list(run.command or run.argv), "cwd": run.cwd})
        if run.name:
            external["name"] = run.name
        internal = {"environment": to_hex(run.environment), "executable": run.executable}
        builder = f"urn:provstore:builder:{run.user}@{run.host}"
        metadata = {"invocationId": to_hex(view.digest), "startedOn": iso(run.started_ns)}
        if view.end is not None:
            metadata["finishedOn"] = iso(view.end.finished_ns)
            internal["status"] = view.end.status
        seen = {d for d in product.parents}
        dependencies += [
            _dependency(p, products[p]) for p in view.inputs if p in products and p not in seen
        ]
        if run.code is not None and run.code.commit:
            dependencies.append(_code_dependency(run))
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": internal,
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": builder, "version": {"provstore": _provstore_version()}},
            "metadata": metadata,
        },
    }


def _dependency(digest: bytes, product: Product) -> dict[str, Any]:
    found = dict(file_digests(product) or {})
    if not found and product.content is not None:
        found = {"blake3": product.content.hex()}
    found["provstore"] = to_hex(digest)  # the product's own digest, for provstore show
    entry: dict[str, Any] = {"name": product.path or product.name, "digest": found}
    if product.path:
        entry["uri"] = "file://" + product.path
    return entry


def _code_dependency(run: Any) -> dict[str, Any]:
    code = run.code
    entry: dict[str, Any] = {
        "uri": f"git+file://{code.root}",
        "digest": {"gitCommit": code.commit},
    }
    if code.dirty:
        entry["annotations"] = {
            "dirty": True,
            "diffBlake3": None if code.diff_digest is None else code.diff_digest.hex(),
        }
    return entry


def _provstore_version() -> str:
    try:
        return version("provstore")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def attest(
    store: Store, ref: str | bytes, key: PrivateKey, *, path: str | None = None
) -> dict[str, Any]:
    """The signed DSSE envelope of the product's in-toto Statement, ready for ``json.dumps``."""
    text = json.dumps(statement(store, ref, path=path), sort_keys=True, separators=(",", ":"))
    return sign_envelope(text.encode("utf-8"), key)
