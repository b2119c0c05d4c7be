"""Live OpenLineage emission: a tracked run's START and COMPLETE/FAIL events, sent as it goes.

The tracked run only builds each event (a plain map, :mod:`provstore.exchange.openlineage`)
and puts it on a bounded queue.  A writer thread writes each event to a file of its own in
a private temporary directory and passes its name, one short line, to a sender process
(:mod:`provstore.tracking.lineage_sender`; a name never fills the pipe, an event with
thousands of outputs would, so the run never waits on the sender) that imports the official
``openlineage-python`` client (the ``openlineage`` extra) and emits them through one of its
transports.  The client is imported and the network waited on in that process, at the lowest
priority, not in the run's: importing the client costs ~0.3 s of CPU (seconds when Python
cannot cache byte code), which a thread would take from the run through the GIL.  So:

* a full queue drops the event, never waits; so does a sender that does not take the
  events within :data:`DRAIN_SECONDS` when the run ends (both counted in
  :attr:`LineageEmitter.dropped`, with one :class:`LineageWarning`);
* the run never waits for delivery: the sender is in a session of its own and goes on after
  the run (and its process) ended, each attempt bounded by a timeout;
* an endpoint that fails (down, refusing, timing out) costs the sender only.  It counts the
  events it could not deliver and says so once, on the run's standard error, when it is done
  (``provstore: warning: 2 of 2 OpenLineage events … were not delivered …``).  What it
  reported while the run was still going is in :attr:`LineageEmitter.failed`;
  :meth:`LineageEmitter.wait` waits for the rest (for tests and benchmarks).

Where events go: ``http(s)://HOST[:PORT][/PATH]`` (the HTTP transport, ``/api/v1/lineage``
unless the URL has a path), ``file:PATH`` (the file transport, one event a line, appended)
or ``console`` (the console transport, through logging).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import warnings
from typing import IO, Any
from urllib.parse import urlsplit

from provstore.core.errors import ConfigError

__all__ = ["DRAIN_SECONDS", "QUEUE_SIZE", "LineageEmitter", "LineageWarning", "check_target"]

QUEUE_SIZE = 64
"""Events waiting to be handed to the sender at most; more are dropped (a run sends two)."""
DRAIN_SECONDS = 2.0
"""How long the end of a run waits, at most, for the sender to take its events."""

_STOP = object()


class LineageWarning(RuntimeWarning):
    """OpenLineage events were dropped or could not be delivered (the run is recorded)."""


def check_target(target: str) -> str:
    """``target`` if it names a transport provstore can use, else :class:`ConfigError`."""
    if target == "console" or (target.startswith("file:") and len(target) > len("file:")):
        return target
    parts = urlsplit(target)
    if parts.scheme in ("http", "https") and parts.netloc:
        return target
    raise ConfigError(
        f"openlineage_url {target!r} is not http(s)://HOST[:PORT][/PATH], file:PATH or console"
    )


def _lower_priority(pid: int) -> None:
    """Make the sender background work from its first instruction (it does so itself too).

    It is in a session of its own, which Linux schedules as a group of its own (autogroup),
    where plain niceness counts only inside the group: the group's is raised as well.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    except (OSError, AttributeError):  # pragma: no cover - not POSIX, or gone already
        pass
    try:
        if os.getsid(pid) == os.getsid(0):
            return  # the run's own group: never lower that
        with open(f"/proc/{pid}/autogroup", "w") as handle:
            handle.write("19")
    except OSError:  # not Linux, no autogroup, or gone already
        pass


class LineageEmitter:
    """Hands OpenLineage events to a sender process; see the module's description."""

    def __init__(self, target: str, *, queue_size: int = QUEUE_SIZE) -> None:
        self.target = check_target(target)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.reason = ""
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._warned = False
        self._lock = threading.Lock()
        self._spool = tempfile.mkdtemp(prefix="provstore-openlineage-")  # the sender removes it
        self._count_written = 0
        self._sender = subprocess.Popen(
            [sys.executable, "-m", "provstore.tracking.lineage_sender", self.target, self._spool],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # one report line per event
            start_new_session=True,  # not killed with the run's terminal (a FAIL still goes)
        )
        _lower_priority(self._sender.pid)
        assert self._sender.stdin is not None and self._sender.stdout is not None
        self._writer = threading.Thread(
            target=self._write, args=(self._sender.stdin,), name="provstore-openlineage-write"
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._sender.stdout,), name="provstore-openlineage-read"
        )
        for thread in (self._writer, self._reader):
            thread.daemon = True  # never keeps the process alive
            thread.start()

    # -- the tracked run's side ----------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        """Queue an event; never blocks (a full queue drops it)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._count("dropped", "the queue of unsent events is full")
            self._warn()

    def close(self, drain: float = DRAIN_SECONDS) -> None:
        """Hand the queued events to the sender (for at most ``drain`` seconds) and let go.

        Delivery is not waited for.  Events the sender did not take count as dropped.
        """
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the writer is stuck on a sender that takes nothing: counted below
        self._writer.join(drain)
        if self._writer.is_alive():  # blocked on a sender that reads nothing: leave it be
            left = 1 + sum(1 for item in self._drain() if item is not _STOP)
            self._count("dropped", f"the sender took no events for {drain:g} s", left)
        self._warn()

    def wait(self, timeout: float) -> bool:
        """Wait until the sender has reported on every event (True) or ``timeout`` passes."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def _drain(self) -> list[Any]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _count(self, counter: str, reason: str, count: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + count)
            self.reason = self.reason or reason

    def _warn(self) -> None:
        """The one warning of this side (the sender reports failed deliveries itself)."""
        with self._lock:
            if self._warned or not self.dropped:
                return
            self._warned = True
            lost, reason = self.dropped, self.reason
        warnings.warn(
            f"{lost} OpenLineage events for {self.target} were dropped ({reason}); the run "
            "itself is recorded",
            LineageWarning,
            stacklevel=3,
        )

    # -- the threads ---------------------------------------------------------------------------

    def _write(self, pipe: IO[bytes]) -> None:
        """Write each queued event to a file and pass its name to the sender."""
        try:
            while True:
                event = self._queue.get()
                if event is _STOP:
                    break
                self._count_written += 1
                name = f"{self._count_written:06d}.json"
                temp = os.path.join(self._spool, name + ".part")
                with open(temp, "wb") as handle:
                    handle.write(json.dumps(event, separators=(",", ":")).encode("utf-8"))
                os.replace(temp, os.path.join(self._spool, name))
                pipe.write(name.encode("ascii") + b"\n")
                pipe.flush()
        except OSError as exc:  # the sender died: this event and the rest are lost
            left = 1 + sum(1 for item in self._drain() if item is not _STOP)
            self._count("dropped", f"the sender stopped: {exc}", left)
        finally:
            self._close_pipe()

    def _close_pipe(self) -> None:
        try:
            if self._sender.stdin is not None:
                self._sender.stdin.close()
        except OSError:
            pass

    def _read(self, pipe: IO[bytes]) -> None:
        """Count the sender's reports: ``ok`` or ``fail REASON``, one line per event."""
        for raw in pipe:
            line = raw.decode("utf-8", "replace").strip()
            if line == "ok":
                with self._lock:
                    self.sent += 1
            elif line.startswith("fail"):
                with self._lock:
                    self.failed += 1
        pipe.close()
