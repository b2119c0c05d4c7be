"""The store on every backend: idempotent writes, lookups, lineage, schema checks."""

from __future__ import annotations

import os
import time

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from provstore import Store
from provstore.core.errors import (
    AmbiguousDigestError,
    CorruptObjectError,
    InvalidDigestError,
    SchemaVersionError,
    StoreError,
    UnknownDigestError,
    WrongKindError,
)
from provstore.core.objects import Environment, LibrarySet, Product, Run, RunEnd, Variables, seal
from provstore.db import schema


def _base():
    ls = seal(LibrarySet((("click", "8.1.0"),)))
    env = seal(Environment("cpython", "3.11", "Linux", "6", "x86_64", "glibc", ls.digest, {}, ()))
    var = seal(Variables({"A": "1"}, ()))
    run = seal(
        Run(env.digest, var.digest, "h", "u", ("x",), "/", "/py", 1, time.time_ns(), None, None)
    )
    return [ls, env, var, run]


def _product(name, run=None, parents=(), content=None, version="1"):
    return seal(Product(name, version, {}, content, None if content is None else 1, None, run,
                        tuple(sorted(parents))))  # fmt: skip


@pytest.fixture
def store(backend_url):
    with Store(backend_url) as opened:
        yield opened


def test_put_is_idempotent(store):
    base = _base()
    chain = [_product("p0", base[3].digest)]
    store.put(base + chain)
    store.put(base + chain)
    counts = store.stats()["objects"]
    assert counts["environment"] == 1 and counts["product"] == 1 and counts["run"] == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.products)).scalar() == 1


def test_get_by_digest_and_prefix(store):
    base = _base()
    store.put(base)
    env = base[1]
    assert store.get(env.hex).obj == env.obj
    assert store.get(env.hex[:6]).digest == env.digest
    assert store.get(env.hex.upper()).digest == env.digest
    with pytest.raises(WrongKindError):
        store.get(env.hex, kind="product")


def test_unknown_and_invalid_refs(store):
    store.put(_base())
    with pytest.raises(UnknownDigestError):
        store.get("0" * 64)
    with pytest.raises(UnknownDigestError):
        store.get("000000")
    with pytest.raises(InvalidDigestError):
        store.get("abc")


def test_ambiguous_prefix_lists_candidates(store):
    seen: dict[str, object] = {}
    pair = None
    for i in range(200_000):
        item = _product(f"p{i}")
        other = seen.setdefault(item.hex[:6], item)
        if other is not item:
            pair = (other, item)
            break
    assert pair is not None
    store.put(pair)
    with pytest.raises(AmbiguousDigestError) as info:
        store.get(pair[0].hex[:6])
    assert set(info.value.candidates) == {pair[0].hex, pair[1].hex}
    assert store.get(pair[0].hex[:20]).digest == pair[0].digest


def test_corrupt_object_detected(store):
    base = _base()
    store.put(base)
    target = base[1]
    with store.engine.begin() as conn:
        data = bytearray(target.data)
        data[-1] ^= 0x01
        conn.execute(
            schema.objects.update()
            .where(schema.objects.c.digest == target.digest)
            .values(data=bytes(data))
        )
    with pytest.raises(CorruptObjectError) as info:
        store.get(target.hex)
    assert info.value.digest == target.hex


def test_names_are_exact_bytes(store):
    run = _base()[3]
    items = [_product(n, run.digest) for n in ("Pillow", "pillow", "x", "x ", "n" * 100_000)]
    store.put(_base() + items)
    for item in items:
        found = store.find_products(name=item.obj.name)
        assert [f.digest for f in found] == [item.digest]
    assert store.find_products(name="PILLOW") == []


def test_find_by_content_and_version(store):
    base = _base()
    content = os.urandom(32)
    a = _product("a", base[3].digest, content=content, version="1")
    b = _product("a", base[3].digest, content=os.urandom(32), version="2")
    store.put(base + [a, b])
    assert [p.digest for p in store.find_products(content_digest=content)] == [a.digest]
    assert [p.digest for p in store.find_products(content_digest=content.hex())] == [a.digest]
    assert [p.digest for p in store.find_products(name="a", version="2")] == [b.digest]
    assert len(store.find_products(name="a")) == 2


def test_product_for_a_file_prefers_its_path_then_the_newest(store):
    base = _base()
    old = base[3]
    new = seal(Run(*[getattr(old.obj, f) for f in ("environment", "variables", "host", "user",
                                                  "argv", "cwd", "executable", "pid")],
                   old.obj.started_ns + 1, None, "newer"))  # fmt: skip
    content = os.urandom(32)

    def at(path, run):
        return seal(Product(path, None, {}, content, 1, path, run, ()))

    source = at("/data/source.csv", None)
    older = at("/data/a.csv", old.digest)
    newer = [at(f"/data/b{i}.csv", new.digest) for i in range(70)]  # more than one page
    store.put([*base, new, source, older, *newer])
    newest = min(newer, key=lambda p: p.digest)
    assert store.product_for(content, "/data/a.csv").digest == older.digest
    assert store.product_for(content, "/data/source.csv").digest == source.digest
    assert store.product_for(content, "/data/b7.csv").digest == newer[7].digest
    assert store.product_for(content, "/elsewhere.csv").digest == newest.digest
    assert store.product_for(content).digest == newest.digest
    assert store.product_for(os.urandom(32), "/data/a.csv") is None
    # newest run first on every backend, and a source product (no run) last
    found = [p.digest for p in store.find_products(content_digest=content)]
    assert found[0] == newest.digest and found[-2:] == [older.digest, source.digest]


def test_lineage_diamond_and_depth(store):
    run = _base()[3].digest
    root = _product("root", run)
    left = _product("left", run, [root.digest])
    right = _product("right", run, [root.digest])
    merge = _product("merge", run, [left.digest, right.digest])
    top = _product("top", run, [merge.digest])
    store.put(_base() + [root, left, right, merge, top])
    up = store.lineage(top.hex)
    assert up.depths == {
        top.digest: 0,
        merge.digest: 1,
        left.digest: 2,
        right.digest: 2,
        root.digest: 3,
    }
    assert len(up.edges) == 5
    shallow = store.lineage(top.hex, depth=2)
    assert set(shallow.depths) == {top.digest, merge.digest, left.digest, right.digest}
    down = store.lineage(root.hex, "descendants")
    assert down.depths[top.digest] == 3 and len(down.depths) == 5
    with pytest.raises(WrongKindError):
        store.lineage(_base()[1].hex)


def test_runs_log_and_ends(store):
    base = _base()
    run = base[3]
    end = seal(RunEnd(run.digest, "succeeded", time.time_ns(), None, None, ()))
    store.put(base + [_product("p", run.digest), end])
    [summary] = store.runs()
    assert summary.digest == run.digest and summary.status == "succeeded" and summary.products == 1


def test_reindex_rebuilds_index(store):
    base = _base()
    items = [_product(f"p{i}", base[3].digest) for i in range(20)]
    store.put(base + items)
    with store.engine.begin() as conn:
        conn.execute(schema.products.delete())
    assert store.find_products(name="p3") == []
    assert store.reindex() == len(base) + len(items)
    assert [p.digest for p in store.find_products(name="p3")] == [items[3].digest]


def test_unknown_schema_version_refused(backend_url):
    Store(backend_url).close()
    engine = sa.create_engine(backend_url)
    with engine.begin() as conn:
        conn.execute(schema.meta.update().values(value="99"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="99"):
        Store(backend_url)


def test_foreign_database_refused(backend_url):
    engine = sa.create_engine(backend_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE objects (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(StoreError, match="not a provstore store"):
        Store(backend_url)


def test_match_environment(store):
    base = _base()
    assert store.match_environment(base[1].obj) is None
    store.put(base)
    assert store.match_environment(base[1].obj) == base[1].hex


def test_deep_chains_are_walked_whole(store):
    """A chain longer than MariaDB's default recursion cap (1,000) and both walk strategies."""
    run = _base()[3].digest
    chain = [_product("c0", run)]
    for i in range(1, 2500):
        chain.append(_product(f"c{i}", run, [chain[-1].digest]))
    store.put(_base() + chain)
    tip, first = chain[-1].hex, chain[0].hex
    assert len(store.lineage(tip).depths) == 2500
    assert len(store.lineage(first, "descendants").depths) == 2500
    assert len(store.lineage(tip, depth=1500).depths) == 1501  # deeper than MariaDB's cap
    assert len(store.lineage(tip, depth=10).depths) == 11  # level by level
    assert store.lineage(tip, depth=10).depths[chain[-11].digest] == 10


def test_store_diff_and_verify_follow_the_design_api(tmp_path, sqlite_url):
    from provstore import tracker

    data = tmp_path / "f.bin"
    data.write_bytes(b"x")
    with tracker(sqlite_url) as t:
        product = t.track(data)
    with Store(sqlite_url) as store:
        assert store.diff(product).identical
        assert store.diff(product, product).identical
        report = store.verify(product)
        assert report.ok and [c.name for c in report.checks] == [
            "integrity",
            "data",
            "environment",
        ]
        data.write_bytes(b"y")
        assert not store.verify(product).ok


_graphs = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.just(n),
        # parents of node i among the 6 nodes before it: chains (one parent), trees, rejoins
        st.lists(st.lists(st.integers(1, 6), max_size=3), min_size=n, max_size=n),
        st.integers(0, n - 1),
        st.sampled_from(["ancestors", "descendants"]),
        st.one_of(st.none(), st.integers(0, 4), st.integers(0, 45)),
    )
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(graph=_graphs, tag=st.uuids())
@example(graph=(3, [[], [1], [1, 2]], 2, "ancestors", 1), tag="edge-in-last-level")
@example(graph=(3, [[], [1], [1, 2]], 0, "descendants", 1), tag="edge-in-last-level")
def test_bounded_lineage_is_the_trimmed_whole_lineage(store, graph, tag):
    """Any depth and direction: BFS depths, and every edge among the nodes returned."""
    n, back, root_index, direction, depth = graph
    run = _base()[3].digest
    nodes, edges = [], set()
    for i in range(n):
        parents = {i - k for k in back[i] if i - k >= 0}
        made = _product(f"{tag}-{i}", run, [nodes[j].digest for j in parents])
        edges |= {(i, j) for j in parents}
        nodes.append(made)
    store.put(_base() + nodes)
    step = {i: [] for i in range(n)}
    for child, parent in edges:
        a, b = (child, parent) if direction == "ancestors" else (parent, child)
        step[a].append(b)
    want = {root_index: 0}
    frontier = [root_index]
    while frontier and (depth is None or want[frontier[0]] < depth):
        following = []
        for a in frontier:
            for b in step[a]:
                if b not in want:
                    want[b] = want[a] + 1
                    following.append(b)
        frontier = following
    got = store.lineage(nodes[root_index].hex, direction, depth)
    assert got.depths == {nodes[i].digest: d for i, d in want.items()}
    kept = {(nodes[c].digest, nodes[p].digest) for c, p in edges if c in want and p in want}
    assert set(got.edges) == kept
    assert list(got.edges) == sorted(kept)  # sorted, as tuples of digests
