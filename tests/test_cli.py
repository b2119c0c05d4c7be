"""The command line: output formats and exit codes (0 ok, 1 check failed, 2 usage/lookup)."""

from __future__ import annotations

import json
import re
import subprocess

import click
import pytest
from click.testing import CliRunner

from provstore import tracker
from provstore.cli.main import main


@pytest.fixture
def recorded(backend_url, tmp_path):
    data = tmp_path / "result.bin"
    data.write_bytes(b"payload")
    with tracker(backend_url, name="cli-test") as t:
        product = t.track(data, metadata={"rows": 3})
        run = t.run
        env = t.environment
    return {"url": backend_url, "product": product, "run": run, "env": env, "path": str(data)}


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_show_json_product(recorded):
    code, out, _ = cli("--url", recorded["url"], "show", recorded["product"][:8], "--json")
    assert code == 0
    data = json.loads(out)
    assert data["digest"] == recorded["product"] and data["kind"] == "product"
    assert data["run"] == recorded["run"]
    assert len(data["content"]) == 64 and data["size"] == 7
    assert data["metadata"] == {"rows": 3}
    import blake3

    assert data["content"] == blake3.blake3(b"payload").hexdigest()


def test_show_human_run_and_environment(recorded):
    code, out, _ = cli("--url", recorded["url"], "show", recorded["run"])
    assert code == 0 and out.startswith(f"run {recorded['run']}") and "cli-test" in out
    code, out, _ = cli("--url", recorded["url"], "show", recorded["env"], "--json")
    data = json.loads(out)
    assert data["kind"] == "environment" and len(data["libraryset"]) == 64


def test_stats_and_log(recorded):
    code, out, _ = cli("--url", recorded["url"], "stats", "--json")
    assert code == 0
    counts = json.loads(out)["objects"]
    assert counts["environment"] == 1 and counts["product"] == 1 and counts["run"] == 1
    assert counts["libraryset"] == 1 and counts["runend"] == 1
    code, out, _ = cli("--url", recorded["url"], "log", "--json")
    [row] = json.loads(out)
    assert row["run"] == recorded["run"] and row["status"] == "succeeded" and row["products"] == 1
    code, out, _ = cli("--url", recorded["url"], "log")
    assert code == 0 and recorded["run"][:12] in out and "succeeded" in out


@pytest.mark.parametrize("ref", ["0" * 64, "000000", "xyz", "abc"])
def test_bad_refs_exit_2(recorded, ref):
    code, _, err = cli("--url", recorded["url"], "show", ref)
    assert code == 2
    assert "error" in err and "Traceback" not in err


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


@pytest.mark.parametrize(
    "path", list(_all_commands(main)), ids=lambda p: " ".join(p) or "provstore"
)
def test_every_command_has_help_with_an_example(path):
    code, out, _ = cli(*path, "--help")
    assert code == 0
    assert "Example" in out
    assert "Exit codes" in out
    examples = out.split("Example", 1)[1].split("REF:", 1)[0]
    # every command shows how to start from what the user holds: a file or a name
    assert re.search(r"name:|\w\.\w|/", examples), examples


def test_installed_script_exit_codes(recorded, script):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return script(recorded["url"], *args, timeout=120)

    ok = run("show", recorded["product"])
    assert ok.returncode == 0 and recorded["product"] in ok.stdout
    unknown = run("show", "f" * 64)
    assert unknown.returncode == 2 and "no object matches" in unknown.stderr
    usage = run("show")
    assert usage.returncode == 2 and "Missing argument" in usage.stderr
