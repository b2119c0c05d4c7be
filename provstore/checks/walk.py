"""The closure of objects: everything a set of roots refers to, transitively, re-hashed.

A product's closure holds its run, that run's environment, variables and library set, its
parents and theirs, and (optionally) how each run ended.  Bundles export closures; ``verify``
checks that a closure is whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from provstore.core.objects import Run, Sealed
from provstore.store import Store

__all__ = ["Closure", "closure"]


@dataclass(slots=True)
class Closure:
    """Objects found (verified), digests referenced but not stored, and corrupt objects.

    ``referrers`` maps each missing digest to one object that refers to it, for messages.
    """

    found: dict[bytes, Sealed] = field(default_factory=dict)
    missing: set[bytes] = field(default_factory=set)
    corrupt: dict[bytes, str] = field(default_factory=dict)
    referrers: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def whole(self) -> bool:
        """Every object present and sound."""
        return not self.missing and not self.corrupt


def closure(store: Store, roots: Iterable[bytes], *, run_ends: bool = True) -> Closure:
    """Walk references breadth-first from ``roots``, one batched query per layer."""
    result = Closure()
    layer = set(roots)
    seen: set[bytes] = set(layer)
    while layer:
        found = store.get_many(layer, corrupt=result.corrupt)
        result.found.update(found)
        result.missing.update(d for d in layer if d not in found and d not in result.corrupt)
        following: set[bytes] = set()
        runs = [d for d, item in found.items() if isinstance(item.obj, Run)]
        if run_ends and runs:
            following.update(d for d in store.run_ends(runs) if d not in seen)
        for digest, item in found.items():
            for ref in item.obj.references():
                if ref not in seen:
                    result.referrers.setdefault(ref, digest)
                    following.add(ref)
        seen.update(following)
        layer = following
    return result
