"""A product's lineage as a text tree, JSON data, Graphviz DOT or a Mermaid flowchart.

Pure functions over a :class:`~provstore.store.Lineage` and ``names``, a map from a node's
digest to its label (for example ``"name version"``), which the caller builds from the
products.  A node without a label is shown by its digest alone.  Graph edges point from
parent to child, the way data flows; the text tree follows the lineage's direction from the
root (ancestors: child to parents; descendants: parent to children).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the type: the store module pulls in SQLAlchemy, and this one is pure
    from provstore.store import Lineage

__all__ = ["LINEAGE_FORMATS", "lineage_dot", "lineage_json", "lineage_mermaid", "lineage_text"]

_SHORT = 12
_UNKNOWN = "(unknown)"


def _next_nodes(lineage: Lineage, names: Mapping[bytes, str]) -> dict[bytes, list[bytes]]:
    """Each node's neighbours away from the root, sorted by label then digest."""
    out: dict[bytes, list[bytes]] = {}
    for child, parent in lineage.edges:
        src, dst = (child, parent) if lineage.direction == "ancestors" else (parent, child)
        out.setdefault(src, []).append(dst)
    for nodes in out.values():
        nodes.sort(key=lambda d: (names.get(d, ""), d))
    return out


# Bidirectional overrides and isolates can make a label read differently from what it holds.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _is_control(ch: str) -> bool:
    """Characters a label must not pass through raw (joiners in emoji are kept)."""
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _one_line(label: str) -> str:
    """A label on one line: quoted, with escapes, when it holds invisible characters."""
    if label.isprintable() and not _BIDI.intersection(label):
        return label
    out = []
    for ch in label:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif _is_control(ch):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _text_line(digest: bytes, names: Mapping[bytes, str]) -> str:
    return f"{digest.hex()[:_SHORT]}  {_one_line(names.get(digest, _UNKNOWN))}"


def lineage_text(lineage: Lineage, names: Mapping[bytes, str]) -> str:
    """An indented tree from the root, one ``short-hex  label`` line per node.

    A node reached a second time is printed again, marked ``(see above)``, without its subtree.
    """
    following = _next_nodes(lineage, names)
    lines = [_text_line(lineage.root, names)]
    seen = {lineage.root}
    # Depth-first with an explicit stack: a lineage may be deeper than Python's recursion limit.
    stack = [
        (node, "", i == 0) for i, node in enumerate(reversed(following.get(lineage.root, [])))
    ]
    while stack:
        node, prefix, last = stack.pop()
        line = prefix + ("`-- " if last else "|-- ") + _text_line(node, names)
        if node in seen:
            lines.append(line + " (see above)")
            continue
        lines.append(line)
        seen.add(node)
        inner = prefix + ("    " if last else "|   ")
        children = following.get(node, [])
        stack.extend((child, inner, i == 0) for i, child in enumerate(reversed(children)))
    return "\n".join(lines)


def lineage_json(lineage: Lineage, names: Mapping[bytes, str]) -> dict[str, Any]:
    """The lineage as plain JSON data: nodes by (depth, digest), edges as child/parent pairs.

    A node without a label has ``"label": null``.
    """
    nodes = sorted(lineage.depths.items(), key=lambda item: (item[1], item[0]))
    return {
        "root": lineage.root.hex(),
        "direction": lineage.direction,
        "nodes": [
            {"digest": digest.hex(), "label": names.get(digest), "depth": depth}
            for digest, depth in nodes
        ],
        "edges": [
            {"child": child.hex(), "parent": parent.hex()}
            for child, parent in sorted(lineage.edges)
        ],
    }


def _all_nodes(lineage: Lineage) -> list[bytes]:
    """Every node, including any only named by an edge, in digest order."""
    nodes = set(lineage.depths) | {lineage.root}
    for child, parent in lineage.edges:
        nodes.update((child, parent))
    return sorted(nodes)


def _dot_string(text: str) -> str:
    r"""A DOT quoted string whose label shows ``text`` literally, newlines as line breaks.

    Inside a label a backslash starts an escape (``\n``, ``\N``, ``\G``…), so every backslash
    is doubled; other control characters are shown as escapes rather than passed through.
    """
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif _is_control(ch):
            out.append(ch.encode("unicode_escape").decode("ascii").replace("\\", "\\\\"))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _graph_label(digest: bytes, names: Mapping[bytes, str]) -> str:
    short = digest.hex()[:_SHORT]
    label = names.get(digest)
    return short if label is None else f"{label}\n{short}"


def lineage_dot(lineage: Lineage, names: Mapping[bytes, str]) -> str:
    """A Graphviz ``digraph``: one box per product, edges parent → child, the root bold."""
    lines = [
        "digraph lineage {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded", fontname="Helvetica"];',
    ]
    for digest in _all_nodes(lineage):
        attrs = f"label={_dot_string(_graph_label(digest, names))}"
        if digest == lineage.root:
            attrs += ', style="rounded,filled,bold", fillcolor="lightyellow", penwidth=2'
        lines.append(f"  n{digest.hex()} [{attrs}];")
    for child, parent in sorted(lineage.edges):
        lines.append(f"  n{parent.hex()} -> n{child.hex()};")
    lines.append("}")
    return "\n".join(lines)


_MERMAID_ENTITIES = {
    "#": "#35;",
    '"': "#quot;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "`": "#96;",
}


def _mermaid_label(text: str) -> str:
    """Text for a quoted Mermaid label: specials as ``#name;`` entities, newlines as breaks."""
    out = []
    for ch in text:
        if ch in _MERMAID_ENTITIES:
            out.append(_MERMAID_ENTITIES[ch])
        elif ch == "\n":
            out.append("<br/>")
        elif _is_control(ch):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _mermaid_ids(nodes: list[bytes]) -> dict[bytes, str]:
    """``n`` + 12 hex digits, or the full digest for all when 12 would collide."""
    short = {digest: "n" + digest.hex()[:_SHORT] for digest in nodes}
    if len(set(short.values())) == len(short):
        return short
    return {digest: "n" + digest.hex() for digest in nodes}


def lineage_mermaid(lineage: Lineage, names: Mapping[bytes, str]) -> str:
    """A Mermaid ``flowchart LR``: one node per product, edges parent → child, the root bold."""
    nodes = _all_nodes(lineage)
    ids = _mermaid_ids(nodes)
    lines = ["flowchart LR"]
    for digest in nodes:
        label = _mermaid_label(_graph_label(digest, names))
        lines.append(f'  {ids[digest]}["{label}"]')
    for child, parent in sorted(lineage.edges):
        lines.append(f"  {ids[parent]} --> {ids[child]}")
    lines.append(f"  style {ids[lineage.root]} stroke-width:3px")
    return "\n".join(lines)


def _lineage_json_text(lineage: Lineage, names: Mapping[bytes, str]) -> str:
    return json.dumps(lineage_json(lineage, names), indent=2, sort_keys=True, ensure_ascii=False)


LINEAGE_FORMATS: dict[str, Callable[[Lineage, Mapping[bytes, str]], str]] = {
    "text": lineage_text,
    "json": _lineage_json_text,
    "dot": lineage_dot,
    "mermaid": lineage_mermaid,
}
"""Every way a lineage can be written, by the name ``provstore lineage --format`` takes."""
