"""Turn what :mod:`provstore.capture.process` reads from the live process into sealed objects.

Secrets are redacted here, before anything is encoded or hashed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provstore.capture import process as capture
from provstore.capture.dists import distributions
from provstore.capture.git import git_state
from provstore.capture.redact import Redactor
from provstore.config import Settings, resolve
from provstore.core.objects import CodeState, Environment, LibrarySet, Run, Sealed, Variables, seal

__all__ = [
    "EnvironmentCapture",
    "RunCapture",
    "capture_environment",
    "capture_run",
    "redactor_for",
]


@dataclass(frozen=True, slots=True)
class EnvironmentCapture:
    """The sealed environment of this process and the library set it names."""

    libraryset: Sealed
    environment: Sealed


@dataclass(frozen=True, slots=True)
class RunCapture:
    """A new run: its sealed variables and run objects."""

    variables: Sealed
    run: Sealed


def _text(value: str) -> str:
    """Text that can be encoded: undecodable bytes (surrogate escapes) become backslash escapes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _opt_text(value: object) -> str | None:
    return None if value is None else _text(str(value))


def redactor_for(settings: Settings) -> Redactor:
    """The default redactor extended by the configured patterns."""
    return Redactor().extended(settings.redact_names, settings.redact_values)


def capture_environment(
    settings: Settings | None = None,
    *,
    environ: Mapping[str, str | bytes] | None = None,
    path: Sequence[str] | None = None,
) -> EnvironmentCapture:
    """Capture interpreter, platform, distributions and allow-listed variables."""
    settings = settings or resolve()
    env = environ if environ is not None else capture.environ_snapshot()
    allow = capture.DEFAULT_ENV_ALLOW + settings.env_allow
    chosen, redacted = redactor_for(settings).redact_environ(capture.select_allowed(env, allow))
    libraryset = seal(LibrarySet(distributions(path)))
    interp = capture.interpreter()
    plat = capture.platform_facts()
    environment = Environment(
        implementation=interp["implementation"],
        python_version=interp["version"],
        system=plat["system"],
        release=plat["release"],
        machine=plat["machine"],
        libc=plat["libc"],
        libraryset=libraryset.digest,
        variables=chosen,
        redacted=tuple(redacted),
    )
    return EnvironmentCapture(libraryset, seal(environment))


def capture_run(
    env: EnvironmentCapture,
    settings: Settings | None = None,
    *,
    name: str | None = None,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str | bytes] | None = None,
    git: bool = True,
    command: Sequence[str] | None = None,
    code_dir: str | None = None,
) -> RunCapture:
    """Capture the volatile facts of one execution; argv and variables are redacted.

    ``code_dir`` is where the executed code lives (for its git state); by default the running
    script's directory.
    """
    settings = settings or resolve()
    redactor = redactor_for(settings)
    all_vars = environ if environ is not None else capture.environ_snapshot()
    values, redacted = redactor.redact_environ(all_vars)
    variables = seal(Variables(values, tuple(redacted)))
    raw_argv = [_text(arg) for arg in (sys.argv if argv is None else argv)]
    clean_argv = tuple(redactor.redact_argv(raw_argv)[0])
    host, user = capture.host_and_user()
    state = git_state(code_dir or capture.code_location()) if git else None
    code = None
    if state is not None:
        code = CodeState(
            root=_text(str(state["root"])),
            commit=_opt_text(state["commit"]),
            branch=_opt_text(state["branch"]),
            dirty=bool(state["dirty"]),
            diff_digest=state["diff_digest"],  # type: ignore[arg-type]
        )
    run = Run(
        environment=env.environment.digest,
        variables=variables.digest,
        host=_text(host),
        user=_text(user),
        argv=clean_argv,
        cwd=_text(os.getcwd()),
        executable=_text(sys.executable or ""),
        pid=os.getpid(),
        started_ns=time.time_ns(),
        code=code,
        name=name,
        command=None
        if command is None
        else tuple(redactor.redact_argv([_text(a) for a in command])[0]),
    )
    return RunCapture(variables, seal(run))
