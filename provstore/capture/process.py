"""Read the live process: environment variables, interpreter, platform, libraries, git state.

Pure functions that return plain data (str, bytes, tuples, dicts); the object types and the
redaction of secrets sit on top (:mod:`provstore.capture.redact` must run on variables before
they are encoded). Everything here is on the start-up path of every tracked process, so it
imports only what it needs, late, and never crashes a capture because of a broken
distribution, an odd environment or a failing ``git``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "DEFAULT_ENV_ALLOW",
    "DEFAULT_ENV_DENY",
    "code_location",
    "environ_snapshot",
    "git_state",
    "host_and_user",
    "interpreter",
    "platform_facts",
    "select_allowed",
]

# fmt: off
DEFAULT_ENV_ALLOW: tuple[str, ...] = (
    "PYTHON*",                                   # PYTHONPATH, PYTHONHASHSEED, PYTHONUTF8, ...
    "LD_LIBRARY_PATH", "LD_PRELOAD", "DYLD_*",   # which shared libraries are loaded
    # Math libraries: thread counts change the order of floating-point reductions, and
    # switches such as MKL_CBWR or KMP_DETERMINISTIC_REDUCTION change results.
    "OMP_*", "KMP_*", "MKL_*", "OPENBLAS_*", "BLIS_*", "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_*", "NUMBA_*", "NPY_*",
    # GPU libraries and the determinism/precision switches of ML frameworks.
    "CUDA_*", "CUBLAS_*", "CUDNN_*", "NVIDIA_TF32_OVERRIDE",
    "TF_*", "TORCH_*", "XLA_*", "JAX_*",
    "LANG", "LANGUAGE", "LC_*", "TZ", "SOURCE_DATE_EPOCH",  # text and time
)
# fmt: on
"""Globs (case-sensitive) of the variables that change what code computes.

Host-, user- and session-specific variables (``HOSTNAME``, ``USER``, ``HOME``, ``PWD``,
``SSH_*``, ``TERM``, ``PROVSTORE_*``) are left out so that identical software on many nodes is
one environment; the full, redacted variable set is still recorded with each run.
``NVIDIA_*`` as a whole is left out: ``NVIDIA_VISIBLE_DEVICES`` and
``NVIDIA_DRIVER_CAPABILITIES`` are per-container plumbing; only ``NVIDIA_TF32_OVERRIDE``
changes arithmetic.
"""

DEFAULT_ENV_DENY: tuple[str, ...] = (
    *("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "TF_CONFIG"),
    *("PYTHONSTARTUP", "PYTHON_HISTORY", "PYTHONPYCACHEPREFIX"),
)
"""Globs inside :data:`DEFAULT_ENV_ALLOW` that are excluded again.

Device indices are handed out per job slot by schedulers (four jobs on one node see four
different values for the same software), ``TF_CONFIG`` names the task and its peers, and the
others are per-user paths that do not change results. A name listed *exactly* (no wildcard)
in the allow-list overrides this.
"""

_ENV_OVERRIDE_NAMES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")
_GIT_TIMEOUT = 10.0
_CHUNK = 1 << 16


def environ_snapshot(environ: Mapping[str, str] | None = None) -> dict[str, str | bytes]:
    r"""Copy the environment (``os.environ`` by default), keeping odd values losslessly.

    A value that is not valid UTF-8 reaches Python as a ``str`` with surrogate escapes; it is
    returned as its original ``bytes``. A *name* that is not valid UTF-8 is stored with the
    bad bytes spelled ``\xNN`` (lossy, but visibly marked).
    """
    source = os.environ if environ is None else environ
    out: dict[str, str | bytes] = {}
    for name, value in source.items():
        if not _is_utf8(name):
            name = _to_bytes(name).decode("utf-8", "backslashreplace")
        out[name] = value if _is_utf8(value) else _to_bytes(value)
    return out


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _to_bytes(text: str) -> bytes:
    """The bytes a surrogate-escaped string came from (``surrogatepass`` for stray ones)."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def select_allowed(
    env: Mapping[str, str | bytes],
    allow: Sequence[str],
    *,
    deny: Sequence[str] = DEFAULT_ENV_DENY,
) -> dict[str, str | bytes]:
    """Keep the variables whose names match a glob in ``allow`` and none in ``deny``.

    Matching is case-sensitive. A name given literally in ``allow`` is kept even if ``deny``
    matches it. This does not redact: run :meth:`Redactor.redact_environ` on the result.
    """
    allow_re = _globs(tuple(allow))
    deny_re = _globs(tuple(deny))
    literal = frozenset(a for a in allow if not any(c in a for c in "*?["))
    return {
        name: value
        for name, value in env.items()
        if allow_re.match(name) and (name in literal or not deny_re.match(name))
    }


def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    if not patterns:
        return re.compile("(?!)")
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


def interpreter() -> dict[str, str]:
    """The implementation and language version, e.g. ``{"implementation": "cpython", ...}``."""
    info = sys.version_info
    version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        tag = {"alpha": "a", "beta": "b", "candidate": "rc"}.get(info.releaselevel, "")
        version += f"{tag}{info.serial}"
    return {"implementation": sys.implementation.name, "version": version}


def platform_facts() -> dict[str, str]:
    """Operating system, kernel release, machine and C library, e.g. ``"libc": "glibc 2.36"``."""
    if hasattr(os, "uname"):
        uname = os.uname()
        return {
            "system": uname.sysname,
            "release": uname.release,
            "machine": uname.machine,
            "libc": _libc(),
        }
    import platform  # not needed on POSIX, where it costs more than everything else here

    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "libc": "",
    }


def _libc() -> str:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        value = None
    if value:
        return value
    if sys.platform.startswith("linux"):
        try:
            if any(n.startswith("ld-musl-") for n in os.listdir("/lib")):
                return "musl"
        except OSError:
            pass
    return ""


def git_state(start: str) -> dict[str, object] | None:
    """Commit, branch, dirty flag and diff digest of the git work tree enclosing ``start``.

    ``None`` when there is no work tree, git is not installed or git fails. ``diff_digest``
    is BLAKE3 (32 bytes) of the binary diff against ``HEAD`` (staged and unstaged), or
    ``None`` when clean; untracked files are not part of the state.
    """
    try:
        root = _work_tree(start)
    except OSError:  # e.g. the working directory was deleted
        return None
    if root is None:
        return None
    env = _git_env()
    out: list[bytes] = []
    if not _stream_git(root, env, _STATUS, out.append):
        return None
    commit: str | None = None
    branch: str | None = None
    dirty = False
    for line in b"".join(out).decode("utf-8", "surrogateescape").splitlines():
        if line.startswith("# branch.oid "):
            commit = line[len("# branch.oid ") :]
        elif line.startswith("# branch.head "):
            branch = line[len("# branch.head ") :]
        elif line and not line.startswith("#"):
            dirty = True
    commit = None if commit == "(initial)" else commit
    branch = None if branch == "(detached)" else branch
    digest = _diff_digest(root, env, initial=commit is None) if dirty else None
    if dirty and digest is None:
        return None
    return dict(commit=commit, branch=branch, dirty=dirty, diff_digest=digest, root=root)


def _work_tree(start: str) -> str | None:
    current = os.path.abspath(start)
    if not os.path.isdir(current):
        current = os.path.dirname(current)
    while True:
        if os.path.exists(os.path.join(current, ".git")):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_OVERRIDE_NAMES}
    env["GIT_OPTIONAL_LOCKS"] = "0"
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


_STATUS = ["status", "--porcelain=v2", "--branch", "--untracked-files=no"]
# Pinned so that the same change gives the same digest whatever the user's git config says.
_DIFF = (
    "-c core.quotePath=true -c diff.suppressBlankEmpty=false diff --binary --full-index "
    "--no-color --no-ext-diff --no-textconv --no-renames --diff-algorithm=myers "
    "--indent-heuristic --unified=3 --inter-hunk-context=0 --submodule=short -O/dev/null "
    "--src-prefix=a/ --dst-prefix=b/"
).split()


def _diff_digest(root: str, env: dict[str, str], *, initial: bool) -> bytes | None:
    """Stream the diff of the work tree into BLAKE3; ``None`` if git fails."""
    import blake3

    hasher = blake3.blake3()
    if initial:
        runs = [[*_DIFF, "--cached"], _DIFF]  # nothing to diff against but the empty tree
    else:
        runs = [[*_DIFF, "HEAD"]]
    for index, args in enumerate(runs):
        hasher.update(b"provstore-diff:%d\n" % index)
        if not _stream_git(root, env, args, hasher.update):
            return None
    digest: bytes = hasher.digest()
    return digest


def _stream_git(
    root: str, env: dict[str, str], args: list[str], sink: Callable[[bytes], object]
) -> bool:
    """Run git in ``root``, feeding its output to ``sink``; whether it succeeded in time."""
    import threading
    from subprocess import DEVNULL, PIPE, Popen

    try:
        proc = Popen(["git", *args], cwd=root, env=env, stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL)
    except OSError:  # git is not installed
        return False
    timer = threading.Timer(_GIT_TIMEOUT, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        with proc.stdout:
            while chunk := proc.stdout.read(_CHUNK):
                sink(chunk)
        return proc.wait() == 0
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def code_location() -> str:
    """The directory of the running script, or the working directory when there is none."""
    script = sys.argv[0] if sys.argv else ""
    try:
        if script and os.path.isfile(script):
            return os.path.dirname(os.path.abspath(script))
        return os.getcwd()
    except OSError:  # the working directory was deleted
        return ""


def host_and_user() -> tuple[str, str]:
    """Return the host name and the user name (the uid, or ``"unknown"``, as fallback)."""
    import getpass
    import socket

    try:
        host = socket.gethostname()
    except OSError:
        host = "unknown"
    try:
        user = getpass.getuser()
    except Exception:  # KeyError or OSError when neither $USER nor the password file knows
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return host, user
