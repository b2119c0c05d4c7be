from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provstore import capture

# --- distributions ------------------------------------------------------------------------

PAST_NS = (time.time_ns() // 10**9 - 3600) * 10**9  # an hour ago: not "racy"


def new_process() -> None:
    """Forget the in-process memo, as a new process would."""
    capture._MEMO.clear()
    capture._MERGED.clear()


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    new_process()
    yield
    new_process()


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path entries scanned (not served from a cache) from now on, in order."""
    entries: list[str] = []
    real_scan = capture._scan

    def counting_scan(entry: str, stat: tuple[int, int]) -> object:
        entries.append(entry)
        return real_scan(entry, stat)

    monkeypatch.setattr(capture, "_scan", counting_scan)
    return entries


def dist_info(site: Path, name: str, version: str, *, header: str | None = None) -> Path:
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    text = header if header is not None else f"Metadata-Version: 2.1\nName: {name}\n"
    if header is None:
        text += f"Version: {version}\nSummary: test\nRequires-Dist: other\n\nBody text\n"
    (folder / "METADATA").write_text(text, encoding="utf-8")
    return folder


def settle(*dirs: Path) -> None:
    """Date the directories an hour back, as if installed earlier (so the scan is cacheable)."""
    for folder in dirs:
        os.utime(folder, ns=(PAST_NS, PAST_NS))


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("dists-*.msgpack")) if cache.exists() else []


def test_names_are_normalized_and_kinds_discovered(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist_info(site, "Foo.Bar_baz", "1.0")
    dist_info(site, "ruamel.yaml", "0.18.6")
    egg_dir = site / "Legacy_Pkg.egg-info"
    egg_dir.mkdir()
    (egg_dir / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: Legacy_Pkg\nVersion: 0.3\n")
    (site / "Single-File.egg-info").write_text("Metadata-Version: 1.1\nName: single-file\n"
                                                "Version: 2.0\n")  # fmt: skip
    egg = site / "Old_Egg-1.5-py3.11.egg" / "EGG-INFO"
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: Old_Egg\nVersion: 1.5\n")
    (site / "not_a_dist").mkdir()
    (site / "module.py").write_text("")
    got = capture.distributions([str(site)], cache_dir=str(tmp_path / "cache"))
    assert got == (
        ("foo-bar-baz", "1.0"),
        ("legacy-pkg", "0.3"),
        ("old-egg", "1.5"),
        ("ruamel-yaml", "0.18.6"),
        ("single-file", "2.0"),
    )


def test_first_on_path_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dist_info(first, "numpy", "2.0.0")
    dist_info(second, "NumPy", "1.26.4")
    dist_info(second, "only-here", "1")
    cache = str(tmp_path / "cache")
    assert capture.distributions([str(first), str(second)], cache_dir=cache) == (
        ("numpy", "2.0.0"),
        ("only-here", "1"),
    )
    assert capture.distributions([str(second), str(first)], cache_dir=cache) == (
        ("numpy", "1.26.4"),
        ("only-here", "1"),
    )


def test_broken_distributions_are_skipped(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist_info(site, "good", "1.0")
    dist_info(site, "no-version", "1", header="Metadata-Version: 2.1\nName: no-version\n\n")
    dist_info(site, "no-name", "1", header="Version: 1\n")
    dist_info(site, "empty", "1", header="")
    dist_info(site, "late", "1", header="Name: late\n\nVersion: 1\n")  # Version is in the body
    dist_info(site, "binary", "1", header="\x00\xff\n")
    (site / "missing-1.0.dist-info").mkdir()
    (site / "weird-1.0.dist-info").mkdir()
    (site / "weird-1.0.dist-info" / "METADATA").mkdir()  # a directory, not a file
    (site / "dangling.egg-info").symlink_to(tmp_path / "nowhere")
    entries = [str(site), str(tmp_path / "absent"), str(tmp_path / "site" / "good-1.0.dist-info"
               / "METADATA"), str(tmp_path / "python311.zip")]  # fmt: skip
    got = capture.distributions(entries, cache_dir=str(tmp_path / "cache"))
    assert got == (("good", "1.0"),)


def test_header_only_is_read(tmp_path: Path) -> None:
    site = tmp_path / "site"
    huge = "Metadata-Version: 2.1\nName: big\nVersion: 3\n" + "Classifier: x\n" * 5000
    dist_info(site, "big", "3", header=huge + "\n" + "body\n" * 100000)
    assert capture.distributions([str(site)], cache_dir=None) == (("big", "3"),)


def test_relative_and_empty_entries_resolve_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist_info(tmp_path / "rel", "here", "1")
    dist_info(tmp_path, "cwd-dist", "2")
    monkeypatch.chdir(tmp_path)
    got = capture.distributions(["", "rel"], cache_dir=str(tmp_path / "cache"))
    assert got == (("cwd-dist", "2"), ("here", "1"))


def test_cache_hit_is_identical_and_skips_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    for i in range(20):
        dist_info(site, f"pkg{i}", f"1.{i}")
    settle(site)
    first = capture.distributions([str(site)], cache_dir=str(cache))
    assert len(cache_files(cache)) == 1

    def no_scan(*args: object) -> object:
        raise AssertionError("scanned although cached")

    monkeypatch.setattr(capture, "_scan", no_scan)
    assert capture.distributions([str(site)], cache_dir=str(cache)) == first  # memo
    new_process()
    assert capture.distributions([str(site)], cache_dir=str(cache)) == first  # disk


def test_default_cache_dir_follows_xdg_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    dist_info(site, "a", "1")
    settle(site)
    xdg = Path(os.environ["XDG_CACHE_HOME"])  # set per test by conftest's isolated_env
    capture.distributions([str(site)])
    assert len(cache_files(xdg / "provstore")) == 1
    new_process()
    monkeypatch.setenv("PROVSTORE_CACHE_DIR", str(tmp_path / "elsewhere"))
    capture.distributions([str(site)])
    assert len(cache_files(tmp_path / "elsewhere")) == 1


def test_cache_invalidated_when_a_dist_is_added_removed_or_upgraded(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", str(tmp_path / "cache")
    old = dist_info(site, "alpha", "1.0")
    settle(site)
    assert capture.distributions([str(site)], cache_dir=cache) == (("alpha", "1.0"),)
    dist_info(site, "beta", "2.0")
    assert capture.distributions([str(site)], cache_dir=cache) == (
        ("alpha", "1.0"),
        ("beta", "2.0"),
    )
    new_process()
    (old / "METADATA").unlink()
    old.rmdir()
    dist_info(site, "alpha", "1.1")
    assert capture.distributions([str(site)], cache_dir=cache) == (
        ("alpha", "1.1"),
        ("beta", "2.0"),
    )


def test_only_the_changed_entry_is_rescanned(tmp_path: Path, scanned: list[str]) -> None:
    site, script_dir, cache = tmp_path / "site", tmp_path / "scripts", str(tmp_path / "cache")
    for i in range(5):
        dist_info(site, f"pkg{i}", "1")
    script_dir.mkdir()
    settle(site, script_dir)
    path = [str(script_dir), str(site)]
    before = capture.distributions(path, cache_dir=cache)
    assert scanned == [str(script_dir), str(site)]
    scanned.clear()
    (script_dir / "output.csv").write_text("a,b\n")  # the script wrote next to itself
    new_process()
    assert capture.distributions(path, cache_dir=cache) == before
    assert scanned == [str(script_dir)]


def test_egg_info_edited_in_place_is_noticed(tmp_path: Path) -> None:
    # `setup.py develop` rewrites PKG-INFO inside an existing directory: the parent's mtime
    # does not change, so the metadata file itself is part of the fingerprint.
    project, cache = tmp_path / "project", str(tmp_path / "cache")
    info = project / "mine.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: mine\nVersion: 0.1\n")
    settle(info / "PKG-INFO", info, project)
    assert capture.distributions([str(project)], cache_dir=cache) == (("mine", "0.1"),)
    (info / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: mine\nVersion: 0.2\n")
    settle(info, project)
    assert capture.distributions([str(project)], cache_dir=cache) == (("mine", "0.2"),)
    new_process()
    assert capture.distributions([str(project)], cache_dir=cache) == (("mine", "0.2"),)


def test_recently_changed_directories_are_not_cached(tmp_path: Path, scanned: list[str]) -> None:
    site, cache = tmp_path / "site", str(tmp_path / "cache")
    dist_info(site, "fresh", "1")  # mtime is now: could change again within the same tick
    assert capture.distributions([str(site)], cache_dir=cache) == (("fresh", "1"),)
    assert capture.distributions([str(site)], cache_dir=cache) == (("fresh", "1"),)
    new_process()
    assert capture.distributions([str(site)], cache_dir=cache) == (("fresh", "1"),)
    assert scanned == [str(site)] * 3  # neither kept in memory nor on disk


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xc1\xff not msgpack", b"\x93\x01\x02\x03", b"\x81\xa6format\x01", b"\x80" * 3],
)
def test_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path, garbage: bytes) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    dist_info(site, "alpha", "1.0")
    settle(site)
    expected = capture.distributions([str(site)], cache_dir=str(cache))
    (cache_file,) = cache_files(cache)
    good = cache_file.read_bytes()
    cache_file.write_bytes(garbage)
    new_process()
    assert capture.distributions([str(site)], cache_dir=str(cache)) == expected
    assert cache_file.read_bytes() == good


def test_cache_for_other_entries_is_not_used(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    dist_info(site, "alpha", "1.0")
    settle(site)
    capture.distributions([str(site)], cache_dir=str(cache))
    (cache_file,) = cache_files(cache)
    other = tmp_path / "other"
    other.mkdir()
    settle(other)
    # Another path list, planted under this path list's cache name, must not be believed.
    capture.distributions([str(other)], cache_dir=str(tmp_path / "cache2"))
    (foreign,) = cache_files(tmp_path / "cache2")
    foreign.replace(cache_file)
    new_process()
    assert capture.distributions([str(site)], cache_dir=str(cache)) == (("alpha", "1.0"),)


def test_no_cache_and_unwritable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    dist_info(site, "alpha", "1.0")
    settle(site)
    monkeypatch.setenv("PROVSTORE_NO_CACHE", "1")
    assert capture.distributions([str(site)], cache_dir=str(tmp_path / "c1")) == (
        ("alpha", "1.0"),
    )
    assert not (tmp_path / "c1").exists()
    monkeypatch.delenv("PROVSTORE_NO_CACHE")
    new_process()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = str(blocker / "cache")  # a directory below a file cannot be created
    assert capture.distributions([str(site)], cache_dir=unwritable) == (("alpha", "1.0"),)
    assert list(tmp_path.glob("**/*.tmp")) == []


def test_default_path_is_sys_path() -> None:
    names = dict(capture.distributions())
    assert "pytest" in names
    assert names["pytest"] == pytest.__version__


def test_three_hundred_distributions(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", str(tmp_path / "cache")
    for i in range(300):
        dist_info(site, f"Fake_Pkg.{i}", f"1.{i}")
    settle(site)
    start = time.perf_counter()
    cold = capture.distributions([str(site)], cache_dir=cache)
    cold_s = time.perf_counter() - start
    new_process()
    start = time.perf_counter()
    warm = capture.distributions([str(site)], cache_dir=cache)
    warm_s = time.perf_counter() - start
    assert warm == cold and len(cold) == 300
    assert cold[0] == ("fake-pkg-0", "1.0")
    assert warm_s < cold_s
    assert cold_s < 1.0  # ~10 ms measured; generous for slow CI disks


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
    state = capture.git_state(str(repo))
    assert state == {
        "commit": git(repo, "rev-parse", "HEAD"),
        "branch": "main",
        "dirty": False,
        "diff_digest": None,
        "root": str(repo),
    }
    sub = repo / "src" / "deep"
    sub.mkdir(parents=True)
    assert capture.git_state(str(sub)) == state
    assert capture.git_state(str(repo / "train.py")) == state
    (repo / "untracked.txt").write_text("not part of the code state")
    assert capture.git_state(str(repo)) == state


def test_git_dirty_digest_tracks_the_change(repo: Path) -> None:
    (repo / "train.py").write_text("print('hello, world')\n")
    first = capture.git_state(str(repo))
    assert first is not None and first["dirty"] is True
    digest = first["diff_digest"]
    assert isinstance(digest, bytes) and len(digest) == 32
    assert capture.git_state(str(repo)) == first  # deterministic

    (repo / "train.py").write_text("print('goodbye')\n")
    second = capture.git_state(str(repo))
    assert second is not None and second["diff_digest"] != digest

    (repo / "train.py").write_text("print('hello, world')\n")
    git(repo, "add", "train.py")  # staged or not, the same change against HEAD
    third = capture.git_state(str(repo))
    assert third is not None and third["diff_digest"] == digest

    (repo / "data.bin").write_bytes(bytes(range(255, -1, -1)))  # binary changes count too
    fourth = capture.git_state(str(repo))
    assert fourth is not None and fourth["diff_digest"] not in (digest, None)


def test_git_detached_head(repo: Path) -> None:
    commit = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    state = capture.git_state(str(repo))
    assert state is not None
    assert state["branch"] is None
    assert state["commit"] == commit


def test_git_initial_commit(tmp_path: Path) -> None:
    root = tmp_path / "new"
    root.mkdir()
    git(root, "init", "-q")
    assert capture.git_state(str(root)) == {
        "commit": None,
        "branch": "main",
        "dirty": False,
        "diff_digest": None,
        "root": str(root),
    }
    (root / "a.txt").write_text("a\n")
    git(root, "add", "a.txt")
    state = capture.git_state(str(root))
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
    plain = capture.git_state(str(repo))
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
    assert capture.git_state(str(repo)) == plain


def test_git_outside_a_repo_or_without_git(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    if capture._work_tree(str(lonely)) is None:  # unless the temp dir sits inside a repo
        assert capture.git_state(str(lonely)) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / ".git").write_text("gitdir: /does/not/exist\n")
    assert capture.git_state(str(tmp_path / "broken")) is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert capture.git_state(str(repo)) is None


def test_git_ignores_inherited_git_dir(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = repo.parent / "other"
    other.mkdir()
    git(other, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    state = capture.git_state(str(repo))
    assert state is not None and state["commit"] is not None
