"""capture_environment and capture_run scrub the secrets redaction learns from every field."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from provstore.capture.redact import REDACTED
from provstore.capture.snapshot import capture_environment, capture_run
from provstore.core.objects import Run

SECRET = "literal-secret-77"  # the value of a variable with a secret name
ARGV_SECRET = "argv-secret-88"  # the value of a secret option


def test_capture_run_scrubs_known_secrets_from_every_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / f"work-{SECRET}"
    work.mkdir()
    monkeypatch.chdir(work)
    code = tmp_path / f"code-{SECRET}"
    code.mkdir()
    has_git = shutil.which("git") is not None
    if has_git:
        subprocess.run(["git", "init", "-q", str(code)], check=True)
    environ: dict[str, str | bytes] = {"LDAP_BIND_PW": SECRET, "HOME": "/home/bob"}
    env = capture_environment(environ=environ)
    run = capture_run(
        env,
        environ=environ,
        argv=[str(code / "job.py"), "--pw", ARGV_SECRET, f"--note={SECRET}"],
        command=["tool", ARGV_SECRET, SECRET],
        code_dir=str(code),
    )
    for sealed in (run.run, run.variables, env.environment):
        assert SECRET.encode() not in sealed.data
        assert ARGV_SECRET.encode() not in sealed.data
    obj = run.run.obj
    assert isinstance(obj, Run)
    assert obj.cwd == str(tmp_path / f"work-{REDACTED}")
    assert obj.argv == (str(tmp_path / f"code-{REDACTED}" / "job.py"), "--pw", REDACTED,
                        f"--note={REDACTED}")  # fmt: skip
    assert obj.command == ("tool", REDACTED, REDACTED)
    if has_git:
        assert obj.code is not None and obj.code.root == str(tmp_path / f"code-{REDACTED}")
    # What the run learnt stays in memory, for the error text at the end; never in a repr.
    assert run.secrets.scrub(f"{SECRET} {ARGV_SECRET}") == f"{REDACTED} {REDACTED}"
    assert SECRET not in repr(run) and ARGV_SECRET not in repr(run)


def test_capture_environment_scrubs_secrets_of_other_variables() -> None:
    environ: dict[str, str | bytes] = {
        "LDAP_BIND_PW": SECRET,  # not allow-listed, so not in the environment object
        "PYTHONPATH": f"/opt/{SECRET}/lib",
        "LANG": "C.UTF-8",
    }
    env = capture_environment(environ=environ)
    assert env.environment.obj.variables == {  # type: ignore[union-attr]
        "PYTHONPATH": f"/opt/{REDACTED}/lib",
        "LANG": "C.UTF-8",
    }
    assert env.environment.obj.redacted == ("PYTHONPATH",)  # type: ignore[union-attr]


def test_capture_run_uses_the_live_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LDAP_BIND_PW", SECRET)
    env = capture_environment()
    run = capture_run(env, argv=["job.py", SECRET], git=False)
    assert run.run.obj.argv == ("job.py", REDACTED)  # type: ignore[union-attr]
    assert run.variables.obj.variables["LDAP_BIND_PW"] == REDACTED  # type: ignore[union-attr]
