"""The streamed lineage walk (provstore.db.lineage_stream) against the walk Store.lineage uses.

It must give exactly the nodes and levels of :func:`provstore.db.lineage.walk`, in the order
:class:`provstore.store.Lineage` iterates them, while what it holds stays bounded however
many nodes it yields.
"""

from __future__ import annotations

import tracemalloc

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provstore import Store
from provstore.core.objects import Product, seal
from provstore.db import lineage, lineage_stream
from tests.test_lineage import _digest, _graphs, _load
from tests.test_store import _base


def _expected(engine, root, direction, depth):
    with engine.connect() as conn:
        depths, _ = lineage.walk(conn, root, direction, depth)
    return sorted(depths.items(), key=lambda item: (item[1], item[0]))


def _check(engine, ids, edges, root, direction, depth, page):
    _load(engine, ids, edges)
    got = list(lineage_stream.stream(engine, _digest(root), direction, depth, page))
    assert got == _expected(engine, _digest(root), direction, depth)


@pytest.fixture
def engine(backend_url):
    Store(backend_url).close()
    made = sa.create_engine(backend_url)
    yield made
    made.dispose()


_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_SETTINGS
@given(graph=_graphs(40), page=st.sampled_from([1, 2, 7, 1000]))
def test_the_stream_gives_the_walks_nodes_and_levels_in_order(engine, graph, page):
    """Ids in any order, pages of one node to more than a level holds, every depth."""
    _check(engine, *graph, page)


def test_a_root_without_index_rows_comes_alone(engine):
    _load(engine, [1, 2], [(1, 0)])
    assert list(lineage_stream.stream(engine, _digest(7), "ancestors", None)) == [(_digest(7), 0)]


@st.composite
def _dags(draw):
    n = draw(st.integers(2, 40))
    parents = [
        sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3)))) if i else []
        for i in range(n)
    ]
    return parents, draw(st.integers(0, n - 1)), draw(st.integers(0, 10**9))


@_SETTINGS
@given(dag=_dags())
def test_iter_lineage_is_lineage_streamed(backend_url, dag):
    """Real products: both directions, several depths, the order ``Lineage`` iterates in."""
    parents, root, salt = dag
    with Store(backend_url) as store:
        base = _base()
        products = []
        for i, among in enumerate(parents):
            ps = tuple(sorted(products[p].digest for p in among))
            products.append(seal(Product(f"p{salt}-{i}", "1", {}, None, None, None, None, ps)))
        store.put([*base, *products])
        ref = products[root].digest
        for direction in ("ancestors", "descendants"):
            for depth in (0, 1, 2, 5, None):
                whole = store.lineage(ref, direction, depth)
                got = list(store.iter_lineage(ref, direction, depth))
                assert got == [(digest, whole.depths[digest]) for digest in whole]


def test_the_store_can_be_used_between_nodes_and_a_walk_left_early(backend_url):
    """The walk has its own connection: reads between nodes, and a walk abandoned halfway
    leaves nothing behind that spoils the next one."""
    with Store(backend_url) as store:
        base = _base()
        chain = []
        for i in range(30):
            ps = (chain[-1].digest,) if chain else ()
            chain.append(seal(Product(f"c{i}", "1", {}, None, None, None, None, ps)))
        store.put([*base, *chain])
        early = store.iter_lineage(chain[-1].digest)
        for _ in range(5):
            digest, _level = next(early)
            assert store.get(digest).digest == digest
        early.close()
        got = [level for _, level in store.iter_lineage(chain[-1].digest, depth=None)]
        assert got == list(range(30))


def _peak(engine, root, direction):
    """Peak bytes traced while walking, and the nodes walked."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        count = sum(1 for _ in lineage_stream.stream(engine, root, direction, None, page=500))
        return tracemalloc.get_traced_memory()[1] - base, count
    finally:
        tracemalloc.stop()


def test_memory_stays_bounded_as_the_neighbourhood_grows(engine):
    """A walk of 4,000 nodes and one of 32,000 hold about the same: a page of digests
    (pages of 500 here: 0.2 MiB on SQLite and MariaDB, 0.55 MiB on PostgreSQL).

    ``Store.lineage`` on the larger holds several MiB (every digest, level and edge).
    """
    peaks = {}
    for n in (4_000, 32_000):  # every node descends from node 0, within ~log2(n) levels
        edges = sorted({(i, p) for i in range(1, n) for p in (i // 2, i // 3)})
        _load(engine, list(range(1, n + 1)), edges)
        peaks[n], count = _peak(engine, _digest(0), "descendants")
        assert count == n
    assert peaks[32_000] < 1024 * 1024
    assert peaks[32_000] < 1.5 * peaks[4_000]
