"""No import cycle between the files of tipcpy/ (issue 10).

Walks every module with ``ast``: imports at module level and inside functions, classes
and ``if TYPE_CHECKING:`` blocks all count (a cycle hidden behind a function-level import
is still a cycle in the design), relative imports are resolved against the importing
module's package.  ``from pkg import name`` points at ``pkg.name`` when that is a module
of its own, else at ``pkg``.  Parent packages a dotted import runs implicitly are not
edges: a package ``__init__`` re-exporting its modules would otherwise form a cycle with
each of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = "tipcpy"


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted((ROOT / PKG).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    is_pkg = path.name == "__init__.py"
    package = mod if is_pkg else mod.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, mods)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                absolute = ".".join(base + ([node.module] if node.module else []))
            else:
                absolute = node.module or ""
            for alias in node.names:
                sub = f"{absolute}.{alias.name}"
                target = sub if sub in mods else _resolve(absolute, mods)
                if target:
                    found.add(target)
    found.discard(mod)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected component of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[set[str]] = []
    counter = 0

    def strong(v: str) -> None:       # Tarjan; the graph is small, recursion is fine
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: set[str] = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    cycles = []
    for comp in comps:
        start = min(comp)
        # breadth-first back to start inside the component: a shortest cycle
        prev: dict[str, str] = {}
        frontier = [start]
        seen = {start}
        end = None
        while frontier and end is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & comp):
                    if w == start:
                        end = v
                        break
                    if w not in seen:
                        seen.add(w)
                        prev[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            frontier = nxt
        assert end is not None
        path = [end]
        while path[-1] != start:
            path.append(prev[path[-1]])
        cycles.append(list(reversed(path)) + [start])
    return cycles



def test_finder_sees_cycles_of_every_kind() -> None:
    """The checker itself can fail: a 2-cycle, a 3-cycle and a self-contained DAG."""
    g = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    got = sorted(find_cycles(g))
    assert got == [["a", "b", "a"], ["c", "d", "e", "c"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_graph_resolves_relative_and_function_level_imports(tmp_path: Path) -> None:
    src = tmp_path / "x.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "from .base import Bearer\n"
        "from .. import addr\n"
        "if TYPE_CHECKING:\n"
        "    from tipcpy.wire.items import MediaAddr\n"
        "def f():\n"
        "    import tipcpy.core.stack\n"
        "    from ..wire import msg\n"
        "class C:\n"
        "    def g(self):\n"
        "        from tipcpy.runtime import daemon\n")
    assert _imports("tipcpy.bearer.x", src, _modules()) == {
        "tipcpy.bearer.base", "tipcpy.addr", "tipcpy.wire.items", "tipcpy.core.stack",
        "tipcpy.wire.msg", "tipcpy.runtime.daemon"}
    g = import_graph()
    assert "tipcpy.bearer.base" in g["tipcpy.bearer.udp"]         # from .base import ...
    assert "tipcpy.wire.items" in g["tipcpy.wire.msg"]
    assert all(t in g for targets in g.values() for t in targets)


def test_no_import_cycle_between_files() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles between files:\n" + "\n".join(cycles_text(cycles))


def cycles_text(cycles: list[list[str]]) -> list[str]:
    return ["  " + " -> ".join(c) for c in cycles]
