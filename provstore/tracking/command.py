"""``provstore run``: track any command without changing it.

Inputs are recorded before the command starts (so a command that rewrites its input still
links to what it read), outputs after it ends, each output with every input as its parent.
The command's exit status and duration end up on the run; a ``tracker()`` inside the command
joins the same run through ``PROVSTORE_RUN``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from provstore.config import JOIN_VARIABLE, URL_VARIABLE, resolve
from provstore.core.errors import PathError, UsageError
from provstore.tracking.tracker import Tracker

__all__ = ["RunResult", "run_command"]


@dataclass(frozen=True, slots=True)
class RunResult:
    """What ``provstore run`` recorded."""

    run: str
    exit_code: int
    inputs: dict[str, str]
    outputs: dict[str, str]
    missing_outputs: tuple[str, ...]


def run_command(
    command: Sequence[str],
    *,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    name: str | None = None,
    url: str | None = None,
) -> RunResult:
    """Run ``command`` under tracking; its exit code is returned, never raised."""
    if not command:
        raise UsageError("give the command to run after `--`, e.g. provstore run -- python x.py")
    for path in inputs:
        if not os.path.isfile(path):
            raise PathError(path, "an input must be an existing file")
    settings = resolve(url)
    with Tracker(settings, name=name, command=list(command)) as t:
        used = {path: t.use(path) for path in inputs}
        env = {**os.environ, JOIN_VARIABLE: t.run, URL_VARIABLE: settings.url}
        try:
            code = subprocess.call(list(command), env=env)
        except FileNotFoundError:
            code = 127
            print(f"provstore: command not found: {command[0]}", file=sys.stderr)
        except PermissionError:
            code = 126
            print(f"provstore: command not executable: {command[0]}", file=sys.stderr)
        t.exit_code = code
        made: dict[str, str] = {}
        missing: list[str] = []
        for path in outputs:
            if os.path.isfile(path):
                made[path] = t.track(path, parents=list(used.values()))
            else:
                missing.append(path)
        run = t.run
    return RunResult(run, code, used, made, tuple(missing))
