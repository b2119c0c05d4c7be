"""The pages of ``provstore serve`` at 1M products: server time per page beside the direct query.

On each backend the store of :mod:`benchmarks._bigstore` (1M products, small: 10k; one run per
5,000 products) is served by the web application in this process: each request is one call of
the ASGI application (routing, the store's queries, the template, the security headers; no
socket and no browser), timed from the request to the last body byte.  The baseline for each
page is the library calls it makes, made directly on the same store handle: what a script
asking the same question would pay.  The difference is the web layer's own cost.

Pages: the runs list (newest 50, and filtered by status), a run (its products paged), a
product (parents, children, its run), the lineage page and its graph data (ancestors of the
newest product to depth 3, and to depth 30, a neighbourhood of hundreds of products that the
page folds to its node budget), an environment, the comparison of two, the search box (a digest
prefix) and the JSON API's ``/api/log``.  Reported: p50 (the target: under 100 ms) and p95.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from benchmarks._bigstore import bigstore
from benchmarks.harness import Context, Row, percentile

DESCRIPTION = "provstore serve at 1M products: each page's server time vs the direct query"
NAME = "serve"
TARGET_MS = 100.0


def _asgi_get(app: Any, loop: asyncio.AbstractEventLoop, path: str) -> tuple[int, bytes]:
    """One GET through the ASGI application; its status and body."""
    route, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": route, "raw_path": route.encode(), "root_path": "",
        "query_string": query.encode(), "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8765),
    }  # fmt: skip
    status = 0
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    loop.run_until_complete(app(scope, receive, send))
    return status, b"".join(body)


def _cases(store: Any, big: Any) -> list[tuple[str, str, Callable[[], Any]]]:
    """(page, path, the direct library calls that answer the same question)."""
    from provstore.db.listing import ProductFilter, RunFilter

    newest = big.dag[-1].hex()
    middle = big.dag[len(big.dag) // 2]
    product = store.get(middle)
    run = product.obj.run
    env = store.environment_of(run).hex
    first_run = store.get(big.dag[0]).obj.run

    def run_direct() -> Any:
        item = store.get(run)
        ends = [store.get(d) for d in store.run_ends([run])]
        store.labels([d for end in ends for d in end.obj.inputs])
        store.products(where=ProductFilter(run=run), limit=50)
        return store.get_many([item.obj.variables, item.obj.environment])

    def product_direct() -> Any:
        item = store.get(middle)
        kids = store.lineage(middle, "descendants", 1)
        store.labels([*item.obj.parents, *kids.depths])
        return store.get_many([item.obj.run])

    def lineage_direct(depth: int = 3) -> Any:
        found = store.lineage(newest, "ancestors", depth)
        return store.labels(found.depths)

    wide = len(store.lineage(newest, "ancestors", 30).depths)

    def env_direct() -> Any:
        item = store.environment_of(env)
        return store.get_many([item.obj.libraryset])

    return [
        ("runs", "/runs", lambda: store.runs(50)),
        ("runs, status=succeeded", "/runs?status=succeeded",
         lambda: store.runs(50, where=RunFilter(status="succeeded"))),
        ("run (50 of its products)", f"/runs/{run.hex()}", run_direct),
        ("product", f"/products/{middle.hex()}", product_direct),
        ("lineage page, depth 3", f"/lineage/{newest}?depth=3", lineage_direct),
        ("lineage graph data, depth 3", f"/api/graph/{newest}?depth=3", lineage_direct),
        (f"lineage page, depth 30 ({wide:,} products, budget 300)",
         f"/lineage/{newest}?depth=30", lambda: lineage_direct(30)),
        ("lineage graph data, depth 30", f"/api/graph/{newest}?depth=30",
         lambda: lineage_direct(30)),
        ("environment", f"/environments/{env}", env_direct),
        ("compare two runs", f"/compare?a={first_run.hex()}&b={run.hex()}",
         lambda: store.diff(first_run, run)),
        ("search (12-char prefix)", f"/search?q={middle.hex()[:12]}",
         lambda: store.get(store.resolve(middle.hex()[:12]))),
        ("products list", "/products", lambda: store.products(limit=50)),
        ("/api/log", "/api/log", lambda: store.runs(20)),
    ]  # fmt: skip


def _time(action: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        out.append((time.perf_counter() - started) * 1000)
    return out


def run(ctx: Context) -> list[Row]:
    from provstore.api import Store
    from provstore.web.app import create_app

    size = ctx.pick(10_000, 1_000_000)
    repeat = ctx.pick(15, 40)
    rows: list[Row] = []
    for backend in ctx.backends:
        big = bigstore(ctx, backend, size)
        loop = asyncio.new_event_loop()
        with Store(big.url, create=False) as store:
            app = create_app(store)
            for page, path, direct in _cases(store, big):
                status, _ = _asgi_get(app, loop, path)  # warm: templates compiled, caches
                assert status in (200, 303), (path, status)
                direct()
                served: list[float] = []
                plain: list[float] = []
                for _ in range(repeat // 5):  # interleaved, so noise hits both alike
                    served += _time(lambda a=app, lp=loop, p=path: _asgi_get(a, lp, p), 5)
                    plain += _time(direct, 5)
                p50, base = percentile(served, 50), percentile(plain, 50)
                p95, base95 = percentile(served, 95), percentile(plain, 95)
                note = (f"{len(big.dag):,} products; {len(served)} requests, p95 {p95:.1f} ms; "
                        f"direct p95 {base95:.1f} ms")  # fmt: skip
                rows.append(Row(NAME, f"{page} p50", p50, "ms", backend, base,
                                "the same library calls, direct", f"< {TARGET_MS:g} ms p50",
                                p50 < TARGET_MS, note))  # fmt: skip
        loop.close()
    return rows
