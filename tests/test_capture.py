from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from provstore.capture import git as git_module
from provstore.capture import process as capture
from provstore.capture.git import git_state

# --- environment --------------------------------------------------------------------------


def test_environ_snapshot_keeps_non_utf8_values_as_bytes() -> None:
    env = {
        "PLAIN": "value",
        "UNICODE": "caf\u00e9 \u2603",
        "LATIN1": "caf\udce9",  # b"caf\xe9" decoded with surrogateescape
        "N\udcffAME": "x",
        "STRAY": "\ud800",
    }
    snap = capture.environ_snapshot(env)
    assert snap["PLAIN"] == "value"
    assert snap["UNICODE"] == "caf\u00e9 \u2603"
    assert snap["LATIN1"] == b"caf\xe9"
    assert snap["N\\xffAME"] == "x"
    assert isinstance(snap["STRAY"], bytes)
    assert set(snap) == {"PLAIN", "UNICODE", "LATIN1", "N\\xffAME", "STRAY"}


@pytest.mark.skipif(os.name != "posix", reason="bytes environment is POSIX")
def test_environ_snapshot_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "PROVSTORE_TEST_RAW", os.fsdecode(b"\xff\xfeok"))
    monkeypatch.setenv("PROVSTORE_TEST_TEXT", "hello")
    snap = capture.environ_snapshot()
    assert snap["PROVSTORE_TEST_RAW"] == b"\xff\xfeok"
    assert snap["PROVSTORE_TEST_TEXT"] == "hello"


def test_select_allowed() -> None:
    env: dict[str, str | bytes] = {
        "OMP_NUM_THREADS": "4",
        "PYTHONHASHSEED": "0",
        "LC_ALL": "C.UTF-8",
        "LD_LIBRARY_PATH": b"/opt/\xff/lib",
        "HOSTNAME": "node17",
        "USER": "bob",
        "HOME": "/home/bob",
        "PROVSTORE_URL": "sqlite:///x",
        "omp_num_threads": "4",
        "CUDA_VISIBLE_DEVICES": "3",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "NVIDIA_VISIBLE_DEVICES": "all",
    }
    kept = capture.select_allowed(env, capture.DEFAULT_ENV_ALLOW)
    assert kept == {
        "OMP_NUM_THREADS": "4",
        "PYTHONHASHSEED": "0",
        "LC_ALL": "C.UTF-8",
        "LD_LIBRARY_PATH": b"/opt/\xff/lib",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }
    named = capture.select_allowed(env, (*capture.DEFAULT_ENV_ALLOW, "CUDA_VISIBLE_DEVICES"))
    assert named["CUDA_VISIBLE_DEVICES"] == "3"
    assert capture.select_allowed(env, ["CUDA_*"], deny=()) == {"CUDA_VISIBLE_DEVICES": "3"}
    assert capture.select_allowed(env, []) == {}


def test_interpreter_and_platform() -> None:
    assert capture.interpreter() == {
        "implementation": sys.implementation.name,
        "version": platform.python_version(),
    }
    facts = capture.platform_facts()
    assert set(facts) == {"system", "release", "machine", "libc"}
    assert facts["system"] == platform.system()
    assert facts["machine"] == platform.machine()
    if hasattr(os, "confstr") and sys.platform.startswith("linux"):
        try:
            expected = os.confstr("CS_GNU_LIBC_VERSION") or ""
        except (ValueError, OSError):
            expected = ""
        if expected:
            assert facts["libc"] == expected


def test_code_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "bin" / "train.py"
    script.parent.mkdir()
    script.write_text("")
    monkeypatch.setattr(sys, "argv", [str(script), "--lr", "0.1"])
    assert capture.code_location() == str(script.parent)
    monkeypatch.setattr(sys, "argv", ["-c"])
    monkeypatch.chdir(tmp_path)
    assert capture.code_location() == os.getcwd()
    monkeypatch.setattr(sys, "argv", [])
    assert capture.code_location() == os.getcwd()


def test_host_and_user(monkeypatch: pytest.MonkeyPatch) -> None:
    host, user = capture.host_and_user()
    assert host and user
    import getpass

    def broken() -> str:
        raise OSError("no user name")

    monkeypatch.setattr(getpass, "getuser", broken)
    host2, user2 = capture.host_and_user()
    assert host2 == host
    assert user2 == (str(os.getuid()) if hasattr(os, "getuid") else "unknown")


# --- git ----------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.org",
         "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("print('hello')\n")
    (root / "data.bin").write_bytes(bytes(range(256)))
    git(root, "add", "train.py", "data.bin")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_git_clean(repo: Path) -> None:
    state = git_state(str(repo))
    assert state == {
        "commit": git(repo, "rev-parse", "HEAD"),
        "branch": "main",
        "dirty": False,
        "diff_digest": None,
        "root": str(repo),
    }
    sub = repo / "src" / "deep"
    sub.mkdir(parents=True)
    assert git_state(str(sub)) == state
    assert git_state(str(repo / "train.py")) == state
    (repo / "untracked.txt").write_text("not part of the code state")
    assert git_state(str(repo)) == state


def test_git_dirty_digest_tracks_the_change(repo: Path) -> None:
    (repo / "train.py").write_text("print('hello, world')\n")
    first = git_state(str(repo))
    assert first is not None and first["dirty"] is True
    digest = first["diff_digest"]
    assert isinstance(digest, bytes) and len(digest) == 32
    assert git_state(str(repo)) == first  # deterministic

    (repo / "train.py").write_text("print('goodbye')\n")
    second = git_state(str(repo))
    assert second is not None and second["diff_digest"] != digest

    (repo / "train.py").write_text("print('hello, world')\n")
    git(repo, "add", "train.py")  # staged or not, the same change against HEAD
    third = git_state(str(repo))
    assert third is not None and third["diff_digest"] == digest

    (repo / "data.bin").write_bytes(bytes(range(255, -1, -1)))  # binary changes count too
    fourth = git_state(str(repo))
    assert fourth is not None and fourth["diff_digest"] not in (digest, None)


def test_git_detached_head(repo: Path) -> None:
    commit = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    state = git_state(str(repo))
    assert state is not None
    assert state["branch"] is None
    assert state["commit"] == commit


def test_git_initial_commit(tmp_path: Path) -> None:
    root = tmp_path / "new"
    root.mkdir()
    git(root, "init", "-q")
    assert git_state(str(root)) == {
        "commit": None,
        "branch": "main",
        "dirty": False,
        "diff_digest": None,
        "root": str(root),
    }
    (root / "a.txt").write_text("a\n")
    git(root, "add", "a.txt")
    state = git_state(str(root))
    assert state is not None
    assert state["commit"] is None and state["dirty"] is True
    assert isinstance(state["diff_digest"], bytes) and len(state["diff_digest"]) == 32


def test_git_user_config_does_not_change_the_digest(repo: Path) -> None:
    (repo / "caf\u00e9.txt").write_text("one\n\ntwo\n")
    (repo / "z.txt").write_text("".join(f"line {i}\n" for i in range(40)))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "more")
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "caf\u00e9.txt").write_text("one\n\nthree\n")
    (repo / "z.txt").write_text("".join(f"line {i}\n" for i in range(40) if i not in (5, 12)))
    plain = git_state(str(repo))
    settings = {
        "diff.noprefix": "true",
        "diff.mnemonicPrefix": "true",
        "color.diff": "always",
        "color.ui": "always",
        "core.abbrev": "12",
        "core.quotePath": "false",
        "diff.context": "7",
        "diff.interHunkContext": "10",
        "diff.suppressBlankEmpty": "true",
        "diff.algorithm": "patience",
        "diff.renames": "copies",
        "diff.external": "false",
        "diff.orderFile": str(repo.parent / "order"),
    }
    (repo.parent / "order").write_text("z.txt\n")
    for key, value in settings.items():
        git(repo, "config", key, value)
    assert git_state(str(repo)) == plain


def test_git_outside_a_repo_or_without_git(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    if git_module._work_tree(str(lonely)) is None:  # unless the temp dir sits inside a repo
        assert git_state(str(lonely)) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / ".git").write_text("gitdir: /does/not/exist\n")
    assert git_state(str(tmp_path / "broken")) is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert git_state(str(repo)) is None


def test_git_ignores_inherited_git_dir(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = repo.parent / "other"
    other.mkdir()
    git(other, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    state = git_state(str(repo))
    assert state is not None and state["commit"] is not None
