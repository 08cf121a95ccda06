"""Measure the package's shape: import cycles, edges between layers, longest functions, widest signatures.

Reads the source with `ast` (nothing is imported or run), so it measures any checkout:
    python hack/arch_metrics.py [--root operator] [--top 10]
Every import counts, those under ``if TYPE_CHECKING:`` and inside functions too: a cycle through a
type-only import still couples the modules.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = "detection_operator"


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in known and t != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def _functions(modules: dict[str, Path]) -> list[tuple[int, int, str]]:
    rows = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
                count = len([p for p in params if p.arg not in ("self", "cls")])
                count += bool(a.vararg) + bool(a.kwarg)
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                rows.append((length, count, f"{name}.{node.name}:{node.lineno}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("operator"))
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    modules = _modules(args.root)
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    cycles = _cycles(graph)
    print(f"modules: {len(modules)}; import cycles (TYPE_CHECKING and local imports included): {len(cycles)}")
    for cycle in cycles:
        print("  cycle:", " <-> ".join(m.removeprefix(PACKAGE + ".") for m in cycle))
    edges: dict[tuple[str, str], int] = defaultdict(int)
    for source, targets in graph.items():
        for target in targets:
            if _layer(source) != _layer(target) and "(root)" not in (_layer(source), _layer(target)):
                edges[_layer(source), _layer(target)] += 1
    print("edges between top-level packages (importer -> imported: module imports):")
    for (source, target), count in sorted(edges.items()):
        print(f"  {source} -> {target}: {count}")
    rows = _functions(modules)
    print(f"the {args.top} longest functions (lines):")
    for length, _, where in sorted(rows, reverse=True)[: args.top]:
        print(f"  {length:4d}  {where}")
    print(f"the {args.top} largest parameter counts (self/cls not counted):")
    widest = sorted(((count, -length, where) for length, count, where in rows), reverse=True)
    for count, _, where in widest[: args.top]:
        print(f"  {count:4d}  {where}")


if __name__ == "__main__":
    main()
