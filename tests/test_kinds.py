"""The kind registry drives everything derived per kind: index rows, PROV records, stats.

A new kind in ``provstore.core.objects.KINDS`` without an entry in ``ROWS``
(provstore/db/layout.py, which ``INDEXERS`` follows) or ``PROV_MAPPING``
(provstore/exchange/prov.py) fails here, with the names of what to add
(docs/architecture.rst walks through adding a kind).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provstore import Store
from provstore.core.objects import (
    KINDS,
    CondaSet,
    Environment,
    ImportSet,
    LibrarySet,
    Product,
    Run,
    RunEnd,
    Sealed,
    Signature,
    Variables,
    seal,
)
from provstore.db.index import INDEX_TABLES, INDEXERS, index_rows
from provstore.exchange.prov import PROV_MAPPING, to_prov_json


@pytest.fixture
def sample_objects() -> list[Sealed]:
    """One object of every kind, each referring to the ones before it."""
    return _samples()


def _samples() -> list[Sealed]:
    libs = seal(LibrarySet((("numpy", "2.0.0"),)))
    conda = seal(CondaSet((("mkl", "2024.0", "h1_0", "conda-forge"),), ()))
    env = seal(Environment("cpython", "3.11.7", "Linux", "6.1", "x86_64", "", libs.digest, {}, (),
                           conda=conda.digest, gpu={"driver": "535.1"}))  # fmt: skip
    variables = seal(Variables({"HOME": "/root"}, ()))
    run = seal(Run(env.digest, variables.digest, "node1", "alice", ("x.py",), "/w", "/py", 1, 5,
                   None, "train"))  # fmt: skip
    used = seal(ImportSet((("numpy", "2.0.0"),)))
    end = seal(RunEnd(run.digest, "succeeded", 6, None, 0, (), imported=used.digest))
    product = seal(Product("model", "1", {}, None, None, None, run.digest, ()))
    signature = seal(Signature((product.digest,), bytes(32), 6, "ed25519", bytes(32), "lab", 7,
                               bytes(64)))  # fmt: skip
    items = [libs, conda, env, variables, run, used, end, product, signature]
    assert {item.kind for item in items} == set(KINDS), "add an example of the new kind here"
    return items


def test_every_kind_declares_its_index_rows():
    assert set(INDEXERS) == set(KINDS), "add the kind to ROWS in provstore/db/layout.py"


def test_every_kind_declares_its_prov_records():
    assert set(PROV_MAPPING) == set(KINDS), (
        "add the kind to PROV_MAPPING in provstore/exchange/prov.py"
    )


def test_index_rows_land_in_index_tables(sample_objects):
    for item in sample_objects:
        for table, row in index_rows(item):
            assert table in INDEX_TABLES
            assert len(row) == len(table.columns)


def test_every_kind_appears_in_a_prov_document(sample_objects):
    doc = to_prov_json({item.digest: item for item in sample_objects})
    ids = {key for section in ("entity", "activity") for key in doc.get(section, {})}
    for item in sample_objects:
        if item.kind != "runend":  # an end adds to its run's activity
            assert f"provstore:{item.hex}" in ids, item.kind


def test_stats_counts_every_registered_kind(backend_url, sample_objects):
    with Store(backend_url) as store:
        assert set(store.stats()["objects"]) == set(KINDS)
        store.put(sample_objects)
        counts = store.stats()["objects"]
    assert counts == dict.fromkeys(KINDS, 1)


def test_a_products_body_is_built_in_key_order_as_the_general_body():
    from provstore.core import encoding
    from provstore.core.objects import Product, _Base

    product = Product("n", "v", {"b": 1, "a": [2]}, b"\x01" * 32, 3, "/p", b"\x02" * 32, ())
    assert list(product.body()) == sorted(_Base.body(product))
    assert product.body() == _Base.body(product)
    assert product.encoded() == encoding.canonical(_Base.body(product))


def test_the_fast_resolutions_of_big_tables_are_the_general_one():
    from provstore.db import layout

    ids = {bytes([i]) * 32: 100 - i for i in range(5)}
    a, b, c, d, e = ids
    rows = {
        "products": [(a, "x", None, None, None, e, None), (b, "y", "1", c, 4, None, "/p")],
        "product_parents": [(a, b), (a, c), (d, b)],
    }
    for table, table_rows in rows.items():
        assert layout.resolved(table, table_rows, ids) == layout._resolved(table, table_rows, ids)


def test_known_ids_are_not_looked_up_again():
    """``layout.write`` takes committed ids from ``known`` and reports the ones it looked up."""
    from provstore.core.objects import Product, seal
    from provstore.db import layout

    class Recorder:
        def __init__(self) -> None:
            self.ids_of: dict[bytes, int] = {}
            self.asked: list[set[bytes]] = []
            self.rows: dict[str, list[tuple[object, ...]]] = {}

        def put_objects(self, rows):
            for row in rows:
                self.ids_of.setdefault(row[0], len(self.ids_of) + 1)
            return len(rows)

        def placed(self):
            return {}  # as a writer that cannot tell: every id is looked up or known

        def ids(self, digests):
            self.asked.append(set(digests))
            return {d: self.ids_of[d] for d in digests if d in self.ids_of}

        def intern(self, digests):
            for d in digests:
                self.ids_of.setdefault(d, len(self.ids_of) + 1)

        def insert(self, table, rows):
            self.rows.setdefault(table, []).extend(rows)

    run = b"\x07" * 32
    first = seal(Product("a", None, {}, None, None, None, run, ()))
    second = seal(Product("b", None, {}, None, None, None, run, (first.digest,)))
    db, known = Recorder(), {}
    learned: dict[bytes, int] = {}
    layout.write(db, [first], known, learned)
    assert set(learned) == {first.digest, run}  # the run was interned
    layout.remember(known, learned)
    learned = {}
    layout.write(db, [second], known, learned)
    assert db.asked[-1] == {second.digest}  # the parent and the run came from `known`
    assert db.rows["product_parents"] == [(db.ids_of[second.digest], db.ids_of[first.digest])]


def _products_among(samples: list[Sealed], n: int) -> list[Sealed]:
    """Products whose parents are products before them, or digests never stored."""
    made: list[Sealed] = []
    for i in range(n):
        parents = {made[j].digest for j in (i - 1, i // 2, i // 3) if 0 <= j < len(made)}
        parents |= {bytes([i % 7]) * 32} if i % 4 == 0 else set()
        run = samples[4].digest if i % 3 else None
        made.append(seal(Product(f"p{i % 11}", None, {}, None, i % 2 or None, None, run,
                                 tuple(sorted(parents)))))  # fmt: skip
    return made


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 29), max_size=40))
def test_columns_and_their_key_order_are_the_rows_and_theirs(picks):
    """``columns_of`` holds ``rows_of``'s rows; ``pack`` orders them as ``write_rows`` sorts them.

    Any mix of kinds, objects twice, parents in the batch or not: objects go in in the same
    order whichever form a writer takes, so they get the same ids.
    """
    from provstore.db import layout

    samples = _samples()
    pool = samples + _products_among(samples, 21)
    items = [pool[i] for i in picks]
    objects, rows = layout.rows_of(items)
    columns = layout.columns_of(items)
    assert [list(c) for c in zip(*objects, strict=True)] == (columns[0] if objects else [])
    for table, table_rows in rows.items():
        transposed = [list(c) for c in zip(*table_rows, strict=True)]
        assert transposed == (columns[1][table] if table_rows else [])
    packed_objects, packed = layout.pack(columns)
    assert list(zip(*packed_objects, strict=True)) == layout.by_digest(objects)
    assert set(packed) == {table for table, table_rows in rows.items() if table_rows}
    for table, table_columns in packed.items():
        in_order = sorted(rows[table], key=lambda row: row[0])  # stable: an object's rows kept
        assert list(zip(*table_columns, strict=True)) == in_order
    more = layout.columns_of(())
    for start in range(0, len(items), 7):  # made in pieces, as a tracker stages a batch
        layout.extend(more, layout.columns_of(items[start : start + 7]))
    assert layout.pack(more) == layout.pack(columns)
