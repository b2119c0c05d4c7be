"""A lineage walk's graph: nodes reached, their levels, the links fetched so far.

:mod:`provstore.db.lineage` decides what to fetch; a :class:`Graph` holds what was fetched
and walks it level by level.  Two versions with one interface: the compiled one
(``provstore.db._lineage_graph``, built from ``_lineage_graph.c`` when the package is
installed and a C compiler is there) and this one, in Python, used when it is not; both
give the same results (tests compare them).

Nodes and blocks are integer ids; a block holds ``2 ** bits`` consecutive ids.  A node is
*known* once all its links are here: its block was fetched whole, it was fetched itself, or
every reachable link was (:meth:`Graph.mark_all`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain, compress, repeat
from operator import add, floordiv, itemgetter, mod, mul, rshift, sub
from typing import cast

__all__ = ["Graph", "comma_ints", "graph_class"]

DigestEdge = tuple[bytes, bytes]  # (child digest, parent digest)


class Graph:
    """The walk from ``root``, which is reached at level 0.

    Links go from the *near* end (the node walked from) to the *far* one: child to parent
    when walking ``ancestors``, parent to child otherwise.
    """

    def __init__(self, root: int, ancestors: bool, bits: int) -> None:
        self.ancestors, self.bits = ancestors, bits
        self.level = 0
        self.low = self.high = root
        self.rejoined = False
        self.out: dict[int, list[int]] = {}  # each listed node's links, complete
        self.seen = {root: 0}
        self.current = [root]
        self.counts: Counter[int] = Counter({root >> bits: 1})  # nodes reached per block
        self.first: dict[int, int] = {root >> bits: 0}  # level each block was entered at
        self.blocks: set[int] = set()  # known whole
        self.nodes: set[int] = set()  # known one by one
        self.everything = False

    @property
    def size(self) -> int:
        """Nodes reached."""
        return len(self.seen)

    def add(self, srcs: Sequence[int], dsts: Sequence[int]) -> None:
        """Links fetched together; a node listed by an earlier call keeps its list.

        A fetch returns every link of each node it names (a node's list is complete), so
        the lists of two fetches that name the same node are the same.
        """
        if len(srcs) != len(dsts):
            raise ValueError("as many sources as destinations are needed")
        fresh: dict[int, list[int]] = {}
        for src, dst in zip(srcs, dsts, strict=True):
            fresh.setdefault(src, []).append(dst)
        for node in fresh.keys() & self.out.keys():
            del fresh[node]
        self.out.update(fresh)

    def mark_nodes(self, nodes: Iterable[int]) -> None:
        """These nodes' links are all here (those with none included)."""
        self.nodes.update(nodes)

    def mark_blocks(self, blocks: Iterable[int]) -> None:
        """The links of every node in these blocks are here."""
        self.blocks.update(blocks)

    def mark_all(self) -> None:
        """Every reachable link is here."""
        self.everything = True

    def known(self, node: int) -> bool:
        """Whether all of ``node``'s links are here."""
        return self.everything or node >> self.bits in self.blocks or node in self.nodes

    def missing(self) -> list[int]:
        """The nodes of the current level that are not known."""
        if self.everything:
            return []
        blocks, nodes, bits = self.blocks, self.nodes, self.bits
        return [n for n in self.current if n >> bits not in blocks and n not in nodes]

    def frontier(self) -> list[int]:
        """The nodes of the current level."""
        return list(self.current)

    def advance(self) -> int:
        """Go one level further (over the current level's links); the nodes reached there."""
        self.level = level = self.level + 1
        seen, out = self.seen, self.out
        following = []
        for node in self.current:
            for other in out.get(node, ()):
                if other in seen:
                    self.rejoined = True
                else:
                    seen[other] = level
                    following.append(other)
        self.current = following
        if following:
            blocks = list(map(rshift, following, repeat(self.bits)))
            self.counts.update(blocks)
            for block in set(blocks).difference(self.first):
                self.first[block] = level
            self.low = min(self.low, min(following))
            self.high = max(self.high, max(following))
        return len(following)

    def hits(self, block: int) -> int:
        """Nodes reached in ``block``."""
        return self.counts.get(block, 0)

    def entered(self, block: int) -> int:
        """The level at which the walk first reached ``block`` (KeyError if it has not)."""
        return self.first[block]

    def block_counts(self) -> dict[int, int]:
        """Nodes reached per block (blocks reached only)."""
        return dict(self.counts)

    def seen_ids(self, skip: Iterable[int] = ()) -> list[int]:
        """The nodes reached, but for those in the blocks ``skip`` names."""
        skipped = set(skip)
        if not skipped:
            return list(self.seen)
        return [node for node in self.seen if node >> self.bits not in skipped]

    def named(
        self, ids: Sequence[int], digests: bytes | Sequence[bytes]
    ) -> tuple[dict[bytes, int], tuple[DigestEdge, ...]]:
        """The levels of the nodes reached, and every link among them, by digest.

        ``ids`` and ``digests`` are rows of the ``objects`` table (any order; rows of nodes
        not reached are left out); ``digests`` may be one byte string holding them all,
        of one length, one after another.  The links come sorted: ranked in digest order, a
        link is a pair of ranks, sorted as one integer; every step maps a C function over
        all nodes or links at once.
        """
        if isinstance(digests, bytes):
            each = len(digests) // len(ids) if ids else 0
            if each * len(ids) != len(digests):
                raise ValueError("as many ids as digests are needed")
            digests = [digests[at : at + each] for at in range(0, len(digests), each or 1)]
        seen = self.seen
        rows = list(zip(ids, digests, strict=True))
        kept = list(compress(rows, map(seen.__contains__, map(_first, rows))))
        kept = list(dict(kept).items())  # an id listed twice counts once
        kept.sort(key=_second)
        order, names = list(map(_first, kept)), list(map(_second, kept))
        width = len(names)
        present = seen if width == len(seen) else set(order)  # every node has its row
        lists = [[o for o in self.out.get(node, ()) if o in present] for node in order]
        here = chain.from_iterable(map(repeat, range(width), map(len, lists)))
        there = _ranks(order, chain.from_iterable(lists))
        child, parent = (here, there) if self.ancestors else (there, here)
        keys = list(map(add, map(mul, child, repeat(width)), parent))
        keys.sort()
        firsts = map(names.__getitem__, map(floordiv, keys, repeat(width)))
        seconds = map(names.__getitem__, map(mod, keys, repeat(width)))
        depths = dict(zip(names, map(seen.__getitem__, order), strict=True))
        return depths, tuple(zip(firsts, seconds, strict=True))


_first, _second = itemgetter(0), itemgetter(1)


def _ranks(ids: list[int], nodes: Iterable[int]) -> Iterable[int]:
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


def comma_ints(text: str) -> Sequence[int]:
    """The integers of a comma list (how the databases pack a walk's ids), "" for none.

    Compiled, an ``array('q')`` (90,000 numbers in ~1 ms; the graph reads such an array
    without making a Python int of each); else read by the JSON scanner, twice as fast as
    splitting the text and parsing each piece.
    """
    if _compiled is not None:
        return cast(Sequence[int], _compiled.ints(text))
    numbers: list[int] = json.loads(f"[{text}]")
    return numbers


def graph_class(compiled: bool = True) -> type[Graph]:
    """The compiled graph when it was built (and ``compiled``), else :class:`Graph`."""
    if compiled and _compiled is not None:
        return cast(type[Graph], _compiled.Graph)
    return Graph


try:
    from provstore.db import _lineage_graph as _compiled  # type: ignore[attr-defined]
except ImportError:  # not built: no C compiler where the package was installed
    _compiled = None
