"""Lineage walks over the ``product_parents`` index: breadth first, fetching by blocks of ids.

:meth:`provstore.store.Store.lineage` uses these; they take an open connection and return
plain digests, so they know nothing of objects or of how the store holds connections.  The
index links products by their integer ids (schema 4): :func:`walk` maps the root to its id,
walks ids, and maps every node it returns back to its digest once, at the end.  What was
fetched and reached is held by a :mod:`provstore.db.lineage_graph` graph (compiled when
built); this module decides what to fetch.  Queries
name thousands of ids in their text (:func:`provstore.db.dialects.sql_ints`), never as one
driver parameter each.
"""

from __future__ import annotations

import functools
import gc
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from provstore.core.chunks import chunked
from provstore.core.digests import DIGEST_SIZE
from provstore.db import dialects
from provstore.db.index import ids_of
from provstore.db.lineage_graph import DigestEdge, Graph, graph_class

__all__ = ["all_edges", "walk"]

Edge = tuple[int, int]  # (child id, parent id)
Aside = Callable[[Callable[[Connection], Any]], Future[Any]]  # connections.Readers.aside

_MAX_WINDOW = 512  # levels per recursive query; below MariaDB's max_recursive_iterations


def walk(
    conn: Connection,
    root: bytes,
    direction: str,
    depth: int | None,
    first: Sequence[bytes] | None = None,
    *,
    compiled: bool = True,
    aside: Aside | None = None,
) -> tuple[dict[bytes, int], tuple[DigestEdge, ...]]:
    """Nodes within ``depth`` levels of ``root`` (all when None) with their levels, and edges.

    ``direction`` is ``ancestors`` (follow parents) or ``descendants``; ``first`` may give the
    root's parents when they are known (an ancestors walk then needs no query for them).  The
    edges are every ``(child, parent)`` link among the nodes returned, sorted.  Bounded walks,
    however deep, go by blocks of ids (:class:`_BlockWalk`); unbounded ones fetch every
    reachable edge in one recursive query.  The graph is the compiled one when it was built
    and ``compiled`` (tests compare both).  With ``aside`` (a way to read on another
    connection, in another thread), the digests of the blocks a deep walk fetches whole are
    read there while it walks on.
    """
    ids = ids_of(conn, [root, *(first or ())])
    if root not in ids:
        return {root: 0}, ()
    first_ids = None
    if first is not None and all(parent in ids for parent in first):
        first_ids = [ids[parent] for parent in first]
    near = "child" if direction == "ancestors" else "parent"
    graph: Graph = graph_class(compiled)(ids[root], near == "child", _BLOCK_BITS)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    digests = _Digests(aside, dialects.of(conn))
    try:
        with _collector_paused(), dialects.of(conn).serial_plans(conn) as serial:
            if depth is not None:
                _BlockWalk(conn, cursor, graph, near, first_ids, serial, digests).run(depth)
            else:
                edges = all_edges(conn, ids[root], near)
                pairs = list(zip(*edges, strict=True)) if edges else [(), ()]
                graph.add(*(pairs if near == "child" else pairs[::-1]))
                graph.mark_all()
                while graph.advance():
                    pass
            return _named(conn, cursor, graph, digests)
    finally:
        cursor.close()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a walk builds its results.

    With the Python graph a deep walk allocates a few hundred thousand lists and tuples,
    none in a cycle (reference counts free them); meanwhile the collector would scan the
    young ones every 700 allocations and the whole heap several times: a fifth of the walk's
    time, measured.  (The compiled graph makes few; pausing costs it nothing, measured.)
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _named(
    conn: Connection, cursor: Any, graph: Graph, digests: _Digests
) -> tuple[dict[bytes, int], tuple[DigestEdge, ...]]:
    """The graph's nodes and the edges among them, by digest.

    The digests read aside (whole blocks), then one query for those of the other nodes.
    """
    covered, parts = digests.results()
    conditions = _id_conditions(graph, covered)
    if conditions:
        parts.append(dialects.of(conn).digest_rows(cursor, conditions))
    return graph.named(*_joined(parts))


def _id_conditions(graph: Graph, covered: set[int]) -> list[str]:
    """Conditions on ``id`` that hold for every node reached outside the blocks ``covered``.

    A range over each stretch of blocks they fill at least half (one scan, cheaper than a
    lookup per id), then ``IN`` lists.
    """
    counts = graph.block_counts()
    dense = [block for block, count in counts.items() if 2 * count >= _BLOCK]
    dense = sorted(set(dense) - covered)
    conditions = _ranges("id", dense)
    skip = covered.union(dense)
    if not skip.issuperset(counts):
        rest = graph.seen_ids(sorted(skip))
        conditions += [f"id IN ({dialects.sql_ints(part)})" for part in chunked(rest, _MAX_IN)]
    return conditions


def _joined(parts: list[tuple[Sequence[int], dialects.Digests]]) -> tuple[array[int], Any]:
    """The ids and digests of several reads as one of each (digests packed where all are)."""
    ids = array("q")
    for part_ids, _ in parts:
        ids.extend(part_ids)
    if all(isinstance(part, bytes) for _, part in parts):
        return ids, b"".join(part for _, part in parts)  # type: ignore[misc]
    names: list[bytes] = []
    for _, part in parts:
        if isinstance(part, bytes):
            part = [part[at : at + DIGEST_SIZE] for at in range(0, len(part), DIGEST_SIZE)]
        names.extend(part)
    return ids, names


class _Digests:
    """The digests of the blocks a walk fetches whole, read aside while it walks on.

    The blocks a walk fetches whole are nearly all it names at the end; reading their
    digests on another connection while it fetches links hides that read's time.  A read
    that failed is left to the walk's own query at the end.
    """

    def __init__(self, aside: Aside | None, dialect: dialects.Dialect) -> None:
        self.aside, self.dialect = aside, dialect
        self.pending: list[tuple[list[int], Future[tuple[Sequence[int], dialects.Digests]]]] = []

    def fetch(self, blocks: list[int]) -> None:
        if self.aside is not None:
            work = functools.partial(_digest_rows, self.dialect, _ranges("id", blocks))
            self.pending.append((blocks, self.aside(work)))

    def results(self) -> tuple[set[int], list[tuple[Sequence[int], dialects.Digests]]]:
        """The blocks whose digests were read aside, and those reads."""
        covered: set[int] = set()
        parts = []
        for blocks, future in self.pending:
            try:
                parts.append(future.result())
            except Exception:  # noqa: BLE001 - read again by the walk's own connection
                continue
            covered.update(blocks)
        return covered, parts


def _digest_rows(
    dialect: dialects.Dialect, conditions: list[str], conn: Connection
) -> tuple[Sequence[int], dialects.Digests]:
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        return dialect.digest_rows(cursor, conditions)
    finally:
        cursor.close()


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
    children are mostly near it and a deep walk covers stretches of ids densely.  The graph
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
        graph: Graph,
        near: str,
        first: Sequence[int] | None,
        serial: Callable[[], None] = lambda: None,
        digests: _Digests | None = None,
    ) -> None:
        self.cursor, self.near, self.graph, self.digests = cursor, near, graph, digests
        self.serial = serial  # switches the database to serial plans (ranges ahead)
        self.far = "parent" if near == "child" else "child"
        self.dialect = dialects.of(conn)
        self.blocks: set[int] = set()  # fetched whole
        self.ahead = 1
        self.pending: list[int] = []  # the blocks fetched ahead last time
        self.span = 1  # levels the next recursive window fetches
        if first is not None:  # the root's edges are known (ancestors: the product's parents)
            (root,) = graph.frontier()
            parents = list(dict.fromkeys(first))
            graph.add([root] * len(parents), parents)
            graph.mark_nodes([root])

    def run(self, depth: int) -> None:
        """Walk to ``depth``: the graph holds the nodes within it, with every edge among them.

        The edges out of the last level are fetched too; the graph leaves out, when naming,
        those that lead further.
        """
        graph = self.graph
        while True:
            missing = graph.missing()
            if missing:
                self.fetch(missing, graph.level, depth)
            if graph.level == depth or not graph.advance():
                return

    def fetch(self, missing: list[int], level: int, depth: int) -> None:
        """Fetch the complete edges out of ``missing`` (and of the blocks worth taking along)."""
        whole = []  # (block, the way the walk goes through it: -1, 1, or 0 when unknown)
        left, blocks, graph = depth - level, self.blocks, self.graph
        counts = {node >> _BLOCK_BITS for node in missing}
        for block in counts:
            hits = graph.hits(block)
            since = level - graph.entered(block) + 1
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
        graph = self.graph
        used = all(graph.hits(block) >= _WORTH for block in self.pending)
        self.ahead = min(2 * self.ahead, _MAX_AHEAD) if used else max(1, self.ahead // 2)
        if level:
            reach = (graph.high - graph.low) * (depth - level) // level
            self.ahead = max(1, min(self.ahead, (reach >> _BLOCK_BITS) + 1))

    def fetch_blocks(self, blocks: list[int]) -> None:
        if self.digests is not None:  # read aside while this thread reads the links
            self.digests.fetch(blocks)
        self.serial()
        self.edges(_ranges(self.near, blocks))
        self.blocks.update(blocks)
        self.graph.mark_blocks(blocks)

    def fetch_nodes(self, nodes: list[int], levels_left: int) -> None:
        graph = self.graph
        span = 1 if graph.rejoined else min(self.span, levels_left)
        if span == 1:
            for part in chunked(nodes, _MAX_IN):
                self.edges([f"{self.near} IN ({dialects.sql_ints(part)})"])
            graph.mark_nodes(nodes)
        else:
            self.window(nodes, span)
        self.span = 1 if graph.rejoined else min(2 * self.span, _MAX_WINDOW)
        graph.rejoined = False

    def edges(self, conditions: list[str]) -> None:
        """Fetch the edges under any of ``conditions`` into the graph."""
        srcs, dsts = self.dialect.int_pairs(self.cursor, (self.near, self.far), conditions)
        self.graph.add(srcs, dsts)

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
        new = [node for node in reached if not self.graph.known(node)]
        srcs = [node for node in new for _ in found.get(node, ())]
        dsts = [other for node in new for other in found.get(node, ())]
        self.graph.add(srcs, dsts)
        self.graph.mark_nodes(new)


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
