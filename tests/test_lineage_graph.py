"""The lineage walk's graph (provstore.db.lineage_graph): compiled and Python, one behaviour.

Every test runs on both versions; hypothesis drives both through the same random graphs
and fetches and compares what they give.  Under CI the compiled one must have been built:
the benchmarks and the published figures depend on it.
"""

from __future__ import annotations

import os
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provstore.db import lineage_graph
from provstore.db.lineage_graph import Graph, comma_ints, graph_class

COMPILED = graph_class(True)
VERSIONS = pytest.mark.parametrize("make", [COMPILED, Graph], ids=["compiled", "python"])
INT64 = st.integers(-(2**63), 2**63 - 1)


def test_the_compiled_graph_is_built_in_ci():
    """``pip install`` built the extension (a C compiler is there in CI)."""
    if os.environ.get("CI") != "true" and COMPILED is Graph:
        pytest.skip("the extension was not built here")
    assert COMPILED is not Graph
    assert COMPILED.__module__ == "provstore.db._lineage_graph"


@given(numbers=st.lists(INT64, max_size=50))
def test_comma_lists_read_back_exactly(numbers):
    assert list(comma_ints(",".join(map(str, numbers)))) == numbers


@pytest.mark.parametrize(
    "text",
    ["1,", ",1", "1,,2", "a", "9223372036854775808", "-9223372036854775809", "1 ,2", "-", "1,-"],
)
def test_a_malformed_comma_list_is_refused(text):
    """A cut or garbled aggregate never reads as other numbers."""
    with pytest.raises(ValueError):
        comma_ints(text)


@st.composite
def _walks(draw):
    """A random DAG with random ids, fetched in random parts, and a root."""
    n = draw(st.integers(1, 40))
    ids = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n, unique=True))
    links = set()
    for i in range(1, n):
        links |= {(i, j) for j in draw(st.sets(st.integers(0, i - 1), max_size=3))}
    root = draw(st.integers(0, n - 1))
    ancestors = draw(st.booleans())
    bits = draw(st.integers(0, 4))
    # shared 8-byte prefixes: the compiled sort must compare whole digests there
    stems = draw(st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=3))
    digest = st.tuples(st.sampled_from(stems), st.binary(min_size=24, max_size=24))
    digests = draw(st.lists(digest.map(b"".join), min_size=n, max_size=n, unique=True))
    parts = draw(st.integers(1, 4))
    return ids, sorted(links), root, ancestors, bits, digests, parts


def _run(make, ids, links, root, ancestors, bits, digests, parts, depth):
    graph = make(ids[root], ancestors, bits)
    near = {}
    for child, parent in links:
        a, b = (child, parent) if ancestors else (parent, child)
        near.setdefault(a, []).append(b)
    sources = sorted(near)
    for k in range(parts):  # each node's links in one fetch; a later fetch repeats some
        chunk = sources[k::parts] + sources[: k % 2]
        srcs = [ids[a] for a in chunk for _ in near[a]]
        dsts = [ids[b] for a in chunk for b in near[a]]
        graph.add(array("q", srcs) if k % 2 else srcs, dsts)
    graph.mark_all()
    trace = []
    while True:
        trace.append((graph.level, sorted(graph.frontier()), graph.size, graph.rejoined))
        if graph.level == depth or not graph.advance():
            break
    rows = list(zip(ids, digests, strict=True))[::-1] + [(ids[0], digests[0])]  # one twice
    named = graph.named([i for i, _ in rows], [d for _, d in rows])
    assert graph.named(array("q", [i for i, _ in rows]), b"".join(d for _, d in rows)) == named
    counts = graph.block_counts()
    skipped = sorted(graph.seen_ids(sorted(counts)[::2]))  # every other block left out
    assert skipped == sorted(i for i in graph.seen_ids() if i >> bits not in sorted(counts)[::2])
    return trace, named, counts, sorted(graph.seen_ids()), skipped, graph.low, graph.high


@settings(max_examples=200, deadline=None)
@given(walk=_walks(), depth=st.sampled_from([0, 1, 3, 100]))
def test_both_graphs_walk_and_name_alike(walk, depth):
    """Levels, frontiers, per-block counts, names and sorted links: the same, and right."""
    compiled = _run(COMPILED, *walk, depth)
    python = _run(Graph, *walk, depth)
    assert compiled == python
    ids, links, root, ancestors, _, digests, _ = walk
    trace, (depths, edges), _, seen, _, _, _ = python
    by_id = dict(zip(ids, digests, strict=True))
    assert set(depths) == {by_id[i] for i in seen}
    assert depths[digests[root]] == 0
    pairs = [(digests[c], digests[p]) for c, p in links]
    assert list(edges) == sorted(pair for pair in pairs if set(pair) <= depths.keys())


@VERSIONS
def test_a_node_listed_again_keeps_its_links(make):
    """Two fetches naming one node give the same (complete) list: the first is kept."""
    graph = make(1, True, 4)
    graph.add([1, 1], [2, 3])
    graph.add([1, 2], [2, 3])
    graph.mark_nodes([1, 2])
    assert graph.advance() == 2
    assert sorted(graph.frontier()) == [2, 3]
    assert graph.advance() == 0  # 2 -> 3 rejoins a node reached already
    assert graph.rejoined


@VERSIONS
def test_known_and_missing_follow_marks(make):
    graph = make(16, True, 4)  # block 1 holds 16..31
    graph.add([16, 16], [17, 40])
    assert graph.missing() == [16]
    graph.mark_blocks([1])
    assert graph.missing() == []
    assert graph.known(31) and not graph.known(40)
    graph.advance()
    assert sorted(graph.missing()) == [40]
    graph.mark_nodes([40])
    assert graph.missing() == [] and graph.known(40)
    assert graph.hits(1) == 2 and graph.hits(2) == 1 and graph.hits(7) == 0
    assert graph.entered(1) == 0 and graph.entered(2) == 1
    with pytest.raises(KeyError):
        graph.entered(7)
    assert (graph.low, graph.high, graph.size) == (16, 40, 3)


@VERSIONS
def test_a_node_without_a_row_is_left_out_with_its_links(make):
    graph = make(5, True, 10)
    graph.add([5, 5], [6, 7])
    graph.mark_all()
    graph.advance()
    depths, edges = graph.named([7, 5, 99], [b"b" * 32, b"a" * 32, b"z" * 32])  # 6: no row
    assert depths == {b"a" * 32: 0, b"b" * 32: 1}
    assert edges == ((b"a" * 32, b"b" * 32),)


@VERSIONS
def test_mismatched_columns_are_refused(make):
    graph = make(1, False, 3)
    with pytest.raises(ValueError):
        graph.add([1, 2], [3])
    with pytest.raises(ValueError):
        graph.named([1, 2], [b"a" * 32])
    with pytest.raises(ValueError):
        graph.named([1, 2], b"a" * 33)  # packed: not two digests of one length


def test_the_python_version_is_used_without_the_extension(monkeypatch):
    monkeypatch.setattr(lineage_graph, "_compiled", None)
    assert graph_class(True) is Graph
    assert comma_ints("3,-4") == [3, -4]


def test_no_compiled_graph_exists_half_made():
    """The compiled graph is made whole by its constructor, or not at all."""
    if COMPILED is Graph:
        pytest.skip("the extension was not built here")
    with pytest.raises(TypeError):
        COMPILED.__new__(COMPILED)
    with pytest.raises(ValueError):
        COMPILED(1, True, 63)
    graph = COMPILED(1, True, 0)
    assert (graph.size, graph.level, graph.frontier()) == (1, 0, [1])
