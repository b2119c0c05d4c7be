"""A closure arranged run by run, as the ecosystem's formats describe it.

Runs with their inputs, outputs and environment: shared by the OpenLineage, RO-Crate and
in-toto writers.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shlex
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import blake3

from provstore.checks.walk import closure
from provstore.core.digests import to_hex
from provstore.core.errors import BundleError, CorruptObjectError, FileChangedError, PathError
from provstore.core.files import RegularFile
from provstore.core.objects import Environment, LibrarySet, Product, Run, RunEnd, Sealed
from provstore.store import Store

__all__ = [
    "Gathered",
    "RunView",
    "file_digests",
    "gather",
    "iso",
    "run_label",
    "run_uuid",
]

_RUN_NAMESPACE = uuid.UUID("6f0c3c52-3f4e-5b8e-9c1a-70726f767374")
"""Fixed namespace of the UUIDs derived from run digests (any fixed UUID would do)."""


@dataclass(slots=True)
class RunView:
    """One run with its end (if recorded), the products it made and those it used."""

    digest: bytes
    run: Run
    end: RunEnd | None
    end_digest: bytes | None
    outputs: list[bytes] = field(default_factory=list)
    inputs: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class Gathered:
    """The objects of a closure, by kind, and the runs in it in start order."""

    roots: list[bytes]
    objects: dict[bytes, Sealed]
    products: dict[bytes, Product]
    runs: list[RunView]
    environments: dict[bytes, Environment]
    librarysets: dict[bytes, LibrarySet]


def gather(store: Store, refs: Sequence[str | bytes]) -> Gathered:
    """Resolve ``refs``, walk their closure (a run brings what it made) and arrange it."""
    roots = [store.resolve(ref) for ref in refs]
    walked = closure(store, [*roots, *store.made_by(roots)])
    if walked.corrupt:
        digest, reason = min(walked.corrupt.items())
        raise CorruptObjectError(to_hex(digest), reason)
    if walked.missing:
        raise BundleError(f"the store lacks {to_hex(min(walked.missing))}; run `provstore fsck`")
    found = walked.found
    products = {d: i.obj for d, i in found.items() if isinstance(i.obj, Product)}
    ends: dict[bytes, tuple[bytes, RunEnd]] = {}
    for digest, item in sorted(found.items()):
        end = item.obj
        if isinstance(end, RunEnd):
            known = ends.get(end.run)
            if known is None or end.finished_ns > known[1].finished_ns:
                ends[end.run] = (digest, end)
    views = []
    for digest, item in found.items():
        if isinstance(item.obj, Run):
            ended = ends.get(digest)
            views.append(
                RunView(digest, item.obj, ended[1], ended[0])
                if ended
                else RunView(digest, item.obj, None, None)
            )
    views.sort(key=lambda view: (view.run.started_ns, view.digest))
    by_run = {view.digest: view for view in views}
    for digest, product in sorted(products.items(), key=lambda kv: kv[1].name):
        view = by_run.get(product.run) if product.run else None
        if view is not None:
            view.outputs.append(digest)
    for view in views:
        used = list(view.end.inputs) if view.end else []
        for output in view.outputs:
            used.extend(products[output].parents)
        made = set(view.outputs)
        view.inputs = [d for d in dict.fromkeys(used) if d not in made]
    return Gathered(
        roots,
        found,
        products,
        views,
        {d: i.obj for d, i in found.items() if isinstance(i.obj, Environment)},
        {d: i.obj for d, i in found.items() if isinstance(i.obj, LibrarySet)},
    )


def run_uuid(digest: bytes) -> uuid.UUID:
    """A UUID for a run, derived from its digest: the same run always gets the same one.

    A version 5 (name-based, SHA-1) UUID: OpenLineage asks for a UUID, and recommends a
    time-ordered v7 for new runs, but an exported run must keep one id on every export.
    """
    return uuid.uuid5(_RUN_NAMESPACE, to_hex(digest))


def run_label(run: Run) -> str:
    """The run's name, else its command (as a shell would show it), else its argv."""
    if run.name:
        return run.name
    shown = run.command if run.command is not None else run.argv
    return shlex.join(shown) or "run"


def iso(ns: int) -> str:
    """Integer nanoseconds UTC as ISO 8601 with an offset, to the microsecond."""
    moment = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="microseconds")


def file_digests(product: Product, path: str | None = None) -> Mapping[str, str] | None:
    """``{"sha256": …, "blake3": …}`` of the product's file, read now, or None.

    None when the product records no file or the file (at ``path``, default the recorded
    one) is gone, unreadable or no longer holds the recorded bytes (checked by BLAKE3, in
    the same read).
    """
    where = path or product.path
    if product.content is None or where is None or not os.path.exists(where):
        return None
    try:
        return _both_digests(where, product.content)
    except (PathError, FileChangedError, OSError):
        return None


def _both_digests(path: str, recorded: bytes) -> Mapping[str, str] | None:
    sha, b3 = hashlib.sha256(), blake3.blake3()
    with RegularFile(path) as source:
        for chunk in source.chunks():
            sha.update(chunk)
            b3.update(chunk)
    if b3.digest() != recorded:
        return None
    return {"sha256": sha.hexdigest(), "blake3": recorded.hex()}
