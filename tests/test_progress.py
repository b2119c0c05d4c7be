"""Progress lines: silent when disabled, throttled when enabled, finished with a newline."""

from __future__ import annotations

import io
import sys

import pytest

from provstore.cli.progress import REDRAW_INTERVAL, Progress, progress, should_show


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_disabled_writes_nothing(capsys):
    stream = CountingStream()
    with progress("fsck", 10, enabled=False, stream=stream) as bar:
        for _ in range(10):
            bar.advance()
    with progress("fsck", 10, enabled=False) as bar:  # the default stream: stderr
        bar.advance(10)
    assert stream.writes == 0 and stream.getvalue() == ""
    assert capsys.readouterr() == ("", "")
    assert bar.done == 10


def test_enabled_ends_with_the_total_and_a_newline():
    stream = io.StringIO()
    with progress("fsck", 1234, enabled=True, stream=stream) as bar:
        for _ in range(1234):
            bar.advance()
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("fsck 1,234/1,234 (100%) ")
    assert last.rstrip().endswith("/s")


def test_unknown_total_shows_the_count_only():
    stream = io.StringIO()
    with progress("import", None, enabled=True, stream=stream) as bar:
        bar.advance(7)
    assert stream.getvalue().split("\r")[-1].startswith("import 7 ")


def test_redraws_are_throttled():
    stream = CountingStream()
    clock = FakeClock()
    with Progress("x", 100_000, enabled=True, stream=stream, clock=clock) as bar:
        for i in range(100_000):
            if i % 1000 == 0:
                clock.now += REDRAW_INTERVAL / 4  # 100 steps over 2.5 "seconds"
            bar.advance()
    # at most one redraw per interval (25 here), plus the final line and its newline
    assert 20 <= stream.writes <= 25 + 2
    assert stream.getvalue().split("\r")[-1].startswith("x 100,000/100,000 (100%) 40,000/s")


def test_shorter_line_blanks_the_longer_one_before_it():
    stream = io.StringIO()
    clock = FakeClock()
    with Progress("x", None, enabled=True, stream=stream, clock=clock) as bar:
        clock.now += 1
        bar.advance(1_000_000)
        clock.now += 1000
    first, last = stream.getvalue().rstrip("\n").split("\r")[1:]
    assert len(last) >= len(first)


def test_finishes_the_line_when_the_block_fails():
    stream = io.StringIO()
    with pytest.raises(RuntimeError):
        with progress("fsck", 3, enabled=True, stream=stream) as bar:
            bar.advance()
            raise RuntimeError("boom")
    assert stream.getvalue().endswith("\n")
    assert "fsck 1/3 (33%)" in stream.getvalue()


def test_should_show_only_on_a_terminal_without_json(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert should_show(False) is True
    assert should_show(True) is False
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert should_show(False) is False
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    assert should_show(False) is False
