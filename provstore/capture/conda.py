"""The conda (mamba, micromamba, pixi) packages of the environment the interpreter lives in.

A conda environment keeps one JSON record per installed package in ``<prefix>/conda-meta``;
reading 500 of them takes tens of milliseconds, so the result is cached, in the process and on
disk (beside the distribution cache), keyed by the state of ``conda-meta``: its modification
time and inode (a package added or removed changes the directory) and those of its ``history``
file (appended to by every transaction, including one that rewrites a record in place).  A
warm process pays two ``stat`` calls and one small read.

Channels are recorded by name (``conda-forge``) or as a URL without credentials: a channel URL
may carry a token (``/t/<token>/``) or a password, and secrets never reach the store.
"""

from __future__ import annotations

import json
import os
import re
import sys

from provstore.capture.dists import write_cache

__all__ = ["conda_packages", "is_conda_prefix"]

Package = tuple[str, str, str, str]  # name, version, build, channel
Unreadable = tuple[str, str]  # file, reason
Scan = tuple[tuple[Package, ...], tuple[Unreadable, ...]]

_CACHE_FORMAT = 1
_RACY_NS = 2_000_000_000
_MEMO: dict[str, tuple[tuple[int, ...], Scan]] = {}
_TOKEN = re.compile(r"/t/[^/]+/")
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)
_HOSTED = re.compile(r"^https?://(?:conda\.anaconda\.org|repo\.anaconda\.com/pkgs)/", re.I)
_SUBDIRS = ("noarch", "linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64",
            "win-64", "win-32", "linux-32", "linux-armv7l", "linux-s390x")  # fmt: skip


def is_conda_prefix(prefix: str) -> bool:
    """Whether ``prefix`` is a conda environment (it has a ``conda-meta`` directory)."""
    return os.path.isdir(os.path.join(prefix, "conda-meta"))


def conda_packages(prefix: str | None = None, *, cache_dir: str | None = None) -> Scan | None:
    """The packages installed in the conda environment at ``prefix`` (``sys.prefix``).

    Returns ``(packages, unreadable)``, packages sorted by name; ``None`` when ``prefix`` is
    no conda environment.  A record that cannot be read or parsed is listed in
    ``unreadable`` with the reason, never raised.
    """
    prefix = os.path.abspath(sys.prefix if prefix is None else prefix)
    meta = os.path.join(prefix, "conda-meta")
    state = _state(meta)
    if state is None:
        return None
    memo = _MEMO.get(meta)
    if memo is not None and memo[0] == state:
        return memo[1]
    cache_file = _cache_file(meta, cache_dir)
    scan = _load_cache(cache_file, state) if cache_file else None
    if scan is None:
        scan = _scan(meta)
        settled = state[0] < _cutoff() and state[2] < _cutoff()
        if cache_file and settled:
            _store_cache(cache_file, state, scan)
    if state[0] < _cutoff() and state[2] < _cutoff():
        _MEMO[meta] = (state, scan)
    return scan


def _cutoff() -> int:
    import time

    return time.time_ns() - _RACY_NS


def _state(meta: str) -> tuple[int, ...] | None:
    """What a change to the environment changes: the directory's and the history's stat."""
    try:
        st = os.stat(meta)
    except (OSError, ValueError):
        return None
    if not os.path.isdir(meta):
        return None
    try:
        hist = os.stat(os.path.join(meta, "history"))
        history = (hist.st_mtime_ns, hist.st_ino, hist.st_size)
    except (OSError, ValueError):
        history = (-1, -1, -1)
    return (st.st_mtime_ns, st.st_ino, *history)


def _scan(meta: str) -> Scan:
    packages: list[Package] = []
    unreadable: list[Unreadable] = []
    try:
        names = sorted(n for n in os.listdir(meta) if n.endswith(".json"))
    except OSError as exc:
        return (), (("conda-meta", str(exc.strerror or exc)),)
    for name in names:
        try:
            with open(os.path.join(meta, name), "rb") as file:
                record = json.loads(file.read())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            package = _package(record)
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            unreadable.append((name, str(reason or type(exc).__name__)[:200]))
            continue
        packages.append(package)
    packages.sort()
    return tuple(packages), tuple(unreadable)


def _package(record: dict[str, object]) -> Package:
    fields = []
    for key in ("name", "version"):
        value = record.get(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"no {key}")
        fields.append(value)
    build = record.get("build")
    channel = record.get("channel") or record.get("schannel") or ""
    return (fields[0], fields[1], build if isinstance(build, str) else "",
            channel_name(channel) if isinstance(channel, str) else "")  # fmt: skip


def channel_name(channel: str) -> str:
    """A channel as a name (``conda-forge``) or a URL without credentials or platform."""
    text = _USERINFO.sub(r"\1", _TOKEN.sub("/", channel.strip())).rstrip("/")
    head, _, tail = text.rpartition("/")
    if tail in _SUBDIRS:
        text = head
    hosted = _HOSTED.match(text)
    return text[hosted.end() :] if hosted else text


# -- the cross-process cache ------------------------------------------------------------------


def _cache_file(meta: str, cache_dir: str | None) -> str | None:
    from provstore.capture.dists import cache_directory, caching_off

    directory = None if caching_off() else cache_dir or cache_directory()
    if directory is None:
        return None
    import blake3

    key = f"{_CACHE_FORMAT}\0{meta}".encode("utf-8", "surrogatepass")
    return os.path.join(directory, f"conda-{blake3.blake3(key).hexdigest()[:32]}.msgpack")


def _load_cache(cache_file: str, state: tuple[int, ...]) -> Scan | None:
    import msgpack

    try:
        with open(cache_file, "rb") as file:
            data = msgpack.unpackb(file.read(), raw=False)
        if data["format"] != _CACHE_FORMAT or tuple(data["state"]) != state:
            return None
        packages = tuple((str(n), str(v), str(b), str(c)) for n, v, b, c in data["packages"])
        unreadable = tuple((str(f), str(r)) for f, r in data["unreadable"])
        return packages, unreadable
    except Exception:  # missing, corrupt or foreign: scan again
        return None


def _store_cache(cache_file: str, state: tuple[int, ...], scan: Scan) -> None:
    data = {"format": _CACHE_FORMAT, "state": list(state), "packages": scan[0],
            "unreadable": scan[1]}  # fmt: skip
    write_cache(cache_file, data)
