"""``--url`` before or after the command: every command that takes a store accepts it, and the
one given after the command wins."""

from __future__ import annotations

import json
import sys

import click
import pytest
from click.testing import CliRunner

from provstore import Store, tracker
from provstore.cli.main import main


@pytest.fixture
def recorded(sqlite_url, tmp_path):
    with tracker(sqlite_url, name="url-test") as t:
        t.register_data_product(name="p")
        run = t.run
    other = f"sqlite:///{tmp_path}/other.db"
    Store(other).close()  # an empty store: read-only commands refuse a missing one
    return {"url": sqlite_url, "run": run, "other": other}


def cli(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


def _logged_runs(result: click.testing.Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [row["run"] for row in json.loads(result.stdout)]


def test_url_after_the_command(recorded):
    assert _logged_runs(cli("log", "--url", recorded["url"], "--json")) == [recorded["run"]]


def test_url_after_the_command_wins_over_the_one_before(recorded):
    result = cli("--url", recorded["other"], "log", "--json", "--url", recorded["url"])
    assert _logged_runs(result) == [recorded["run"]]
    result = cli("--url", recorded["url"], "log", "--url", recorded["other"], "--json")
    assert _logged_runs(result) == []


def test_url_before_the_command_still_works(recorded):
    assert _logged_runs(cli("--url", recorded["url"], "log", "--json")) == [recorded["run"]]


def test_url_after_the_command_beats_the_environment(recorded, monkeypatch):
    monkeypatch.setenv("PROVSTORE_URL", recorded["other"])
    assert _logged_runs(cli("log", "--json", "--url", recorded["url"])) == [recorded["run"]]


def test_show_and_export_take_it_too(recorded, tmp_path):
    result = cli("show", recorded["run"][:10], "--url", recorded["url"], "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["digest"] == recorded["run"]
    out = tmp_path / "run.psb"
    result = cli("export", recorded["run"], "-o", str(out), "--url", recorded["url"])
    assert result.exit_code == 0, result.output
    result = cli("import", str(out), "--url", recorded["other"], "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["added"] > 0


def test_run_records_into_the_url_after_the_command(recorded, script, tmp_path):
    proc = script(recorded["other"], "run", "--url", recorded["url"], "--name", "after",
                  "--", sys.executable, "-c", "pass", cwd=str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Store(recorded["url"]) as store:
        assert sorted(r.name for r in store.runs()) == ["after", "url-test"]
    with Store(recorded["other"]) as store:
        assert store.runs() == []


def _commands(group: click.Group):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from ((f"{name} {sub}", c) for sub, c in _commands(command))
        else:
            yield name, command


STORELESS = {"key generate"}  # writes key files; no store is involved


@pytest.mark.parametrize(("name", "command"), list(_commands(main)), ids=lambda x: str(x))
def test_every_command_takes_url_and_says_so(name, command):
    if name in STORELESS:
        assert not any("--url" in param.opts for param in command.params), name
        return
    assert any("--url" in param.opts for param in command.params), name
    result = cli(*name.split(), "--help")
    assert result.exit_code == 0 and "--url URL" in result.stdout


def test_the_group_help_says_url_goes_before_or_after():
    out = " ".join(cli("--help").stdout.split())
    assert "--url URL" in out and "after the command" in out
