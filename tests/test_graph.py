"""Lineage output: the text tree, JSON, Graphviz DOT (checked by dot itself) and Mermaid."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from provstore.exchange.lineage import lineage_dot, lineage_json, lineage_mermaid, lineage_text
from provstore.store import Lineage


def _d(n: int) -> bytes:
    return bytes([n]) * 32


RESULT, CLEAN, FEATURES, RAW = _d(0xA1), _d(0xB2), _d(0xC3), _d(0xD4)
NAMES = {
    RESULT: "result 1.0",
    CLEAN: 'clean "quoted" 2',
    FEATURES: "feat\\ures\nsecond line",
    RAW: "raw → données ü 🧪",
}
# result has parents clean and features, which both have parent raw.
DIAMOND_EDGES = ((RESULT, CLEAN), (RESULT, FEATURES), (CLEAN, RAW), (FEATURES, RAW))


def diamond_ancestors() -> Lineage:
    return Lineage(RESULT, "ancestors", {RESULT: 0, CLEAN: 1, FEATURES: 1, RAW: 2}, DIAMOND_EDGES)


def diamond_descendants() -> Lineage:
    return Lineage(RAW, "descendants", {RAW: 0, CLEAN: 1, FEATURES: 1, RESULT: 2}, DIAMOND_EDGES)


def chain() -> Lineage:
    """c -> b -> a, seen from a (a's parent is b, b's parent is c)."""
    a, b, c = _d(1), _d(2), _d(3)
    return Lineage(a, "ancestors", {a: 0, b: 1, c: 2}, ((a, b), (b, c)))


CHAIN_NAMES = {_d(1): "a 3", _d(2): "b 2", _d(3): "c 1"}
ALL = [diamond_ancestors(), diamond_descendants(), chain()]
ALL_IDS = ["diamond-ancestors", "diamond-descendants", "chain"]


def _names(lineage: Lineage) -> dict[bytes, str]:
    return CHAIN_NAMES if lineage.root == _d(1) else NAMES


def short(digest: bytes) -> str:
    return digest.hex()[:12]


# --- text ------------------------------------------------------------------------------------


def test_text_diamond_ancestors_shape():
    assert lineage_text(diamond_ancestors(), NAMES).splitlines() == [
        f"{short(RESULT)}  result 1.0",
        f'|-- {short(CLEAN)}  clean "quoted" 2',
        f"|   `-- {short(RAW)}  raw → données ü 🧪",
        f'`-- {short(FEATURES)}  "feat\\\\ures\\nsecond line"',
        f"    `-- {short(RAW)}  raw → données ü 🧪 (see above)",
    ]


def test_text_diamond_descendants_goes_parent_to_children():
    lines = lineage_text(diamond_descendants(), NAMES).splitlines()
    assert lines[0].startswith(short(RAW))
    assert [re.search(r"[0-9a-f]{12}", line).group() for line in lines[1:]] == [
        short(CLEAN),
        short(RESULT),
        short(FEATURES),
        short(RESULT),
    ]
    assert lines[-1].endswith("(see above)")
    assert not lines[2].endswith("(see above)")


def test_text_chain_indents_one_level_per_generation():
    assert lineage_text(chain(), CHAIN_NAMES).splitlines() == [
        f"{short(_d(1))}  a 3",
        f"`-- {short(_d(2))}  b 2",
        f"    `-- {short(_d(3))}  c 1",
    ]


def test_text_repeated_subtree_is_not_repeated():
    # Two paths to a node that has its own parent: the second visit prints no subtree.
    top, left, right, mid, base = (_d(n) for n in (10, 11, 12, 13, 14))
    edges = ((top, left), (top, right), (left, mid), (right, mid), (mid, base))
    depths = {top: 0, left: 1, right: 1, mid: 2, base: 3}
    text = lineage_text(Lineage(top, "ancestors", depths, edges), {})
    assert text.count(short(base)) == 1
    assert text.count(short(mid)) == 2
    assert text.count("(see above)") == 1


def test_text_root_alone_and_unknown_label():
    root = _d(9)
    assert lineage_text(Lineage(root, "ancestors", {root: 0}, ()), {}) == (
        f"{short(root)}  (unknown)"
    )


def test_text_deep_chain_needs_no_recursion():
    nodes = [i.to_bytes(32, "big") for i in range(3000)]
    edges = tuple(zip(nodes, nodes[1:], strict=False))
    lineage = Lineage(nodes[0], "ancestors", {n: i for i, n in enumerate(nodes)}, edges)
    lines = lineage_text(lineage, {}).splitlines()
    assert len(lines) == 3000
    assert lines[-1].startswith(" " * 4 * 2998 + "`-- ")


def test_text_escapes_bidi_controls():
    root = _d(5)
    text = lineage_text(Lineage(root, "ancestors", {root: 0}, ()), {root: "a\u202eb"})
    assert "\u202e" not in text
    assert text.endswith('"a\\u202eb"')


# --- json ------------------------------------------------------------------------------------


def test_json_structure():
    data = lineage_json(diamond_ancestors(), NAMES)
    assert data["root"] == RESULT.hex()
    assert data["direction"] == "ancestors"
    assert data["nodes"] == [
        {"digest": RESULT.hex(), "label": "result 1.0", "depth": 0},
        {"digest": CLEAN.hex(), "label": NAMES[CLEAN], "depth": 1},
        {"digest": FEATURES.hex(), "label": NAMES[FEATURES], "depth": 1},
        {"digest": RAW.hex(), "label": NAMES[RAW], "depth": 2},
    ]
    assert data["edges"] == [
        {"child": child.hex(), "parent": parent.hex()} for child, parent in sorted(DIAMOND_EDGES)
    ]
    assert json.loads(json.dumps(data)) == data


def test_json_missing_label_is_null():
    root = _d(9)
    data = lineage_json(Lineage(root, "descendants", {root: 0}, ()), {})
    assert data["nodes"] == [{"digest": root.hex(), "label": None, "depth": 0}]
    assert data["edges"] == []


# --- dot -------------------------------------------------------------------------------------


def _require_dot() -> str:
    path = shutil.which("dot")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("graphviz dot is required in CI (apt-get install graphviz)")
        pytest.skip("graphviz dot not installed")
    return path


@pytest.mark.parametrize("lineage", ALL, ids=ALL_IDS)
def test_dot_is_valid_graphviz(lineage):
    dot = _require_dot()
    source = lineage_dot(lineage, _names(lineage))
    done = subprocess.run(
        [dot, "-Tsvg"], input=source.encode(), capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert not done.stderr, done.stderr.decode()
    svg = done.stdout.decode()
    for digest in lineage.depths:
        assert f"<title>n{digest.hex()}</title>" in svg
        assert short(digest) in svg
    for child, parent in lineage.edges:
        assert f"<title>n{parent.hex()}&#45;&gt;n{child.hex()}</title>" in svg


def test_dot_labels_render_literally():
    dot = _require_dot()
    source = lineage_dot(diamond_ancestors(), NAMES)
    svg = subprocess.run(
        [dot, "-Tsvg"], input=source.encode(), capture_output=True, timeout=60, check=True
    ).stdout.decode()
    assert "clean &quot;quoted&quot; 2" in svg
    assert ">feat\\ures</text>" in svg  # a backslash stays a backslash
    assert ">second line</text>" in svg  # a newline becomes a line break
    assert "raw → données ü 🧪" in svg


def test_dot_source_structure():
    source = lineage_dot(diamond_ancestors(), NAMES)
    lines = source.splitlines()
    assert lines[0] == "digraph lineage {"
    assert lines[-1] == "}"
    assert f"n{CLEAN.hex()} -> n{RESULT.hex()};" in source  # parent -> child
    assert f"n{RESULT.hex()} -> " not in source
    (root_line,) = [line for line in lines if line.strip().startswith(f"n{RESULT.hex()} [")]
    assert "bold" in root_line
    assert '"feat\\\\ures\\nsecond line\\n' in source


# --- mermaid ---------------------------------------------------------------------------------

_NODE = re.compile(r'^  (n[0-9a-f]{12}|n[0-9a-f]{64})\["([^"]*)"\]$')
_EDGE = re.compile(r"^  (n[0-9a-f]{12}|n[0-9a-f]{64}) --> (n[0-9a-f]{12}|n[0-9a-f]{64})$")
_STYLE = re.compile(r"^  style (n[0-9a-f]+) \S+$")


@pytest.mark.parametrize("lineage", ALL, ids=ALL_IDS)
def test_mermaid_structure(lineage):
    lines = lineage_mermaid(lineage, _names(lineage)).splitlines()
    assert lines[0] == "flowchart LR"
    nodes = [m.group(1) for m in map(_NODE.match, lines) if m]
    edges = [m.groups() for m in map(_EDGE.match, lines) if m]
    styles = [m.group(1) for m in map(_STYLE.match, lines) if m]
    assert len(nodes) + len(edges) + len(styles) == len(lines) - 1  # every line is one of these
    assert len(nodes) == len(set(nodes)) == len(lineage.depths)
    assert len(edges) == len(lineage.edges)
    assert all(parent in nodes and child in nodes for parent, child in edges)
    assert styles == [f"n{short(lineage.root)}"]


def test_mermaid_edges_point_parent_to_child_and_labels_are_escaped():
    text = lineage_mermaid(diamond_ancestors(), NAMES)
    assert f"  n{short(CLEAN)} --> n{short(RESULT)}" in text.splitlines()
    labels = [m.group(2) for m in map(_NODE.match, text.splitlines()) if m]
    assert "clean #quot;quoted#quot; 2<br/>" + short(CLEAN) in labels
    assert "feat\\ures<br/>second line<br/>" + short(FEATURES) in labels
    assert all('"' not in label and "\n" not in label for label in labels)


def test_mermaid_escapes_its_own_specials():
    root = _d(7)
    text = lineage_mermaid(Lineage(root, "ancestors", {root: 0}, ()), {root: "a#b<i>&`c`"})
    assert f'n{short(root)}["a#35;b#lt;i#gt;#amp;#96;c#96;<br/>{short(root)}"]' in text


def test_mermaid_ids_fall_back_to_full_digest_on_collision():
    a, b = b"\x00" * 31 + b"\x01", b"\x00" * 31 + b"\x02"
    text = lineage_mermaid(Lineage(a, "ancestors", {a: 0, b: 1}, ((a, b),)), {})
    assert f"  n{b.hex()} --> n{a.hex()}" in text.splitlines()
