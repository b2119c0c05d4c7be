"""Lineage walks over the ``product_parents`` index: breadth first, fetching by blocks of ids.

:meth:`provstore.store.Store.lineage` uses these; they take an open connection and return
plain digests, so they know nothing of objects or of how the store holds connections.  The
index links products by their integer ids (schema 4): :func:`walk` maps the root to its id,
walks ids, and maps every node it returns back to its digest once, at the end.  Queries
name thousands of ids in their text (:func:`provstore.db.dialects.sql_ints`), never as one
driver parameter each.
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, compress, repeat
from operator import add, floordiv, mod, mul, rshift, sub
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from provstore.core.chunks import chunked
from provstore.db import dialects
from provstore.db.index import ids_of

__all__ = ["all_edges", "levels", "walk"]

Edge = tuple[int, int]  # (child id, parent id)
DigestEdge = tuple[bytes, bytes]  # (child digest, parent digest)

_MAX_WINDOW = 512  # levels per recursive query; below MariaDB's max_recursive_iterations


def walk(
    conn: Connection,
    root: bytes,
    direction: str,
    depth: int | None,
    first: Sequence[bytes] | None = None,
) -> tuple[dict[bytes, int], tuple[DigestEdge, ...]]:
    """Nodes within ``depth`` levels of ``root`` (all when None) with their levels, and edges.

    ``direction`` is ``ancestors`` (follow parents) or ``descendants``; ``first`` may give the
    root's parents when they are known (an ancestors walk then needs no query for them).  The
    edges are every ``(child, parent)`` link among the nodes returned, sorted.  Bounded walks,
    however deep, go by blocks of ids (:class:`_BlockWalk`); unbounded ones fetch every
    reachable edge in one recursive query.
    """
    ids = ids_of(conn, [root, *(first or ())])
    if root not in ids:
        return {root: 0}, ()
    first_ids = None
    if first is not None and all(parent in ids for parent in first):
        first_ids = [ids[parent] for parent in first]
    near = "child" if direction == "ancestors" else "parent"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with _collector_paused(), dialects.of(conn).serial_plans(conn) as serial:
            if depth is not None:
                state = _BlockWalk(conn, cursor, ids[root], near, first_ids, serial)
                seen, out, last = state.run(depth), state.out, state.last
                counts = state.hits
            else:
                edges = all_edges(conn, ids[root], near)
                seen, last = levels(ids[root], edges, near, depth), []
                counts = Counter(map(rshift, seen, repeat(_BLOCK_BITS)))
                out = {}
                for child, parent in edges:
                    src, dst = (child, parent) if near == "child" else (parent, child)
                    out.setdefault(src, []).append(dst)
            for node in last:  # edges out of the last level may leave the nodes returned
                out[node] = [other for other in out.get(node, ()) if other in seen]
            return _named(conn, cursor, seen, out, near, counts)
    finally:
        cursor.close()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a walk builds its results.

    A deep walk allocates a few hundred thousand lists and tuples, none in a cycle
    (reference counts free them); meanwhile the collector would scan the young ones every
    700 allocations and the whole heap several times: a fifth of the walk's time, measured.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _named(
    conn: Connection,
    cursor: Any,
    seen: dict[int, int],
    out: dict[int, list[int]],
    near: str,
    counts: Counter[int],
) -> tuple[dict[bytes, int], tuple[DigestEdge, ...]]:
    """``seen`` and the edges among it (``out``: every seen node's, none leaving), by digest.

    ``counts`` holds how many of ``seen`` fall in each block of ids.

    The ids come in digest order, so an edge's place is a pair of ranks and the edges are
    sorted as plain integers, not 64-byte keys (nearly sorted already: the nodes are taken
    in order).  Every step maps a C function over all nodes or edges at once: no Python
    code runs per edge.
    """
    conditions = _id_conditions(seen, counts)
    ids, names = dialects.of(conn).digests_in_order(cursor, conditions, seen)
    width = len(names)
    lists = list(map(out.get, ids, repeat((), width)))
    here = chain.from_iterable(map(repeat, range(width), map(len, lists)))
    there = _ranks(ids, chain.from_iterable(lists))
    child, parent = (here, there) if near == "child" else (there, here)
    keys = list(map(add, map(mul, child, repeat(width)), parent))
    keys.sort()
    firsts = map(names.__getitem__, map(floordiv, keys, repeat(width)))
    seconds = map(names.__getitem__, map(mod, keys, repeat(width)))
    depths = dict(zip(names, map(seen.__getitem__, ids), strict=True))
    return depths, tuple(zip(firsts, seconds, strict=True))


def _ranks(ids: list[int], nodes: Iterable[int]) -> Iterator[int]:
    """The place in ``ids`` of each of ``nodes``.

    Where the ids are dense, a list indexed by their offset: looking ids up in a dict of
    30,000 misses the processor's cache, and costs twice as much.
    """
    lowest = min(ids, default=0)
    span = max(ids, default=0) - lowest + 1
    if span > 4 * len(ids):
        return map(dict(zip(ids, range(len(ids)), strict=True)).__getitem__, nodes)
    places = [0] * span
    for place, node in enumerate(ids):
        places[node - lowest] = place
    return map(places.__getitem__, map(sub, nodes, repeat(lowest)))


def _id_conditions(ids: Collection[int], counts: Counter[int]) -> list[str]:
    """Conditions on ``id`` that hold for every one of ``ids`` (``counts``: how many per block).

    A range over each stretch of blocks they fill at least half (one scan, cheaper than a
    lookup per id), then ``IN`` lists.
    """
    dense = sorted(block for block, count in counts.items() if 2 * count >= _BLOCK)
    conditions = _ranges("id", dense)
    if len(dense) < len(counts):
        sparse = counts.keys() - set(dense)
        rest = list(compress(ids, map(sparse.__contains__, map(rshift, ids, repeat(_BLOCK_BITS)))))
        conditions += [f"id IN ({dialects.sql_ints(part)})" for part in chunked(rest, _MAX_IN)]
    return conditions


def _ranges(column: str, blocks: list[int]) -> list[str]:
    """Conditions on ``column`` covering these sorted blocks, one per run of consecutive ones."""
    conditions = []
    start = 0
    for i, block in enumerate(blocks):
        if i + 1 == len(blocks) or blocks[i + 1] != block + 1:
            low, high = blocks[start] << _BLOCK_BITS, (block + 1) << _BLOCK_BITS
            conditions.append(f"{column} >= {low} AND {column} < {high}")
            start = i + 1
    return conditions


_BLOCK_BITS = 10  # a block: 1,024 consecutive ids
_BLOCK = 1 << _BLOCK_BITS
_WORTH = _BLOCK // 4  # nodes a walk must be expected to reach in a block to fetch it whole
_EVIDENCE = 16  # nodes reached in a block before it may be fetched whole (not for a few)
_MAX_AHEAD = 64  # blocks fetched ahead at most in one query
_MAX_IN = 5000  # ids per ``IN`` list


class _BlockWalk:
    """A breadth-first walk that fetches whole blocks of ids where the walk is dense.

    Ids are given in insertion order (shuffled within a batch), so a product's parents and
    children are mostly near it and a deep walk covers stretches of ids densely.  ``out``
    holds the complete list of edges out of every node that is *known*: its block was
    fetched whole, or the node itself was (an ``IN`` list, or within a recursive window's
    reach).  A node is expanded only once known, so results never depend on where ids fall;
    locality only saves queries.

    Each query fetches what the frontier lacks.  A block is fetched whole when the walk is
    expected to reach one in four of its ids (as many per level as it reached there since
    it first got there, for the levels left) and has reached a few already.  Going on from
    a block fetched whole, it takes up to ``ahead`` more blocks in the direction the walk
    goes; ``ahead`` doubles while the blocks taken ahead were reached as expected, halves
    when not, and stays within what the levels left can reach at the pace so far.  Other
    nodes go in an ``IN`` list, which while the walk meets no node twice (a chain, a tree)
    fetches several levels in a depth-limited recursive query, as many as last time
    doubled, up to ``_MAX_WINDOW``.
    """

    def __init__(
        self,
        conn: Connection,
        cursor: Any,
        root: int,
        near: str,
        first: Sequence[int] | None,
        serial: Callable[[], None] = lambda: None,
    ) -> None:
        self.cursor, self.near, self.root = cursor, near, root
        self.serial = serial  # switches the database to serial plans (ranges ahead)
        self.far = "parent" if near == "child" else "child"
        self.dialect = dialects.of(conn)
        self.out: dict[int, list[int]] = {}
        self.blocks: set[int] = set()  # fetched whole
        self.nodes: set[int] = set()  # fetched one by one
        self.hits: Counter[int] = Counter()  # per block, the nodes the walk reached in it
        self.entered: dict[int, int] = {}  # per block, the level the walk first reached it
        self.ahead = 1
        self.pending: list[int] = []  # the blocks fetched ahead last time
        self.span = 1  # levels the next recursive window fetches
        self.rejoined = False
        self.low = self.high = root
        self.last: list[int] = []  # the nodes at ``depth``, when the walk got that far
        if first is not None:  # the root's edges are known (ancestors: the product's parents)
            self.out[root] = list(dict.fromkeys(first))
            self.nodes.add(root)

    def known(self, node: int) -> bool:
        return node >> _BLOCK_BITS in self.blocks or node in self.nodes

    def run(self, depth: int) -> dict[int, int]:
        """The nodes within ``depth`` of the root with their levels; ``out`` holds their edges.

        The edges out of the last level are fetched too, so every edge among the nodes
        returned is in ``out``; those nodes, ``last``, are the only ones whose edges in
        ``out`` may lead outside.
        """
        seen = {self.root: 0}
        frontier = [self.root]
        level = 0
        self.hit(frontier, level)
        out = self.out
        blocks, nodes = self.blocks, self.nodes
        while frontier:
            missing = [n for n in frontier if n >> _BLOCK_BITS not in blocks and n not in nodes]
            if missing:
                self.fetch(missing, level, depth)
            if level == depth:
                self.last = frontier
                break
            level += 1
            following = []
            for node in frontier:
                for other in out.get(node, ()):
                    if other in seen:
                        self.rejoined = True
                    else:
                        seen[other] = level
                        following.append(other)
            frontier = following
            self.hit(frontier, level)
        return seen

    def hit(self, nodes: list[int], level: int) -> None:
        if not nodes:
            return
        blocks = list(map(rshift, nodes, repeat(_BLOCK_BITS)))
        self.hits.update(blocks)
        entered = self.entered
        for block in set(blocks).difference(entered):
            entered[block] = level
        self.low, self.high = min(self.low, min(nodes)), max(self.high, max(nodes))

    def fetch(self, missing: list[int], level: int, depth: int) -> None:
        """Fetch the complete edges out of ``missing`` (and of the blocks worth taking along)."""
        whole = []  # (block, the way the walk goes through it: -1, 1, or 0 when unknown)
        left, blocks = depth - level, self.blocks
        counts = {node >> _BLOCK_BITS for node in missing}
        for block in counts:
            hits = self.hits[block]
            since = level - self.entered[block] + 1
            if hits >= _EVIDENCE and hits + hits * left // since >= _WORTH:
                below, above = block + 1 in blocks, block - 1 in blocks
                whole.append((block, -1 if below and not above else int(above and not below)))
        if any(step for _, step in whole):
            self.adapt(level, depth)
        wanted: set[int] = set()
        for block, step in whole:
            wanted.update(block + step * k for k in range(self.ahead if step else 1))
        wanted -= blocks
        if any(step for _, step in whole):
            self.pending = [block for block in wanted if block not in counts]
        sparse = [node for node in missing if node >> _BLOCK_BITS not in wanted]
        if wanted:
            self.fetch_blocks(sorted(wanted))
        if sparse:
            self.fetch_nodes(sparse, depth + 1 - level)

    def adapt(self, level: int, depth: int) -> None:
        """Double the blocks fetched ahead while those fetched ahead were reached, else halve.

        Never more than the pace so far can reach in the levels left.
        """
        used = all(self.hits.get(block, 0) >= _WORTH for block in self.pending)
        self.ahead = min(2 * self.ahead, _MAX_AHEAD) if used else max(1, self.ahead // 2)
        if level:
            reach = (self.high - self.low) * (depth - level) // level
            self.ahead = max(1, min(self.ahead, (reach >> _BLOCK_BITS) + 1))

    def fetch_blocks(self, blocks: list[int]) -> None:
        self.serial()
        self.edges(_ranges(self.near, blocks))
        self.blocks.update(blocks)

    def fetch_nodes(self, nodes: list[int], levels_left: int) -> None:
        span = 1 if self.rejoined else min(self.span, levels_left)
        if span == 1:
            for part in chunked(nodes, _MAX_IN):
                self.edges([f"{self.near} IN ({dialects.sql_ints(part)})"])
            self.nodes.update(nodes)
        else:
            self.window(nodes, span)
        self.span = 1 if self.rejoined else min(2 * self.span, _MAX_WINDOW)
        self.rejoined = False

    def edges(self, conditions: list[str]) -> None:
        """Fetch the edges under any of ``conditions`` into ``out``.

        Each node's list is replaced whole: a block may hold a node known already.
        """
        fresh: defaultdict[int, list[int]] = defaultdict(list)
        srcs, dsts = self.dialect.int_pairs(self.cursor, (self.near, self.far), conditions)
        for src, dst in zip(srcs, dsts, strict=True):
            fresh[src].append(dst)
        self.out.update(fresh)

    def window(self, nodes: list[int], span: int) -> None:
        """Every edge within ``span`` levels of ``nodes``: one recursive query (a chain)."""
        near, far, listed = self.near, self.far, dialects.sql_ints(nodes)
        sql = (
            f"WITH RECURSIVE reach(child, parent, depth) AS ("
            f"SELECT child, parent, 1 FROM product_parents WHERE {near} IN ({listed}) "
            f"UNION SELECT e.child, e.parent, reach.depth + 1 "
            f"FROM product_parents e JOIN reach ON e.{near} = reach.{far} "
            f"WHERE reach.depth < {span}) SELECT DISTINCT {near}, {far} FROM reach"
        )
        self.cursor.execute(sql)
        found: dict[int, list[int]] = {}
        for src, dst in self.cursor.fetchall():
            found.setdefault(int(src), []).append(int(dst))
        # the nodes within span - 1 steps of ``nodes`` have all their edges in ``found``
        reached, frontier = set(nodes), list(nodes)
        for _ in range(span - 1):
            following = []
            for node in frontier:
                for other in found.get(node, ()):
                    if other not in reached:
                        reached.add(other)
                        following.append(other)
            frontier = following
        for node in reached:
            if not self.known(node):
                self.out[node] = found.get(node, [])
                self.nodes.add(node)


def levels(root: int, edges: Iterable[Edge], near: str, depth: int | None) -> dict[int, int]:
    """Breadth-first levels from ``root`` over ``edges``, to ``depth`` (all when None)."""
    neighbours: dict[int, list[int]] = {}
    for child, parent in edges:
        src, dst = (child, parent) if near == "child" else (parent, child)
        neighbours.setdefault(src, []).append(dst)
    depths = {root: 0}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        if depth is not None and depths[node] >= depth:
            continue
        for nxt in neighbours.get(node, ()):
            if nxt not in depths:
                depths[nxt] = depths[node] + 1
                queue.append(nxt)
    return depths


def all_edges(conn: Connection, root: int, near: str) -> set[Edge]:
    """Every edge reachable from ``root``: one recursive CTE over edges (each edge once).

    A depth-limited recursive CTE would carry (node, depth) pairs, and in a DAG a node is
    reached at many depths: the rows explode.  Deep bounded walks use this and trim.
    """
    far = "parent" if near == "child" else "child"
    dialect = dialects.of(conn)
    dialect.lift_recursion_limit(conn)
    sql = (
        f"WITH RECURSIVE reach(child, parent) AS ("
        f"SELECT child, parent FROM product_parents WHERE {near} = :root "
        f"UNION SELECT e.child, e.parent FROM product_parents e "
        f"JOIN reach ON e.{near} = reach.{far}) "
        f"SELECT child, parent FROM reach"
    )
    with dialect.keyed_joins(conn):
        rows = conn.execute(text(sql), {"root": root}).all()
    return {(int(c), int(p)) for c, p in rows}
