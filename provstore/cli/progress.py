"""Progress for long operations: one line on stderr, redrawn a few times a second.

Dependency-free and cheap: a disabled reporter only adds to a counter, and an enabled one
looks at the clock on each advance but writes at most every :data:`REDRAW_INTERVAL` seconds.
Use it as a context manager so the line is finished (with a newline) however the block ends::

    with progress("fsck", total, enabled=should_show(json_output)) as bar:
        report = fsck(store, on_progress=bar.advance)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["REDRAW_INTERVAL", "Progress", "progress", "should_show"]

REDRAW_INTERVAL = 0.1


class Progress:
    """A counter that, when enabled, redraws ``label done/total (pct%) rate/s`` in place."""

    __slots__ = (
        "_clock",
        "_enabled",
        "_next_draw",
        "_started",
        "_stream",
        "_width",
        "done",
        "label",
        "total",
    )

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        enabled: bool,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._enabled = enabled
        self._stream = stream
        self._clock = clock
        self._started = 0.0
        self._next_draw = 0.0
        self._width = 0

    def __enter__(self) -> Progress:
        self._started = self._clock()
        self._next_draw = self._started + REDRAW_INTERVAL
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._enabled:
            self._draw(self._clock())
            self._write("\n")

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done; redraw if enabled and the line is stale."""
        self.done += n
        if self._enabled:
            now = self._clock()
            if now >= self._next_draw:
                self._next_draw = now + REDRAW_INTERVAL
                self._draw(now)

    def line(self, now: float) -> str:
        """The text of the progress line at clock time ``now`` (without the carriage return)."""
        elapsed = now - self._started
        rate = f"{self.done / elapsed:,.0f}/s" if elapsed > 0 else "-/s"
        if self.total is None:
            return f"{self.label} {self.done:,} {rate}"
        pct = 100 if self.total <= 0 else min(100, self.done * 100 // self.total)
        return f"{self.label} {self.done:,}/{self.total:,} ({pct}%) {rate}"

    def _draw(self, now: float) -> None:
        text = self.line(now)
        padding = " " * max(0, self._width - len(text))  # blank what a longer line left
        self._width = len(text)
        self._write(f"\r{text}{padding}")

    def _write(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        if stream is None:  # pythonw and friends: nowhere to draw
            return
        stream.write(text)
        stream.flush()


def progress(
    label: str, total: int | None, *, enabled: bool, stream: TextIO | None = None
) -> Progress:
    """A progress reporter for ``total`` units (None when unknown), writing to ``stream``.

    ``stream`` defaults to ``sys.stderr`` as it is when the line is drawn.
    """
    return Progress(label, total, enabled=enabled, stream=stream)


def should_show(json_output: bool) -> bool:
    """Whether to draw progress: only for a human watching stderr, never with ``--json``."""
    if json_output or sys.stderr is None:
        return False
    try:
        return sys.stderr.isatty()
    except (ValueError, OSError):  # a closed or detached stream
        return False
