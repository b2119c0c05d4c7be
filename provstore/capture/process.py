"""Read the live process: environment variables, interpreter, platform, host and user.

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
from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_ENV_ALLOW",
    "DEFAULT_ENV_DENY",
    "code_location",
    "environ_snapshot",
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
