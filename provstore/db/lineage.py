"""Lineage walks over the ``product_parents`` index: breadth first, level by level.

:meth:`provstore.store.Store.lineage` uses these; they take an open connection and return
plain digests, so they know nothing of objects or of how the store holds connections.  The
index links products by their integer ids (schema 4): :func:`walk` maps the root to its id,
walks ids, and maps every node it returns back to its digest once, at the end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from provstore.core.chunks import chunked
from provstore.db import dialects
from provstore.db.engine import param_mark
from provstore.db.index import digests_of, ids_of

__all__ = ["LEVEL_WALK_MAX", "all_edges", "among", "edges_by_level", "levels", "walk"]

Edge = tuple[int, int]  # (child id, parent id)
DigestEdge = tuple[bytes, bytes]  # (child digest, parent digest)

LEVEL_WALK_MAX = 1000
_MAX_WINDOW = 512  # levels per recursive query; below MariaDB's max_recursive_iterations


def walk(
    conn: Connection,
    root: bytes,
    direction: str,
    depth: int | None,
    first: Sequence[bytes] | None = None,
) -> tuple[dict[bytes, int], set[tuple[bytes, bytes]]]:
    """Nodes within ``depth`` levels of ``root`` (all when None) with their levels, and edges.

    ``direction`` is ``ancestors`` (follow parents) or ``descendants``; ``first`` may give the
    root's parents when they are known (an ancestors walk then starts a level further).
    Bounded walks go level by level; deeper or unbounded ones fetch every reachable edge in
    one recursive query and trim.
    """
    ids = ids_of(conn, [root, *(first or ())])
    if root not in ids:
        return {root: 0}, set()
    first_ids = None
    if first is not None and all(parent in ids for parent in first):
        first_ids = [ids[parent] for parent in first]
    seen, edges = _walk_ids(conn, ids[root], direction, depth, first_ids)
    names = digests_of(conn, {node for edge in edges for node in edge} | seen.keys())
    return (
        {names[node]: level for node, level in seen.items()},
        {(names[child], names[parent]) for child, parent in edges},
    )


def _walk_ids(
    conn: Connection,
    root: int,
    direction: str,
    depth: int | None,
    first: Sequence[int] | None,
) -> tuple[dict[int, int], set[Edge]]:
    near = "child" if direction == "ancestors" else "parent"
    if depth is not None and depth <= LEVEL_WALK_MAX:
        return edges_by_level(conn, root, near, depth, first)
    edges = all_edges(conn, root, near)
    return levels(root, edges, near, depth), edges


def edges_by_level(
    conn: Connection,
    root: int,
    near: str,
    depth: int,
    first: Sequence[int] | None = None,
) -> tuple[dict[int, int], set[Edge]]:
    """The nodes within ``depth`` levels of ``root`` with their levels, and the edges out.

    The walk is breadth first.  Edges out of the last level are fetched too, so the caller
    can keep every edge among the nodes returned (the subgraph an unbounded walk gives,
    trimmed).  Each level is one indexed ``IN`` query on the nodes first reached at the level
    before (plain driver SQL on the driver's cursor: nothing compiled per level), so every
    edge is fetched once.  While a round meets no node seen before (a chain, a tree) the next
    round fetches twice as many levels in one depth-limited recursive query, up to
    ``_MAX_WINDOW``: a chain of 100,000 costs a few hundred round trips.  A DAG that rejoins
    falls back to one level per query, as a depth-limited CTE there would enumerate every
    (node, path length) pair.
    """
    state = _LevelWalk(conn, root, near, first)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        window = 1
        while state.frontier and state.level <= depth:
            span = min(window, depth + 1 - state.level)
            rejoined = state.advance(state.fetch(cursor, span), span, depth)
            window = 1 if rejoined else min(2 * window, _MAX_WINDOW)
    finally:
        cursor.close()
    return state.seen, state.edges


class _LevelWalk:
    """The state of :func:`edges_by_level`: levels so far, edges fetched, the frontier."""

    def __init__(
        self, conn: Connection, root: int, near: str, first: Sequence[int] | None
    ) -> None:
        self.near = near
        far = "parent" if near == "child" else "child"
        self.mark = param_mark(conn)
        self.level_sql = f"SELECT child, parent FROM product_parents WHERE {near} IN ("
        self.window_sql = (
            f"WITH RECURSIVE reach(child, parent, depth) AS ("
            f"SELECT child, parent, 1 FROM product_parents WHERE {near} IN ({{marks}}) "
            f"UNION SELECT e.child, e.parent, reach.depth + 1 "
            f"FROM product_parents e JOIN reach ON e.{near} = reach.{far} "
            f"WHERE reach.depth < {{span}}) SELECT DISTINCT child, parent FROM reach"
        )
        self.edges: set[Edge] = set()
        self.out: dict[int, list[int]] = {}  # fetched edges not yet walked, by source
        self.seen = {root: 0}
        self.frontier = [root]
        self.level = 0
        if first is not None:  # the root's edges are known (ancestors: the product's parents)
            self.edges = {(root, parent) for parent in first}
            self.seen.update(dict.fromkeys(first, 1))
            self.frontier, self.level = list(dict.fromkeys(first)), 1

    def fetch(self, cursor: Any, span: int) -> set[Edge]:
        """Every edge within ``span`` levels beyond the frontier."""
        fetched: set[Edge] = set()
        for part in chunked(self.frontier):
            marks = ", ".join([self.mark] * len(part))
            if span == 1:
                cursor.execute(self.level_sql + marks + ")", part)
            else:
                cursor.execute(self.window_sql.format(marks=marks, span=span), part)
            fetched.update((int(c), int(p)) for c, p in cursor.fetchall())
        return fetched

    def advance(self, fetched: set[Edge], span: int, depth: int) -> bool:
        """Walk ``span`` levels over the fetched edges; whether a node was met twice."""
        if span == 1 and not self.out:
            return self.step(fetched, depth)
        for edge in fetched - self.edges:
            src, dst = edge if self.near == "child" else (edge[1], edge[0])
            self.out.setdefault(src, []).append(dst)
        self.edges |= fetched
        rejoined = False
        for reached in range(self.level + 1, min(self.level + span + 1, depth + 1)):
            following = []  # the exact BFS level ``reached``, over what has been fetched
            for node in self.frontier:
                for other in self.out.pop(node, ()):
                    if other in self.seen:
                        rejoined = True
                    else:
                        self.seen[other] = reached
                        following.append(other)
            self.frontier = following
        self.level += span
        return rejoined

    def step(self, fetched: set[Edge], depth: int) -> bool:
        """:meth:`advance` by one level, when no edge was fetched ahead (no window pending).

        Every fetched edge then leaves the frontier and none was fetched before, so the far
        ends are walked straight from the rows, with no adjacency kept.
        """
        self.edges |= fetched
        self.level += 1
        if self.level > depth:  # the edges out of the last level: no node beyond it
            return False
        far = 1 if self.near == "child" else 0
        seen, level, following = self.seen, self.level, []
        rejoined = False
        for edge in fetched:
            other = edge[far]
            if other in seen:
                rejoined = True
            else:
                seen[other] = level
                following.append(other)
        self.frontier = following
        return rejoined


def among(edges: Iterable[DigestEdge], nodes: dict[bytes, int]) -> tuple[DigestEdge, ...]:
    """The edges with both ends among ``nodes``, sorted.

    Sorted by each edge's digests as one latin-1 string: the same order as the tuples' (the
    child's digest is of fixed length), compared by ``memcmp`` instead of a tuple comparison
    per step, which more than halves the sort of 60,000 edges.
    """
    kept = [edge for edge in edges if edge[0] in nodes and edge[1] in nodes]
    kept.sort(key=_latin_key)
    return tuple(kept)


def _latin_key(edge: DigestEdge) -> str:
    return (edge[0] + edge[1]).decode("latin-1")


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
    dialects.of(conn).lift_recursion_limit(conn)
    sql = (
        f"WITH RECURSIVE reach(child, parent) AS ("
        f"SELECT child, parent FROM product_parents WHERE {near} = :root "
        f"UNION SELECT e.child, e.parent FROM product_parents e "
        f"JOIN reach ON e.{near} = reach.{far}) "
        f"SELECT child, parent FROM reach"
    )
    rows = conn.execute(text(sql), {"root": root}).all()
    return {(int(c), int(p)) for c, p in rows}
