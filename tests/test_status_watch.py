"""``provstore status`` over a tree it has seen before: the snapshot, the watcher, their answers.

A second status with the same arguments must give exactly what a first one would (the same
files, in the same order, with the same verdicts) while reading only what changed: with a
watcher (:mod:`provstore.capture.watch`) it does not even ``stat`` the unchanged files.  The
tests compare every answer with a status computed from scratch (no cache at all).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provstore import Store, tracker
from provstore.capture import watch
from provstore.capture.hashcache import FileHasher
from provstore.checks.status import status

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="inotify watchers are Linux only")


def later() -> int:
    """A clock well past every file's times: nothing is inside the racy window."""
    return time.time_ns() + 10**10


@pytest.fixture
def short_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A cache directory short enough for a Unix socket path, and no watcher left behind."""
    folder = tempfile.mkdtemp(prefix="ps-", dir="/tmp")
    monkeypatch.setenv("PROVSTORE_CACHE_DIR", folder)
    yield folder
    for root in watch.running():
        watch.stop(root)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A store with two recorded files, and a tree beside it with untracked ones."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/store.db"
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    (root / "a" / "kept.csv").write_text("kept\n")
    (root / "a" / "loose.txt").write_text("loose\n")
    (root / "b.txt").write_text("b\n")
    (root / "z.bin").write_bytes(b"\0z")
    with tracker(url, git=False) as t:
        t.track(root / "a" / "kept.csv")
        t.track(root / "b.txt")
    return {"url": url, "root": root}


def scratch(store: Store, paths: list[str]) -> list[tuple[str, str, bytes | None]]:
    """The answer of a status with no cache, no snapshot and no watcher."""
    return [tuple(f) for f in status(store, paths, FileHasher(None), watched=False).files]


def answer(store: Store, paths: list[str], **kw: bool) -> tuple[list[tuple], int, int]:
    with FileHasher(clock=later) as files:
        report = status(store, paths, files, **kw)
        return [tuple(f) for f in report.files], report.hashed, report.walked


def test_an_unchanged_tree_is_answered_from_the_snapshot(tree, short_cache):
    with Store(tree["url"]) as store:
        paths = [str(tree["root"])]
        first, hashed, walked = answer(store, paths, watched=False)
        assert first == scratch(store, paths) and hashed == 4 and walked == 4
        again, hashed, walked = answer(store, paths, watched=False)
        assert again == first and hashed == 0 and walked == 4  # stat'ed, none read


def test_a_changed_file_is_read_again_and_judged_again(tree, short_cache):
    with Store(tree["url"]) as store:
        paths = ["tree"]
        answer(store, paths, watched=False)
        (tree["root"] / "b.txt").write_text("b, changed\n")
        files, hashed, _ = answer(store, paths, watched=False)
        assert hashed == 1 and files == scratch(store, paths)
        assert ("tree/b.txt", "modified", None) in files


def test_a_new_product_changes_the_verdicts_of_unchanged_files(tree, short_cache):
    with Store(tree["url"]) as store:
        paths = ["tree"]
        before, _, _ = answer(store, paths, watched=False)
        assert ("tree/a/loose.txt", "untracked", None) in before
        with tracker(tree["url"], git=False) as t:
            made = t.track(tree["root"] / "a" / "loose.txt")
        after, hashed, _ = answer(store, paths, watched=False)
        assert hashed == 0 and after == scratch(store, paths)
        assert ("tree/a/loose.txt", "recorded", bytes.fromhex(made)) in after


def test_a_file_changed_just_before_the_snapshot_is_read_again(tree, short_cache):
    with Store(tree["url"]) as store:
        with FileHasher() as files:  # the real clock: every file was written just now
            status(store, ["tree"], files, watched=False)
        with FileHasher() as files:
            report = status(store, ["tree"], files, watched=False)
        assert report.hashed == 4  # none trusted by a stat key that a change could share


def test_only_the_newest_snapshots_are_kept(tmp_path):
    from provstore.capture.hashcache import SNAPSHOTS_KEPT

    cache = str(tmp_path / "hashes.sqlite")
    ticks = iter(range(1, 100))
    for n in range(SNAPSHOTS_KEPT + 3):
        with FileHasher(cache, clock=lambda: next(ticks)) as files:
            files.keep_snapshot(f"args-{n}", b"m", b"r", b"d")
    with FileHasher(cache) as files:
        kept = [n for n in range(SNAPSHOTS_KEPT + 3) if files.snapshot(f"args-{n}", "meta")]
    assert kept == list(range(3, SNAPSHOTS_KEPT + 3))


@linux_only
def test_a_watched_tree_is_answered_without_looking_at_it(tree, short_cache):
    with Store(tree["url"]) as store:
        paths = ["tree"]
        started = watch.start("tree")
        assert started.root == str(tree["root"]) and started.changed is None
        first, hashed, walked = answer(store, paths)
        assert first == scratch(store, paths) and (hashed, walked) == (4, 4)
        again, hashed, walked = answer(store, paths)
        assert again == first and (hashed, walked) == (0, 0)
        (tree["root"] / "a" / "kept.csv").write_text("kept, edited\n")
        edited, hashed, walked = answer(store, paths)
        assert (hashed, walked) == (1, 1) and edited == scratch(store, paths)
        assert ("tree/a/kept.csv", "modified", None) in edited


@linux_only
def test_the_watcher_sees_new_removed_and_renamed_directories(tree, short_cache):
    root = tree["root"]
    with Store(tree["url"]) as store:
        paths = ["tree"]
        watch.start("tree")
        answer(store, paths)
        (root / "new" / "deep").mkdir(parents=True)
        (root / "new" / "deep" / "x.txt").write_text("x\n")
        (root / "a.txt").write_text("between a/ and b.txt\n")
        files, _, walked = answer(store, paths)
        assert files == scratch(store, paths) and walked == 2
        assert [f[0] for f in files].index("tree/a.txt") == 2  # after a/kept.csv, a/loose.txt
        os.rename(root / "a", root / "c")
        shutil.rmtree(root / "new")
        files, hashed, _ = answer(store, paths)
        assert files == scratch(store, paths) and hashed == 0  # moved, not changed
        assert [f[0] for f in files] == [
            "tree/a.txt", "tree/b.txt", "tree/c/kept.csv", "tree/c/loose.txt", "tree/z.bin"
        ]  # fmt: skip


@linux_only
def test_the_store_and_vcs_folders_stay_out_of_a_watched_status(tree, short_cache):
    root = tree["root"]
    url = f"sqlite:///{root}/inside.db"
    with Store(url) as store:
        watch.start("tree")
        answer(store, ["tree"])
        with tracker(url, git=False) as t:  # writes inside.db (and -wal) in the watched tree
            t.track(root / "z.bin")
        (root / ".git").mkdir()
        (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        files, _, _ = answer(store, ["tree"])
        assert files == scratch(store, ["tree"])
        assert not [f for f in files if "inside.db" in f[0] or ".git" in f[0]]


@linux_only
def test_another_watcher_or_a_lost_event_means_walking(tree, short_cache):
    with Store(tree["url"]) as store:
        first = watch.start("tree")
        answer(store, ["tree"])
        assert watch.ask("tree", ("not-this-one", first.batch)).changed is None
        assert watch.stop("tree") and watch.ask("tree") is None
        (tree["root"] / "b.txt").write_text("changed while nobody watched\n")
        second = watch.start("tree")
        assert second.instance != first.instance
        files, hashed, walked = answer(store, ["tree"])
        assert (hashed, walked) == (1, 4) and files == scratch(store, ["tree"])


@linux_only
def test_a_tree_named_through_a_symbolic_link_is_watched(tree, short_cache):
    os.symlink(tree["root"], "linked")
    with Store(tree["url"]) as store:
        watch.start("linked")
        first, _, _ = answer(store, ["linked"])
        (tree["root"] / "b.txt").write_text("b, changed\n")
        files, hashed, walked = answer(store, ["linked"])
        assert (hashed, walked) == (1, 1) and files == scratch(store, ["linked"]) != first
        assert ("linked/b.txt", "untracked", None) in files  # recorded as tree/b.txt


@linux_only
def test_a_forgetful_watcher_answers_unknown(tmp_path):
    tree = watch._Tree(str(tmp_path), watch._Inotify())
    tree.read()
    mark = tree.batch
    (tmp_path / "f").write_text("1")
    tree.read()
    assert tree.since(tree.instance, mark) == [str(tmp_path / "f")]
    assert tree.since(tree.instance, tree.batch) == []
    tree.forget()  # what an overflowed kernel queue does
    assert tree.since(tree.instance, mark) is None
    assert tree.since(tree.instance, tree.batch) == []
    assert tree.since("someone-else", tree.batch) is None


@linux_only
def test_the_watcher_exits_when_its_tree_is_removed(tmp_path, short_cache):
    (tmp_path / "gone").mkdir()
    watch.start(str(tmp_path / "gone"), idle=60)
    assert watch.running() == [str(tmp_path / "gone")]
    shutil.rmtree(tmp_path / "gone")
    deadline = time.monotonic() + 10
    while watch.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watch.running() == []


@linux_only
def test_the_watch_command_starts_lists_and_stops(tree, short_cache):
    from click.testing import CliRunner

    from provstore.cli.main import main

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["--url", tree["url"], *args])
        return result.exit_code, result.stdout

    assert run("watch", "tree") == (0, f"watching {tree['root']}\n")
    assert run("watch", "--list") == (0, f"{tree['root']}\n")
    code, out = run("status", "tree")
    assert code == 0 and out.endswith("(4 files hashed; watched, 4 looked at)\n")
    code, out = run("status", "tree")
    assert code == 0 and out.endswith("(0 files hashed; watched, 0 looked at)\n")
    assert run("watch", "--stop", "tree") == (0, "stopped watching tree\n")
    assert run("watch", "--list") == (0, "no directory is watched\n")
    code, out = run("status", "--watch", "tree")
    assert code == 0 and watch.running() == [str(tree["root"])]
    refused = CliRunner().invoke(main, ["watch", "tree/b.txt"])
    assert refused.exit_code == 2 and "not a directory" in refused.stderr


_NAMES = st.sampled_from(["p", "q", "p.x", "r"])
_STEP = st.tuples(
    st.sampled_from(["write", "append", "remove", "mkdir", "rmtree", "rename", "same"]),
    st.lists(_NAMES, min_size=1, max_size=3),
    st.lists(_NAMES, min_size=1, max_size=3),
)


@linux_only
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(_STEP, min_size=1, max_size=6))
def test_a_watched_status_always_equals_one_from_scratch(tree, short_cache, steps):
    root = tree["root"]
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    with Store(tree["url"]) as store:
        watch.start("tree")
        answer(store, ["tree"])
        for op, where, other in steps:
            path, target = work.joinpath(*where), work.joinpath(*other)
            _apply(op, path, target, root)
            files, _, _ = answer(store, ["tree"])
            assert files == scratch(store, ["tree"]), (op, where, other)


def _apply(op: str, path: Path, target: Path, root: Path) -> None:
    try:
        if op == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(path))
        elif op == "append":
            with path.open("a") as out:
                out.write("more")
        elif op == "remove":
            path.unlink()
        elif op == "mkdir":
            path.mkdir(parents=True)
        elif op == "rmtree":
            shutil.rmtree(path)
        elif op == "rename":
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
        elif op == "same":  # the bytes of a recorded file: becomes recorded, by content
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes((root / "b.txt").read_bytes())
    except OSError:
        pass  # not possible in this tree's state: nothing happened
