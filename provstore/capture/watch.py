"""A watcher that tells ``provstore status`` which files changed, as git's fsmonitor does.

Without it, a ``status`` over an unchanged tree still asks the kernel about every file
(``stat``: ~2 µs each here, a fifth of a second per 100,000 files).  A watcher is a small
process per directory tree that holds a Linux inotify watch on every directory below it and
keeps, for every path that changed, the number of the batch of events that named it.  A
``status`` asks it "what changed since batch N?" and looks again at those paths alone.

The answer is exact or absent, never partial: before answering, the watcher reads every event
the kernel has queued (a write that returned before the question was asked is in that queue),
and when it cannot know (the kernel's queue overflowed, a directory could not be watched, a
different watcher instance answered, a batch older than what it remembers) it answers
"unknown" and the caller walks the tree as if there were no watcher.  Writes through a shared
``mmap``, writes to a file through a hard link in a directory outside the tree, and changes
on network file systems raise no inotify event here; trees written that way should not be
watched.

A watcher listens on a Unix socket in provstore's cache directory (named after the tree's
absolute path), holds a lock file beside it so that one runs per tree, and exits after
:data:`IDLE_SECONDS` without a question, when its tree is deleted or moved, or when told to.
Linux only; elsewhere :func:`start` raises :class:`WatchError` and :func:`ask` finds nothing.

Run as ``python -m provstore.capture.watch ROOT`` (what :func:`start` does, detached).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass

import blake3
import msgpack

from provstore.capture.hashcache import cache_path
from provstore.core.errors import PathError, ProvstoreError

__all__ = [
    "IDLE_SECONDS",
    "SKIPPED_DIRS",
    "Answer",
    "WatchError",
    "ask",
    "running",
    "start",
    "stop",
]

IDLE_SECONDS = 3600.0
"""A watcher nobody asked for this long exits (``PROVSTORE_WATCH_IDLE`` overrides it)."""

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
"""Directories ``status`` never walks, so nobody watches them either."""

_MAX_CHANGED = 1_000_000  # paths remembered before the watcher forgets (answers "unknown")
_TIMEOUT = 5.0  # seconds a question may take before the caller walks instead
_START_WAIT = 120.0  # seconds start() waits for a new watcher to have watched its whole tree

# inotify(7)
_IN_MODIFY = 0x2
_IN_ATTRIB = 0x4
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_IN_DONT_FOLLOW = 0x02000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = 0o2000000
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
    | _IN_DONT_FOLLOW
)
_EVENT = struct.Struct("iIII")


class WatchError(ProvstoreError):
    """A watcher could not be started (not Linux, no cache directory, no inotify)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a watcher said: who it is, how far it has read, and what changed since."""

    root: str
    """The tree it watches (the asked directory or one above it)."""
    instance: str
    """Which watcher process answered (a batch number means nothing to another one)."""
    batch: int
    """The newest batch of events it has read; ask "since" this next time."""
    changed: list[str] | None
    """Absolute paths changed since the batch asked about (a directory: anything below it),
    or None when the watcher cannot tell (it must then be walked)."""


# -- where watchers live -----------------------------------------------------------------------


def _folder() -> str | None:
    where = cache_path()
    return None if where is None else os.path.join(os.path.dirname(where), "watch")


def _socket_path(root: str) -> str | None:
    folder = _folder()
    if folder is None:
        return None
    name = blake3.blake3(os.fsencode(root)).hexdigest()[:32]
    path = os.path.join(folder, name + ".sock")
    return path if len(os.fsencode(path)) < 100 else None  # sun_path holds 108 bytes


def _ancestors(path: str) -> Iterator[str]:
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


# -- asking ------------------------------------------------------------------------------------


def _exchange(sock_path: str, request: dict[str, object]) -> dict[str, object] | None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(_TIMEOUT)
            conn.connect(sock_path)
            conn.sendall(_frame(request))
            return _read_frame(conn)
    except (OSError, ValueError, msgpack.UnpackException):
        return None


def _frame(message: dict[str, object]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return struct.pack("!I", len(body)) + body


def _read_frame(conn: socket.socket) -> dict[str, object] | None:
    head = _read_exactly(conn, 4)
    if head is None:
        return None
    body = _read_exactly(conn, struct.unpack("!I", head)[0])
    if body is None:
        return None
    message = msgpack.unpackb(body, raw=False)
    return message if isinstance(message, dict) else None


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def ask(directory: str, since: tuple[str, int] | None = None) -> Answer | None:
    """What the watcher of ``directory`` (or of a directory above it) says changed.

    ``since`` is an earlier answer's ``(instance, batch)``; without it, or when another
    watcher answers, ``changed`` is None.  None when no watcher runs there or it does not
    answer in time.
    """
    top = os.path.abspath(directory)
    for root in _ancestors(top):
        sock_path = _socket_path(root)
        if sock_path is None or not os.path.exists(sock_path):
            continue
        instance, batch = since if since is not None else ("", -1)
        reply = _exchange(sock_path, {"ask": "changes", "instance": instance, "since": batch})
        if reply is None or reply.get("root") != root:
            return None
        changed = reply.get("changed")
        if isinstance(changed, list) and root != top:
            below = top + os.sep
            changed = [p for p in changed if p == top or p.startswith(below) or _above(p, top)]
        return Answer(
            root=root,
            instance=str(reply["instance"]),
            batch=int(reply["batch"]),  # type: ignore[call-overload]
            changed=changed if isinstance(changed, list) else None,
        )
    return None


def _above(path: str, top: str) -> bool:
    """``path`` is a directory holding ``top`` (a change there may have replaced it)."""
    return top.startswith(path.rstrip(os.sep) + os.sep)


def running() -> list[str]:
    """The trees watched now, by a watcher that answers."""
    folder = _folder()
    if folder is None or not os.path.isdir(folder):
        return []
    roots = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".sock"):
            reply = _exchange(os.path.join(folder, name), {"ask": "root"})
            if reply is not None and isinstance(reply.get("root"), str):
                roots.append(str(reply["root"]))
    return sorted(roots)


def stop(directory: str) -> bool:
    """Tell the watcher of exactly ``directory`` to exit; whether one was running."""
    sock_path = _socket_path(os.path.abspath(directory))
    if sock_path is None:
        return False
    return _exchange(sock_path, {"ask": "stop"}) is not None


def start(directory: str, idle: float | None = None) -> Answer:
    """Make sure a watcher runs for ``directory`` (or above it) and return its first answer.

    A new watcher is started detached (it outlives this process) and this call waits until it
    watches every directory of the tree.  :class:`WatchError` when it cannot run here.
    """
    top = os.path.abspath(directory)
    if not os.path.isdir(top):
        raise PathError(directory, "not a directory: only directories are watched")
    answer = ask(top)
    if answer is not None:
        return answer
    if not sys.platform.startswith("linux"):
        raise WatchError("watching a tree needs Linux inotify; status walks the tree instead")
    sock_path = _socket_path(top)
    if sock_path is None:
        raise WatchError(
            "cannot watch: the cache directory is turned off or its path is too long for a "
            "socket (set PROVSTORE_CACHE_DIR to a shorter path)"
        )
    os.makedirs(os.path.dirname(sock_path), mode=0o700, exist_ok=True)  # sockets: the user's
    log = open(_log_path(sock_path), "ab")  # noqa: SIM115 - handed to the child
    with log:
        command = [sys.executable, "-m", "provstore.capture.watch", top]
        if idle is not None:
            command += ["--idle", str(idle)]
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + _START_WAIT
    while time.monotonic() < deadline:
        answer = ask(top)
        if answer is not None:
            return answer
        if child.poll() is not None and not os.path.exists(sock_path):
            raise WatchError(f"the watcher of {top} exited: {_last_line(sock_path)}")
        time.sleep(0.02)
    raise WatchError(f"the watcher of {top} did not answer within {_START_WAIT:.0f} s")


def _log_path(sock_path: str) -> str:
    """Where a watcher's messages go: beside its socket."""
    return sock_path[: -len(".sock")] + ".log"


def _last_line(sock_path: str) -> str:
    with suppress(OSError):
        with open(_log_path(sock_path), "rb") as log:
            lines = log.read().decode(errors="replace").strip().splitlines()
            if lines:
                return lines[-1]
    return "no reason given"


# -- the watcher process -----------------------------------------------------------------------


class _Inotify:
    """The few inotify calls a watcher needs, through the C library."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise WatchError(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        self.fd = fd

    def add(self, path: str, follow: bool = False) -> int:
        """A watch on the directory ``path``; raises OSError (ENOSPC: out of watches).

        A symbolic link is followed only when ``follow`` (the tree's root may be one).
        """
        mask = _MASK & ~_IN_DONT_FOLLOW if follow else _MASK
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return int(wd)

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)

    def events(self) -> Iterator[tuple[int, int, bytes]]:
        """Every queued event as ``(watch, mask, name)``; stops when the queue is empty."""
        while True:
            try:
                data = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = data[offset : offset + size].rstrip(b"\0")
                offset += size
                yield wd, mask, name


class _Tree:
    """The watches on one tree and what changed in it, by batch."""

    def __init__(self, root: str, notify: _Inotify) -> None:
        self.root = root
        self.notify = notify
        self.dirs: dict[int, str] = {}
        self.wds: dict[str, int] = {}
        self.batch = 0
        self.known_from = 0  # changes in batches before this one were lost
        self.changed: dict[str, int] = {}
        self.gone = False  # the root itself was deleted or moved away
        self.instance = secrets.token_hex(8)
        self._watch_below(root)
        if root not in self.wds:
            raise WatchError(f"cannot watch {root}: not a directory this user can read")

    def _watch_below(self, top: str) -> None:
        """Watch ``top`` and every directory below it (symbolic links are not followed)."""
        pending = [top]
        while pending:
            folder = pending.pop()
            try:
                wd = self.notify.add(folder, follow=folder == self.root)
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    self.forget()  # out of watches: this tree cannot be known
                    raise WatchError(
                        f"out of inotify watches at {folder} "
                        "(raise /proc/sys/fs/inotify/max_user_watches)"
                    ) from error
                continue  # vanished or unreadable: the walk will see what is there
            self.dirs[wd] = folder
            self.wds[folder] = wd
            with suppress(OSError), os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name not in SKIPPED_DIRS and entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)

    def _unwatch_below(self, top: str) -> None:
        below = top + os.sep
        for folder in [f for f in self.wds if f == top or f.startswith(below)]:
            wd = self.wds.pop(folder)
            self.dirs.pop(wd, None)
            self.notify.remove(wd)

    def forget(self) -> None:
        """Start a new batch and answer "unknown" for anything asked about before it."""
        self.batch += 1
        self.changed.clear()
        self.known_from = self.batch

    def read(self) -> None:
        """Take in every event the kernel has queued, as one new batch."""
        touched: list[tuple[str, int]] = []
        for wd, mask, name in self.notify.events():
            if mask & _IN_Q_OVERFLOW:
                self.forget()
                continue
            folder = self.dirs.get(wd)
            if folder is None:
                continue
            if mask & _IN_IGNORED:
                self.dirs.pop(wd, None)
                if self.wds.get(folder) == wd:
                    del self.wds[folder]
                continue
            if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF):
                if folder == self.root:
                    self.gone = True
                touched.append((folder, mask))
                continue
            path = os.path.join(folder, os.fsdecode(name)) if name else folder
            touched.append((path, mask))
        if not touched:
            return
        self.batch += 1
        for path, mask in touched:
            if mask & _IN_ISDIR and mask & (_IN_MOVED_FROM | _IN_DELETE):
                self._unwatch_below(path)
            if mask & _IN_ISDIR and mask & (_IN_CREATE | _IN_MOVED_TO | _IN_ATTRIB):
                if path not in self.wds and os.path.basename(path) not in SKIPPED_DIRS:
                    # new, or readable now: files made in it before the watch are walked anyway
                    self._watch_below(path)
            self.changed[path] = self.batch
        if len(self.changed) > _MAX_CHANGED:
            self.forget()

    def since(self, instance: str, batch: int) -> list[str] | None:
        if instance != self.instance or batch < self.known_from or batch > self.batch:
            return None
        return [path for path, seen in self.changed.items() if seen > batch]


def _serve(root: str, idle: float) -> int:
    sock_path = _socket_path(root)
    if sock_path is None:
        print("watch: no cache directory for the socket", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(sock_path), mode=0o700, exist_ok=True)  # sockets: the user's
    lock = open(sock_path + ".lock", "ab")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"watch: {root} is watched already", file=sys.stderr)
        return 0
    os.chdir("/")  # hold no directory busy (an unmount, a removal)
    try:
        tree = _Tree(root, _Inotify())
    except WatchError as error:
        print(f"watch: {error}", file=sys.stderr)
        return 1
    with suppress(FileNotFoundError):
        os.unlink(sock_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(16)
    print(f"watch: watching {root} ({len(tree.dirs)} directories)", file=sys.stderr, flush=True)
    try:
        _loop(tree, server, idle)
    except WatchError as error:  # out of watches for a new directory: nothing can be known
        print(f"watch: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        with suppress(OSError):
            os.unlink(sock_path)
        server.close()
    return 0


def _loop(tree: _Tree, server: socket.socket, idle: float) -> None:
    last = time.monotonic()
    while not tree.gone:
        left = idle - (time.monotonic() - last)
        if left <= 0:
            print("watch: idle, exiting", file=sys.stderr, flush=True)
            return
        ready, _, _ = select.select([tree.notify.fd, server], [], [], left)
        if tree.notify.fd in ready:
            tree.read()
        if server in ready:
            last = time.monotonic()
            if not _answer(tree, server):
                print("watch: told to stop", file=sys.stderr, flush=True)
                return
    print(f"watch: {tree.root} is gone, exiting", file=sys.stderr, flush=True)


def _answer(tree: _Tree, server: socket.socket) -> bool:
    """Answer one question; False when told to stop."""
    conn, _ = server.accept()
    with conn:
        conn.settimeout(_TIMEOUT)
        try:
            request = _read_frame(conn) or {}
        except (OSError, ValueError, msgpack.UnpackException):
            return True
        what = request.get("ask")
        tree.read()  # every event queued before the question belongs in the answer
        reply: dict[str, object] = {"root": tree.root, "instance": tree.instance}
        reply["batch"] = tree.batch
        if what == "changes":
            reply["changed"] = tree.since(str(request.get("instance")), _int(request.get("since")))
        with suppress(OSError):
            conn.sendall(_frame(reply))
        return what != "stop"


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _main(argv: Iterable[str]) -> int:
    args = list(argv)
    idle = float(os.environ.get("PROVSTORE_WATCH_IDLE") or IDLE_SECONDS)
    if len(args) == 3 and args[1] == "--idle":
        idle = float(args[2])
    elif len(args) != 1:
        print("usage: python -m provstore.capture.watch ROOT [--idle SECONDS]", file=sys.stderr)
        return 2
    return _serve(os.path.abspath(args[0]), idle)


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
