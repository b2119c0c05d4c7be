"""The writer process a tracker hands its batches to in a burst on SQLite (sqlite_pipe)."""

from __future__ import annotations

import contextlib
import io
import json
import marshal
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provstore import Store, tracker
from provstore.checks.fsck import fsck
from provstore.core.errors import StoreFullError
from provstore.core.objects import Product, seal
from provstore.db import layout, sqlite_direct, sqlite_pipe
from provstore.tracking import tracker as tracking

BATCH = 40


_REAL_START = sqlite_pipe.start


@contextlib.contextmanager
def _no_deadlock(seconds: int = 60):
    """Fail, instead of hanging the suite, when the tracker and its writer wait for each other."""

    def stuck(signum, frame):
        raise TimeoutError("the tracker and its writer process wait for each other")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _start_ready(path: str) -> sqlite_pipe.PipedWriter | None:
    """A writer process, once it is ready (or failed): every batch then goes to it."""
    pipe = _REAL_START(path)
    deadline = time.monotonic() + 60
    while pipe is not None and pipe.usable and not pipe.started():
        assert time.monotonic() < deadline, "the writer process never got ready"
        time.sleep(0.005)
    return pipe


@pytest.fixture
def bursts(monkeypatch):
    """Batches of BATCH products, each big enough for the writer process."""
    monkeypatch.setattr(tracking, "FLUSH_EVERY", BATCH)
    monkeypatch.setattr(tracking, "FLUSH_AFTER", 3600.0)
    monkeypatch.setattr(tracking, "PIPE_FROM", 10)
    monkeypatch.setattr(tracking, "PIPE_START", 10)
    monkeypatch.setattr(tracking, "_BURST_CHECK", BATCH)
    monkeypatch.setattr(tracking, "_spare_core", lambda: True)
    monkeypatch.setattr(sqlite_pipe, "start", _start_ready)


def _register(t, n: int, digests: list[str]) -> None:
    for i in range(len(digests), len(digests) + n):
        parents = [digests[j] for j in (i - 1, i // 2) if 0 <= j < i] if i else []
        digests.append(t.register_data_product(f"p{i}", "1", {"i": i}, parents=parents))


def _stored(path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        products = conn.execute("SELECT count(*) FROM products").fetchone()[0]
        links = conn.execute("SELECT count(*) FROM product_parents").fetchone()[0]
    finally:
        conn.close()
    return products, links


def _check(url: str, digests: list[str]) -> None:
    with Store(url) as store:
        assert fsck(store).ok
        for i, digest in enumerate(digests):
            product = store.get(digest).obj
            assert product.name == f"p{i}"
        assert sorted(store.lineage(digests[-1], "ancestors").depths) == sorted(
            bytes.fromhex(d) for d in digests
        )


def test_a_burst_goes_through_the_writer_and_stores_what_the_tracker_would(tmp_path, bursts):
    piped, own = [], []
    for name, digests in (("piped", piped), ("own", own)):
        if name == "own":
            tracking.PIPE_FROM = tracking.PIPE_START = 10**9  # restored by monkeypatch
        url = f"sqlite:///{tmp_path}/{name}.db"
        with tracker(url, git=False) as t:
            _register(t, 5 * BATCH + 7, digests)
            pipe = t._pipe
        _check(url, digests)
        if name == "piped":
            assert pipe is not None and pipe.failed is None
            assert [count for count, _ in pipe.commits] == [BATCH] * 5 + [7]
            assert pipe._child.returncode == 0  # told to finish, it did
        else:
            assert pipe is None
    assert _stored(tmp_path / "piped.db") == _stored(tmp_path / "own.db")


def test_batches_made_in_pieces_store_what_the_tracker_would(tmp_path, bursts, monkeypatch):
    """Rows made a few products at a time while the writer writes (``stage``) make the batch."""
    monkeypatch.setattr(tracking, "_BURST_CHECK", 7)  # pieces of 7 products, batches of 40
    staged = []
    real_stage = sqlite_pipe.PipedWriter.stage

    def stage(self, items):
        staged.append(len(items))
        real_stage(self, items)

    monkeypatch.setattr(sqlite_pipe.PipedWriter, "stage", stage)
    piped, own = [], []
    for name, digests in (("piped", piped), ("own", own)):
        if name == "own":
            tracking.PIPE_FROM = tracking.PIPE_START = 10**9
        url = f"sqlite:///{tmp_path}/{name}.db"
        with tracker(url, git=False) as t:
            _register(t, 5 * BATCH + 7, digests)
        _check(url, digests)
    assert any(0 < n % BATCH < BATCH - 7 for n in staged)  # batches went in several pieces
    assert _stored(tmp_path / "piped.db") == _stored(tmp_path / "own.db")
    assert _links(tmp_path / "piped.db") == _links(tmp_path / "own.db")


def _links(path) -> list[tuple[str, str]]:
    """Every link as (child name, parent name): the same DAG whatever its run's digest."""
    conn = sqlite3.connect(path)
    try:
        return sorted(
            conn.execute(
                "SELECT c.name, p.name FROM product_parents l "
                "JOIN products c ON c.id = l.child JOIN products p ON p.id = l.parent"
            ).fetchall()
        )
    finally:
        conn.close()


class _Sink:
    """A stand-in for the writer process: what is sent down its stdin is kept."""

    def __init__(self) -> None:
        self.stdin = io.BytesIO()
        self.stdout = io.BytesIO()  # no replies: nothing is waited for before a send

    def kill(self) -> None:
        pass


def _products(n: int) -> list:
    items = [seal(Product("p0", None, {}, None, None, None, None, ()))]
    for i in range(1, n):
        parents = tuple(sorted({items[i - 1].digest, items[i // 2].digest}))
        items.append(seal(Product(f"p{i}", "1", {"i": i}, None, None, None, None, parents)))
    return items


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    restart=st.booleans(),
)
def test_a_batch_staged_in_pieces_reads_back_as_its_rows(n, cuts, restart):
    items = _products(n)
    pipe = sqlite_pipe.PipedWriter(_Sink())  # type: ignore[arg-type]
    if restart:  # a list staged and then dropped (taken back) leaves nothing behind
        pipe.stage(_products(3)[1:])
    batch: list = []
    for cut in sorted(cuts):
        batch.extend(items[len(batch) : cut])
        pipe.stage(batch)
    batch.extend(items[len(batch) :])
    assert pipe.put(batch)
    sent = pipe._child.stdin.getvalue()
    packed = sqlite_pipe._read(io.BytesIO(sent), marshal.loads)
    assert packed == layout.pack(layout.columns_of(items))
    assert pipe._batch == layout.columns_of(())
    assert pipe._made == 0  # the next batch starts afresh


def test_the_writer_process_imports_no_objects_nor_sqlalchemy():
    """It starts as the tracker's burst begins: every import delays the first batch's commit."""
    home = os.path.dirname(os.path.dirname(os.path.abspath(sqlite_pipe.__file__)))
    probe = (
        f"import sys; sys.path.insert(0, {os.path.dirname(home)!r}); "
        "import json, provstore.db.sqlite_pipe, provstore.db.sqlite_direct; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('provstore', "
        "'sqlalchemy', 'msgpack', 'blake3', 'deal')))))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    assert "provstore.db.sqlite_direct" in loaded
    assert [m for m in loaded if not m.startswith("provstore")] == []
    assert "provstore.core.objects" not in loaded


def test_a_garbled_message_reads_as_the_end():
    body = pickle.dumps(("ok", 1.0)) + b"\x80garbage"
    stream = io.BytesIO(sqlite_pipe._SIZE.pack(len(body)) + body)
    assert sqlite_pipe._read(stream) is None
    garbled = io.BytesIO(sqlite_pipe._SIZE.pack(3) + b"\xffab")
    assert sqlite_pipe._read(garbled, marshal.loads) is None


def test_flush_returns_when_the_writer_has_committed(tmp_path, bursts):
    url = f"sqlite:///{tmp_path}/s.db"
    digests: list[str] = []
    with tracker(url, git=False) as t:
        _register(t, 3 * BATCH + 5, digests)
        assert t._pipe is not None
        t.flush()
        assert _stored(tmp_path / "s.db")[0] == len(digests)  # another connection sees all
        _register(t, BATCH, digests)
    _check(url, digests)


def test_no_writer_process_for_a_few_products(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "_spare_core", lambda: True)
    with tracker(f"sqlite:///{tmp_path}/s.db", git=False) as t:
        _register(t, 50, [])
        t.flush()
        assert t._pipe is None and t._may_pipe  # 50 pending < PIPE_START


def test_the_writer_process_starts_from_pipe_start_pending(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "_spare_core", lambda: True)
    monkeypatch.setattr(tracking, "PIPE_START", 100)
    monkeypatch.setattr(tracking, "_BURST_CHECK", 20)
    monkeypatch.setattr(tracking, "FLUSH_AFTER", 3600.0)
    url = f"sqlite:///{tmp_path}/s.db"
    digests: list[str] = []
    with tracker(url, git=False) as t:
        _register(t, 99, digests)
        assert t._pipe is None
        _register(t, 1, digests)
        assert t._pipe is not None
    _check(url, digests)


def test_a_block_ending_before_its_writer_is_ready_writes_itself(tmp_path, bursts, monkeypatch):
    """A writer still starting is not waited for: the tracker writes, then stops it at once."""
    monkeypatch.setattr(sqlite_pipe, "start", _REAL_START)
    # a writer that never gets ready; told to finish (its input ends) it would exit with 3
    monkeypatch.setattr(sqlite_pipe, "_BOOT", "import sys; sys.stdin.buffer.read(); sys.exit(3)")
    url = f"sqlite:///{tmp_path}/s.db"
    digests: list[str] = []
    with _no_deadlock(), tracker(url, git=False) as t:  # a batch sent to it: never confirmed
        _register(t, 3 * BATCH + 5, digests)
        t.flush()
        assert _stored(tmp_path / "s.db")[0] == len(digests)  # written here meanwhile
        pipe = t._pipe
        assert pipe is not None and not pipe.ready and pipe.usable
        _register(t, BATCH, digests)
    assert pipe.commits == []
    assert pipe._child.returncode == -signal.SIGKILL  # stopped, not waited for
    _check(url, digests)


@pytest.mark.parametrize(("cores", "load"), [(1, 0.0), (2, 1.6), (8, 7.9)])
def test_a_spare_core_is_one_the_load_leaves_free(monkeypatch, cores, load):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(tracking, "_running_now", lambda: cores)  # as many as cores: busy
    assert not tracking._spare_core()
    monkeypatch.setattr(os, "getloadavg", lambda: (load - 1.0, 0.0, 0.0))
    assert tracking._spare_core() == (cores > 1)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(tracking, "_running_now", lambda: cores - 1)  # a busy spell just ended
    assert tracking._spare_core() == (cores > 1)
    monkeypatch.setattr(tracking, "_running_now", lambda: None)  # not Linux: the load decides
    assert not tracking._spare_core()


def test_running_now_counts_this_process():
    running = tracking._running_now()
    assert running is None or running >= 1


def test_no_writer_process_without_a_spare_core(tmp_path, bursts, monkeypatch):
    monkeypatch.setattr(tracking, "_spare_core", lambda: False)
    url = f"sqlite:///{tmp_path}/s.db"
    digests: list[str] = []
    with tracker(url, git=False) as t:
        _register(t, 3 * BATCH, digests)
        assert t._pipe is None and not t._may_pipe
    _check(url, digests)


def test_a_writer_killed_midway_loses_nothing(tmp_path, bursts):
    url = f"sqlite:///{tmp_path}/s.db"
    digests: list[str] = []
    with tracker(url, git=False) as t:
        _register(t, 2 * BATCH, digests)
        pipe = t._pipe
        assert pipe is not None
        pipe._child.kill()
        pipe._child.wait()
        _register(t, 3 * BATCH, digests)  # batches still sent, then taken back
        t.flush()
        assert t._pipe is None and pipe.failed is not None
        assert _stored(tmp_path / "s.db")[0] == len(digests)
        _register(t, 3 * BATCH, digests)  # on without a writer process
        assert t._pipe is None
    _check(url, digests)


def test_a_writer_that_cannot_write_hands_everything_back(tmp_path, bursts, monkeypatch):
    real_start = sqlite_pipe.start
    elsewhere = tmp_path / "not-a-store.db"
    elsewhere.write_bytes(b"not a database")
    started = []

    def start(path):
        started.append(path)
        return real_start(str(elsewhere))

    monkeypatch.setattr(sqlite_pipe, "start", start)
    url = f"sqlite:///{tmp_path}/s.db"
    digests: list[str] = []
    with tracker(url, git=False) as t:
        _register(t, 4 * BATCH, digests)
        t.flush()
        assert t._pipe is None
    assert started == [str(tmp_path / "s.db")]
    assert elsewhere.read_bytes() == b"not a database"
    _check(url, digests)


def test_when_the_writer_fails_the_store_s_own_error_is_raised(tmp_path, bursts, monkeypatch):
    """The writer fails; the tracker's own write hits a full store: StoreFullError, whole
    batches only."""
    url = f"sqlite:///{tmp_path}/s.db"
    with tracker(url, git=False):
        pass
    elsewhere = tmp_path / "not-a-store.db"
    elsewhere.write_bytes(b"not a database")
    real_start, real_configure = sqlite_pipe.start, sqlite_direct.configure
    monkeypatch.setattr(sqlite_pipe, "start", lambda path: real_start(str(elsewhere)))
    pages = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA page_count").fetchone()[0]

    def limited(conn):
        real_configure(conn)
        conn.execute(f"PRAGMA max_page_count = {pages + 8}")

    monkeypatch.setattr(sqlite_direct, "configure", limited)
    digests: list[str] = []
    with pytest.raises(StoreFullError):
        with tracker(url, git=False) as t:
            for _ in range(100):
                _register(t, BATCH, digests)
    products, links = _stored(tmp_path / "s.db")
    assert 0 < products < len(digests) and products % BATCH == 0
    assert links == sum(len({i - 1, i // 2}) for i in range(1, products))  # as _register


def test_a_send_cut_short_ends_the_pipe_and_loses_nothing(tmp_path, bursts, monkeypatch):
    """Ctrl-C in the middle of a batch's bytes: the pipe is not used again, nothing is lost."""
    url = f"sqlite:///{tmp_path}/s.db"
    digests: list[str] = []
    real_write = sqlite_pipe._write
    calls = []

    def cut(stream, data):
        calls.append(len(data))
        if len(calls) == 4:  # the second batch's body
            real_write(stream, data[: len(data) // 2])
            raise KeyboardInterrupt
        real_write(stream, data)

    monkeypatch.setattr(sqlite_pipe, "_write", cut)
    with _no_deadlock(), pytest.raises(KeyboardInterrupt):  # a stream out of step deadlocks
        with tracker(url, git=False) as t:
            _register(t, 3 * BATCH, digests)
    assert t._pipe is None  # taken back at the exit's flush, which wrote everything itself
    # the interrupted call had added its product before sending: stored, its digest unreturned
    assert _stored(tmp_path / "s.db")[0] == len(digests) + 1 == 2 * BATCH
    _check(url, digests)


_DYING = textwrap.dedent("""
    import os, sys
    from provstore import tracker
    from provstore.tracking import tracker as tracking
    tracking.FLUSH_EVERY, tracking.FLUSH_AFTER, tracking.PIPE_FROM = 40, 3600.0, 10
    tracking.PIPE_START, tracking._BURST_CHECK = 10, 40
    tracking._spare_core = lambda: True
    with tracker(sys.argv[1], git=False) as t:
        digests = []
        for i in range(10**9):
            parents = [digests[-1]] if digests else []
            digests.append(t.register_data_product(f"p{i}", "1", {"i": i}, parents=parents))
            if i == 199:
                t.flush()
                print(t._pipe._child.pid, flush=True)
""")


def test_a_tracker_killed_midway_leaves_whole_batches_and_no_writer(tmp_path):
    path = tmp_path / "s.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _DYING, f"sqlite:///{path}"],
                            stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        writer = int(proc.stdout.readline())
        time.sleep(0.5)  # batches on their way
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.stdout.close()
    deadline = time.monotonic() + 60
    while _alive(writer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(writer)  # its input ended: it finished its batch and left
    products, links = _stored(path)
    assert products >= 200 and products % BATCH == 0  # whole batches of 40, nothing else
    assert links == products - 1
    with Store(f"sqlite:///{path}") as store:
        assert fsck(store).ok


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
