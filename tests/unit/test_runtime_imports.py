"""The runtime's modules import one way: config and runtime know nothing of the ops or
the daemon, the ops nothing of the daemon, and no module hides an import of another
tipcpy module inside a function (the old way round a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import tipcpy.runtime

ROOT = Path(tipcpy.runtime.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """(tipcpy.runtime modules imported at top level, tipcpy imports inside functions)"""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: list[str] = []

    def resolve(node: ast.ImportFrom) -> list[str]:
        base = node.module or ""
        if node.level:
            anchor = pkg.split(".")
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        return [base] + [f"{base}.{a.name}" for a in node.names]

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = resolve(node)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        in_function = any(isinstance(p, ast.FunctionDef | ast.AsyncFunctionDef)
                          for p in ast.walk(tree) if node in ast.walk(p) and p is not node)
        for name in names:
            if in_function and name.startswith("tipcpy"):
                nested.append(f"{mod}: {name}")
            elif name.startswith("tipcpy.runtime") and name != mod:
                top.add(name)
    return top, nested


def test_runtime_imports_form_a_dag_without_function_level_imports() -> None:
    files = sorted(ROOT.rglob("*.py"))
    mods = {_module(p): p for p in files}
    graph: dict[str, set[str]] = {}
    all_nested: list[str] = []
    for m, p in mods.items():
        top, nested = _imports(p)
        graph[m] = {t for t in top if t in mods and t != m}
        all_nested += nested
    assert all_nested == []
    # no cycle: repeatedly remove modules that import nothing left
    left = dict(graph)
    while left:
        leaves = [m for m, deps in left.items() if not deps & set(left)]
        assert leaves, f"import cycle among {sorted(left)}"
        for m in leaves:
            del left[m]
    # the arrows the design names
    for low in ("tipcpy.runtime.config", "tipcpy.runtime.runtime"):
        assert not any(d.startswith(("tipcpy.runtime.ops", "tipcpy.runtime.daemon"))
                       for d in graph[low]), (low, graph[low])
    assert not any(d == "tipcpy.runtime.daemon" for m in graph if m.startswith(
        "tipcpy.runtime.ops") for d in graph[m])
    assert "tipcpy.runtime.ops" in graph["tipcpy.runtime.daemon"]
