"""The closure of objects: everything a set of roots refers to, transitively, re-hashed.

A product's closure holds its run, that run's environment, variables and library set, its
parents and theirs, and (optionally) how each run ended.  ``verify`` checks that a closure is
whole, exports write it (keeping only references, so memory holds digests, not objects).
This is the one walk over references; lineage walks over the index are in
:mod:`provstore.db.lineage`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from provstore.core.chunks import chunked
from provstore.core.objects import Sealed, wrong_kind
from provstore.store import Store

__all__ = ["Closure", "closure"]

_BATCH = 2000  # objects loaded at a time


@dataclass(slots=True)
class Closure:
    """What a walk reached, what it could not, and why.

    ``references`` maps every object reached (verified) to the digests it refers to;
    ``found`` holds the objects themselves unless the walk was asked for references only.
    ``missing`` are digests referred to but not stored, ``corrupt`` objects that do not hash
    or decode (with the reason), and ``referrers`` maps each of them to one object that refers
    to it, for messages.  ``wrong_kinds`` maps an object to what is wrong with a reference of
    its that names an object of another kind than its field requires; ``kinds`` holds the kind
    of every object reached.
    """

    found: dict[bytes, Sealed] = field(default_factory=dict)
    references: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    missing: set[bytes] = field(default_factory=set)
    corrupt: dict[bytes, str] = field(default_factory=dict)
    referrers: dict[bytes, bytes] = field(default_factory=dict)
    wrong_kinds: dict[bytes, str] = field(default_factory=dict)
    kinds: dict[bytes, str] = field(default_factory=dict)

    @property
    def whole(self) -> bool:
        """Every object present and sound, every reference to an object of its field's kind."""
        return not self.missing and not self.corrupt and not self.wrong_kinds


def closure(
    store: Store, roots: Iterable[bytes], *, run_ends: bool = True, objects: bool = True
) -> Closure:
    """Walk references breadth-first from ``roots``, a batch of objects per query.

    ``run_ends`` follows each run to its end records (which name the run, not the reverse);
    ``objects=False`` keeps only :attr:`Closure.references`.
    """
    result = Closure()
    layer = sorted(set(roots))
    seen = set(layer)
    awaited: dict[bytes, list[tuple[Sealed, str, str]]] = {}  # ref -> (referrer, field, kind)
    while layer:
        following: set[bytes] = set()
        for part in chunked(layer, _BATCH):
            found = store.get_many(part, corrupt=result.corrupt)
            result.missing.update(d for d in part if d not in found and d not in result.corrupt)
            runs = [d for d, item in found.items() if item.kind == "run"]
            if run_ends and runs:
                following.update(d for d in store.run_ends(runs) if d not in seen)
            for digest, item in found.items():
                refs = result.references[digest] = item.obj.references()
                if objects:
                    result.found[digest] = item
                _check_kinds(result, item, awaited)
                for ref in refs:
                    if ref not in seen:
                        result.referrers.setdefault(ref, digest)
                        following.add(ref)
        seen.update(following)
        layer = sorted(following)
    return result


def _check_kinds(
    result: Closure, item: Sealed, awaited: dict[bytes, list[tuple[Sealed, str, str]]]
) -> None:
    """Compare references with the kinds of the objects they name, as those are loaded."""
    result.kinds[item.digest] = item.kind
    checks = [(referrer, name, kind, item.digest) for referrer, name, kind in
              awaited.pop(item.digest, ())]  # fmt: skip
    for name, ref, kind in item.obj.typed_references():
        if ref in result.kinds:
            checks.append((item, name, kind, ref))
        else:
            awaited.setdefault(ref, []).append((item, name, kind))
    for referrer, name, kind, ref in checks:
        found = result.kinds[ref]
        if found != kind:
            message = wrong_kind(referrer.kind, name, ref, found, kind)
            result.wrong_kinds.setdefault(referrer.digest, message)
