"""Listing products without a filter reads run start by run start: the same pages, in the same
order, as the one sorted query, on every backend (runs sharing a start time, runs with no
products, more starts than one query reads, and source products included)."""

from __future__ import annotations

import random

from provstore import open_store, tracker
from provstore.core.objects import Environment, LibrarySet, Product, Run, Variables, seal
from provstore.db import dialects, listing
from provstore.db.listing import ProductFilter
from provstore.store import Store


def _fill(store, env: bytes, variables: bytes) -> None:
    """Runs sharing start instants, runs with no products, big runs and source products."""
    rng = random.Random(7)
    items = []
    for i in range(150):
        start = rng.choice([10, 20, 20, 30, 40, 40, 40]) * 1_000 + rng.randrange(3)
        run = seal(Run(env, variables, "h", "u", ("x",), "/", "/py", i, start, None, f"r{i}"))
        items.append(run)
        for j in range(rng.choice([0, 0, 1, 2, 3, 9])):
            items.append(seal(Product(f"p{i}-{j}", None, {}, None, None, None, run.digest, ())))
    items += [seal(Product(f"source-{k}", None, {}, None, None, None, None, ())) for k in range(7)]
    store.put(items)


def _pages(conn, where: ProductFilter, limit: int, walk) -> list[bytes]:
    out, after = [], None
    while True:
        page = walk(conn, where, after, limit)
        out += [row.digest for row in page]
        if len(page) < limit:
            return out
        after = page[-1].cursor


def _sorted_query(conn, where, after, limit):
    query = listing.products_query(dialects.of(conn), where, after, limit)
    return [listing.ProductRow.from_row(row) for row in conn.execute(query)]


def test_listing_by_runs_equals_the_sorted_query(backend_url):
    with tracker(backend_url, git=False) as t:
        pass
    with open_store(backend_url) as store:
        first = store.get(t.run).obj
        _fill(store, first.environment, first.variables)
        with store.engine.connect() as conn:
            filters = (
                ProductFilter(),
                ProductFilter(since_ns=20_000),
                ProductFilter(until_ns=40_000),
                ProductFilter(since_ns=20_001, until_ns=40_001),
                ProductFilter(name="*"),
            )
            for where in filters:
                everything = _sorted_query(conn, where, None, None)
                expected = [row.digest for row in everything]
                assert expected, where
                for limit in (3, 7, 50, 1000):
                    assert _pages(conn, where, limit, listing._by_start) == expected, (
                        where,
                        limit,
                    )
                assert [r.cursor for r in listing.products(conn, where, None, 10)] == [
                    r.cursor for r in everything[:10]
                ]


def _store(url: str) -> Store:
    libs = seal(LibrarySet((("pkg", "1.0"),)))
    env = seal(Environment("cpython", "3.11", "Linux", "6", "x86_64", "glibc", libs.digest,
                           {}, ()))  # fmt: skip
    variables = seal(Variables({}, ()))
    items = [libs, env, variables]
    starts = [100, 200, 200, 300, 300, 300, 400]  # equal starts interleave by product digest
    for k, started in enumerate(starts):
        run = seal(Run(env.digest, variables.digest, "h", "u", ("x", str(k)), "/", "py", k,
                       started, None, f"r{k}"))  # fmt: skip
        items.append(run)
        for i in range(k % 3 + 2):
            items.append(seal(Product(f"p{k}-{i}", None, {}, None, None, None, run.digest, ())))
    items += [seal(Product(f"source-{i}", None, {}, None, None, None, None, ())) for i in range(4)]
    store = Store(url)
    store.put(items)
    return store


def _store_pages(store: Store, where: ProductFilter, size: int, fast: bool) -> list[list[bytes]]:
    pages, after = [], None
    with store._readers.connection() as conn:
        while True:
            if fast:
                rows = listing._by_start(conn, where, after, size)
            else:
                query = listing.products_query(listing.dialects.of(conn), where, after, size)
                rows = [listing.ProductRow.from_row(row) for row in conn.execute(query)]
            pages.append([row.digest for row in rows])
            if len(rows) < size:
                return pages
            after = rows[-1].cursor


def test_pages_by_start_equal_the_sorted_query(backend_url):
    with _store(backend_url) as store:
        for where in (ProductFilter(), ProductFilter(since_ns=200),
                      ProductFilter(since_ns=150, until_ns=350)):  # fmt: skip
            for size in (1, 2, 3, 5, 50):
                fast = _store_pages(store, where, size, True)
                assert fast == _store_pages(store, where, size, False), (where, size)
        everything = [d for page in _store_pages(store, ProductFilter(), 50, True) for d in page]
        assert len(everything) == len(set(everything)) == 2 + 3 + 4 + 2 + 3 + 4 + 2 + 4
        assert store.products(limit=4) == store.products(where=ProductFilter(), limit=4)
