"""``provstore status``: every file under some paths, recorded, modified or untracked.

A file is *recorded* when a product has its bytes, *modified* when a product was recorded at
its path with other bytes, *untracked* otherwise.  Each file is hashed once per change through
the stat cache (:mod:`provstore.capture.hashcache`).

A status also leaves a *snapshot* in that cache: for the same arguments, every file's ``stat``
key, digest and verdict, the store's product count (products are only added, so an equal count
means the same products) and, for each directory watched by a watcher
(:mod:`provstore.capture.watch`), how far the watcher had read when the walk began.  The next
status with the same arguments then

* asks the watcher what changed since and looks at those paths alone (no walk, no ``stat``
  of the others), or, without a watcher, walks and asks ``stat`` about every file and re-reads none
  whose key is unchanged;
* keeps every unchanged file's verdict while the product count has not moved, and asks the
  store about the others only.

Files changed within :data:`~provstore.capture.hashcache.RACY_NS` of a walk are not trusted by
their ``stat`` key later (a further change could share the timestamp); a watcher sees such a
change as an event, so with one they are.
"""

from __future__ import annotations

import os
import stat as stat_module
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple

import msgpack

from provstore.capture import watch
from provstore.capture.hashcache import RACY_NS, FileHasher, cache_path
from provstore.core.errors import PathError
from provstore.store import Store

__all__ = ["FileState", "StatusReport", "status", "walk_files"]

_BY_NAME = attrgetter("name")
_FORMAT = 1  # the snapshot's layout; another one is ignored
_STATES = {"r": "recorded", "m": "modified", "u": "untracked"}
_CODES = {state: code for code, state in _STATES.items()}


class FileState(NamedTuple):
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
    walked: int = 0
    """Files whose ``stat`` was read (with a watcher, only those it said changed)."""
    watched: int = 0
    """How many of the directories asked about a watcher answered for."""

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
        yield from _walk(_shown_top(top), os.path.abspath(top), skip)


def _shown_top(top: str) -> str:
    shown = os.path.normpath(top)
    return "" if shown == "." else shown


def _walk(shown: str, absolute: str, skip: frozenset[str]) -> Iterator[tuple[str, str]]:
    try:
        entries = sorted(os.scandir(absolute), key=_BY_NAME)
    except OSError:
        return  # unreadable or vanished: nothing under it can be hashed
    prefix = shown + os.sep if shown else ""
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in watch.SKIPPED_DIRS and entry.path not in skip:
                yield from _walk(prefix + entry.name, entry.path, skip)
        elif entry.is_file(follow_symlinks=False) and entry.path not in skip:
            yield prefix + entry.name, entry.path


def _own_files(store: Store) -> frozenset[str]:
    """The store's files and provstore's cache directory: never reported, never hashed."""
    cache = cache_path()
    own = store.dialect.local_files(store.engine.url)
    if cache is not None:
        own.append(os.path.dirname(cache))  # hash and distribution caches, watchers' sockets
    return frozenset(own)


# -- the snapshot ------------------------------------------------------------------------------

# One file of a status, as a list: which of the paths asked about it lies under, how it is
# shown, its absolute path, its stat key (None: not to be trusted by it, racy when saved), its
# digest, its verdict (None: ask the store) and the product that made it recorded.
Row = list[Any]
TOP, SHOWN, ABSOLUTE, KEY, DIGEST, STATE, PRODUCT = range(7)


@dataclass(slots=True)
class _Snapshot:
    count: int = -1
    tokens: dict[str, tuple[str, int]] = field(default_factory=dict)
    report: tuple[list[str], str, list[bytes | None]] | None = None
    rows: list[Row] | None = None


def _snapshot_key(paths: Sequence[str]) -> str:
    return "\0".join(f"{path}\0{os.path.abspath(path)}" for path in paths)


def _unpack(raw: bytes | None) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False) if raw else None
    except (ValueError, TypeError, msgpack.UnpackException):
        return None


def _load(files: FileHasher, key: str) -> _Snapshot:
    meta = _unpack(files.snapshot(key, "meta"))
    if not (isinstance(meta, list) and len(meta) == 3 and meta[0] == _FORMAT):
        return _Snapshot()
    _, count, tokens = meta
    return _Snapshot(count, {root: (i, int(b)) for root, (i, b) in tokens.items()})


def _load_report(files: FileHasher, key: str, snap: _Snapshot) -> bool:
    report = _unpack(files.snapshot(key, "report"))
    if not (isinstance(report, list) and len(report) == 3):
        return False
    shown, states, products = report
    if not len(shown) == len(states) == len(products):
        return False
    snap.report = shown, states, products
    return True


def _load_rows(files: FileHasher, key: str, snap: _Snapshot) -> bool:
    if snap.count < 0 or (snap.report is None and not _load_report(files, key, snap)):
        return False
    detail = _unpack(files.snapshot(key, "detail"))
    if not (isinstance(detail, list) and len(detail) == 4):
        return False
    tops, absolutes, keys, digests = detail
    assert snap.report is not None
    shown, states, products = snap.report
    if not len(tops) == len(absolutes) == len(keys) == len(shown) == len(digests) // 32:
        return False
    snap.rows = [
        [top, shown[i], absolutes[i], keys[i], digests[32 * i : 32 * i + 32], _STATES[states[i]]]
        + [products[i]]
        for i, top in enumerate(tops)
    ]
    return True


def _save(
    files: FileHasher,
    key: str,
    count: int,
    tokens: dict[str, tuple[str, int]],
    rows: list[Row],
) -> None:
    meta = _meta(count, tokens)
    report = msgpack.packb(
        [
            [r[SHOWN] for r in rows],
            "".join(_CODES[r[STATE]] for r in rows),
            [r[PRODUCT] for r in rows],
        ],
        use_bin_type=True,
    )
    detail = msgpack.packb(
        [
            [r[TOP] for r in rows],
            [r[ABSOLUTE] for r in rows],
            [r[KEY] for r in rows],
            b"".join(r[DIGEST] for r in rows),
        ],
        use_bin_type=True,
    )
    files.keep_snapshot(key, meta, report, detail)


# -- status ------------------------------------------------------------------------------------


def status(
    store: Store, paths: Sequence[str], hasher: FileHasher | None = None, *, watched: bool = True
) -> StatusReport:
    """Recorded, modified or untracked, for every file under ``paths``.

    ``watched``: ask the watchers of directories (:mod:`provstore.capture.watch`) what changed
    instead of walking them, where one runs.
    """
    for top in paths:
        if not os.path.exists(top):
            raise PathError(top, "no such file or directory")
    key = _snapshot_key(paths)
    with nullcontext(hasher) if hasher is not None else FileHasher() as files:
        assert files is not None
        snap = _load(files, key)
        count = store.product_count()  # before any verdict is asked: a later product re-asks
        answers = _ask_watchers(paths, snap) if watched else {}
        report = StatusReport(watched=len(answers))
        tokens = {root: (a.instance, a.batch) for root, a in answers.items()}
        quiet = all(
            os.path.abspath(top) in answers and answers[os.path.abspath(top)].changed == []
            for top in paths
        )
        if quiet and count == snap.count and _load_report(files, key, snap):
            return _last_answer(files, key, snap, tokens, report)  # nothing changed anywhere
        hashed_before = files.hashed
        rows, same = _rows(store, files, paths, snap, answers, key, report)
        report.hashed = files.hashed - hashed_before
        if same and count == snap.count and snap.report is not None:
            return _last_answer(files, key, snap, tokens, report)  # every file as it was
        _judge(store, rows, keep=count == snap.count)
        _save(files, key, count, tokens, rows)
    report.files = [FileState(r[SHOWN], r[STATE], r[PRODUCT]) for r in rows]
    return report


def _last_answer(
    files: FileHasher,
    key: str,
    snap: _Snapshot,
    tokens: dict[str, tuple[str, int]],
    report: StatusReport,
) -> StatusReport:
    """The snapshot's answer stands; only the watchers' batches it starts from move on."""
    assert snap.report is not None
    if tokens != snap.tokens:
        files.keep_snapshot_meta(key, _meta(snap.count, tokens))
    report.files = _file_states(*snap.report)
    return report


def _meta(count: int, tokens: dict[str, tuple[str, int]]) -> bytes:
    packed: bytes = msgpack.packb([_FORMAT, count, tokens], use_bin_type=True)
    return packed


def _file_states(shown: list[str], states: str, products: list[bytes | None]) -> list[FileState]:
    names = [_STATES[code] for code in states]
    return list(map(partial(tuple.__new__, FileState), zip(shown, names, products, strict=True)))


def _ask_watchers(paths: Sequence[str], snap: _Snapshot) -> dict[str, watch.Answer]:
    answers = {}
    for top in paths:
        if os.path.isdir(top):
            root = os.path.abspath(top)
            answer = watch.ask(root, snap.tokens.get(root))
            if answer is not None:
                answers[root] = answer
    return answers


def _rows(
    store: Store,
    files: FileHasher,
    paths: Sequence[str],
    snap: _Snapshot,
    answers: dict[str, watch.Answer],
    key: str,
    report: StatusReport,
) -> tuple[list[Row], bool]:
    """Every file under ``paths`` with its digest and, where it still stands, its verdict.

    Also whether they are exactly the snapshot's files, in its order, each unchanged.
    """
    own = _own_files(store)
    has_old = _load_rows(files, key, snap)
    old = snap.rows if has_old and snap.rows is not None else []
    by_path = {r[ABSOLUTE]: r for r in old}
    moved = _ByKey(old)
    now = files.now()
    out: list[Row] = []
    same = has_old
    for index, top in enumerate(paths):
        root = os.path.abspath(top)
        answer = answers.get(root)
        found: Iterable[tuple[int, str, str] | Row]
        if has_old and answer is not None and answer.changed is not None:
            found = _changed_only(index, top, root, answer.changed, old, own)
            same = same and not answer.changed
        else:
            if not has_old and os.path.isdir(top):
                files.preload(top)  # no snapshot: the hash cache may still know these files
            found = ((index, shown, absolute) for shown, absolute in walk_files([top], own))
        for item in found:
            if isinstance(item, list):
                out.append(item)  # its watcher says it did not change
                continue
            before = by_path.get(item[2])
            row = _look(files, *item, before, moved, now, report)
            if row is None:
                continue
            if row is not before or (same and old[len(out)] is not before):
                same = False
            out.append(row)
    return out, same and len(out) == len(old)


def _changed_only(
    index: int,
    top: str,
    root: str,
    changed: list[str],
    old: list[Row],
    own: frozenset[str],
) -> list[tuple[int, str, str] | Row]:
    """The files under ``top`` when its watcher names what changed: the others as they were.

    Rows are in walk order, which is the order of their paths with the separator sorting
    first (``a/x`` before ``a.txt``): a changed directory's files are one slice of them.
    """
    kept = [r for r in old if r[TOP] == index]
    if not changed:
        return list(kept)
    order = [_order(r[ABSOLUTE]) for r in kept]
    drop: set[int] = set()
    fresh: list[tuple[int, str, str]] = []
    for path in sorted(set(changed)):
        if path != root and not path.startswith(root + os.sep):
            path = root  # a directory above the root changed: walk it all
        mark = _order(path)
        low = bisect_left(order, mark)
        drop.update(range(low, bisect_left(order, mark + "\x01", low)))
        fresh.extend((index, shown, absolute) for shown, absolute in _now_at(top, root, path, own))
    rows: list[tuple[int, str, str] | Row] = [r for i, r in enumerate(kept) if i not in drop]
    for item in {item[2]: item for item in fresh}.values():
        rows.insert(bisect_left(rows, _order_of(item), key=_order_of), item)
    return rows


def _order(path: str) -> str:
    return path.replace(os.sep, "\0")


def _order_of(item: tuple[int, str, str] | Row) -> str:
    path = str(item[ABSOLUTE])
    return _order(path)


def _now_at(top: str, root: str, path: str, own: frozenset[str]) -> Iterator[tuple[str, str]]:
    """The files now at or below ``path`` (under ``top``, whose absolute path is ``root``)."""
    if any(path == o or path.startswith(o + os.sep) for o in own):
        return
    relative = os.path.relpath(path, root)
    if relative != "." and watch.SKIPPED_DIRS.intersection(relative.split(os.sep)):
        return
    prefix = _shown_top(top)
    prefix = prefix + os.sep if prefix else ""
    if os.path.isdir(path) and not os.path.islink(path):
        for _, absolute in walk_files([path], own):
            yield prefix + os.path.relpath(absolute, root), absolute
    elif os.path.isfile(path) and not os.path.islink(path):
        yield prefix + relative, path


class _ByKey:
    """The snapshot's rows by their stat key, built when first asked.

    A file moved (or in a directory moved) keeps its inode and times: its digest stands.
    """

    def __init__(self, rows: list[Row]) -> None:
        self._rows = rows
        self._by_key: dict[tuple[int, ...], Row] | None = None

    def get(self, key: list[int]) -> Row | None:
        if self._by_key is None:
            self._by_key = {tuple(r[KEY]): r for r in self._rows if r[KEY] is not None}
        return self._by_key.get(tuple(key))


def _look(
    files: FileHasher,
    index: int,
    shown: str,
    absolute: str,
    before: Row | None,
    moved: _ByKey,
    now: int,
    report: StatusReport,
) -> Row | None:
    """The row of one file: ``stat`` it, and hash it unless its key says it is unchanged.

    The snapshot's own row when nothing about the file changed (the same object: the caller
    tells "unchanged" by identity).
    """
    try:
        info = os.stat(absolute)
    except OSError:
        return None  # vanished since the walk saw it
    if not stat_module.S_ISREG(info.st_mode):
        return None
    report.walked += 1
    key = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    if before is not None and before[KEY] == key:
        if before[TOP] == index and before[SHOWN] == shown:
            return before
        return [index, shown, absolute, key, before[DIGEST], before[STATE], before[PRODUCT]]
    was = moved.get(key)
    if was is not None:  # the same file at another path: its verdict depends on the path
        return [index, shown, absolute, key, was[DIGEST], None, None]
    try:
        digest, _ = files.hash(absolute, absolute=True)
    except PathError:
        return None
    trusted = now - max(info.st_mtime_ns, info.st_ctime_ns) >= RACY_NS
    return [index, shown, absolute, key if trusted else None, digest, None, None]


def _judge(store: Store, rows: list[Row], keep: bool) -> None:
    """Ask the store about every row without a verdict (all of them unless ``keep``)."""
    ask = rows if not keep else [r for r in rows if r[STATE] is None]
    if not ask:
        return
    by_content = store.with_content(r[DIGEST] for r in ask)
    unknown = [r[ABSOLUTE] for r in ask if r[DIGEST] not in by_content]
    recorded_here = store.recorded_paths(unknown)
    for row in ask:
        found = by_content.get(row[DIGEST])
        if found:
            best = next((p for p in found if p.path == row[ABSOLUTE]), found[0])
            row[STATE], row[PRODUCT] = "recorded", best.digest
        else:
            row[STATE] = "modified" if row[ABSOLUTE] in recorded_here else "untracked"
            row[PRODUCT] = None
