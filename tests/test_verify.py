"""verify: --recursive checks every ancestor's file; --rerun says which inputs changed."""

from __future__ import annotations

import json
import os
import sys

import pytest
from click.testing import CliRunner

from provstore import open_store, tracker
from provstore.cli.main import main


@pytest.fixture
def chain(backend_url, tmp_path):
    """raw.csv (a source) -> clean.csv -> summary.txt, each file where it was recorded."""
    raw, clean, summary = (tmp_path / n for n in ("raw.csv", "clean.csv", "summary.txt"))
    raw.write_text("a,b\n1,2\n")
    with tracker(backend_url, git=False) as t:
        clean.write_text("a,b\n1,2\n\n")
        clean_id = t.track(clean, parents=[t.use(raw)])
    with tracker(backend_url, git=False) as t:
        summary.write_text("1 row\n")
        summary_id = t.track(summary, parents=[t.use(clean)])
    return {"url": backend_url, "raw": raw, "clean": clean, "summary": summary,
            "clean_id": clean_id, "summary_id": summary_id}  # fmt: skip


def _ancestors(report):
    return next(c for c in report.checks if c.name == "ancestors")


def test_recursive_checks_every_ancestors_file(chain):
    with open_store(chain["url"]) as store:
        report = store.verify(chain["summary_id"], recursive=True, environment=False)
        assert report.ok, report.to_json()
        check = _ancestors(report)
        assert check.status == "ok"
        assert [(a["path"], a["status"]) for a in check.details["ancestors"]] == [
            (str(chain["clean"]), "ok"),
            (str(chain["raw"]), "ok"),
        ]
        chain["raw"].write_text("a,b\n1,3\n")  # the source changed after the fact
        assert store.verify(chain["summary_id"], environment=False).ok  # not looked at
        report = store.verify(chain["summary_id"], recursive=True, environment=False)
        assert not report.ok
        check = _ancestors(report)
        assert check.status == "failed" and str(chain["raw"]) in check.message
        [raw] = [a for a in check.details["ancestors"] if a["status"] == "differs"]
        assert raw["path"] == str(chain["raw"]) and raw["expected"] != raw["actual"]


def test_recursive_skips_ancestors_whose_file_is_not_on_this_machine(chain):
    chain["clean"].unlink()
    with open_store(chain["url"]) as store:
        report = store.verify(chain["summary_id"], recursive=True, environment=False)
        assert report.ok, report.to_json()
        check = _ancestors(report)
        statuses = {a["path"]: a["status"] for a in check.details["ancestors"]}
        assert statuses == {str(chain["clean"]): "absent", str(chain["raw"]): "ok"}
        assert "1 not on this machine" in check.message


def test_recursive_on_the_command_line(chain):
    chain["raw"].write_text("changed\n")
    runner = CliRunner()
    plain = runner.invoke(main, ["--url", chain["url"], "verify", chain["summary_id"],
                                 "--no-environment"])  # fmt: skip
    assert plain.exit_code == 0, plain.output
    deep = runner.invoke(main, ["--url", chain["url"], "verify", chain["summary_id"],
                                "--no-environment", "--recursive", "--json"])  # fmt: skip
    assert deep.exit_code == 1
    [check] = [c for c in json.loads(deep.stdout)["checks"] if c["check"] == "ancestors"]
    assert check["status"] == "failed"


def test_rerun_says_which_inputs_differ_before_it_runs(sqlite_url, tmp_path, script):
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "other.txt").write_text("unchanged\n")
    (tmp_path / "copy.py").write_text(
        "import shutil\nprint('copying now')\nshutil.copy('in.txt', 'out.txt')\n"
    )
    made = script(sqlite_url, "run", "-i", "in.txt", "-i", "other.txt", "-o", "out.txt", "--",
                  sys.executable, "copy.py", cwd=str(tmp_path))  # fmt: skip
    assert made.returncode == 0, made.stderr
    with open_store(sqlite_url) as store:
        [out] = store.find_products(name="out.txt")
    (tmp_path / "in.txt").write_text("hello, changed\n")
    proc = script(sqlite_url, "verify", out.hex, "--rerun", "--json")
    assert proc.returncode == 1
    notice = f"input {tmp_path / 'in.txt'} differs from the recorded one"
    assert notice in proc.stderr and "other.txt" not in proc.stderr
    assert proc.stderr.index(notice) < proc.stderr.index("copying now")  # said before it ran
    rerun = next(c for c in json.loads(proc.stdout)["checks"] if c["check"] == "rerun")
    inputs = {i["path"]: i["status"] for i in rerun["inputs"]}
    assert inputs == {str(tmp_path / "in.txt"): "differs", str(tmp_path / "other.txt"): "ok"}
    assert "in.txt" in rerun["message"]
    assert (tmp_path / "out.txt").read_text() == "hello\n"  # the recorded output is put back


def test_a_rerun_in_spool_mode_writes_nothing_into_the_real_spool(sqlite_url, tmp_path, script):
    spool = tmp_path / "spool"
    (tmp_path / "step.py").write_text(
        "from provstore import tracker\n"
        "with tracker() as t:\n"
        "    open('out.txt', 'w').write('made\\n')\n"
        "    t.track('out.txt')\n"
    )
    made = script(sqlite_url, "run", "--", sys.executable, "step.py", cwd=str(tmp_path))
    assert made.returncode == 0, made.stderr
    with open_store(sqlite_url) as store:
        [out] = store.find_products(name="out.txt")
    proc = script(sqlite_url, "verify", out.hex, "--rerun", env={"PROVSTORE_SPOOL": str(spool)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not spool.exists() or os.listdir(spool) == []  # the re-run's run is thrown away
