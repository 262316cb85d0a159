"""The package's import graph: every module imports, no cycles, and the layers point one way."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import otel_llm_usage

PACKAGE = "otel_llm_usage"
ROOT = Path(otel_llm_usage.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path) -> set[str]:
    """Package modules `name` imports at run time (at module level or inside functions)."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    out = set()
    for target in found:
        # Importing a.b.c runs the package a.b first, unless a.b is the importer's own package
        # (already running) or the root package (which imports the public API from everything).
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            mod = ".".join(parts[:i])
            if mod in MODULES and mod != name and not name.startswith(mod + "."):
                out.add(mod)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    assert importlib.import_module(name).__name__ == name


def test_the_package_has_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            walk(name)


def _reaches(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("otel_llm_usage.recorder", "otel_llm_usage.rollup"),  # the recorder knows only its listeners
        ("otel_llm_usage.recorder", "otel_llm_usage.runs"),
        ("otel_llm_usage.context", "otel_llm_usage.rollup"),
        ("otel_llm_usage.rollup", "otel_llm_usage.recorder"),  # the rollup hears of calls as data
        ("otel_llm_usage.rollup", "otel_llm_usage.instrumentor"),
        ("otel_llm_usage.runs", "otel_llm_usage.instrumentor"),
        ("otel_llm_usage.providers.openai", "otel_llm_usage.runs"),
        ("otel_llm_usage.providers.openai", "otel_llm_usage.instrumentor"),
    ],
)
def test_layers_import_downwards_only(lower: str, upper: str) -> None:
    assert lower in GRAPH and upper in GRAPH
    assert upper not in _reaches(lower) | {lower}, f"{lower} imports {upper}"
