"""The installed `provstore` script end to end: run, verify, rerun, diff, env, lineage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from provstore import Store, tracker
from provstore.db import schema


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "in.txt").write_text("hello provenance\n")
    (tmp_path / "copy.py").write_text("import shutil\nshutil.copy('in.txt', 'out.txt')\n")
    (tmp_path / "noise.py").write_text(
        "import os\nopen('noise.bin', 'wb').write(os.urandom(32))\n"
    )
    return tmp_path


def _recorded_output(url: str, name: str) -> str:
    with Store(url) as store:
        [product] = store.find_products(name=name)
        return product.hex


def test_run_records_output_with_input_as_parent(backend_url, workdir, script):
    proc = script(backend_url, "run", "-i", "in.txt", "-o", "out.txt", "--name", "copy", "--",
               sys.executable, "copy.py", cwd=str(workdir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = _recorded_output(backend_url, "out.txt")
    with Store(backend_url) as store:
        product = store.get(out).obj
        [parent] = product.parents
        source = store.get(parent).obj
        assert source.name == "in.txt" and source.path == str(workdir / "in.txt")
        run = store.get(product.run).obj
        assert run.command == (sys.executable, "copy.py") and run.name == "copy"
        [summary] = store.runs()
        assert summary.status == "succeeded"


def test_run_returns_the_commands_exit_code(backend_url, workdir, script):
    proc = script(backend_url, "run", "--", sys.executable, "-c", "raise SystemExit(3)",
               cwd=str(workdir))  # fmt: skip
    assert proc.returncode == 3
    with Store(backend_url) as store:
        [summary] = store.runs()
        assert summary.status == "failed"
        end = store.get(store.run_ends([summary.digest])[0]).obj
        assert end.exit_code == 3


def test_child_tracker_joins_the_run(backend_url, workdir, script):
    (workdir / "child.py").write_text(
        textwrap.dedent(
            """
            from provstore import tracker
            with tracker() as t:
                t.register_data_product(name="from-child")
                print(t.run, t.joined)
            """
        )
    )
    proc = script(backend_url, "run", "--", sys.executable, "child.py", cwd=str(workdir))
    assert proc.returncode == 0, proc.stderr
    child_run, joined = proc.stdout.split()
    assert joined == "True"
    with Store(backend_url) as store:
        [summary] = store.runs()
        assert summary.digest.hex() == child_run
        [product] = store.find_products(name="from-child")
        assert product.obj.run.hex() == child_run


def test_verify_unchanged_changed_missing(backend_url, workdir, script):
    assert script(backend_url, "run", "-i", "in.txt", "-o", "out.txt", "--", sys.executable,
               "copy.py", cwd=str(workdir)).returncode == 0  # fmt: skip
    out = _recorded_output(backend_url, "out.txt")
    ok = script(backend_url, "verify", out[:10])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verified" in ok.stdout

    target = workdir / "out.txt"
    original = target.read_bytes()
    target.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    changed = script(backend_url, "verify", out, "--json")
    assert changed.returncode == 1
    data = next(c for c in json.loads(changed.stdout)["checks"] if c["check"] == "data")
    assert data["status"] == "failed"
    assert len(data["expected"]) == 64 and len(data["actual"]) == 64
    assert data["expected"] != data["actual"]
    assert data["expected"] in changed.stdout and data["actual"] in changed.stdout

    target.unlink()
    missing = script(backend_url, "verify", out)
    assert missing.returncode == 1 and "missing" in missing.stdout

    elsewhere = workdir / "copy-of-out.txt"
    elsewhere.write_bytes(original)
    assert script(backend_url, "verify", out, "--path", str(elsewhere)).returncode == 0
    assert script(backend_url, "verify", out, "--path", str(workdir / "nope")).returncode == 2


def test_rerun_deterministic_passes_random_fails(backend_url, workdir, script):
    assert script(backend_url, "run", "-i", "in.txt", "-o", "out.txt", "--", sys.executable,
               "copy.py", cwd=str(workdir)).returncode == 0  # fmt: skip
    assert script(backend_url, "run", "-o", "noise.bin", "--", sys.executable, "noise.py",
               cwd=str(workdir)).returncode == 0  # fmt: skip
    out = _recorded_output(backend_url, "out.txt")
    noise = _recorded_output(backend_url, "noise.bin")
    before = (workdir / "noise.bin").read_bytes()

    good = script(backend_url, "verify", out, "--rerun")
    assert good.returncode == 0, good.stdout
    bad = script(backend_url, "verify", noise, "--rerun", "--json")
    assert bad.returncode == 1
    rerun = next(c for c in json.loads(bad.stdout)["checks"] if c["check"] == "rerun")
    [entry] = rerun["outputs"]
    assert entry["status"] == "differs" and entry["actual"] != entry["expected"]
    # the recorded file is left exactly as it was
    assert (workdir / "noise.bin").read_bytes() == before
    assert script(backend_url, "verify", noise).returncode == 0


def test_corrupt_object_reported_by_verify_and_fsck(backend_url, tmp_path, script):
    data = tmp_path / "d.bin"
    data.write_bytes(b"abc")
    with tracker(backend_url) as t:
        product = t.track(data)
        env = t.environment
    engine = sa.create_engine(backend_url)
    with engine.begin() as conn:
        row = conn.execute(sa.select(schema.objects.c.data).where(
            schema.objects.c.digest == bytes.fromhex(env))).scalar_one()  # fmt: skip
        broken = bytes(row[:-1]) + bytes([row[-1] ^ 0xFF])
        conn.execute(schema.objects.update().where(
            schema.objects.c.digest == bytes.fromhex(env)).values(data=broken))  # fmt: skip
    engine.dispose()
    verify = script(backend_url, "verify", product)
    assert verify.returncode == 1
    assert env in verify.stdout and "corrupt" in verify.stdout
    fsck = script(backend_url, "fsck")
    assert fsck.returncode == 1 and env in fsck.stdout


def test_diff_names_an_added_distribution(backend_url, tmp_path, script):
    with tracker(backend_url) as t:
        product = t.register_data_product(name="p")
    site = tmp_path / "extra-site"
    dist = site / "extra_pkg-9.8.7.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: Extra_Pkg\nVersion: 9.8.7\n\n")
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    proc = script(backend_url, "diff", product, env={"PYTHONPATH": pythonpath})
    assert proc.returncode == 0, proc.stderr
    assert "extra-pkg" in proc.stdout and "9.8.7" in proc.stdout
    as_json = json.loads(script(backend_url, "diff", product, "--json",
                             env={"PYTHONPATH": pythonpath}).stdout)  # fmt: skip
    added = as_json["packages"]["added"]
    assert {"name": "extra-pkg", "old": None, "new": "9.8.7"} in added
    same = script(backend_url, "diff", product)
    assert same.returncode == 0 and "identical" in same.stdout
    verify = script(backend_url, "verify", product, env={"PYTHONPATH": pythonpath})
    assert verify.returncode == 1 and "extra-pkg" in verify.stdout


def test_env_match(backend_url, script):
    nothing = script(backend_url, "env", "--match", "--json")
    assert nothing.returncode == 2 and "there is no provstore store" in nothing.stderr
    assert script(backend_url, "reindex").returncode == 0  # an empty store
    before = script(backend_url, "env", "--match", "--json")
    assert before.returncode == 1 and json.loads(before.stdout)["known"] is False
    with tracker(backend_url) as t:
        env = t.environment
    after = script(backend_url, "env", "--match", "--json")
    assert after.returncode == 0 and json.loads(after.stdout) == {
        "environment": env,
        "known": True,
    }


def _chain(url: str) -> list[str]:
    with tracker(url) as t:
        a = t.register_data_product(name="raw", version="1")
        b = t.register_data_product(name="clean", version="1", parents=[a])
        c = t.register_data_product(name="model", version="2", parents=[b])
        d = t.register_data_product(name='report "final"', version="3", parents=[c, a])
    return [a, b, c, d]


@pytest.mark.parametrize("fmt", ["text", "json", "dot", "mermaid"])
def test_lineage_three_levels_every_format(backend_url, fmt, script):
    a, b, c, d = _chain(backend_url)
    proc = script(backend_url, "lineage", d, "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for digest in (a, b, c, d):
        assert digest[:12] in out
    if fmt == "json":
        data = json.loads(out)
        assert {n["digest"] for n in data["nodes"]} == {a, b, c, d}
        assert {"child": d, "parent": a} in data["edges"]
    if fmt == "dot":
        dot = shutil.which("dot")
        if dot is None and os.environ.get("CI") == "true":
            pytest.fail("graphviz `dot` is not installed (scripts/test.sh installs it)")
        if dot is not None:
            svg = subprocess.run([dot, "-Tsvg"], input=out, capture_output=True, text=True)
            assert svg.returncode == 0, svg.stderr
            assert "<svg" in svg.stdout
    down = script(backend_url, "lineage", a, "--descendants", "--depth", "1", "--format", "json")
    nodes = {n["digest"] for n in json.loads(down.stdout)["nodes"]}
    assert nodes == {a, b, d}


def test_lineage_streamed_as_json_lines(backend_url, script):
    a, b, c, d = _chain(backend_url)
    proc = script(backend_url, "lineage", d, "--stream")
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    whole = json.loads(script(backend_url, "lineage", d, "--format", "json").stdout)
    assert got == [{"digest": n["digest"], "depth": n["depth"]} for n in whole["nodes"]]
    assert {n["digest"] for n in got} == {a, b, c, d}
    mixed = script(backend_url, "lineage", d, "--stream", "--format", "dot")
    assert mixed.returncode == 2 and "--stream" in mixed.stderr


def test_diff_exit_code_says_whether_the_environments_differ(backend_url, tmp_path, script):
    with tracker(backend_url) as t:
        product = t.register_data_product(name="p")
    site = tmp_path / "extra-site"
    dist = site / "extra_pkg-9.8.7.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: Extra_Pkg\nVersion: 9.8.7\n\n")
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    differs = script(backend_url, "diff", product, "--exit-code", env={"PYTHONPATH": pythonpath})
    assert differs.returncode == 1, differs.stderr
    assert "extra-pkg" in differs.stdout
    as_json = script(backend_url, "diff", product, "--exit-code", "--json",
                     env={"PYTHONPATH": pythonpath})  # fmt: skip
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["packages"]["added"]
    same = script(backend_url, "diff", product, "--exit-code")
    assert same.returncode == 0 and "identical" in same.stdout
    # without --exit-code, a difference is still a successful diff, as with `git diff`
    assert script(backend_url, "diff", product, env={"PYTHONPATH": pythonpath}).returncode == 0


def test_rerun_json_holds_only_json_on_stdout(backend_url, workdir, script):
    (workdir / "chatty.py").write_text(
        "import shutil\nprint('copying in.txt')\nshutil.copy('in.txt', 'out.txt')\n"
    )
    made = script(backend_url, "run", "-i", "in.txt", "-o", "out.txt", "--", sys.executable,
                  "chatty.py", cwd=str(workdir))  # fmt: skip
    assert made.returncode == 0 and made.stdout == "copying in.txt\n"  # run passes it through
    out = _recorded_output(backend_url, "out.txt")
    proc = script(backend_url, "verify", out, "--rerun", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)  # nothing but the JSON document
    assert report["ok"] is True
    assert "copying in.txt" in proc.stderr  # the re-run command's output went to stderr
