"""Reading files for their content digest: regular files only, and never a torn or fatal read.

Only a regular file with stored bytes can be hashed; a FIFO, a device, a socket, a directory or
a file on a pseudo file system (``/proc``, ``/sys``) is refused with a :class:`PathError`.  The
size returned is the number of bytes hashed.  A file that changes while it is read gives a
:class:`FileChangedError`, never a digest of a mixture and never a crash (a memory-mapped
file that shrinks kills a process with SIGBUS).
"""

from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import blake3
import pytest

import provstore.core.files as files
from provstore.core.digests import hash_file
from provstore.core.errors import FileChangedError, PathError

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="Linux pseudo files and leases")


@pytest.fixture(params=["lease", "read"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with big files memory-mapped under a lease, and with leases refused."""
    if request.param == "read":
        monkeypatch.setattr(files, "_take_lease", lambda fd: False)
    return str(request.param)


def _payload(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


@pytest.mark.parametrize("size", [0, 1, 4096, (1 << 20) + 7, 3 * (1 << 20) + 1])
def test_size_is_the_bytes_hashed(tmp_path: Path, way: str, size: int) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(_payload(size))
    assert hash_file(path) == (blake3.blake3(_payload(size)).digest(), size)


def test_progress_counts_every_byte(tmp_path: Path, way: str, monkeypatch) -> None:
    monkeypatch.setattr(files, "CHUNK", 1 << 20)
    payload = _payload(3 * (1 << 20) + 5)
    path = tmp_path / "big.bin"
    path.write_bytes(payload)
    seen: list[int] = []
    assert hash_file(path, seen.append) == (blake3.blake3(payload).digest(), len(payload))
    assert sum(seen) == len(payload)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(PathError, match=r"named pipe \(FIFO\), not a regular file"):
        hash_file(fifo)


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_devices_are_refused(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    with pytest.raises(PathError, match="character device, not a regular file"):
        hash_file(device)


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(PathError, match="socket, not a regular file"):
            hash_file(path)


def test_a_symlink_to_a_fifo_is_refused_and_to_a_file_followed(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "to-pipe").symlink_to(fifo)
    with pytest.raises(PathError, match="FIFO"):
        hash_file(tmp_path / "to-pipe")
    (tmp_path / "data").write_bytes(b"abc")
    (tmp_path / "to-data").symlink_to(tmp_path / "data")
    assert hash_file(tmp_path / "to-data") == (blake3.blake3(b"abc").digest(), 3)


def test_missing_and_directories(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="no such file"):
        hash_file(tmp_path / "nope")
    with pytest.raises(PathError, match="directory"):
        hash_file(tmp_path)


@linux_only
@pytest.mark.parametrize("path", ["/proc/self/status", "/proc/cpuinfo"])
def test_proc_files_are_refused(path: str) -> None:
    with pytest.raises(PathError, match="pseudo file system"):
        hash_file(path)


@linux_only
def test_sys_files_are_refused() -> None:
    candidates = [
        p
        for p in ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys/devices/system/cpu/online")
        + tuple(glob.glob("/sys/class/*/*/uevent"))
        if os.path.isfile(p) and os.access(p, os.R_OK)
    ]
    if not candidates:
        pytest.skip("no readable /sys file")
    with pytest.raises(PathError, match="pseudo file system"):
        hash_file(candidates[0])


def test_a_size_that_is_not_the_bytes_read_is_refused(tmp_path: Path, monkeypatch) -> None:
    """The backstop for pseudo files on a file system not known as one."""
    monkeypatch.setattr(files, "_pseudo_fs", lambda dev: None)
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    real = os.fstat

    def claims_more(fd: int) -> os.stat_result:
        st = real(fd)
        fields = list(st)
        fields[6] = 4096  # st_size
        return os.stat_result(
            fields, {"st_mtime_ns": st.st_mtime_ns, "st_ctime_ns": st.st_ctime_ns}
        )

    monkeypatch.setattr(files.os, "fstat", claims_more)
    with pytest.raises(PathError, match="says 4096 bytes but 5 could be read") as info:
        hash_file(path)
    assert not isinstance(info.value, FileChangedError)


def test_a_file_that_grows_while_read_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(files, "_take_lease", lambda fd: False)
    path = tmp_path / "log"
    path.write_bytes(_payload(3 << 20))

    def append(n: int) -> None:
        with open(path, "ab") as handle:
            handle.write(b"more")

    with pytest.raises(FileChangedError, match="changed while it was read"):
        files_chunk(hash_file, path, append)


def files_chunk(func, path: Path, on_bytes):  # small chunks, so progress comes mid-file
    saved = files.CHUNK
    files.CHUNK = 1 << 20
    try:
        return func(path, on_bytes)
    finally:
        files.CHUNK = saved


def test_a_file_truncated_while_read_without_a_lease_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(files, "_take_lease", lambda fd: False)
    path = tmp_path / "data"
    path.write_bytes(_payload(4 << 20))
    with pytest.raises(FileChangedError, match="its size went from 4194304 to 0 bytes"):
        files_chunk(hash_file, path, lambda n: os.truncate(path, 0))


_TRUNCATE_WHILE_HASHING = """
import os, sys, threading, time
import blake3
from provstore.core.digests import hash_file
from provstore.core.errors import FileChangedError

path = sys.argv[1]
size = os.stat(path).st_size
started = []

def on_bytes(n):
    if not started:  # another thread truncates the file while it is being hashed
        started.append(threading.Thread(target=os.truncate, args=(path, 0)))
        started[0].start()
        time.sleep(0.3)

try:
    digest, got = hash_file(path, on_bytes)
except FileChangedError as exc:
    print("changed:", exc)
else:
    assert (digest, got) == (blake3.blake3(bytes(size)).digest(), size), (digest.hex(), got)
    print("whole file hashed before the truncation")
started[0].join()
"""


@linux_only
@pytest.mark.parametrize("leases", [True, False])
def test_a_file_truncated_while_hashed_does_not_kill_the_process(
    tmp_path: Path, leases: bool
) -> None:
    """Truncating a memory-mapped file makes the next read of it SIGBUS: no exception."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as handle:
        handle.truncate(256 << 20)  # sparse: 256 MiB of zeros, written instantly
    script = _TRUNCATE_WHILE_HASHING
    if not leases:
        script = "import provstore.core.files as f; f._take_lease = lambda fd: False\n" + script
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert done.returncode == 0, done.stderr
    assert "changed while it was read" in done.stdout or "whole file hashed" in done.stdout
