"""Lineage in a big DAG and along a long chain: Store.lineage beside the raw CTE and a naive BFS.

On each backend a store holds a DAG of 1M products (small: 10k, the store ``b_lookup`` built)
where every product has 1-3 parents among the ~50 before it, so depth grows about linearly
with the product index, plus a separate pure chain of 100,000 products (small: 2,000); see
:mod:`benchmarks._bigstore`.

Measured, time in ms and nodes returned: ``Store.lineage(x, "ancestors" | "descendants",
depth=d)`` for d = 10 and 1,000 in the DAG (ancestors of the newest product, descendants of the
oldest; also ancestors to d = 100 (small: 30) to show how the cost grows) and the whole chain
(d = its length).  Baselines in the same run, on a raw driver connection: the textbook
depth-limited recursive CTE over ``(node, depth)`` pairs (the SQL one would write first), the
floor for a depth-limited walk (one ``IN`` query per level, every edge fetched once, nothing
kept), and at d = 10 a naive Python BFS issuing one query per node.

In a DAG a node reached by paths of many lengths is expanded by the textbook CTE once per
length, so its work grows with nodes x depth instead of edges; how many pairs it derives is
counted exactly from the generated graph and reported beside it.  Queries are cancelled after
a timeout (the row then says so and its value is the time at which it was cancelled).
``Store.lineage`` walks by blocks of ids (see ``provstore.db.lineage._BlockWalk``) and is
checked to return exactly the nodes within the depth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks._bigstore import (
    BigStore,
    bigstore,
    deadline,
    is_timeout,
    limit_dbapi,
    limit_engine,
)
from benchmarks.harness import Context, Row, median, raw_connect

DESCRIPTION = "lineage at 1M products: ancestors/descendants to depth 10, 1,000, a 100k chain"
NAME = "lineage"
TARGET_MS = 100.0  # an ancestor query of depth 1,000
FAST_MS = 200.0  # baselines faster than this are repeated and the median reported
REPEAT = 3

# -- baselines ---------------------------------------------------------------------------------


def cte_sql(direction: str, depth: int | None, mark: str) -> str:
    """The textbook recursive CTE (with depth: over (node, depth) pairs), raw driver marks."""
    near, far = ("child", "parent") if direction == "ancestors" else ("parent", "child")
    if depth is None:
        return (
            f"WITH RECURSIVE reach(node) AS (SELECT {mark} UNION "
            f"SELECT e.{far} FROM product_parents e JOIN reach ON e.{near} = reach.node) "
            f"SELECT e.child, e.parent FROM product_parents e "
            f"JOIN reach ON e.{near} = reach.node"
        )
    return (
        f"WITH RECURSIVE reach(node, depth) AS (SELECT {mark}, 0 UNION "
        f"SELECT e.{far}, reach.depth + 1 FROM product_parents e "
        f"JOIN reach ON e.{near} = reach.node WHERE reach.depth < {int(depth)}) "
        f"SELECT DISTINCT e.child, e.parent FROM product_parents e "
        f"JOIN reach ON e.{near} = reach.node"
    )


def naive_bfs(raw: Any, root: Any, direction: str, depth: int) -> int:
    """One query per node; returns how many nodes lie within ``depth``."""
    return _bfs(raw, root, direction, depth, 1)


def level_bfs(raw: Any, root: Any, direction: str, depth: int) -> int:
    """The floor for a depth-limited walk: one ``IN`` query per level on the raw driver,
    every edge fetched once; returns how many nodes lie within ``depth``."""
    return _bfs(raw, root, direction, depth, 500)


def _bfs(raw: Any, root: Any, direction: str, depth: int, per_query: int) -> int:
    """Breadth-first to ``depth``, asking for the edges of ``per_query`` nodes at a time (one:
    ``= ?``; more: ``IN (...)``); returns how many nodes it reached."""
    near, far = ("child", "parent") if direction == "ancestors" else ("parent", "child")
    select = f"SELECT {far} FROM product_parents WHERE {near}"
    one = f"{select} = {raw.mark}"
    cursor = raw.conn.cursor()
    seen = {root}
    frontier = [root]
    for _ in range(depth):
        if not frontier:
            break
        nxt = []
        for start in range(0, len(frontier), per_query):
            part = frontier[start : start + per_query]
            marks = "" if per_query == 1 else ", ".join([raw.mark] * len(part))
            cursor.execute(f"{select} IN ({marks})" if marks else one, part)
            for (other,) in cursor.fetchall():
                if other not in seen:
                    seen.add(other)
                    nxt.append(other)
        frontier = nxt
    cursor.close()
    return len(seen)


# -- how much work the (node, depth) recursion does --------------------------------------------


def cte_pairs(parents: list[tuple[int, ...]], root: int, direction: str, depth: int,
              window: int) -> tuple[int, int, int]:  # fmt: skip
    """Exactly: nodes within ``depth``, distinct (node, depth) rows the CTE derives, and the
    edge rows its final join returns before DISTINCT (one per reached (node, depth) and edge).

    Path lengths are bit sets; in this DAG every edge spans at most ``window`` positions.
    """
    mask = (1 << (depth + 1)) - 1
    lengths: dict[int, int] = {root: 1}
    if direction == "ancestors":
        order = range(root, max(-1, root - window * depth - 1), -1)
        for j in order:
            bits = lengths.get(j)
            if bits:
                step = (bits << 1) & mask
                for p in parents[j]:
                    lengths[p] = lengths.get(p, 0) | step
        degree = {j: len(parents[j]) for j in lengths}
    else:
        end = min(len(parents), root + window * depth + 1)
        children: dict[int, list[int]] = {}
        for i in range(root + 1, end):
            for p in parents[i]:
                children.setdefault(p, []).append(i)
        for j in range(root, end):
            bits = lengths.get(j)
            if bits:
                step = (bits << 1) & mask
                for c in children.get(j, ()):
                    lengths[c] = lengths.get(c, 0) | step
        degree = {j: len(children.get(j, ())) for j in lengths}
    nodes = sum(1 for b in lengths.values() if b)
    pairs = sum(b.bit_count() for b in lengths.values())
    joined = sum(b.bit_count() * degree[j] for j, b in lengths.items())
    return nodes, pairs, joined


# -- measuring ---------------------------------------------------------------------------------


def _timed(
    func: Callable[[], Any], timeout: float, always: bool = False
) -> tuple[float, Any, bool]:
    """(ms, result, cancelled); fast calls (``always``: every call) repeated, the median taken.

    ``Store.lineage`` is always timed :data:`REPEAT` times: timed once, a deep walk's first
    call after the store was built (colder caches) decided its figure, and the server rows
    of two runs a day apart differed by a third where warm calls of both versions were
    within a few percent.  Baselines that may run for minutes (the textbook CTE) are timed
    once when slow.
    """
    times = []
    result = None
    for attempt in range(REPEAT):
        start = time.perf_counter()
        try:
            with deadline(timeout):
                result = func()
        except Exception as exc:
            if not is_timeout(exc):
                raise
            return (time.perf_counter() - start) * 1e3, None, True
        times.append((time.perf_counter() - start) * 1e3)
        if attempt == 0 and times[0] > FAST_MS and not always:
            break
    return median(times), result, False


def _seed(backend: str) -> str:
    """The root's parameter as a CTE's first row: PostgreSQL types it as the ids are."""
    return "%s::bigint" if backend == "postgresql" else "?" if backend == "sqlite" else "%s"


def _key(raw: Any, root: bytes) -> Any:
    """The id the index knows a product by."""
    cursor = raw.conn.cursor()
    try:
        cursor.execute(f"SELECT id FROM objects WHERE digest = {raw.mark}", (root,))
        return cursor.fetchone()[0]
    finally:
        cursor.close()


def _raw_cte(raw: Any, sql: str, root: Any) -> int:
    cursor = raw.conn.cursor()
    try:
        cursor.execute(sql, (root,))
        return len(cursor.fetchall())
    except Exception:
        if raw.backend == "postgresql":
            raw.conn.rollback()
        raise
    finally:
        cursor.close()


def _uses_jit(raw: Any, sql: str, root: bytes) -> bool:
    cursor = raw.conn.cursor()
    try:
        cursor.execute("EXPLAIN " + sql, (root,))
        return any(str(line[0]).startswith("JIT") for line in cursor.fetchall())
    finally:
        cursor.close()


def _cases(big: BigStore, small: bool) -> list[tuple[str, bytes, int, str, int]]:
    """(label, root, root index or -1 for the chain, direction, depth)."""
    dag, chain = big.dag, big.chain
    last = len(dag) - 1
    growth = 30 if small else 100  # deep enough to show the growth, still finishing
    cases = [
        ("DAG", dag[last], last, "ancestors", 10),
        ("DAG", dag[0], 0, "descendants", 10),
        ("DAG", dag[last], last, "ancestors", growth),
        ("DAG", dag[last], last, "ancestors", 1000),
        ("DAG", dag[0], 0, "descendants", 1000),
        ("chain", chain[-1], -1, "ancestors", len(chain)),
        ("chain", chain[0], -1, "descendants", len(chain)),
    ]
    return cases


def run(ctx: Context) -> list[Row]:
    from provstore.store import Store

    size = ctx.pick(10_000, 1_000_000)  # small: the lookup benchmark's store, no second build
    chain = ctx.pick(2_000, 100_000)
    timeout = ctx.pick(0.5, 60.0)
    rows: list[Row] = []
    for backend in ctx.backends:
        big = bigstore(ctx, backend, size, chain)
        parents = big.plan.dag_parents[: big.dag_count]
        store = Store(big.url)
        raw = raw_connect(backend, big.url)
        limit_engine(store.engine, backend, timeout)
        limit_dbapi(backend, raw.conn, timeout)
        try:
            rows.extend(_backend_rows(ctx, big, store, raw, parents, timeout))
        finally:
            raw.close()
            store.close()
    return rows


def _backend_rows(ctx: Context, big: BigStore, store: Any, raw: Any,
                  parents: list[tuple[int, ...]], timeout: float) -> list[Row]:  # fmt: skip
    rows: list[Row] = []
    for graph, root, index, direction, depth in _cases(big, ctx.small):
        if graph == "DAG":
            want, pairs, joined = cte_pairs(parents, index, direction, depth, 50)
            work = f"the CTE derives {pairs:,} (node, depth) rows, joins {joined:,} edge rows"
        else:
            want, work = min(depth + 1, len(big.chain)), "a chain repeats no node"
        targeted = graph == "DAG" and direction == "ancestors" and depth == 1000
        case = _Case(big, f"{graph} {direction} depth {depth:,}", root, direction, depth, want,
                     work, timeout, targeted)  # fmt: skip
        rows.extend(case.rows(store, raw))
    return rows


class _Case:
    """One lineage query, measured through Store, the raw driver, a naive BFS, the proposal."""

    def __init__(self, big: BigStore, what: str, root: bytes, direction: str, depth: int,
                 want: int, work: str, timeout: float, targeted: bool) -> None:  # fmt: skip
        self.big, self.what, self.root = big, what, root
        self.direction, self.depth = direction, depth
        self.want, self.work, self.timeout, self.targeted = want, work, timeout, targeted

    def lineage(self, store: Any) -> Any:
        return store.lineage(self.root.hex(), self.direction, self.depth)

    def raw_cte(self, raw: Any) -> int:
        return _raw_cte(raw, cte_sql(self.direction, self.depth, _seed(raw.backend)), self.key)

    def naive(self, raw: Any) -> int:
        return naive_bfs(raw, self.key, self.direction, self.depth)

    def floor(self, raw: Any) -> int:
        return level_bfs(raw, self.key, self.direction, self.depth)

    def rows(self, store: Any, raw: Any) -> list[Row]:
        self.key = _key(raw, self.root)  # the index links products by id (schema 4)
        backend, what, timeout = self.big.backend, self.what, self.timeout
        target = f"<= {TARGET_MS:g} ms" if self.targeted else ""
        rows = []
        ms, got, cancelled = _timed(lambda: self.lineage(store), timeout, always=True)
        if cancelled:
            raw_ms, raw_label = None, "textbook CTE, raw driver: not run"
            note = f"cancelled after {ms / 1e3:.1f} s (timeout); "
        else:
            raw_ms, _, raw_cancelled = _timed(lambda: self.raw_cte(raw), timeout)
            raw_label = "textbook CTE, raw driver" + (" (cancelled)" if raw_cancelled else "")
            note = f"{len(got.depths):,} nodes, {len(got.edges):,} edges returned; "
        note += f"{self.want:,} nodes within depth; {self.work}; {self.big.describe()}"
        if backend == "postgresql" and _uses_jit(
            raw, cte_sql(self.direction, self.depth, _seed(backend)), self.key
        ):
            note += "; PostgreSQL plans this query with JIT compilation"
        if got is not None and len(got.depths) != self.want:
            note = f"WRONG: {len(got.depths):,} nodes returned, {self.want:,} expected; " + note
        met = (not cancelled and ms <= TARGET_MS) if self.targeted else None
        rows.append(Row(NAME, f"Store.lineage {what}", ms, "ms", backend, raw_ms, raw_label,
                        target, met, note))  # fmt: skip
        if self.depth <= 10:
            n_ms, n_nodes, n_cancelled = _timed(lambda: self.naive(raw), timeout)
            n_note = "cancelled" if n_cancelled else f"{n_nodes:,} nodes"
            n_note = f"one query per node on a raw driver connection; {n_note}"
            rows.append(Row(NAME, f"baseline: naive BFS {what}", n_ms, "ms", backend,
                            note=n_note))  # fmt: skip
        if self.what.startswith("DAG") and self.depth > 10:
            f_ms, f_nodes, f_cancelled = _timed(lambda: self.floor(raw), 10 * timeout)
            f_note = "cancelled" if f_cancelled else f"{f_nodes:,} nodes"
            f_note = f"one IN query per level, raw driver, no edges kept; {f_note}"
            rows.append(Row(NAME, f"floor: level-by-level BFS {what}", f_ms, "ms", backend,
                            note=f_note))  # fmt: skip
        return rows
