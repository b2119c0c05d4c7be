"""The git state of the code a run executes: commit, branch, dirty flag and a digest of the diff.

Read by running ``git`` (bounded by a timeout) with options pinned so that the same change
gives the same digest whatever the user's git configuration says.  Any failure means "no
state", never a failed capture.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["git_state"]

_ENV_OVERRIDE_NAMES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")
_GIT_TIMEOUT = 10.0
_CHUNK = 1 << 16


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
