"""Installed distributions, found fast: header lines only, cached per ``sys.path`` entry.

Enumerating ~300 distributions through :mod:`importlib.metadata` re-parses every METADATA
file (hundreds of ms); reading only the ``Name:``/``Version:`` header lines takes ~10 ms, and
the per-entry cache below makes a later process pay a few ``stat`` calls.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from operator import is_ as op_is
from typing import Any

__all__ = ["cache_directory", "caching_off", "distributions", "normalize", "write_cache"]


def distributions(
    path: Sequence[str] | None = None, *, cache_dir: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Installed distributions on ``path`` (``sys.path``) as sorted (PEP 503 name, version).

    When a name is installed in several entries the first in path order wins, as for
    imports. Each entry's scan is cached on disk (``cache_dir``, ``$PROVSTORE_CACHE_DIR`` or
    ``$XDG_CACHE_HOME/provstore``; ``PROVSTORE_NO_CACHE=1`` disables) and in the process,
    keyed by the entry's mtime and inode, so a later capture pays a few ``stat`` calls and
    a change in one entry (the script's directory, say) rescans only that entry.
    """
    entries = _entries(sys.path if path is None else path)
    settled = time.time_ns() - _RACY_NS
    stats = {entry: _stat(entry) for entry in entries}
    found: dict[str, _Entry | None] = {}
    for entry, stat in stats.items():
        rec = _MEMO.get(entry)
        found[entry] = rec if _valid(rec, stat) else None
    if None in found.values():
        cache_file = _cache_file(entries, cache_dir)
        cached = _load_cache(cache_file) if cache_file else {}
        changed = False
        for entry, rec in found.items():
            if rec is None:
                rec = cached.get(entry)
                if not _valid(rec, stats[entry]):
                    rec = _scan(entry, stats[entry])
                    changed = True
                found[entry] = rec
        # An entry changed within the last seconds may change again within the same
        # timestamp tick, unseen by its mtime ("racy git"): use its scan, but do not keep it.
        keep = {e: r for e, r in found.items() if r is not None and r.settled_before(settled)}
        _MEMO.update(keep)
        if cache_file and changed:
            _store_cache(cache_file, keep)
    return _merge(entries, found)


# --- distributions: scanning and the cross-process cache -----------------------------------

_CACHE_FORMAT = 2
_RACY_NS = 2_000_000_000
_MAX_HEADER_LINES = 1000
_FALSE = ("", "0", "false", "no", "off")
_Stat = tuple[int, int]  # (st_mtime_ns, st_ino), (-1, -1) when the entry cannot be read


class _Entry:
    """The scan of one path entry: what it saw (to validate it later) and what it found."""

    __slots__ = ("mtime", "ino", "volatile", "dists")

    def __init__(
        self,
        stat: _Stat,
        volatile: tuple[tuple[str, int], ...],  # egg-info metadata files, edited in place
        dists: tuple[tuple[str, str], ...],  # in directory-name order, first one kept
    ) -> None:
        self.mtime, self.ino = stat
        self.volatile = volatile
        self.dists = dists

    def settled_before(self, cutoff_ns: int) -> bool:
        return self.mtime < cutoff_ns and all(mtime < cutoff_ns for _, mtime in self.volatile)


_MEMO: dict[str, _Entry] = {}
_MERGED: dict[tuple[str, ...], tuple[tuple[_Entry | None, ...], tuple[tuple[str, str], ...]]] = {}


def normalize(name: str) -> str:
    """A distribution name in its PEP 503 form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries(path: Sequence[str]) -> tuple[str, ...]:
    """Absolute path entries; ``""`` and relative ones are resolved against the cwd."""
    cwd: str | None = None
    out: list[str] = []
    for entry in path:
        if not isinstance(entry, str):
            continue
        if not os.path.isabs(entry):
            try:
                cwd = cwd or os.getcwd()
            except OSError:
                continue
            entry = os.path.normpath(os.path.join(cwd, entry))
        out.append(entry)
    return tuple(out)


def _stat(path: str) -> _Stat:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (-1, -1)
    return (st.st_mtime_ns, st.st_ino)


def _valid(rec: _Entry | None, stat: _Stat) -> bool:
    if rec is None or (rec.mtime, rec.ino) != stat:
        return False
    return all(_stat(meta)[0] == mtime for meta, mtime in rec.volatile)


def _merge(
    entries: tuple[str, ...], found: dict[str, _Entry | None]
) -> tuple[tuple[str, str], ...]:
    """Combine per-entry scans, the first entry winning; memoised on the scans' identity."""
    recs = tuple(found[entry] for entry in entries)
    last = _MERGED.get(entries)
    if last is not None and len(last[0]) == len(recs) and all(map(op_is, last[0], recs)):
        return last[1]
    merged: dict[str, str] = {}
    for rec in recs:
        for name, version in rec.dists if rec is not None else ():
            merged.setdefault(name, version)
    result = tuple(sorted(merged.items()))
    _MERGED[entries] = (recs, result)
    return result


def _scan(entry: str, stat: _Stat) -> _Entry:
    found: dict[str, str] = {}
    volatile: list[tuple[str, int]] = []
    for meta, is_volatile in _metadata_files(entry) if stat[0] != -1 else ():
        header = _read_header(meta)
        if header is None:
            continue
        if is_volatile:
            volatile.append((meta, _stat(meta)[0]))
        found.setdefault(normalize(header[0]), header[1])
    return _Entry(stat, tuple(volatile), tuple(found.items()))


def _metadata_files(entry: str) -> list[tuple[str, bool]]:
    """The metadata files of the distributions directly inside ``entry``, in name order.

    Wheels' ``.dist-info`` directories are written once by installers; ``.egg-info`` and
    ``.egg`` metadata may be rewritten in place (``setup.py develop``), so they are volatile.
    """
    found: list[tuple[str, str, bool]] = []
    try:
        with os.scandir(entry) as scanner:
            for item in scanner:
                name = item.name
                if name.endswith(".dist-info"):
                    found.append((name, os.path.join(item.path, "METADATA"), False))
                elif name.endswith(".egg-info"):
                    meta = os.path.join(item.path, "PKG-INFO") if _is_dir(item) else item.path
                    found.append((name, meta, True))
                elif name.endswith(".egg") and _is_dir(item):
                    found.append((name, os.path.join(item.path, "EGG-INFO", "PKG-INFO"), True))
    except (OSError, ValueError):  # not a directory (a zip file), unreadable, vanished
        pass
    found.sort()
    return [(meta, is_volatile) for _, meta, is_volatile in found]


def _is_dir(item: os.DirEntry[str]) -> bool:
    try:
        return item.is_dir()
    except OSError:
        return False


def _read_header(path: str) -> tuple[str, str] | None:
    """``Name`` and ``Version`` from a METADATA/PKG-INFO header; ``None`` if unusable."""
    name = version = None
    try:
        with open(path, "rb") as file:
            for _ in range(_MAX_HEADER_LINES):
                line = file.readline(8192)
                if not line.strip():
                    break
                key, sep, value = line.partition(b":")
                if not sep:
                    continue
                key = key.strip().lower()
                if key == b"name" and name is None:
                    name = value.strip().decode("utf-8", "replace")
                elif key == b"version" and version is None:
                    version = value.strip().decode("utf-8", "replace")
                if name is not None and version is not None:
                    break
    except (OSError, ValueError):
        return None
    if not name or not version:
        return None
    return name, version


def caching_off() -> bool:
    """Whether ``PROVSTORE_NO_CACHE`` turns the on-disk caches off."""
    return os.environ.get("PROVSTORE_NO_CACHE", "").strip().lower() not in _FALSE


def cache_directory() -> str | None:
    """Where capture caches scans; ``None`` when caching is off (``PROVSTORE_NO_CACHE``)."""
    if caching_off():
        return None
    directory = os.environ.get("PROVSTORE_CACHE_DIR")
    if not directory:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
        if not os.path.isabs(base):  # no home directory to expand "~" to
            return None
        directory = os.path.join(base, "provstore")
    return directory


def _cache_file(entries: tuple[str, ...], cache_dir: str | None) -> str | None:
    """Where the scan of ``entries`` is cached; ``None`` when caching is off or homeless."""
    if os.environ.get("PROVSTORE_NO_CACHE", "").strip().lower() not in _FALSE:
        return None
    directory = cache_dir or cache_directory()
    if directory is None:
        return None
    import blake3

    key = "\0".join((str(_CACHE_FORMAT), sys.version, *entries))
    digest = blake3.blake3(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return os.path.join(directory, f"dists-{digest}.msgpack")


def _load_cache(cache_file: str) -> dict[str, _Entry]:
    """The cached per-entry scans; empty when missing, unreadable, corrupt or foreign."""
    import msgpack

    try:
        with open(cache_file, "rb") as file:
            data = msgpack.unpackb(file.read(), raw=False)
        if data["format"] != _CACHE_FORMAT or data["python"] != sys.version:
            return {}
        return {
            str(entry): _Entry(
                (int(mtime), int(ino)),
                tuple((str(p), int(m)) for p, m in volatile),
                tuple((str(n), str(v)) for n, v in dists),
            )
            for entry, (mtime, ino, volatile, dists) in data["entries"].items()
        }
    except Exception:  # any corruption: msgpack errors, wrong shapes, wrong types
        return {}


def _store_cache(cache_file: str, found: dict[str, _Entry]) -> None:
    """Write the cache atomically; any failure (read-only home, odd paths) is ignored."""
    entries = {e: (r.mtime, r.ino, r.volatile, r.dists) for e, r in found.items()}
    write_cache(cache_file, {"format": _CACHE_FORMAT, "python": sys.version, "entries": entries})


def write_cache(cache_file: str, data: dict[str, Any]) -> None:
    """Write ``data`` as msgpack to ``cache_file`` atomically (a temporary file, then a rename).

    A cache is only a cache: any failure (read-only home, odd paths) is ignored.
    """
    import msgpack

    temp = f"{cache_file}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        payload = msgpack.packb(data, use_bin_type=True)
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with open(fd, "wb") as file:
            file.write(payload)
        os.replace(temp, cache_file)
    except Exception:
        try:
            os.unlink(temp)
        except OSError:
            pass
