"""Re-execute a recorded run and compare what it writes with what was recorded.

The command runs in its recorded working directory with its recorded arguments.  Recorded
outputs that exist are moved aside first and put back afterwards, whatever happens, so a
rerun never destroys the files being verified; what the rerun wrote is hashed, then removed.
Any ``tracker()`` inside the command records into a throwaway store (or spool), not the real
one.
The command's standard output goes to this process's standard error, so a caller's own
output (``provstore verify --rerun --json``) stays the caller's.  Before the command runs, the
run's recorded inputs are hashed, and those that changed since are named (on standard error,
and in the check): a changed input explains a changed output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from provstore.checks.report import Check
from provstore.config import JOIN_VARIABLE, SPOOL_VARIABLE, URL_VARIABLE, Settings, resolve
from provstore.core.digests import hash_file, to_hex
from provstore.core.errors import PathError, ProvstoreError
from provstore.core.objects import Product, Run, RunEnd, Sealed
from provstore.store import Store

__all__ = ["check_rerun", "compare_inputs", "rerun_command"]

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


def check_rerun(
    store: Store,
    run: Sealed | None,
    settings: Settings,
    notify: Callable[[str], None] | None = None,
) -> Check:
    """Run the recorded command again and compare each recorded output's content.

    ``notify`` is told of each recorded input that changed, before the command runs (by
    default on standard error).
    """
    if run is None or not isinstance(run.obj, Run):
        return Check("rerun", "unavailable", "no run recorded for this object")
    command = rerun_command(run.obj)
    if command is None:
        return Check("rerun", "unavailable", "the run's command cannot be re-executed "
                     "(interactive, `python -c`, or the script is gone)")  # fmt: skip
    if not os.path.isdir(run.obj.cwd):
        return Check("rerun", "unavailable", f"the recorded directory {run.obj.cwd} is gone")
    made = store.products_of_run(run.digest)
    outputs = [
        p for p in made
        if isinstance(p.obj, Product) and p.obj.path and p.obj.content is not None
    ]  # fmt: skip
    if not outputs:
        return Check("rerun", "unavailable", "the run recorded no output files to compare")
    inputs = compare_inputs(store, run, made)
    for entry in inputs:
        if entry["status"] != "ok":
            (notify or _to_stderr)(_input_line(entry))
    paths = sorted({p.obj.path for p in outputs if isinstance(p.obj, Product) and p.obj.path})
    with _outputs_aside(paths), tempfile.TemporaryDirectory(prefix="provstore-rerun-") as scratch:
        env = {k: v for k, v in os.environ.items() if k != JOIN_VARIABLE}
        env[URL_VARIABLE] = f"sqlite:///{os.path.join(scratch, 'rerun.db')}"
        if _spooled(settings, run.obj.cwd):  # never the real spool, to be ingested later
            env[SPOOL_VARIABLE] = os.path.join(scratch, "spool")
        code = subprocess.call(command, cwd=run.obj.cwd, env=env, stdout=_stderr_fd())
        results = {path: _digest_or_none(path) for path in paths}
    check = _compare(outputs, results, command, code)
    changed = [e["path"] for e in inputs if e["status"] != "ok"]
    message = check.message
    if changed:
        message += "; inputs that differ from the recorded ones: " + ", ".join(changed)
    return Check(check.name, check.status, message, {**check.details, "inputs": inputs})


def compare_inputs(store: Store, run: Sealed, made: list[Sealed]) -> list[dict[str, Any]]:
    """Each recorded input file of ``run`` (``made``: its products) against the file now.

    The inputs are those its end lists (``t.use``, ``provstore run -i``) and the parents of
    its products that it did not make itself; those with no recorded file are left out.
    """
    ends = store.get_many(store.run_ends([run.digest])).values()
    wanted = {d for end in ends if isinstance(end.obj, RunEnd) for d in end.obj.inputs}
    mine = {p.digest for p in made}
    for item in made:
        if isinstance(item.obj, Product):
            wanted.update(p for p in item.obj.parents if p not in mine)
    entries = []
    for digest, item in store.get_many(wanted).items():
        product = item.obj
        if not isinstance(product, Product) or product.content is None or not product.path:
            continue
        now = _digest_or_none(product.path)
        status = "missing" if now is None else ("ok" if now[0] == product.content else "differs")
        entries.append({"product": to_hex(digest), "path": product.path, "status": status,
                        "expected": to_hex(product.content),
                        "actual": to_hex(now[0]) if now else None})  # fmt: skip
    return sorted(entries, key=lambda e: (e["path"], e["product"]))


def _input_line(entry: dict[str, Any]) -> str:
    if entry["status"] == "missing":
        return f"provstore: input {entry['path']} is missing (recorded {entry['expected'][:12]})"
    return (
        f"provstore: input {entry['path']} differs from the recorded one "
        f"(recorded {entry['expected'][:12]}, now {entry['actual'][:12]})"
    )


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _spooled(settings: Settings, cwd: str) -> bool:
    """Whether a tracker in the command would write to a spool (configured here or there)."""
    if settings.spool:
        return True
    try:
        return bool(resolve(start=cwd).spool)
    except ProvstoreError:
        return False


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
