"""A lineage cut to a node budget, so a neighbourhood of thousands of products stays readable.

Products nearest the root are kept one level at a time while the budget allows; the levels
beyond are folded into *groups* (one per level and product name, or one per level when names
are too many), each drawn as a single node that says how many products it holds.  Edges are
mapped onto the kept nodes and groups and deduplicated, and still point from parent to child.

A group says how to open it: ``unfold`` is the smallest budget that draws its level's
products one by one (when that is within :data:`MAX_BUDGET`), and ``search`` the product
name to list on the products page (a name group whose name is not a glob).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provstore.store import Lineage

__all__ = ["DEFAULT_BUDGET", "MAX_BUDGET", "MAX_GROUPS_PER_LEVEL", "Graph", "budgeted"]

DEFAULT_BUDGET = 300
MAX_BUDGET = 1000
MAX_GROUPS_PER_LEVEL = 20


@dataclass(frozen=True, slots=True)
class Graph:
    """Nodes (products or groups) and parent → child edges between them."""

    root: str
    direction: str
    nodes: list[dict[str, Any]]
    edges: list[tuple[str, str]]
    total: int
    """How many products the lineage holds (kept and grouped)."""

    def to_json(self) -> dict[str, Any]:
        """What the page's script draws."""
        return {
            "root": self.root,
            "direction": self.direction,
            "total": self.total,
            "nodes": self.nodes,
            "edges": [{"parent": p, "child": c} for p, c in self.edges],
        }


def _name(label: str | None) -> str:
    return "(unknown)" if label is None else label.rsplit(" ", 1)[0] if " " in label else label


def budgeted(lineage: Lineage, names: Mapping[bytes, str], budget: int = DEFAULT_BUDGET) -> Graph:
    """The lineage with every product beyond ``budget`` folded into groups by level."""
    by_level: dict[int, list[bytes]] = {}
    for digest, depth in lineage.depths.items():
        by_level.setdefault(depth, []).append(digest)
    node_of: dict[bytes, str] = {}
    nodes: list[dict[str, Any]] = []
    kept = drawn = 0  # products drawn one by one; products in this level and those before it
    for depth in sorted(by_level):
        level = sorted(by_level[depth], key=lambda d: (names.get(d, ""), d))
        drawn += len(level)
        if kept + len(level) <= budget or depth == 0:
            for digest in level:
                node_of[digest] = digest.hex()
                label = names.get(digest)
                nodes.append({"id": digest.hex(), "label": label, "depth": depth, "count": 1})
            kept += len(level)
            continue
        groups: dict[str, list[bytes]] = {}
        for digest in level:
            groups.setdefault(_name(names.get(digest)), []).append(digest)
        by_name = len(groups) <= MAX_GROUPS_PER_LEVEL
        if not by_name:
            groups = {f"products at level {depth}": level}
        for index, (name, members) in enumerate(sorted(groups.items())):
            gid = f"group-{depth}-{index}"
            for digest in members:
                node_of[digest] = gid
            node = {"id": gid, "label": name, "depth": depth, "count": len(members), "group": True}
            if drawn <= MAX_BUDGET:
                node["unfold"] = drawn
            if by_name and name != _name(None) and not any(c in "*?[" for c in name):
                node["search"] = name
            nodes.append(node)
    edges = sorted(
        {
            (node_of[parent], node_of[child])
            for child, parent in lineage.edges
            if child in node_of and parent in node_of and node_of[child] != node_of[parent]
        }
    )
    return Graph(lineage.root.hex(), lineage.direction, nodes, edges, len(lineage.depths))
