"""``provstore run``: track any command without changing it.

Inputs are recorded before the command starts (so a command that rewrites its input still
links to what it read), outputs after it ends, each output with every input as its parent.
An output that was already there and that the command left alone (same bytes, same
modification time) was not made by it and is not recorded.  The command's exit status and
duration end up on the run; a ``tracker()`` inside the command joins the same run through
``PROVSTORE_RUN`` (with a database or in spool mode), and an output it recorded itself is
not recorded again: its registration, with its name and metadata, wins.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from provstore.config import JOIN_VARIABLE, SPOOL_VARIABLE, URL_VARIABLE, resolve
from provstore.core.digests import hash_file
from provstore.core.errors import PathError, UsageError
from provstore.tracking.tracker import IMPORTS_VARIABLE, Tracker

__all__ = ["RunResult", "run_command"]


@dataclass(frozen=True, slots=True)
class RunResult:
    """What ``provstore run`` recorded."""

    run: str
    exit_code: int
    inputs: dict[str, str]
    outputs: dict[str, str]
    missing_outputs: tuple[str, ...]
    unchanged_outputs: tuple[str, ...] = ()
    """Outputs that were there before and that the command did not change: not recorded."""
    registered_outputs: dict[str, str] = field(default_factory=dict)
    """Outputs that a ``tracker()`` inside the command recorded itself: path -> product."""


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
    outputs = list(dict.fromkeys(outputs))
    with (
        tempfile.TemporaryDirectory(prefix="provstore-imports-") as guests,
        Tracker(settings, name=name, command=list(command), guest_imports=guests) as t,
    ):
        used = {path: t.use(path) for path in inputs}
        before = {path: _state(path) for path in outputs}
        env = {**os.environ, JOIN_VARIABLE: t.run, URL_VARIABLE: settings.url}
        env[IMPORTS_VARIABLE] = guests
        if settings.spool:
            env[SPOOL_VARIABLE] = os.path.abspath(settings.spool)
        t.flush()  # the inputs, stored before the command's own tracker() looks for them
        t.exit_code = code = _call(command, env)
        theirs = {os.path.realpath(p): d for p, d in t.recorded_by_guests().items()}
        made: dict[str, str] = {}
        registered: dict[str, str] = {}
        missing: list[str] = []
        unchanged: list[str] = []
        for path in outputs:
            if os.path.realpath(path) in theirs:
                registered[path] = theirs[os.path.realpath(path)]
            elif not os.path.isfile(path):
                missing.append(path)
            elif _unchanged(path, before[path]):
                unchanged.append(path)
            else:
                made[path] = t.track(path, parents=list(used.values()))
        run = t.run
    return RunResult(run, code, used, made, tuple(missing), tuple(unchanged), registered)


def _call(command: Sequence[str], env: dict[str, str]) -> int:
    """Run the command; its exit status (127 and 126, as a shell says, when it cannot start)."""
    try:
        return subprocess.call(list(command), env=env)
    except FileNotFoundError:
        print(f"provstore: command not found: {command[0]}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"provstore: command not executable: {command[0]}", file=sys.stderr)
        return 126


_State = tuple[int, bytes]  # (modification time in ns, content digest)


def _state(path: str) -> _State | None:
    """An output's modification time and content before the command runs (None: no file).

    The content is hashed, not only the time compared: timestamps are coarse (a fast command
    can rewrite a file within the same clock tick) and can be set back (``cp -p``).
    """
    try:
        mtime = os.stat(path).st_mtime_ns
        return mtime, hash_file(path)[0]
    except (OSError, PathError):
        return None


def _unchanged(path: str, before: _State | None) -> bool:
    """Whether the file at ``path`` still has the modification time and bytes it had."""
    if before is None:
        return False
    try:
        if os.stat(path).st_mtime_ns != before[0]:
            return False
        return hash_file(path)[0] == before[1]
    except (OSError, PathError):
        return False
