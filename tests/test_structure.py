"""The package's shape: no import cycles (module-level and lazy imports alike), no module over
~500 lines, and the deploy side never importing the model side at module level."""

from __future__ import annotations

import ast
from pathlib import Path

import vilt_edge

ROOT = Path(vilt_edge.__file__).parent
MAX_LINES = 500
# The torch-free deploy side: what an app on a robot imports.
DEPLOY = ("vilt_edge.runtime", "vilt_edge.bundle", "vilt_edge.preprocess", "vilt_edge.text",
          "vilt_edge.default_bundle", "vilt_edge.runtimes", "vilt_edge.devices")  # fmt: skip


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, known: set[str], top_level_only: bool = False) -> set[str]:
    """The vilt_edge modules `name` imports (anywhere in it, unless `top_level_only`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert "vilt_edge.cli" in graph and graph["vilt_edge.cli"]  # the walk does see imports
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_500_lines():
    long = {
        name: count
        for name, path in _modules().items()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_deploy_side_does_not_import_the_model_side_at_module_level():
    modules = _modules()
    for name, path in modules.items():
        if not name.startswith(DEPLOY):
            continue
        model_side = {m for m in _imports(name, path, set(modules), top_level_only=True)
                      if m.startswith("vilt_edge.model")}  # fmt: skip
        assert model_side == set(), name
