"""A second process that writes a tracker's batches to its SQLite store while it goes on.

Registering a product is Python work (checking, encoding, hashing: about 10 µs); writing it is
about as much again, most of it SQLite's.  One process does them one
after the other; on a machine with a core to spare, a burst of registrations goes faster when
a writer process takes the writing: the tracker turns each batch into its rows' columns, in
key order (:func:`provstore.db.layout.pack`), and sends them down a pipe, and the writer
commits them in one transaction each, as :class:`provstore.db.sqlite_direct.DirectWriter`
would, while the tracker registers the next batch.  The writer is the slower of the two, so
what can be done on either side (sorting, taking columns) is done in the tracker; the writer
maps whole columns of digests to ids and hands them to ``executemany``.

What stays as it was:

- Each batch is one transaction, written by one connection in the order sent; a batch is
  whole or absent, whoever dies when.
- :meth:`PipedWriter.wait` returns once everything sent is committed, so a tracker's
  ``flush()`` still means durable.
- Nothing is lost: a batch is kept until the writer says it is committed.  When the writer
  reports an error or goes away, the tracker writes the batches not confirmed itself (writes
  are idempotent, so one committed but not confirmed is harmless) through its own
  ``DirectWriter``, which raises the error the store gives (full, read-only, ...) as it would
  have; the pipe is not used again.  The error may so surface at the call after the one whose
  batch failed.
- A writer whose tracker dies sees its input end and exits after the batch in hand.
- A message sent or read only in part (an exception, such as Ctrl-C, in the middle) ends the
  pipe: the writer is stopped and the tracker writes what it did not confirm, as above.

The writer is a plain subprocess of the same interpreter with the same ``sys.path`` (so it
imports what the tracker imported, and nothing of the user's program runs again in it),
started in a burst only (:data:`provstore.tracking.tracker.PIPE_FROM`): a short tracked
process never pays for it.  Messages are length-prefixed, between two processes of the same
interpreter: batches marshalled, replies pickled.
"""

from __future__ import annotations

import io
import json
import marshal
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

from provstore.core.errors import StoreError
from provstore.db import layout

if TYPE_CHECKING:
    from provstore.core.objects import Sealed

__all__ = ["PipedWriter", "start"]

_SIZE = struct.Struct("<Q")
_DONE = 0  # a message of no bytes: no more batches
_MARSHAL = 2
"""marshal's version without references between objects, so without a table of every object
written: 1.5 µs a product to dump a batch of 49,000, against 2.7 for a pickle and 3.2 for
marshal's version 4 (the writer loads any of them in about 0.8)."""
_LARGEST = 1 << 32  # bytes in a message at most (a batch of 50,000 products is ~25 MB)
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
    "from provstore.db.sqlite_pipe import _serve; sys.exit(_serve(sys.argv[1]))"
)


def start(path: str) -> PipedWriter | None:
    """A writer process for the SQLite store at ``path``, or None when none can be started."""
    if not sys.executable or sys.platform == "win32":  # a pipe cannot be polled there
        return None
    # It imports what we imported, from where we did: our ``sys.path`` (``-S``: no site
    # packages scanned nor ``.pth`` files run, so ~60 ms sooner ready), and this package's
    # own directory first (an editable install is found through a ``.pth`` file).
    home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    where = json.dumps([home, *(str(entry) for entry in sys.path)])
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _BOOT, path, where],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # replies are read as they come (``idle`` polls the pipe itself)
            close_fds=True,
        )
    except OSError:
        return None
    return PipedWriter(child)


class PipedWriter:
    """The tracker's end of the pipe: batches sent, kept until the writer confirms them.

    At most one batch is with the writer while the tracker makes the next; sending another
    first waits for it.  ``commits`` holds, per confirmed batch, its products and the
    ``time.monotonic()`` at which it was committed (what a benchmark of durable rates needs).
    """

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self._child = child
        self._sent: deque[Sequence[Sealed]] = deque()  # not confirmed yet, in order
        self.commits: list[tuple[int, float]] = []
        self.failed: str | None = None  # why the pipe stopped; its batches are then unsent
        self.ready = False  # the writer has opened the store
        self._pid = os.getpid()
        # The batch being made, turned into columns a piece at a time (:meth:`stage`): the
        # list of items, how many of them are done, and their columns.
        self._making: Sequence[Sealed] | None = None
        self._made = 0
        self._batch = layout.columns_of(())

    @property
    def usable(self) -> bool:
        """Whether batches may go down the pipe.

        Not once it failed, nor in a forked child (which writes for itself).
        """
        return self.failed is None and self._pid == os.getpid()

    def stage(self, items: Sequence[Sealed]) -> None:
        """Turn the items added to ``items`` (the next batch, growing) into columns now.

        A tracker calls this while the writer commits the batch before, so that the batch
        is nearly ready to go when the writer is idle (:meth:`put` then only sorts it and
        marshals it).  ``items`` must only grow until it is :meth:`put`; another list starts
        over.
        """
        if items is not self._making:
            self._making, self._made, self._batch = items, 0, layout.columns_of(())
        if len(items) > self._made:
            layout.extend(self._batch, layout.columns_of(items[self._made :]))
            self._made = len(items)

    def put(self, items: Sequence[Sealed]) -> bool:
        """Send a batch, kept until confirmed; False (nothing taken) if the pipe is unusable."""
        if not self.usable:
            return False
        self.stage(items)  # what was not staged yet: made while the writer commits
        # Sorted and marshalled (~3.5 µs a product) before waiting for the writer: a batch
        # sent because FLUSH_EVERY products are pending (the writer slower) is made while
        # the one before is still being committed.
        message = marshal.dumps(layout.pack(self._batch), _MARSHAL)
        self._making, self._made, self._batch = None, 0, layout.columns_of(())
        self._settle(0)
        if self.failed is not None:
            return False
        self._sent.append(items)
        try:
            _write(self._child.stdin, _SIZE.pack(len(message)))
            _write(self._child.stdin, message)
        except OSError as exc:
            self._fail(f"the writer process stopped reading ({exc})")
        except BaseException:  # interrupted mid-message: the stream is cut, never resumed
            self._fail("interrupted while sending a batch")
            raise
        return True

    def idle(self) -> bool:
        """Whether the writer is ready and has committed everything sent (without waiting).

        A tracker sends its next batch then: batches are as big as what it registers while
        one is written, so they grow where writes get slower (a bigger store).
        """
        if not self.usable:
            return False
        stdout = self._child.stdout
        assert stdout is not None
        while self.failed is None and select.select([stdout], [], [], 0)[0]:
            self._reply(self._next(stdout))
        return self.ready and not self._sent and self.failed is None

    def started(self) -> bool:
        """Whether the writer has opened the store (so a batch sent now is written at once)."""
        if self.usable and not self.ready:
            self.idle()  # takes its "ready" when it came
        return self.ready and self.usable

    def wait(self) -> None:
        """Return once every batch sent is committed, or the pipe has failed.

        After a failure, :meth:`unconfirmed` gives the batches to write otherwise.
        """
        if self.usable:
            self._settle(0)

    def unconfirmed(self) -> list[Sequence[Sealed]]:
        """The batches sent and not confirmed (after a failure: for the tracker to write)."""
        out = list(self._sent)
        self._sent.clear()
        return out

    def close(self) -> None:
        """Tell the writer to finish and wait for it (after :meth:`wait`).

        A writer never given a batch is stopped at once instead: it may still be starting.
        """
        child = self._child
        if self._pid != os.getpid():
            return
        if self.failed is None and (self.commits or self._sent):
            try:
                _write(child.stdin, _SIZE.pack(_DONE))
                assert child.stdin is not None
                child.stdin.close()
            except OSError:
                pass
        else:  # failed, or never given a batch (maybe still starting): nothing to finish
            child.kill()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def _settle(self, left: int) -> None:
        """Read confirmations until at most ``left`` batches are with the writer."""
        stdout = self._child.stdout
        assert stdout is not None
        while len(self._sent) > left and self.failed is None:
            self._reply(self._next(stdout))

    def _next(self, stdout: IO[bytes]) -> Any:
        """The writer's next reply; a read cut short by an exception ends the pipe."""
        try:
            return _read(stdout)
        except BaseException:  # interrupted mid-reply: the stream is cut, never resumed
            self._fail("interrupted while reading a reply")
            raise

    def _reply(self, reply: Any) -> None:
        if reply is None:
            self._fail("the writer process ended")
        elif reply[0] == "ready":
            self.ready = True
        elif reply[0] == "ok":
            batch = self._sent.popleft()
            self.commits.append((sum(1 for item in batch if item.kind == "product"), reply[1]))
        else:
            self._fail(str(reply[1]))

    def _fail(self, why: str) -> None:
        self.failed = why
        self._child.kill()


def _read(stream: IO[bytes], loads: Callable[[bytes], Any] | None = None) -> Any:
    """One message, or None at the end of the stream (or a cut or garbled one).

    Replies are pickles; batches are marshalled (``loads=marshal.loads``).
    """
    head = _exactly(stream, _SIZE.size)
    if head is None:
        return None
    (size,) = _SIZE.unpack(head)
    body = _exactly(stream, size) if _DONE < size <= _LARGEST else None
    if body is None:
        return None
    try:
        return (loads or _unpickled)(body)
    except Exception:  # noqa: BLE001 - not a message of ours: the pipe is unusable
        return None


def _unpickled(body: bytes) -> Any:
    """The one pickle ``body`` holds, and nothing after it."""
    source = io.BytesIO(body)
    message = pickle.load(source)
    if source.tell() != len(body):
        raise ValueError("bytes after the pickle")
    return message


def _exactly(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes from an unbuffered stream (which may give fewer a call), None at its end."""
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _write(stream: IO[bytes] | None, data: bytes) -> None:
    """All of ``data`` to an unbuffered stream (a pipe may take less than all in one call)."""
    assert stream is not None
    view = memoryview(data)
    while view:
        view = view[stream.write(view) or 0 :]


def _send(stream: IO[bytes], reply: tuple[Any, ...]) -> None:
    message = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_SIZE.pack(len(message)) + message)
    stream.flush()


def _serve(path: str) -> int:
    """The writer: commit each batch read from stdin, confirm it on stdout, until the end."""
    from provstore.db.sqlite_direct import open_writer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the tracker decides when to stop
    inbox = sys.stdin.buffer
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else prints goes to stderr, never into the replies
    writer = open_writer(f"sqlite:///{path}")
    if writer is None:
        _send(outbox, ("error", f"cannot open the store at {path} for writing"))
        return 1
    try:
        _send(outbox, ("ready",))
        while True:
            batch = _read(inbox, marshal.loads)
            if batch is None:
                return 0
            try:
                writer.put_packed(batch)
            except StoreError as exc:
                _send(outbox, ("error", str(exc)))
                return 1
            _send(outbox, ("ok", time.monotonic()))
    except BrokenPipeError:  # the tracker is gone; what was committed is whole
        return 0
    finally:
        writer.close()
