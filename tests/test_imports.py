"""What a run imported: ``sys.modules`` mapped to distributions, and verify judging by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from provstore.capture import imports
from provstore.capture.imports import import_names, imported_distributions


def dist(site: Path, name: str, version: str, files: list[str] | None = None,
         top_level: str | None = None) -> None:  # fmt: skip
    """A wheel-installed distribution: its dist-info (METADATA, RECORD) and its files."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    if info.exists():
        for old in info.iterdir():
            old.unlink()
        info.rmdir()
    for old in site.glob(f"{name.replace('-', '_')}-*.dist-info"):
        for item in old.iterdir():
            item.unlink()
        old.rmdir()
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")
    record = [f"{info.name}/METADATA,,"]
    for path in files or []:
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_text("VALUE = 1\n")
        record.append(f"{path},sha256=x,10")
    (info / "RECORD").write_text("\n".join(record) + "\n")
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    dist(site, "usedpkg", "1.0", ["usedpkg/__init__.py", "usedpkg/core.py"])
    dist(site, "otherpkg", "2.0", ["otherpkg/__init__.py"])
    dist(site, "single", "0.1", ["single.py"])
    dist(site, "ns-a", "1.0", ["ns/a/__init__.py"])
    dist(site, "ns-b", "1.0", ["ns/b/__init__.py"])
    dist(site, "Legacy.Pkg", "3.0", [], top_level="legacy\n")  # an editable install, say
    return site


def test_import_names_from_record_and_top_level(site):
    names = import_names([str(site)])
    assert names["usedpkg"] == ("usedpkg",)
    assert names["single"] == ("single",)
    assert names["ns.a"] == ("ns-a",) and names["ns.b"] == ("ns-b",) and "ns" not in names
    assert names["legacy"] == ("legacy-pkg",)


def test_imported_distributions_maps_modules(site):
    versions = {"usedpkg": "1.0", "otherpkg": "2.0", "single": "0.1", "ns-a": "1.0",
                "ns-b": "1.0", "legacy-pkg": "3.0"}  # fmt: skip
    modules = ["sys", "json", "usedpkg", "usedpkg.core", "ns", "ns.b", "ns.b.x", "legacy"]
    found = imported_distributions(versions, modules=modules, path=[str(site)])
    assert found == (("legacy-pkg", "3.0"), ("ns-b", "1.0"), ("usedpkg", "1.0"))


def test_the_mapping_is_cached_across_processes(site, monkeypatch):
    first = import_names([str(site)])
    imports._MEMO.clear()
    monkeypatch.setattr(imports, "_scan", lambda entry: pytest.fail("rescanned"))
    os.utime(site, (1_700_000_000, 1_700_000_000))  # settled: a cached scan is kept
    imports._MEMO.clear()
    monkeypatch.undo()
    import_names([str(site)])  # stores the settled scan
    imports._MEMO.clear()
    monkeypatch.setattr(imports, "_scan", lambda entry: pytest.fail("rescanned"))
    assert import_names([str(site)]) == first


# -- end to end: a script, then verify as the user runs it ------------------------------------

SCRIPT = """
import usedpkg
from provstore import tracker
with tracker(git=False) as t:
    t.register_data_product("result", "1")
print(t.run)
"""


def _env(site: Path, url: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "PROVSTORE_URL": url}


def _python(code: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.slow
def test_verify_fails_only_on_what_the_run_imported(site, sqlite_url, script, tmp_path):
    env = _env(site, sqlite_url)
    run = _python(SCRIPT, env, tmp_path).splitlines()[-1]
    ok = script(sqlite_url, "verify", run, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    shown = script(sqlite_url, "show", run, env=env).stdout
    assert "imported: 1 distribution " in shown and "usedpkg 1.0" in shown

    dist(site, "newpkg", "1.0", ["newpkg.py"])  # installing something unrelated
    dist(site, "otherpkg", "2.1", ["otherpkg/__init__.py"])
    noted = script(sqlite_url, "verify", run, env=env)
    assert noted.returncode == 0, noted.stdout
    assert "note:" in noted.stdout and "newpkg" in noted.stdout and "otherpkg" in noted.stdout
    assert "verified" in noted.stdout.splitlines()[-1]
    strict = script(sqlite_url, "verify", run, "--strict", env=env)
    assert strict.returncode == 1

    used = script(sqlite_url, "diff", run, "--used", "--json", env=env)
    data = json.loads(used.stdout)
    assert data["packages"] == {"added": [], "removed": [], "changed": []}

    dist(site, "usedpkg", "1.1", ["usedpkg/__init__.py", "usedpkg/core.py"])
    failed = script(sqlite_url, "verify", run, env=env)
    assert failed.returncode == 1
    assert "in what the run used: usedpkg" in failed.stdout
    assert "~ usedpkg 1.0 -> 1.1" in failed.stdout
    used = script(sqlite_url, "diff", run, "--used", env=env)
    assert "usedpkg" in used.stdout and "newpkg" not in used.stdout


@pytest.mark.slow
def test_provstore_run_knows_imports_only_through_tracker(site, sqlite_url, script, tmp_path):
    env = _env(site, sqlite_url)
    plain = tmp_path / "plain.py"
    plain.write_text("import usedpkg\n")
    proc = script(sqlite_url, "run", "--", sys.executable, str(plain), env=env)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(script(sqlite_url, "log", "--json", env=env).stdout)[0]["run"]
    shown = script(sqlite_url, "show", run, env=env).stdout
    assert "imported: unknown (the command did not use tracker())" in shown
    used = script(sqlite_url, "diff", run, "--used", env=env)
    assert used.returncode == 2 and "did not use tracker()" in used.stderr

    joined = tmp_path / "joined.py"
    fake_torch = (  # a framework built with CUDA, as far as the probe can tell
        "import sys, types\n"
        "cuda = types.SimpleNamespace(cuda='12.1')\n"
        "sys.modules['torch'] = types.SimpleNamespace(version=cuda)\n"
    )
    joined.write_text(fake_torch + textwrap.dedent(SCRIPT))
    proc = script(sqlite_url, "run", "--", sys.executable, str(joined), env=env)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(script(sqlite_url, "log", "--json", env=env).stdout)[0]["run"]
    shown = script(sqlite_url, "show", run, env=env).stdout
    assert "imported: 1 distribution " in shown and "usedpkg 1.0" in shown
    assert "cuda runtime (torch): 12.1" in shown


@pytest.mark.slow
def test_a_fresh_venv_with_numpy_records_numpy_not_pip(tmp_path, sqlite_url):
    """Real distributions: a new venv, numpy from the package index (pip's cache helps)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "numpy"], check=True, timeout=600)  # fmt: skip
    # provstore and its dependencies come from this test's environment, after the venv's own
    # site-packages (a .pth file appends them), so numpy and pip are the venv's.
    here = [p for p in sys.path if p.endswith("site-packages")]
    src = str(Path(__file__).resolve().parent.parent)
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(python), "-c", ask], capture_output=True, text=True,
                             check=True)  # fmt: skip
    Path(purelib.stdout.strip(), "zz-provstore.pth").write_text("\n".join([src, *here]) + "\n")
    code = (
        "import numpy\nfrom provstore import tracker\n"
        "with tracker(git=False) as t:\n    numpy.arange(3).sum()\nprint(t.run)\n"
    )
    env = {**os.environ, "PROVSTORE_URL": sqlite_url}
    env.pop("PYTHONPATH", None)
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    from provstore import Store
    from provstore.core.objects import ImportSet, RunEnd

    with Store(sqlite_url) as store:
        [end] = store.run_ends([bytes.fromhex(out.stdout.strip())])
        end_obj = store.get(end).obj
        assert isinstance(end_obj, RunEnd) and end_obj.imported is not None
        used = store.get(end_obj.imported).obj
    assert isinstance(used, ImportSet)
    names = used.names()
    assert "numpy" in names
    assert "pip" not in names and "provstore" not in names and "sqlalchemy" not in names


def test_unknown_imports_make_every_difference_count(site, sqlite_url, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    from provstore import Store, tracker

    with tracker(sqlite_url, git=False, probes_off=["imports"]) as t:
        pass
    dist(site, "newpkg", "1.0", ["newpkg.py"])
    with Store(sqlite_url) as store:
        report = store.verify(t.run)
        strict_free = {c.name: c for c in report.checks}["environment"]
    assert not report.ok and strict_free.status == "failed"
    assert "newpkg" in strict_free.message
    assert "every difference counts" in strict_free.message
    assert "imports probe off" in strict_free.message
