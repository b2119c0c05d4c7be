"""Reading a file's bytes to hash them: regular files only, and never a torn or fatal read.

The one module of ``core`` that touches the disk, so that every content digest is read the
same way (:func:`provstore.core.digests.hash_file` hashes what :class:`RegularFile` yields).

* Only a regular file holds bytes that stay put.  A FIFO, a device, a socket and a directory
  are refused, and so is a file on a pseudo file system (``proc``, ``sysfs``, ...), whose
  contents are made up when read and whose size says nothing of them.
* Big files are memory-mapped (the fastest way to hash them) only under a read *lease*:
  while provstore holds one, the kernel makes any process that opens the file for writing or
  truncates it wait (``/proc/sys/fs/lease-break-time``, 45 s by default), so no mapped page
  can vanish under the hasher, which would kill the process with SIGBUS.  Between chunks the
  lease is checked; when a writer is waiting it is released and the rest is read with
  ``read()``.  Without a lease (another user's file, a file open for writing, a network file
  system, not Linux) the whole file is read with ``read()``: slower, never fatal.
* The file's size and times are taken before and after reading.  If they differ the file
  changed while it was read (:class:`FileChangedError`); if the bytes read are not the size
  the file claims, it is not a regular file with stored bytes (:class:`PathError`).  So the
  size returned is always the number of bytes hashed.
"""

from __future__ import annotations

import errno
import functools
import io
import mmap
import os
import signal
import stat
import sys
from collections.abc import Iterator
from types import TracebackType

from provstore.core.errors import FileChangedError, PathError

__all__ = ["CHUNK", "MAP_FROM", "PSEUDO_FILESYSTEMS", "RegularFile"]

CHUNK = 1 << 26
"""Bytes hashed between two looks at the lease (and between two progress reports)."""
MAP_FROM = 1 << 19
"""Files this big or bigger are memory-mapped (when leased); smaller ones are read."""
READ_BUFFER = 1 << 20
"""The buffer of the ``read()`` path."""
MIN_LEASE_BREAK = 10
"""Seconds a writer must be kept waiting for the lease to guard a mapping (the kernel's
``lease-break-time``); below this the file is read instead."""

PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "debugfs", "tracefs", "securityfs", "configfs", "cgroup", "cgroup2",
    "efivarfs", "bpf", "pstore", "fusectl", "binfmt_misc", "selinuxfs", "devpts", "mqueue",
    "rpc_pipefs", "nsfs", "autofs",
})  # fmt: skip
"""File systems whose files are made when read: refused as products."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_LEASES = sys.platform == "linux" and hasattr(signal, "SIGURG")
_fs_types: dict[int, str | None] = {}


class RegularFile:
    """A regular file opened to be read once, start to end: ``with RegularFile(path) as f``.

    ``size`` is what the file claimed when opened; iterate :meth:`chunks` for its bytes, after
    which ``bytes_read`` is their number (equal to ``size``, or :meth:`chunks` raised).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.bytes_read = 0
        self._fd = _open(path)
        try:
            self._before = _regular(path, os.fstat(self._fd))
            self._leased = self._before.st_size >= MAP_FROM and _take_lease(self._fd)
            if self._leased:  # the size under the lease is the one no writer can change
                self._before = os.fstat(self._fd)
        except BaseException:
            os.close(self._fd)
            raise
        self.size = self._before.st_size

    def __enter__(self) -> RegularFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (which also ends any lease)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The file's bytes in order; raises once they are not the file's one state.

        A chunk is valid until the next one is asked for.
        """
        if self._leased:
            yield from self._mapped()
        if not self._leased:  # no lease, or released for a writer: read (the rest) of it
            yield from self._read()
        self._check(os.fstat(self._fd))

    def _mapped(self) -> Iterator[memoryview]:
        """Chunks of a mapping, while the lease holds writers off; stops when one waits."""
        try:
            mapping = mmap.mmap(self._fd, self.size, access=mmap.ACCESS_READ)
        except OSError:  # a file system that cannot map: read it instead
            self._drop_lease()
            return
        with mapping:
            view = memoryview(mapping)
            try:
                while self.bytes_read < self.size:
                    if self.bytes_read and not _lease_held(self._fd):
                        break
                    part = view[self.bytes_read : self.bytes_read + CHUNK]
                    n = len(part)
                    try:
                        yield part
                    finally:
                        part.release()
                    self.bytes_read += n
            finally:
                view.release()
        if self.bytes_read < self.size:  # a writer is waiting: let it in, read the rest
            self._drop_lease()
            os.lseek(self._fd, self.bytes_read, os.SEEK_SET)

    def _read(self) -> Iterator[bytes | memoryview]:
        """Chunks read with ``read()``: at most one byte past the size the file claimed."""
        left = self.size + 1 - self.bytes_read
        if left <= READ_BUFFER:  # a small file: no buffer to set up
            while left > 0 and (data := _read(self._fd, left, self.path)):
                yield data
                self.bytes_read += len(data)
                if self.bytes_read == self.size and len(data) < left:
                    return  # a short read at the claimed size: the end (fstat checks growth)
                left -= len(data)
            return
        buffer = bytearray(READ_BUFFER)
        view = memoryview(buffer)
        raw = io.FileIO(self._fd, "rb", closefd=False)
        try:
            while left > 0:
                n = _read_into(raw, view[: min(left, READ_BUFFER)], self.path)
                if not n:
                    break
                part = view[:n]
                try:
                    yield part
                finally:
                    part.release()
                self.bytes_read += n
                left -= n
        finally:
            view.release()

    def _drop_lease(self) -> None:
        import fcntl

        self._leased = False
        fcntl.fcntl(self._fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)

    def _check(self, after: os.stat_result) -> None:
        """Refuse what was read unless the file stood still and held what it claimed."""
        before = self._before
        if after.st_size != before.st_size:
            change = f"its size went from {before.st_size} to {after.st_size} bytes"
        elif after.st_mtime_ns != before.st_mtime_ns:
            change = "it was modified"
        elif after.st_ctime_ns != before.st_ctime_ns:
            change = "its status changed (ctime)"
        elif self.bytes_read != self.size:
            raise PathError(
                self.path,
                f"its size says {self.size} bytes but {self.bytes_read} could be read: it is "
                "not a regular file with stored bytes",
            )
        else:
            return
        raise FileChangedError(self.path, change)


def _open(path: str) -> int:
    """A read-only descriptor; non-blocking, so a FIFO opens (to be refused) at once."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        try:
            return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            if exc.errno not in (errno.ENXIO, errno.EOPNOTSUPP, errno.EWOULDBLOCK):
                raise
            # A socket or a device without a driver is refused by name; a regular file under
            # another's write lease (a file server's) is waited for, as any reader would.
            _regular(path, os.stat(path))
            return os.open(path, flags)
    except PathError:
        raise
    except FileNotFoundError:
        raise PathError(path, "no such file") from None
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc)) from None


def _regular(path: str, st: os.stat_result) -> os.stat_result:
    """``st`` if it is a regular file on a real file system, else :class:`PathError`."""
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
        if kind == "a directory":
            raise PathError(path, "it is a directory, not a file")
        raise PathError(
            path, f"it is {kind}, not a regular file; only a regular file's bytes are hashed"
        )
    fstype = _pseudo_fs(st.st_dev)
    if fstype is not None:
        raise PathError(
            path,
            f"it is on the {fstype} pseudo file system, whose files are made up when read: "
            "not a regular file with stored bytes",
        )
    return st


def _read(fd: int, n: int, path: str) -> bytes:
    try:
        return os.read(fd, n)
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc)) from None


def _read_into(raw: io.FileIO, view: memoryview, path: str) -> int:
    try:
        return raw.readinto(view) or 0
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc)) from None


# -- pseudo file systems ---------------------------------------------------------------------


def _pseudo_fs(dev: int) -> str | None:
    """The type of the pseudo file system with device number ``dev``, else None.

    Mount points are read from ``/proc/self/mountinfo`` once per device number seen.
    """
    if dev not in _fs_types:
        _fs_types.update(_mounted_devices())
        _fs_types.setdefault(dev, None)  # unknown (e.g. a btrfs subvolume): a real one
    fstype = _fs_types[dev]
    return fstype if fstype in PSEUDO_FILESYSTEMS else None


def _mounted_devices() -> dict[int, str]:
    """Device number → file system type of every mount (empty when it cannot be told)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return {}
    found: dict[int, str] = {}
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 3 or not rest or ":" not in parts[2]:
            continue
        major, _, minor = parts[2].partition(":")
        if major.isdigit() and minor.isdigit():
            found.setdefault(os.makedev(int(major), int(minor)), rest.split()[0])
    return found


# -- leases ----------------------------------------------------------------------------------


def _take_lease(fd: int) -> bool:
    """Take a read lease on ``fd``; False when the platform, the file or the process can't.

    A lease break is announced by a signal: SIGURG, which is ignored unless the program
    handles it (then no lease is taken, so its handler never sees ours).
    """
    if not _LEASES or _lease_break_seconds() < MIN_LEASE_BREAK:
        return False
    if signal.getsignal(signal.SIGURG) not in (signal.SIG_DFL, signal.SIG_IGN):
        return False
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError:  # not the owner, open for writing elsewhere, a file system without leases
        return False
    return True


def _lease_held(fd: int) -> bool:
    """Whether the lease still holds, with no writer waiting for it."""
    import fcntl

    return bool(fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK)


@functools.cache
def _lease_break_seconds() -> int:
    """The kernel's ``lease-break-time``: how long a lease makes a writer wait (read once)."""
    try:
        with open("/proc/sys/fs/lease-break-time", encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return 0
