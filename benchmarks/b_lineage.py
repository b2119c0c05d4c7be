"""Lineage in a big DAG and along a long chain: Store.lineage beside the raw CTE and a naive BFS.

On each backend a store holds a DAG of 1M products (small: 10k, the store ``b_lookup`` built)
where every product has 1-3 parents among the ~50 before it, so depth grows about linearly
with the product index, plus a separate pure chain of 100,000 products (small: 2,000); see
:mod:`benchmarks._bigstore`.

Measured, time in ms and nodes returned: ``Store.lineage(x, "ancestors" | "descendants",
depth=d)`` for d = 10 and 1,000 in the DAG (ancestors of the newest product, descendants of the
oldest; also ancestors to d = 100 (small: 30) to show how the cost grows) and the whole chain
(d = its length).  Baselines in the same run: the very SQL of ``Store._reachable_edges`` on a
raw driver connection, and at d = 10 a naive Python BFS issuing one query per node.

Store's depth-limited query recurses over ``(node, depth)`` pairs with ``UNION``: in a DAG a
node reached by paths of many lengths is expanded once per length, so the work grows with
nodes x depth instead of edges.  How many pairs the query has to derive is counted exactly from
the generated graph and reported beside it; queries are cancelled after a timeout (the row
then says so and its value is the time at which it was cancelled).  A proposed replacement of
``_reachable_edges`` (:class:`ProposedStore`) is measured on the same cases and checked to
return exactly what Store returns (where Store is right).
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
    raw_connect,
)
from benchmarks.harness import Context, Row, median

DESCRIPTION = "lineage at 1M products: ancestors/descendants to depth 10, 1,000, a 100k chain"
NAME = "lineage"
TARGET_MS = 100.0  # an ancestor query of depth 1,000
FAST_MS = 200.0  # cases faster than this are repeated and the median reported
REPEAT = 3

try:
    from provstore.store import Store as _StoreBase
except ImportError:  # pragma: no cover - provstore is always importable in the suite
    _StoreBase = object  # type: ignore[assignment,misc]


# -- the proposed _reachable_edges -------------------------------------------------------------


class ProposedStore(_StoreBase):  # type: ignore[misc,valid-type]
    """Store with the proposed ``_reachable_edges`` (everything else unchanged).

    * The recursion carries edges, ``reach(child, parent[, depth])``, so there is no final
      join of ``product_parents`` against the reached nodes (which SQLite and PostgreSQL run
      as a scan of the whole table: O(store) even for depth 1).
    * A depth limit is met level by level from the exact BFS frontier, deduplicated in
      Python, each level one indexed ``IN`` query (every edge fetched once); while a round
      meets no node seen before (a chain, a tree) the next round covers twice as many levels
      in one recursive query (up to 512), so a 100k chain costs ~200 round trips, not 100k.
      Nowhere does a query enumerate (node, depth) pairs across many path lengths.
    * MariaDB's ``max_recursive_iterations`` (default 1,000, beyond which MariaDB silently
      stops recursing) is lifted for the unbounded query, like MySQL's limit.
    """

    MAX_WINDOW = 512  # below MariaDB's default max_recursive_iterations (1,000)

    def _reachable_edges(
        self, root: bytes, direction: str, depth: int | None
    ) -> list[tuple[bytes, bytes]]:
        from sqlalchemy import bindparam, text

        near, far = ("child", "parent") if direction == "ancestors" else ("parent", "child")
        with self.engine.connect() as conn:
            if depth is None:
                self._prepare_recursion(conn)
                sql = (
                    f"WITH RECURSIVE reach(child, parent) AS ("
                    f"SELECT child, parent FROM product_parents WHERE {near} = :root UNION "
                    f"SELECT e.child, e.parent FROM product_parents e "
                    f"JOIN reach ON e.{near} = reach.{far}) SELECT child, parent FROM reach"
                )
                rows = conn.execute(text(sql), {"root": root}).all()
                return [(bytes(c), bytes(p)) for c, p in rows]
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            level_sql = f"SELECT child, parent FROM product_parents WHERE {near} IN ("
            ancestors = direction == "ancestors"
            edges: set[tuple[bytes, bytes]] = set()
            out: dict[bytes, list[bytes]] = {}
            seen = {root}
            frontier = [root]
            level, window = 0, 2  # depth 1 (root and its neighbours' links): one query
            while frontier and level <= depth:
                # fetch the edges out of the nodes at levels level .. level + span - 1
                span = min(window, depth + 1 - level)
                if span > 1:
                    query = text(
                        f"WITH RECURSIVE reach(child, parent, depth) AS ("
                        f"SELECT child, parent, 1 FROM product_parents WHERE {near} IN :nodes "
                        f"UNION SELECT e.child, e.parent, reach.depth + 1 "
                        f"FROM product_parents e JOIN reach ON e.{near} = reach.{far} "
                        f"WHERE reach.depth < {span}) SELECT DISTINCT child, parent FROM reach"
                    ).bindparams(bindparam("nodes", expanding=True))
                fetched: set[tuple[bytes, bytes]] = set()
                for start in range(0, len(frontier), 500):
                    part = frontier[start : start + 500]
                    if span == 1:  # the hot path: plain driver SQL, no statement compiling
                        marks = ", ".join([mark] * len(part))
                        result = conn.exec_driver_sql(level_sql + marks + ")", tuple(part))
                    else:
                        result = conn.execute(query, {"nodes": part})
                    fetched.update((bytes(c), bytes(p)) for c, p in result.all())
                for edge in fetched - edges:
                    src, dst = edge if ancestors else (edge[1], edge[0])
                    out.setdefault(src, []).append(dst)
                edges |= fetched
                # the exact BFS levels over what has been fetched
                rejoined = False
                for _ in range(span):
                    nxt = []
                    for node in frontier:
                        for n in out.pop(node, ()):
                            if n in seen:
                                rejoined = True
                            else:
                                seen.add(n)
                                nxt.append(n)
                    frontier = nxt
                level += span
                window = 1 if rejoined else min(2 * window, self.MAX_WINDOW)
        return list(edges)

    @staticmethod
    def _prepare_recursion(conn: Any) -> None:
        if conn.dialect.name in ("mysql", "mariadb"):
            if getattr(conn.dialect, "is_mariadb", False):
                conn.exec_driver_sql("SET SESSION max_recursive_iterations = 4294967295")
            else:
                conn.exec_driver_sql("SET SESSION cte_max_recursion_depth = 4294967295")


# -- baselines ---------------------------------------------------------------------------------


def cte_sql(direction: str, depth: int | None, mark: str) -> str:
    """The SQL of ``Store._reachable_edges`` (copied), with the driver's parameter mark."""
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


def naive_bfs(raw: Any, root: bytes, direction: str, depth: int) -> int:
    """One query per node; returns how many nodes lie within ``depth``."""
    near, far = ("child", "parent") if direction == "ancestors" else ("parent", "child")
    sql = f"SELECT {far} FROM product_parents WHERE {near} = {raw.mark}"
    cursor = raw.conn.cursor()
    seen = {root}
    frontier = [root]
    for _ in range(depth):
        nxt = []
        for node in frontier:
            cursor.execute(sql, (node,))
            for (other,) in cursor.fetchall():
                other = bytes(other)
                if other not in seen:
                    seen.add(other)
                    nxt.append(other)
        frontier = nxt
    cursor.close()
    return len(seen)


def level_bfs(raw: Any, root: bytes, direction: str, depth: int) -> int:
    """The floor for a depth-limited walk: one ``IN`` query per level on the raw driver,
    every edge fetched once; returns how many nodes lie within ``depth``."""
    near, far = ("child", "parent") if direction == "ancestors" else ("parent", "child")
    cursor = raw.conn.cursor()
    seen = {root}
    frontier = [root]
    for _ in range(depth):
        if not frontier:
            break
        nxt = []
        for start in range(0, len(frontier), 500):
            part = frontier[start : start + 500]
            marks = ", ".join([raw.mark] * len(part))
            cursor.execute(f"SELECT {far} FROM product_parents WHERE {near} IN ({marks})", part)
            for (other,) in cursor.fetchall():
                other = bytes(other)
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


def _timed(func: Callable[[], Any], timeout: float) -> tuple[float, Any, bool]:
    """(ms, result, cancelled); fast calls are repeated and the median taken."""
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
        if attempt == 0 and times[0] > FAST_MS:
            break
    return median(times), result, False


def _raw_cte(raw: Any, sql: str, root: bytes) -> int:
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
        proposed = ProposedStore(big.url)
        raw = raw_connect(backend, big.url)
        limit_engine(store.engine, backend, timeout)
        limit_engine(proposed.engine, backend, timeout)
        limit_dbapi(backend, raw.conn, timeout)
        try:
            rows.extend(_backend_rows(ctx, big, store, proposed, raw, parents, timeout))
        finally:
            raw.close()
            store.close()
            proposed.close()
    return rows


def _backend_rows(ctx: Context, big: BigStore, store: Any, proposed: Any, raw: Any,
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
        rows.extend(case.rows(store, proposed, raw))
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
        return _raw_cte(raw, cte_sql(self.direction, self.depth, raw.mark), self.root)

    def naive(self, raw: Any) -> int:
        return naive_bfs(raw, self.root, self.direction, self.depth)

    def floor(self, raw: Any) -> int:
        return level_bfs(raw, self.root, self.direction, self.depth)

    def rows(self, store: Any, proposed: Any, raw: Any) -> list[Row]:
        backend, what, timeout = self.big.backend, self.what, self.timeout
        target = f"<= {TARGET_MS:g} ms" if self.targeted else ""
        rows = []
        ms, got, cancelled = _timed(lambda: self.lineage(store), timeout)
        if cancelled:
            raw_ms, raw_label = None, "same CTE, raw driver: not run"
            note = f"cancelled after {ms / 1e3:.1f} s (timeout); "
        else:
            raw_ms, _, raw_cancelled = _timed(lambda: self.raw_cte(raw), timeout)
            raw_label = "same CTE, raw driver" + (" (cancelled)" if raw_cancelled else "")
            note = f"{len(got.depths):,} nodes, {len(got.edges):,} edges returned; "
        note += f"{self.want:,} nodes within depth; {self.work}; {self.big.describe()}"
        if backend == "postgresql" and _uses_jit(raw, cte_sql(self.direction, self.depth, "%s"),
                                                 self.root):  # fmt: skip
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
        # the proposal does not explode, and on a server its timeout is per round anyway
        p_ms, p_got, p_cancelled = _timed(lambda: self.lineage(proposed), 10 * timeout)
        if p_cancelled:
            p_note = f"cancelled after {p_ms / 1e3:.1f} s (timeout)"
        else:
            p_note = f"{len(p_got.depths):,} nodes, {len(p_got.edges):,} edges returned"
            if got is not None and (p_got.depths, p_got.edges) != (got.depths, got.edges):
                p_note += "; differs from Store.lineage"
            if len(p_got.depths) != self.want:
                p_note = f"WRONG: {self.want:,} nodes expected; " + p_note
        p_met = (not p_cancelled and p_ms <= TARGET_MS) if self.targeted else None
        rows.append(Row(NAME, f"proposed _reachable_edges: {what}", p_ms, "ms", backend,
                        ms, "Store.lineage" + (" (cancelled)" if cancelled else ""), target,
                        p_met, p_note))  # fmt: skip
        return rows
