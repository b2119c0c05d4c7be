"""Listing every product walks runs newest first; it must agree with the one sorted query."""

from __future__ import annotations

import random

from provstore import open_store, tracker
from provstore.core.objects import Product, Run, seal
from provstore.db import dialects, listing
from provstore.db.listing import ProductFilter


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
                    assert _pages(conn, where, limit, listing._by_runs) == expected, (where, limit)
                assert [r.cursor for r in listing.products(conn, where, None, 10)] == [
                    r.cursor for r in everything[:10]
                ]
