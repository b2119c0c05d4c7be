"""Turn what :mod:`provstore.capture.process` reads from the live process into sealed objects.

Secrets are redacted here, before anything is encoded or hashed. The secret values redaction
meets (in variables and on the command line) are carried along in memory, never stored, and
scrubbed from every other free-text field of the run: argv, command, working directory,
executable, host, user and the git root and branch (and, by the tracker, the error text).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provstore.capture import probes
from provstore.capture import process as capture
from provstore.capture.conda import conda_packages
from provstore.capture.dists import distributions
from provstore.capture.git import git_state
from provstore.capture.redact import RedactedEnviron, Redactor, Secrets
from provstore.config import Settings, resolve
from provstore.core.objects import (
    CodeState,
    CondaSet,
    Environment,
    LibrarySet,
    Run,
    Sealed,
    Variables,
    seal,
    seal_unchecked,
)

__all__ = [
    "EnvironmentCapture",
    "RunCapture",
    "capture_environment",
    "capture_run",
    "redactor_for",
]


@dataclass(frozen=True, slots=True)
class EnvironmentCapture:
    """The sealed environment of this process and the library set it names.

    ``variables`` is every variable of the live process, redacted (read once for both the
    environment and the run); ``None`` when the capture was given its variables.
    """

    libraryset: Sealed
    environment: Sealed
    variables: RedactedEnviron | None = field(default=None, repr=False, compare=False)
    conda: Sealed | None = None

    def objects(self) -> list[Sealed]:
        """The sealed objects to store, those referred to first."""
        head = [self.libraryset] if self.conda is None else [self.libraryset, self.conda]
        return [*head, self.environment]


@dataclass(frozen=True, slots=True)
class RunCapture:
    """A new run: its sealed variables and run objects, and the secrets redaction met.

    ``secrets`` stays in memory, for scrubbing text written later (the run's error).
    """

    variables: Sealed
    run: Sealed
    secrets: Secrets = field(default=Secrets(), repr=False, compare=False)


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
    prefix: str | None = None,
) -> EnvironmentCapture:
    """Capture interpreter, platform, distributions, allow-listed variables and the probes.

    The probes' stable facts: conda packages (of ``prefix``, default ``sys.prefix``), GPU
    driver and models, container image.
    """
    settings = settings or resolve()
    live = environ is None
    redactor = redactor_for(settings)
    scan = redactor.scan_environ(capture.environ_snapshot() if environ is None else environ)
    allow = capture.DEFAULT_ENV_ALLOW + settings.env_allow
    chosen = capture.select_allowed(scan.values, allow)
    redacted = [name for name in scan.redacted if name in chosen]
    libraryset = seal(LibrarySet(distributions(path)))
    interp = capture.interpreter()
    plat = capture.platform_facts()
    conda = _conda(settings, prefix)
    root = settings.probe_root
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
        conda=None if conda is None else conda.digest,
        gpu=probes.gpu_facts(root) if settings.probe("gpu") else None,
        container=_redacted(probes.container_facts(scan.values, root), redactor, scan.secrets)
        if settings.probe("container")
        else None,
    )
    return EnvironmentCapture(libraryset, seal(environment), scan if live else None, conda)


_CONDA_SEALED: dict[int, tuple[object, Sealed]] = {}


def _redacted(facts: Any, redactor: Redactor, secrets: Secrets) -> Any:
    """A probe's facts with credential-shaped text redacted.

    An image label may hold a URL with a password, say; maps and lists of text, as the
    probes return them.
    """
    if isinstance(facts, str):
        return redactor.redact_text(facts, secrets)[0]
    if isinstance(facts, list):
        return [_redacted(value, redactor, secrets) for value in facts]
    if isinstance(facts, dict):
        return {key: _redacted(value, redactor, secrets) for key, value in facts.items()}
    return facts


def _conda(settings: Settings, prefix: str | None) -> Sealed | None:
    """The sealed conda set, sealed once per scan in a process.

    Unchecked: :mod:`provstore.capture.conda` builds every field as ``str``, and sealing 500
    packages with the contract's round trip would cost a warm entry ~1.5 ms more.
    """
    if not settings.probe("conda"):
        return None
    found = conda_packages(prefix)
    if found is None:
        return None
    last = _CONDA_SEALED.get(id(found))
    if last is not None and last[0] is found:
        return last[1]
    sealed = seal_unchecked(CondaSet(*found))
    _CONDA_SEALED.clear()
    _CONDA_SEALED[id(found)] = (found, sealed)
    return sealed


def _code_state(state: dict[str, object], scrub: Callable[[str], str]) -> CodeState:
    """The git state read by :func:`git_state`, its free text scrubbed of known secrets."""
    return CodeState(
        root=scrub(str(state["root"])),
        commit=_opt_text(state["commit"]),
        branch=None if state["branch"] is None else scrub(str(state["branch"])),
        dirty=bool(state["dirty"]),
        diff_digest=state["diff_digest"],  # type: ignore[arg-type]
    )


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
    if environ is None and env.variables is not None:
        scan = env.variables
    else:
        scan = redactor.scan_environ(capture.environ_snapshot() if environ is None else environ)
    raw = scan.values  # redacted: a fact read from a variable never carries a secret
    variables = seal(Variables(scan.values, scan.redacted))
    raw_argv = [_text(arg) for arg in (sys.argv if argv is None else argv)]
    clean_argv, secrets = redactor.scan_argv(raw_argv, scan.secrets)
    clean_command = None
    if command is not None:
        clean_command, secrets = redactor.scan_argv([_text(a) for a in command], secrets)

    def scrub(value: str) -> str:
        return redactor.redact_text(_text(value), secrets)[0]

    host, user = capture.host_and_user()
    state = git_state(code_dir or capture.code_location()) if git else None
    code = None if state is None else _code_state(state, scrub)
    run = Run(
        environment=env.environment.digest,
        variables=variables.digest,
        host=scrub(host),
        user=scrub(user),
        argv=tuple(clean_argv),
        cwd=scrub(os.getcwd()),
        executable=scrub(sys.executable or ""),
        pid=os.getpid(),
        started_ns=time.time_ns(),
        code=code,
        name=name,
        command=None if clean_command is None else tuple(clean_command),
        job=_scrubbed(probes.job_facts(raw, settings.probe_root), scrub)
        if settings.probe("job")
        else None,
        gpu=probes.device_facts(raw) if settings.probe("gpu") else None,
    )
    return RunCapture(variables, seal(run), secrets)


def _scrubbed(
    facts: dict[str, object] | None, scrub: Callable[[str], str]
) -> dict[str, object] | None:
    """Job facts with known secret values scrubbed (a job name may hold what a variable did)."""
    if facts is None:
        return None
    return {k: scrub(v) if isinstance(v, str) else v for k, v in facts.items()}
