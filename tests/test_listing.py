"""Listing products without a filter reads run start by run start: the same pages, in the same
order, as the one sorted query, on every backend (runs sharing a start time included)."""

from __future__ import annotations

from provstore.core.objects import Environment, LibrarySet, Product, Run, Variables, seal
from provstore.db import listing
from provstore.db.listing import ProductFilter
from provstore.store import Store


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


def _pages(store: Store, where: ProductFilter, size: int, fast: bool) -> list[list[bytes]]:
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
                fast = _pages(store, where, size, True)
                assert fast == _pages(store, where, size, False), (where, size)
        everything = [d for page in _pages(store, ProductFilter(), 50, True) for d in page]
        assert len(everything) == len(set(everything)) == 2 + 3 + 4 + 2 + 3 + 4 + 2 + 4
        assert store.products(limit=4) == store.products(where=ProductFilter(), limit=4)
