"""``provstore why`` and ``provstore status``: what the store knows of files on disk.

:func:`why` answers "what made this file?" on one screen: the products with its bytes, the
run that made the best of them, its direct inputs (and whether each file on disk still
matches), the environment in one line.  :func:`status` sorts every file under some paths
into *recorded*, *modified* (the path was recorded, the bytes differ) and *untracked*, hashing
each file once per change through the stat cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from provstore.capture.hashcache import FileHasher, cache_path
from provstore.core.errors import PathError
from provstore.core.objects import Environment, LibrarySet, Product, Run, RunEnd, Sealed
from provstore.resolver import matches_for_file
from provstore.store import Store

__all__ = ["FileState", "Input", "Why", "status", "why"]

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
_BY_NAME = attrgetter("name")


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
    with FileHasher() if hasher is None else _borrowed(hasher) as files:
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


class _borrowed:
    """A hasher the caller owns: used, not closed."""

    def __init__(self, hasher: FileHasher) -> None:
        self.hasher = hasher

    def __enter__(self) -> FileHasher:
        return self.hasher

    def __exit__(self, *exc: object) -> None:
        return None


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


@dataclass(frozen=True, slots=True)
class FileState:
    """One file under ``provstore status``."""

    path: str
    state: str
    """``recorded``, ``modified`` or ``untracked``."""
    product: bytes | None = None
    """The product with these bytes (recorded at this path if one is), when recorded."""


@dataclass(slots=True)
class StatusReport:
    """Every file looked at, and how many were hashed (the rest came from the stat cache)."""

    files: list[FileState] = field(default_factory=list)
    hashed: int = 0

    def counts(self) -> dict[str, int]:
        """How many files are in each state."""
        out = {"recorded": 0, "modified": 0, "untracked": 0}
        for item in self.files:
            out[item.state] += 1
        return out


def walk_files(
    paths: Iterable[str], skip: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str]]:
    """``(path as shown, absolute path)`` of every regular file at or below ``paths``.

    Directories are walked recursively, in name order, without following links; VCS folders
    and the absolute paths in ``skip`` are left out.  The directory entries say what each
    name is, so the walk itself makes no ``stat`` call per file.
    """
    for top in paths:
        if os.path.isfile(top):
            yield top, os.path.abspath(top)
            continue
        if not os.path.isdir(top):
            raise PathError(top, "no such file or directory")
        shown = os.path.normpath(top)
        yield from _walk("" if shown == "." else shown, os.path.abspath(top), skip)


def _walk(shown: str, absolute: str, skip: frozenset[str]) -> Iterator[tuple[str, str]]:
    try:
        entries = sorted(os.scandir(absolute), key=_BY_NAME)
    except OSError:
        return  # unreadable or vanished: nothing under it can be hashed
    prefix = shown + os.sep if shown else ""
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in SKIPPED_DIRS and entry.path not in skip:
                yield from _walk(prefix + entry.name, entry.path, skip)
        elif entry.is_file(follow_symlinks=False) and entry.path not in skip:
            yield prefix + entry.name, entry.path


def _own_files(store: Store) -> frozenset[str]:
    """The store's files and provstore's cache directory: never reported, never hashed."""
    cache = cache_path()
    own = store.dialect.local_files(store.engine.url)
    if cache is not None:
        own.append(os.path.dirname(cache))  # hash and distribution caches
    return frozenset(own)


def status(store: Store, paths: Sequence[str], hasher: FileHasher | None = None) -> StatusReport:
    """Recorded, modified or untracked, for every file under ``paths``."""
    report = StatusReport()
    with FileHasher() if hasher is None else _borrowed(hasher) as files:
        for top in paths:
            if os.path.isdir(top):
                files.preload(top)
        hashed = []
        for path, absolute in walk_files(paths, _own_files(store)):
            try:
                hashed.append((path, absolute, files.hash(absolute, absolute=True)[0]))
            except PathError:
                continue  # vanished or unreadable since the walk saw it
        report.hashed = files.hashed
    by_content = store.with_content(digest for _, _, digest in hashed)
    unknown = [absolute for _, absolute, digest in hashed if digest not in by_content]
    recorded_here = store.recorded_paths(unknown)
    for path, absolute, digest in hashed:
        rows = by_content.get(digest)
        if rows:
            best = next((row for row in rows if row.path == absolute), rows[0])
            report.files.append(FileState(path, "recorded", best.digest))
        elif absolute in recorded_here:
            report.files.append(FileState(path, "modified"))
        else:
            report.files.append(FileState(path, "untracked"))
    return report
