"""The lineage walk over the index (provstore.db.lineage) against a plain in-memory BFS.

The walk fetches whole blocks of ids where it expects to reach many of them, and relies on
ids being given in insertion order only for speed.  Here ids are drawn at random (parents
after children, blocks crossing the graph every way) and blocks are made tiny, so fetching
by blocks, by ``IN`` lists and by recursive windows all happen, mixed, on small graphs.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from provstore import Store
from provstore.db import lineage, schema


def _digest(node: int) -> bytes:
    return hashlib.blake2b(node.to_bytes(4, "little"), digest_size=32).digest()


def _bfs(edges, root, direction, depth):
    step = {}
    for child, parent in edges:
        a, b = (child, parent) if direction == "ancestors" else (parent, child)
        step.setdefault(a, []).append(b)
    want = {root: 0}
    frontier = [root]
    while frontier and (depth is None or want[frontier[0]] < depth):
        following = []
        for a in frontier:
            for b in step.get(a, ()):
                if b not in want:
                    want[b] = want[a] + 1
                    following.append(b)
        frontier = following
    return want


def _load(engine, ids, edges):
    """The index of a graph: node ``i`` is the object of id ``ids[i]``."""
    with engine.begin() as conn:
        conn.execute(schema.product_parents.delete())
        conn.execute(schema.objects.delete())
        rows = [{"id": ids[i], "digest": _digest(i)} for i in range(len(ids))]
        conn.execute(schema.objects.insert(), rows)
        if edges:
            links = [{"child": ids[c], "parent": ids[p]} for c, p in edges]
            conn.execute(schema.product_parents.insert(), links)


def _check(engine, ids, edges, root, direction, depth):
    """The walk with the compiled graph (when built) and with the Python one."""
    _load(engine, ids, edges)
    want = _bfs(edges, root, direction, depth)
    kept = {(_digest(c), _digest(p)) for c, p in edges if c in want and p in want}
    for compiled in (True, False):
        with engine.connect() as conn:
            got, got_edges = lineage.walk(conn, _digest(root), direction, depth, compiled=compiled)
        assert got == {_digest(i): level for i, level in want.items()}
        assert got_edges == tuple(sorted(kept))


@st.composite
def _graphs(draw, most=60):
    n = draw(st.integers(2, most))
    reach = draw(st.sampled_from([1, 3, 8, n]))  # 1: a chain (windows); n: edges anywhere
    edges = set()
    for i in range(1, n):
        back = draw(st.lists(st.integers(1, min(i, reach)), max_size=3))
        edges |= {(i, i - k) for k in back}
    order = draw(st.sampled_from(["inserted", "reversed", "random", "sparse"]))
    if order in ("random", "sparse"):  # sparse: far apart, so ranks are not by offset
        top = 4 * n if order == "random" else 10**9
        ids = draw(st.lists(st.integers(1, top), min_size=n, max_size=n, unique=True))
    else:
        ids = list(range(1, n + 1)) if order == "inserted" else list(range(n, 0, -1))
    root = draw(st.integers(0, n - 1))
    direction = draw(st.sampled_from(["ancestors", "descendants"]))
    depth = draw(st.sampled_from([0, 1, 2, 5, 30, 1000]))
    return ids, sorted(edges), root, direction, depth


@pytest.fixture(params=[(1, 1), (2, 3), (3, 6), (4, 10**6)], ids=lambda p: f"block{p}")
def tiny_blocks(request, monkeypatch):
    """Blocks of 2 to 16 ids, so small graphs span many; some worth fetching whole soon,
    some late, some never (every node by ``IN`` lists and recursive windows)."""
    bits, worth = request.param
    monkeypatch.setattr(lineage, "_BLOCK_BITS", bits)
    monkeypatch.setattr(lineage, "_BLOCK", 1 << bits)
    monkeypatch.setattr(lineage, "_WORTH", worth)
    monkeypatch.setattr(lineage, "_EVIDENCE", min(bits, 2))
    return bits


@pytest.fixture
def sqlite_engine(sqlite_url):
    Store(sqlite_url).close()
    engine = sa.create_engine(sqlite_url)
    yield engine
    engine.dispose()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(graph=_graphs())
@example(graph=([3, 1, 2], [(1, 0), (2, 0), (2, 1)], 2, "ancestors", 1))
@example(graph=([5, 9, 2, 7], [(1, 0), (2, 1), (3, 2)], 3, "ancestors", 1000))
def test_walk_is_a_plain_bfs_on_sqlite(sqlite_engine, tiny_blocks, graph):
    """Depths and edges as a BFS over the whole graph gives, ids in any order."""
    _check(sqlite_engine, *graph)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(graph=_graphs(30))
def test_walk_is_a_plain_bfs_on_servers(server_url, tiny_blocks, graph):
    Store(server_url).close()
    engine = sa.create_engine(server_url)
    try:
        _check(engine, *graph)
    finally:
        engine.dispose()


def test_a_deep_walk_through_dense_ids_fetches_blocks_not_levels(sqlite_engine, monkeypatch):
    """A wide DAG walked 300 levels deep, ids in insertion order: a few dozen queries."""
    n = 3000
    edges = [(i, i - k) for i in range(1, n) for k in {1, 1 + i % 7, 1 + (i * 13) % 11} if k <= i]
    queries = []
    original = lineage._BlockWalk.edges

    def counted(self, conditions):
        queries.append(conditions)
        return original(self, conditions)

    monkeypatch.setattr(lineage._BlockWalk, "edges", counted)
    _check(sqlite_engine, list(range(1, n + 1)), edges, n - 1, "ancestors", 300)
    assert len(queries) < 40


def test_packed_rows_are_the_rows_even_cut_short(backend_url):
    """Each backend packs the walk's rows into a few values; MariaDB's GROUP_CONCAT cuts
    silently at its length limit (after a comma, inside a number), and the rows are then
    fetched plainly."""
    from provstore.db import dialects

    Store(backend_url).close()
    engine = sa.create_engine(backend_url)
    try:
        ids = list(range(1, 301))
        edges = [(i, i - 1) for i in range(1, 300)] + [(i, i - 2) for i in range(2, 300)]
        _load(engine, ids, edges)
        links = sorted((ids[c], ids[p]) for c, p in edges)
        rows = sorted((ids[i], _digest(i)) for i in range(300))
        conditions = ["child < 100", "child >= 5000", "child >= 100 AND child < 1000"]
        with engine.connect() as conn:
            dialect = dialects.of(conn)
            cursor = conn.connection.dbapi_connection.cursor()
            for limit in (64, 65, 66, 67, 2000, 1 << 20):  # 2000: the digests cut, not the ids
                if dialect.name == "mysql":
                    cursor.execute(f"SET SESSION group_concat_max_len = {limit}")
                    cursor.connection.provstore_packed = True  # the limit stays this low
                got = dialect.int_pairs(cursor, ("child", "parent"), conditions)
                assert sorted(zip(*got, strict=True)) == links
                got_ids, got_digests = dialect.digest_rows(cursor, ["id < 100", "id >= 100"])
                if isinstance(got_digests, bytes):  # packed
                    got_digests = [got_digests[k : k + 32] for k in range(0, len(got_digests), 32)]
                assert sorted(zip(got_ids, got_digests, strict=True)) == rows
            none = dialect.int_pairs(cursor, ("parent", "child"), ["parent >= 5000"])
            assert tuple(map(list, none)) == ([], [])
    finally:
        engine.dispose()


@pytest.mark.parametrize("autocommit", [False, True], ids=["transaction", "autocommit"])
def test_an_unbounded_walk_is_a_bfs_and_leaves_the_planner_as_it_was(backend_url, autocommit):
    """The recursive walk (no depth) on a connection with or without a transaction block, as
    a held read connection has none: PostgreSQL's planner settings are back after it."""
    Store(backend_url).close()
    engine = sa.create_engine(backend_url)
    try:
        ids = list(range(1, 61))
        edges = sorted({(i, j) for i in range(1, 60) for j in (i - 1, i // 2, i // 3)})
        _load(engine, ids, edges)
        if autocommit:
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        for root, direction, compiled in itertools.product(
            (59, 0), ("ancestors", "descendants"), (True, False)
        ):
            want = _bfs(edges, root, direction, None)
            with engine.connect() as conn:
                planner = _planner(conn)
                got, got_edges = lineage.walk(
                    conn, _digest(root), direction, None, compiled=compiled
                )
                assert _planner(conn) == planner
            assert got == {_digest(i): level for i, level in want.items()}
            kept = {(_digest(c), _digest(p)) for c, p in edges if c in want and p in want}
            assert got_edges == tuple(sorted(kept))
    finally:
        engine.dispose()


def _planner(conn) -> tuple[str, ...]:
    """PostgreSQL's join, JIT and parallel settings on ``conn`` (nothing elsewhere)."""
    if conn.dialect.name != "postgresql":
        return ()
    names = ("enable_hashjoin", "enable_mergejoin", "jit", "max_parallel_workers_per_gather")
    return tuple(conn.exec_driver_sql(f"SHOW {name}").scalar() for name in names)


@pytest.mark.parametrize("autocommit", [False, True], ids=["transaction", "autocommit"])
def test_a_walk_reading_ranges_plans_without_parallel_workers_then_resets(
    server_url, autocommit, monkeypatch
):
    """PostgreSQL starts no parallel workers for a walk's queries once it reads ranges of ids
    (starting them cost ten times the scans); a walk that reads none sends no setting; the
    session's setting is back after the walk, even one that fails, and the walk's own error
    comes out.  MariaDB has no such setting and is left alone."""
    from provstore.db import dialects

    Store(server_url).close()
    engine = sa.create_engine(server_url)
    try:
        ids = list(range(1, 41))
        edges = sorted({(i, j) for i in range(1, 40) for j in (i - 1, i // 2)})
        _load(engine, ids, edges)
        if autocommit:
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        pg = engine.dialect.name == "postgresql"
        kind = type(dialects.DIALECTS["postgresql" if pg else "mysql"])
        queries = []  # (reads a range, the setting it ran under)
        settings = []  # statements naming the setting
        original = kind.int_pairs

        def spying(self, cursor, columns, conditions, fail=None):
            ranges = any(">=" in condition for condition in conditions)
            if pg:
                cursor.execute("SHOW max_parallel_workers_per_gather")
                queries.append((ranges, cursor.fetchone()[0]))
            if ranges and fail == "python":
                raise TypeError("a walk that fails midway")
            if ranges and fail == "database":
                cursor.execute("SELECT no_such_column FROM product_parents")
            return original(self, cursor, columns, conditions)

        def statement(conn, cursor, sql, *rest):
            if "parallel" in sql:
                settings.append(sql)

        sa.event.listen(engine, "before_cursor_execute", statement)
        monkeypatch.setattr(kind, "int_pairs", spying)
        with engine.connect() as conn:
            if pg:
                conn.exec_driver_sql("SET max_parallel_workers_per_gather = 3")
                conn.commit()  # the session's setting, which no rollback undoes
            planner = _planner(conn)
            settings.clear()
            got, _ = lineage.walk(conn, _digest(39), "ancestors", 1)  # shallow: no ranges
            assert len(got) == 3 and not settings and not any(r for r, _ in queries)
            monkeypatch.setattr(lineage, "_BLOCK_BITS", 2)  # blocks of 4 ids, taken soon
            monkeypatch.setattr(lineage, "_BLOCK", 4)
            monkeypatch.setattr(lineage, "_WORTH", 1)
            monkeypatch.setattr(lineage, "_EVIDENCE", 1)
            got, _ = lineage.walk(conn, _digest(39), "ancestors", 1000)
            assert got == {_digest(i): level for i, level in _bfs(edges, 39, "ancestors",
                                                                  1000).items()}  # fmt: skip
            assert _planner(conn) == planner
            if pg:
                assert {setting for ranges, setting in queries if ranges} == {"0"}
                assert queries[0] == (False, "3")  # switched only when needed
            for fail in ("python", "database"):
                monkeypatch.setattr(kind, "int_pairs",
                                    lambda *args, fail=fail: spying(*args, fail=fail))  # fmt: skip
                error = TypeError if fail == "python" else engine.dialect.loaded_dbapi.Error
                with pytest.raises(error, match="midway" if fail == "python" else "no_such"):
                    lineage.walk(conn, _digest(0), "descendants", 1000)
                conn.rollback()
                assert _planner(conn) == planner
    finally:
        engine.dispose()


def _aside(engine, fail_every=0):
    """``Readers.aside`` for a bare engine: a worker thread with a connection of its own;
    every ``fail_every``-th read raises instead (the walk must read those blocks itself)."""
    from concurrent.futures import ThreadPoolExecutor

    worker = ThreadPoolExecutor(1)
    calls = []

    def read(work):
        calls.append(work)
        if fail_every and len(calls) % fail_every == 0:
            raise sa.exc.OperationalError("SELECT", {}, Exception("connection lost"))
        with engine.connect() as conn:
            return work(conn)

    def aside(work):
        return worker.submit(read, work)

    return aside, calls, worker


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(graph=_graphs(), fail_every=st.sampled_from([0, 1, 2]))
def test_digests_read_aside_name_the_same_walk(sqlite_engine, tiny_blocks, graph, fail_every):
    """Blocks' digests read on another connection (some of those reads failing): the same
    depths and edges as a plain BFS."""
    ids, edges, root, direction, depth = graph
    _load(sqlite_engine, ids, edges)
    want = _bfs(edges, root, direction, depth)
    kept = {(_digest(c), _digest(p)) for c, p in edges if c in want and p in want}
    aside, _, worker = _aside(sqlite_engine, fail_every)
    try:
        with sqlite_engine.connect() as conn:
            got, got_edges = lineage.walk(conn, _digest(root), direction, depth, aside=aside)
    finally:
        worker.shutdown()
    assert got == {_digest(i): level for i, level in want.items()}
    assert got_edges == tuple(sorted(kept))


def test_a_deep_walk_reads_digests_aside(backend_url, tiny_blocks):
    """A store's reader hands the blocks a deep walk fetches whole to its worker thread's
    connection; every node is named, with those digests and the walk's own query."""
    import threading

    n = 300
    edges = [(i, i - k) for i in range(1, n) for k in (1, 2, 3) if i - k >= 0]
    ids = list(range(1, n + 1))
    with Store(backend_url) as store:
        _load(store.engine, ids, edges)
        threads = []

        def aside(work):
            return store._readers.aside(
                lambda conn: threads.append(threading.current_thread()) or work(conn)
            )

        with store._readers.connection() as conn:
            got, got_edges = lineage.walk(conn, _digest(n - 1), "ancestors", 1000, aside=aside)
    want = _bfs(edges, n - 1, "ancestors", 1000)
    assert bool(threads) == (lineage._WORTH < n)  # blocks fetched whole: never at 10**6
    assert threading.current_thread() not in threads  # read aside, elsewhere
    assert got == {_digest(i): level for i, level in want.items()}
    assert got_edges == tuple(sorted((_digest(c), _digest(p)) for c, p in edges))
