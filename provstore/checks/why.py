"""``provstore why``: what the store knows of one file on disk.

:func:`why` answers "what made this file?" on one screen: the products with its bytes, the
run that made the best of them, its direct inputs (and whether each file on disk still
matches), the environment in one line.  ``provstore status`` over many files is
:mod:`provstore.checks.status`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

from provstore.capture.hashcache import FileHasher
from provstore.core.errors import PathError
from provstore.core.objects import Environment, LibrarySet, Product, Run, RunEnd, Sealed
from provstore.resolver import matches_for_file
from provstore.store import Store

__all__ = ["Input", "Why", "why"]


@dataclass(frozen=True, slots=True)
class Input:
    """A product the explained one was made from, and how its file on disk compares."""

    product: Sealed
    state: str
    """``matches``, ``modified``, ``missing`` (the recorded file is gone) or ``no file``."""


@dataclass(frozen=True, slots=True)
class Why:
    """Everything ``provstore why PATH`` prints (``products`` is empty: bytes unknown)."""

    path: str
    content: bytes
    size: int
    products: tuple[Sealed, ...]
    run: Sealed | None = None
    end: Sealed | None = None
    inputs: tuple[Input, ...] = ()
    inputs_from: str = "parents"
    """``parents`` (the product's own) or ``run`` (what its run read, when it has none)."""
    environment: Sealed | None = None
    distributions: int | None = None
    earlier: tuple[Sealed, ...] = ()
    """Products recorded at this path with other bytes (when these bytes are unknown)."""

    @property
    def recorded(self) -> bool:
        """Whether some product has these bytes."""
        return bool(self.products)


def why(store: Store, path: str, hasher: FileHasher | None = None) -> Why:
    """Explain the file at ``path`` (:class:`PathError` when it is not an existing file)."""
    if not os.path.exists(path):
        raise PathError(path, "no such file")
    with nullcontext(hasher) if hasher is not None else FileHasher() as files:
        assert files is not None
        content, size = files.hash(path)
        found = tuple(matches_for_file(store, path, files))
        absolute = os.path.abspath(path)
        if not found:
            return Why(absolute, content, size, (), earlier=tuple(store.products_at(absolute)))
        product = found[0].obj
        assert isinstance(product, Product)
        run = end = None
        if product.run is not None:
            run = store.get(product.run, kind="run")
            ends = store.run_ends([product.run])
            end = store.get(ends[0], kind="runend") if ends else None
        inputs_from, refs = "parents", product.parents
        if not refs and end is not None and isinstance(end.obj, RunEnd):
            inputs_from, refs = "run", end.obj.inputs
        inputs = tuple(_inputs(store, refs, files))
    env, count = _environment(store, run)
    return Why(absolute, content, size, found, run, end, inputs, inputs_from, env, count)


def _inputs(store: Store, refs: Sequence[bytes], files: FileHasher) -> Iterator[Input]:
    found = store.get_many(refs, corrupt={})
    for ref in refs:
        item = found.get(ref)
        if item is None or not isinstance(item.obj, Product):
            continue
        yield Input(item, _on_disk(item.obj, files))


def _on_disk(product: Product, files: FileHasher) -> str:
    if product.path is None or product.content is None:
        return "no file"
    if not os.path.isfile(product.path):
        return "missing"
    try:
        digest, _ = files.hash(product.path)
    except PathError:
        return "missing"
    return "matches" if digest == product.content else "modified"


def _environment(store: Store, run: Sealed | None) -> tuple[Sealed | None, int | None]:
    if run is None or not isinstance(run.obj, Run):
        return None, None
    env = store.get_many([run.obj.environment], corrupt={}).get(run.obj.environment)
    if env is None or not isinstance(env.obj, Environment):
        return None, None
    libs = store.get_many([env.obj.libraryset], corrupt={}).get(env.obj.libraryset)
    count = len(libs.obj.distributions) if libs and isinstance(libs.obj, LibrarySet) else None
    return env, count
