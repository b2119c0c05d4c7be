"""``provstore status`` over a tree of small files: cold (nothing cached) and warm (unchanged).

A tree of N small files (100,000 at full scale, in 1,000 directories) is written, a store
records 1% of them through ``tracker()``, and ``Store.status([tree])`` is timed in this process.
First as ``provstore status --watch`` runs it, twice: the first run starts a watcher on the tree
(``provstore watch``, inotify: the time includes it) and hashes every file into an empty hash
cache; the second, nothing changed, asks the watcher what changed and looks at nothing else.
Then, the watcher stopped, once more: every file's ``stat`` is read and no file's bytes (the
answer comes from the last status's snapshot). The files are older than the cache's racy window
when hashed, and in the page cache every time, so the differences are the hashing and the
``stat`` calls saved.

At full scale, when the process may (root), a run starts from an empty hash cache *and* an empty
page cache (``/proc/sys/vm/drop_caches``: every file read from disk, as after a reboot or a
fresh checkout); the warm runs are compared with it too. Beside them, in the same run and tree:
``git add -A`` (git hashes and stores every file into its index) and ``git status`` afterwards
(nothing changed). Target: the second (watched) run at least 20 times faster than the first, and
it hashes no file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.harness import Context, Row

NAME = "status"
DESCRIPTION = "provstore status over N small files: cold vs warm stat cache, beside git"
TARGET = 20.0  # warm at least 20x faster than cold


def _tree(root: Path, files: int) -> None:
    per_dir = 100
    for i in range(files):
        folder = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.txt").write_bytes(b"row,%d\n" % i * (1 + i % 7))


def _record(url: str, root: Path, files: int) -> None:
    from provstore import tracker

    with tracker(url, git=False, name="status-bench") as t:
        for i in range(0, files, 100):
            t.track(root / f"d{i // 100:04d}" / f"f{i:06d}.txt")


def _timed_status(url: str, root: Path) -> tuple[float, int, dict[str, int], int]:
    """Seconds, files hashed, counts by state and files whose ``stat`` was read."""
    from provstore import open_store

    with open_store(url) as store:
        start = time.perf_counter()
        report = store.status([str(root)])
        seconds = time.perf_counter() - start
    return seconds, report.hashed, report.counts(), report.walked


def _first_and_second(url: str, root: Path) -> tuple[float, int, dict[str, int], float, int, int]:
    """``provstore status --watch`` twice: starts a watcher and walks, then asks it.

    The first run's time includes starting the watcher (it watches every directory before it
    answers); the second looks only at what the watcher says changed.
    """
    from provstore.capture import watch

    start = time.perf_counter()
    watch.start(str(root))
    cold, hashed, counts, _ = _timed_status(url, root)
    cold += time.perf_counter() - start - cold  # the whole first run, watcher included
    try:
        warm, warm_hashed, again, looked = _timed_status(url, root)
    finally:
        watch.stop(str(root))
    if again != counts:
        raise RuntimeError(f"the second run differs: {again} vs {counts}")
    return cold, hashed, counts, warm, warm_hashed, looked


def _from_disk(url: str, root: Path, cache: Path) -> float | None:
    """A status with an empty hash cache right after the kernel dropped its page cache."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as knob:
            knob.write("3\n")
    except OSError:
        return None  # not root, or not Linux: the row is left out
    os.environ["PROVSTORE_CACHE_DIR"] = str(cache)
    try:
        return _timed_status(url, root)[0]
    finally:
        del os.environ["PROVSTORE_CACHE_DIR"]


def _git(root: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return time.perf_counter() - start


def run(ctx: Context) -> list[Row]:
    files = ctx.pick(2_000, 100_000)
    root = ctx.work / "status-tree"
    _tree(root, files)
    url = ctx.scratch_url("sqlite", "status")
    os.environ["PROVSTORE_CACHE_DIR"] = str(ctx.work / "status-cache-tracker")
    _record(url, root, files)
    os.environ["PROVSTORE_CACHE_DIR"] = str(ctx.work / "status-cache")
    time.sleep(2.5)  # past the racy window: the cold run may cache what it hashes
    try:
        cold, cold_hashed, counts, watched, watched_hashed, looked = _first_and_second(url, root)
        warm, warm_hashed, again, walked = _timed_status(url, root)  # no watcher now
    finally:
        del os.environ["PROVSTORE_CACHE_DIR"]
    if again != counts or warm_hashed or watched_hashed:
        raise RuntimeError(f"a warm run differs: {again} vs {counts}")
    disk = None if ctx.small else _from_disk(url, root, ctx.work / "status-cache-disk")
    rows = [
        Row(NAME, f"cold: {files:,} files, empty hash cache, status --watch (starts a watcher)",
            files / cold, "files/s",
            note=f"{cold:.2f} s, {cold_hashed:,} files hashed; {counts}"),
        Row(NAME, "warm, watched: the second status --watch, nothing changed",
            files / watched, "files/s", baseline=files / cold, baseline_label="cold",
            target=f">= {TARGET:g}x cold, hashes nothing",
            met=watched * TARGET <= cold and watched_hashed == 0,
            note=f"{watched * 1000:.0f} ms, {watched_hashed} files hashed, {looked} stat'ed"),
        Row(NAME, "warm, no watcher (stopped): nothing changed, every file stat'ed, none read",
            files / warm, "files/s", baseline=files / cold, baseline_label="cold",
            note=f"{warm:.2f} s, {warm_hashed} files hashed, {walked:,} stat'ed"),
    ]  # fmt: skip
    if disk is not None:
        rows.append(Row(NAME, "cold: page cache dropped too (files read from disk)",
                        files / disk, "files/s", note=f"{disk:.2f} s; warm is "
                        f"{disk / warm:.1f}x faster than this, watched "
                        f"{disk / watched:.0f}x"))  # fmt: skip
    if shutil.which("git"):
        _git(root, "init", "-q")
        add = _git(root, "add", "-A")
        status = _git(root, "status", "--porcelain")
        rows += [
            Row(NAME, "baseline: git add -A (hashes and stores every file)", files / add,
                "files/s", note=f"{add:.2f} s"),
            Row(NAME, "baseline: git status, nothing changed", files / status, "files/s",
                baseline=files / add, baseline_label="git add -A", note=f"{status:.2f} s"),
        ]  # fmt: skip
    shutil.rmtree(root)
    return rows
