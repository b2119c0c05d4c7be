"""Distribution discovery: names, precedence, broken metadata and the per-entry cache."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provstore.capture import dists

# --- distributions ------------------------------------------------------------------------

PAST_NS = (time.time_ns() // 10**9 - 3600) * 10**9  # an hour ago: not "racy"


def new_process() -> None:
    """Forget the in-process memo, as a new process would."""
    dists._MEMO.clear()
    dists._MERGED.clear()


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    new_process()
    yield
    new_process()


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path entries scanned (not served from a cache) from now on, in order."""
    entries: list[str] = []
    real_scan = dists._scan

    def counting_scan(entry: str, stat: tuple[int, int]) -> object:
        entries.append(entry)
        return real_scan(entry, stat)

    monkeypatch.setattr(dists, "_scan", counting_scan)
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
    got = dists.distributions([str(site)], cache_dir=str(tmp_path / "cache"))
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
    assert dists.distributions([str(first), str(second)], cache_dir=cache) == (
        ("numpy", "2.0.0"),
        ("only-here", "1"),
    )
    assert dists.distributions([str(second), str(first)], cache_dir=cache) == (
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
    got = dists.distributions(entries, cache_dir=str(tmp_path / "cache"))
    assert got == (("good", "1.0"),)


def test_header_only_is_read(tmp_path: Path) -> None:
    site = tmp_path / "site"
    huge = "Metadata-Version: 2.1\nName: big\nVersion: 3\n" + "Classifier: x\n" * 5000
    dist_info(site, "big", "3", header=huge + "\n" + "body\n" * 100000)
    assert dists.distributions([str(site)], cache_dir=None) == (("big", "3"),)


def test_relative_and_empty_entries_resolve_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist_info(tmp_path / "rel", "here", "1")
    dist_info(tmp_path, "cwd-dist", "2")
    monkeypatch.chdir(tmp_path)
    got = dists.distributions(["", "rel"], cache_dir=str(tmp_path / "cache"))
    assert got == (("cwd-dist", "2"), ("here", "1"))


def test_cache_hit_is_identical_and_skips_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    for i in range(20):
        dist_info(site, f"pkg{i}", f"1.{i}")
    settle(site)
    first = dists.distributions([str(site)], cache_dir=str(cache))
    assert len(cache_files(cache)) == 1

    def no_scan(*args: object) -> object:
        raise AssertionError("scanned although cached")

    monkeypatch.setattr(dists, "_scan", no_scan)
    assert dists.distributions([str(site)], cache_dir=str(cache)) == first  # memo
    new_process()
    assert dists.distributions([str(site)], cache_dir=str(cache)) == first  # disk


def test_default_cache_dir_follows_xdg_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    dist_info(site, "a", "1")
    settle(site)
    xdg = Path(os.environ["XDG_CACHE_HOME"])  # set per test by conftest's isolated_env
    dists.distributions([str(site)])
    assert len(cache_files(xdg / "provstore")) == 1
    new_process()
    monkeypatch.setenv("PROVSTORE_CACHE_DIR", str(tmp_path / "elsewhere"))
    dists.distributions([str(site)])
    assert len(cache_files(tmp_path / "elsewhere")) == 1


def test_cache_invalidated_when_a_dist_is_added_removed_or_upgraded(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", str(tmp_path / "cache")
    old = dist_info(site, "alpha", "1.0")
    settle(site)
    assert dists.distributions([str(site)], cache_dir=cache) == (("alpha", "1.0"),)
    dist_info(site, "beta", "2.0")
    assert dists.distributions([str(site)], cache_dir=cache) == (
        ("alpha", "1.0"),
        ("beta", "2.0"),
    )
    new_process()
    (old / "METADATA").unlink()
    old.rmdir()
    dist_info(site, "alpha", "1.1")
    assert dists.distributions([str(site)], cache_dir=cache) == (
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
    before = dists.distributions(path, cache_dir=cache)
    assert scanned == [str(script_dir), str(site)]
    scanned.clear()
    (script_dir / "output.csv").write_text("a,b\n")  # the script wrote next to itself
    new_process()
    assert dists.distributions(path, cache_dir=cache) == before
    assert scanned == [str(script_dir)]


def test_egg_info_edited_in_place_is_noticed(tmp_path: Path) -> None:
    # `setup.py develop` rewrites PKG-INFO inside an existing directory: the parent's mtime
    # does not change, so the metadata file itself is part of the fingerprint.
    project, cache = tmp_path / "project", str(tmp_path / "cache")
    info = project / "mine.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: mine\nVersion: 0.1\n")
    settle(info / "PKG-INFO", info, project)
    assert dists.distributions([str(project)], cache_dir=cache) == (("mine", "0.1"),)
    (info / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: mine\nVersion: 0.2\n")
    settle(info, project)
    assert dists.distributions([str(project)], cache_dir=cache) == (("mine", "0.2"),)
    new_process()
    assert dists.distributions([str(project)], cache_dir=cache) == (("mine", "0.2"),)


def test_recently_changed_directories_are_not_cached(tmp_path: Path, scanned: list[str]) -> None:
    site, cache = tmp_path / "site", str(tmp_path / "cache")
    dist_info(site, "fresh", "1")  # mtime is now: could change again within the same tick
    assert dists.distributions([str(site)], cache_dir=cache) == (("fresh", "1"),)
    assert dists.distributions([str(site)], cache_dir=cache) == (("fresh", "1"),)
    new_process()
    assert dists.distributions([str(site)], cache_dir=cache) == (("fresh", "1"),)
    assert scanned == [str(site)] * 3  # neither kept in memory nor on disk


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xc1\xff not msgpack", b"\x93\x01\x02\x03", b"\x81\xa6format\x01", b"\x80" * 3],
)
def test_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path, garbage: bytes) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    dist_info(site, "alpha", "1.0")
    settle(site)
    expected = dists.distributions([str(site)], cache_dir=str(cache))
    (cache_file,) = cache_files(cache)
    good = cache_file.read_bytes()
    cache_file.write_bytes(garbage)
    new_process()
    assert dists.distributions([str(site)], cache_dir=str(cache)) == expected
    assert cache_file.read_bytes() == good


def test_cache_for_other_entries_is_not_used(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    dist_info(site, "alpha", "1.0")
    settle(site)
    dists.distributions([str(site)], cache_dir=str(cache))
    (cache_file,) = cache_files(cache)
    other = tmp_path / "other"
    other.mkdir()
    settle(other)
    # Another path list, planted under this path list's cache name, must not be believed.
    dists.distributions([str(other)], cache_dir=str(tmp_path / "cache2"))
    (foreign,) = cache_files(tmp_path / "cache2")
    foreign.replace(cache_file)
    new_process()
    assert dists.distributions([str(site)], cache_dir=str(cache)) == (("alpha", "1.0"),)


def test_no_cache_and_unwritable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    dist_info(site, "alpha", "1.0")
    settle(site)
    monkeypatch.setenv("PROVSTORE_NO_CACHE", "1")
    assert dists.distributions([str(site)], cache_dir=str(tmp_path / "c1")) == (("alpha", "1.0"),)
    assert not (tmp_path / "c1").exists()
    monkeypatch.delenv("PROVSTORE_NO_CACHE")
    new_process()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = str(blocker / "cache")  # a directory below a file cannot be created
    assert dists.distributions([str(site)], cache_dir=unwritable) == (("alpha", "1.0"),)
    assert list(tmp_path.glob("**/*.tmp")) == []


def test_default_path_is_sys_path() -> None:
    names = dict(dists.distributions())
    assert "pytest" in names
    assert names["pytest"] == pytest.__version__


def test_three_hundred_distributions(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", str(tmp_path / "cache")
    for i in range(300):
        dist_info(site, f"Fake_Pkg.{i}", f"1.{i}")
    settle(site)
    start = time.perf_counter()
    cold = dists.distributions([str(site)], cache_dir=cache)
    cold_s = time.perf_counter() - start
    new_process()
    start = time.perf_counter()
    warm = dists.distributions([str(site)], cache_dir=cache)
    warm_s = time.perf_counter() - start
    assert warm == cold and len(cold) == 300
    assert cold[0] == ("fake-pkg-0", "1.0")
    assert warm_s < cold_s
    assert cold_s < 1.0  # ~10 ms measured; generous for slow CI disks
