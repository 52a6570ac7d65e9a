"""The package's shape: no import circle among edgeft's modules (module-level imports, the ones that
run at import time), and the timing core imports without torch, transformers or pydantic so it can
run on a device that has only numpy and a runtime."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "edgeft"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_blocks(tree) -> set[int]:
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}


def _imports(path: Path, name: str, modules: set[str], lazy: bool) -> set[str]:
    """edgeft modules that `name` imports: at module level (what runs at import time), or with `lazy`
    anywhere in the file (function-level imports too); never those under `if TYPE_CHECKING`."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_checking_blocks(tree)
    out = set()
    for node in (ast.walk(tree) if lazy else tree.body):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from . import x` may name a submodule
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {n: _imports(p, n, set(files), lazy) for n, p in files.items()}
    for n in list(graph):                 # importing a.b.c runs a/__init__ and a/b/__init__ first
        parent = n.rpartition(".")[0]
        while parent:
            graph[n].add(parent)
            parent = parent.rpartition(".")[0]
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m == n or (n.startswith(m + ".")):   # a package's own __init__ imported by its submodule
                continue
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_find_cycle_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("lazy", [False, True], ids=["import-time", "with-function-level-imports"])
def test_no_import_circle(lazy):
    graph = import_graph(lazy)
    assert "edgeft.stages" in graph["edgeft.recipe"]          # the graph is read, not empty
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("module", ["edgeft.ops.timing"])
def test_timing_core_needs_no_torch(module):
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'transformers', 'pydantic', 'onnx') "
            f"if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
