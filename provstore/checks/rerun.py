"""Re-execute a recorded run and compare what it writes with what was recorded.

The command runs in its recorded working directory with its recorded arguments.  Recorded
outputs that exist are moved aside first and put back afterwards, whatever happens, so a
rerun never destroys the files being verified; what the rerun wrote is hashed, then removed.
Any ``tracker()`` inside the command records into a throwaway store, not the real one.
The command's standard output goes to this process's standard error, so a caller's own
output (``provstore verify --rerun --json``) stays the caller's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from provstore.checks.report import Check
from provstore.config import JOIN_VARIABLE, URL_VARIABLE, Settings
from provstore.core.digests import hash_file, to_hex
from provstore.core.errors import PathError
from provstore.core.objects import Product, Run, Sealed
from provstore.store import Store

__all__ = ["check_rerun", "rerun_command"]

_ASIDE = ".provstore-verify-original"


def rerun_command(run: Run) -> list[str] | None:
    """The command that re-executes ``run``, or None when it cannot be known."""
    if run.command:
        return list(run.command)
    if not run.argv or run.argv[0] in ("", "-c", "-"):
        return None
    script = run.argv[0] if os.path.isabs(run.argv[0]) else os.path.join(run.cwd, run.argv[0])
    if not os.path.isfile(script) or not run.executable:
        return None
    return [run.executable, *run.argv]


def check_rerun(store: Store, run: Sealed | None, settings: Settings) -> Check:
    """Run the recorded command again and compare each recorded output's content."""
    if run is None or not isinstance(run.obj, Run):
        return Check("rerun", "unavailable", "no run recorded for this object")
    command = rerun_command(run.obj)
    if command is None:
        return Check("rerun", "unavailable", "the run's command cannot be re-executed "
                     "(interactive, `python -c`, or the script is gone)")  # fmt: skip
    if not os.path.isdir(run.obj.cwd):
        return Check("rerun", "unavailable", f"the recorded directory {run.obj.cwd} is gone")
    outputs = [
        p for p in store.products_of_run(run.digest)
        if isinstance(p.obj, Product) and p.obj.path and p.obj.content is not None
    ]  # fmt: skip
    if not outputs:
        return Check("rerun", "unavailable", "the run recorded no output files to compare")
    paths = sorted({p.obj.path for p in outputs if isinstance(p.obj, Product) and p.obj.path})
    with _outputs_aside(paths), tempfile.TemporaryDirectory(prefix="provstore-rerun-") as scratch:
        env = {k: v for k, v in os.environ.items() if k != JOIN_VARIABLE}
        env[URL_VARIABLE] = f"sqlite:///{os.path.join(scratch, 'rerun.db')}"
        code = subprocess.call(command, cwd=run.obj.cwd, env=env, stdout=_stderr_fd())
        results = {path: _digest_or_none(path) for path in paths}
    return _compare(outputs, results, command, code)


def _stderr_fd() -> int:
    """The file descriptor behind ``sys.stderr`` (2 when it has none, e.g. under a test runner)."""
    sys.stderr.flush()
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2


def _digest_or_none(path: str) -> tuple[bytes, int] | None:
    try:
        return hash_file(path)
    except PathError:
        return None


def _compare(
    outputs: list[Sealed], results: dict[str, tuple[bytes, int] | None], command: list[str],
    code: int,
) -> Check:  # fmt: skip
    compared = []
    for item in outputs:
        product = item.obj
        assert isinstance(product, Product) and product.path and product.content
        new = results.get(product.path)
        entry = {"product": item.hex, "path": product.path, "expected": to_hex(product.content),
                 "actual": to_hex(new[0]) if new else None}  # fmt: skip
        entry["status"] = "ok" if new and new[0] == product.content else (
            "missing" if new is None else "differs")  # fmt: skip
        compared.append(entry)
    details = {"command": command, "exit_code": code, "outputs": compared}
    bad = [e for e in compared if e["status"] != "ok"]
    if code != 0:
        return Check("rerun", "failed", f"the command exited with status {code}", details)
    if not bad:
        return Check("rerun", "ok", f"{len(compared)} outputs reproduced exactly", details)
    lines = [f"{e['path']}: expected {e['expected']}, got {e['actual'] or 'no file'}" for e in bad]
    return Check("rerun", "failed", "outputs differ: " + "; ".join(lines), details)


@contextmanager
def _outputs_aside(paths: list[str]) -> Iterator[None]:
    """Move existing outputs out of the way; restore them (dropping rerun files) at the end."""
    moved: list[str] = []
    try:
        for path in paths:
            if os.path.lexists(path):
                os.replace(path, path + _ASIDE)
                moved.append(path)
        yield
    finally:
        for path in paths:
            if path in moved:
                os.replace(path + _ASIDE, path)
            elif os.path.lexists(path):
                os.unlink(path)
