"""The package's shape: imports flow one way, with no cycle, through the layers of
docs/architecture.rst.

Every ``import`` in every module counts, also those inside functions (a late import is still a
dependency); only imports under ``if TYPE_CHECKING:`` are free, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "provstore"

# Each layer may import itself and the layers listed after it, never one listed before it.
# Keep in step with docs/architecture.rst.
LAYERS: dict[str, set[str]] = {
    "cli": {
        "web",
        "tracking",
        "api",
        "exchange",
        "checks",
        "store",
        "db",
        "capture",
        "config",
        "core",
    },
    # web: the read-only pages of `provstore serve`. The CLI imports it only inside `serve`,
    # so commands other than serve never load Starlette; it reads the store like the CLI does.
    "web": {"api", "exchange", "checks", "store", "db", "capture", "config", "core"},
    "tracking": {"api", "exchange", "checks", "store", "db", "capture", "config", "core"},
    "api": {"exchange", "checks", "store", "db", "capture", "config", "core"},
    "exchange": {"checks", "store", "db", "config", "core"},
    "checks": {"store", "db", "capture", "config", "core"},
    "store": {"db", "capture", "config", "core"},
    "db": {"config", "core"},
    "capture": {"config", "core"},
    "config": {"core"},
    "core": set(),
}


# Modules that belong to a layer named after another module.
GROUPED = {"__main__": "cli", "resolver": "store", "shapes": "api"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(path: Path, known: set[str]) -> set[str]:
    """The provstore modules ``path`` imports at run time (anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _type_checking_only(node)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(path, known) - {name} for name, path in found.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"  # the package's lazy facade
    return GROUPED.get(parts[1], parts[1])


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_module_is_in_a_layer():
    unknown = {name: layer(name) for name in modules() if layer(name) not in LAYERS}
    assert not unknown, f"add these to LAYERS and docs/architecture.rst: {unknown}"


def test_no_runtime_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_flow_from_outer_layers_to_inner():
    wrong = [
        f"{name} ({layer(name)}) imports {target} ({layer(target)})"
        for name, targets in graph().items()
        for target in sorted(targets)
        if layer(target) != layer(name) and layer(target) not in LAYERS[layer(name)]
        and target != "provstore"
    ]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_nothing_inside_imports_the_package_facade():
    # `provstore/__init__.py` imports its names lazily; a module importing it would hide a
    # dependency on whatever the facade's name resolves to.
    users = sorted(name for name, targets in graph().items() if "provstore" in targets)
    assert users == []


def test_subpackage_inits_import_nothing():
    # `import provstore.capture.dists` must not drag in the rest of capture/.
    heavy = {
        name: sorted(targets)
        for name, targets in graph().items()
        if modules()[name].name == "__init__.py" and name != "provstore" and targets
    }
    assert heavy == {}


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_cycle_finder(edges, expected):
    assert find_cycle(edges) == expected


def test_a_late_import_counts(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from provstore.cli import main\n"
        "def f():\n    from provstore.store import Store\n    import provstore.core.errors\n"
    )
    known = {"provstore.cli", "provstore.store", "provstore.core.errors"}
    assert imported(source, known) == {"provstore.store", "provstore.core.errors"}
