"""Which installed distributions this process has imported: ``sys.modules`` mapped to them.

A distribution's import names come from its ``RECORD`` (the files it installed: a top-level
module, or a package with ``__init__.py``; inside a namespace package such as ``google``, the
sub-package ``google.protobuf``), else its ``top_level.txt``, else its own name.  The mapping is
built per ``sys.path`` entry and cached like the distribution list (in the process and on
disk, keyed by each entry's modification time and inode), so the run's end pays a few
``stat`` calls and one pass over ``sys.modules``.

Distributions that provstore itself brought in (imported while ``import provstore`` or a
``tracker()`` entry ran, and not before) are not the run's: :func:`mark_own_start` and
:func:`mark_own_end` bracket that work.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

from provstore.capture import dists

__all__ = ["imported_distributions", "import_names", "mark_own_end", "mark_own_start"]

_CACHE_FORMAT = 1
_Names = dict[str, tuple[str, ...]]
_Cache = dict[str, tuple[tuple[int, int], _Names]]  # entry -> ((mtime, inode), names)
_MEMO: _Cache = {}
_OWN: set[str] = set()  # modules provstore's own work imported
_BEFORE: list[frozenset[str]] = []
_STARTUP_HOOKS = frozenset({"_distutils_hack"})
"""Modules a ``.pth`` file imports into every process (setuptools' distutils shim)."""


def mark_own_start() -> None:
    """Note the modules imported so far: what appears until :func:`mark_own_end` is ours."""
    _BEFORE.append(frozenset(sys.modules))


def mark_own_end() -> None:
    """Everything imported since the matching :func:`mark_own_start` is provstore's own."""
    if _BEFORE:
        before = _BEFORE.pop()
        _OWN.update(name for name in list(sys.modules) if name not in before)


def import_names(path: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Import name (``numpy``, ``google.protobuf``) -> the distributions that provide it.

    The first ``path`` entry that provides a distribution wins, as for imports.
    """
    entries = dists._entries(sys.path if path is None else path)
    merged: dict[str, list[str]] = {}
    seen: set[str] = set()
    cached: _Cache | None = None
    changed = False
    for entry in entries:
        stat = dists._stat(entry)
        memo = _MEMO.get(entry)
        if memo is None or memo[0] != stat:
            if cached is None:
                cached = _load_cache(entries)
            memo = cached.get(entry)
            if memo is None or memo[0] != stat:
                memo = (stat, _scan(entry) if stat[0] != -1 else {})
                cached[entry] = memo
                changed = True
            _MEMO[entry] = memo
        names = memo[1]
        fresh = {d for provided in names.values() for d in provided} - seen
        for name, provided in names.items():
            for dist in provided:
                if dist in fresh:
                    merged.setdefault(name, []).append(dist)
        seen |= fresh
    if cached is not None and changed:
        _store_cache(entries, cached)
    return {name: tuple(dict.fromkeys(found)) for name, found in merged.items()}


def imported_distributions(
    versions: Mapping[str, str],
    *,
    modules: Iterable[str] | None = None,
    path: Sequence[str] | None = None,
    exclude_own: bool = True,
) -> tuple[tuple[str, str], ...]:
    """The installed distributions whose modules are in ``sys.modules``, with their versions.

    ``versions`` is the library set (name -> version) they are looked up in; a distribution
    provstore alone imported is left out (``exclude_own``), and so is provstore itself.
    """
    names = import_names(path)
    wanted = list(sys.modules) if modules is None else list(modules)
    used: set[str] = set()
    own: set[str] = {"provstore"}
    for module in wanted:
        if module in _STARTUP_HOOKS:
            continue
        top, dot, rest = module.partition(".")
        found = names.get(top)
        if (found is None or len(found) > 1) and dot:
            found = names.get(f"{top}.{rest.partition('.')[0]}", found)
        if found is None or len(found) != 1:
            continue  # stdlib, the script's own modules, or an ambiguous namespace
        if exclude_own and module in _OWN:
            own.add(found[0])
        else:
            used.add(found[0])
    return tuple(sorted((d, versions[d]) for d in used - own if d in versions))


def _scan(entry: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for meta, _volatile in dists._metadata_files(entry):
        header = dists._read_header(meta)
        if header is None:
            continue
        dist = dists.normalize(header[0])
        folder = os.path.dirname(meta)
        roots = _record_roots(os.path.join(folder, "RECORD")) or _top_level(folder)
        for root in roots or (dist.replace("-", "_"),):
            out.setdefault(root, []).append(dist)
    return {name: tuple(found) for name, found in out.items()}


def _record_roots(record: str) -> set[str]:
    """Import names from the files a wheel installed (``RECORD``: ``path,hash,size`` lines)."""
    try:
        with open(record, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except (OSError, ValueError):
        return set()
    packages: dict[str, set[str]] = {}
    regular: set[str] = set()
    roots: set[str] = set()
    for line in lines:
        path = line.split(",", 1)[0].strip().strip('"')
        if not path or path.startswith(("../", "/")) or "__pycache__" in path:
            continue
        parts = path.split("/")
        first = parts[0]
        if first.endswith((".dist-info", ".egg-info", ".data")) or not first:
            continue
        if len(parts) == 1:
            module = _module_name(first)
            if module is not None and not module.startswith("__editable__"):
                roots.add(module)
            continue
        if len(parts) == 2 and parts[1] == "__init__.py":
            regular.add(first)
        second = _module_name(parts[1]) if len(parts) == 2 else parts[1]
        if second is not None and second.isidentifier():
            packages.setdefault(first, set()).add(second)
    for top, subs in packages.items():
        if not top.isidentifier():
            continue
        if top in regular:
            roots.add(top)
        else:  # a namespace package: its sub-packages name the distribution
            roots.update(f"{top}.{sub}" for sub in subs if sub != "__init__")
    return roots


def _module_name(filename: str) -> str | None:
    stem, dot, ext = filename.partition(".")
    if not dot or not stem.isidentifier():
        return None
    if ext == "py" or ext.endswith(("so", "pyd")) or ext in ("pyc", "pyw"):
        return stem
    return None


def _top_level(folder: str) -> set[str]:
    try:
        with open(os.path.join(folder, "top_level.txt"), encoding="utf-8") as file:
            names = {line.strip().replace("/", ".") for line in file}
    except (OSError, ValueError):
        return set()
    return {name for name in names if name and all(p.isidentifier() for p in name.split("."))}


# -- the cross-process cache ------------------------------------------------------------------


def _cache_path(entries: tuple[str, ...]) -> str | None:
    directory = dists.cache_directory()
    if directory is None:
        return None
    import blake3

    key = "\0".join((str(_CACHE_FORMAT), sys.version, *entries))
    digest = blake3.blake3(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return os.path.join(directory, f"imports-{digest}.msgpack")


def _load_cache(entries: tuple[str, ...]) -> _Cache:
    path = _cache_path(entries)
    if path is None:
        return {}
    import msgpack

    try:
        with open(path, "rb") as file:
            data = msgpack.unpackb(file.read(), raw=False)
        if data["format"] != _CACHE_FORMAT:
            return {}
        return {
            str(entry): (
                (int(mtime), int(ino)),
                {str(k): tuple(str(d) for d in v) for k, v in names.items()},
            )
            for entry, (mtime, ino, names) in data["entries"].items()
        }
    except Exception:  # missing, corrupt or foreign: scan again
        return {}


def _store_cache(entries: tuple[str, ...], cached: _Cache) -> None:
    path = _cache_path(entries)
    if path is None:
        return
    settled = time.time_ns() - dists._RACY_NS
    keep = {
        entry: (stat[0], stat[1], {k: list(v) for k, v in names.items()})
        for entry, (stat, names) in cached.items()
        if stat[0] < settled  # changed within the last seconds: may change unseen, not kept
    }
    dists.write_cache(path, {"format": _CACHE_FORMAT, "entries": keep})
