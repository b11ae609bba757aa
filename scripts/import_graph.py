"""The import graph of almadeliver, from the code: the diagram in README.md (Development) and its one rule.

``python scripts/import_graph.py`` prints which part imports which (every import, also those inside a
function) and exits 1 when modules import each other in a circle. ``tests/test_layout.py`` checks that the README shows this diagram and that there
is no circle.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "almadeliver"
# the parts, in the order data flows through them; a module not named here belongs to its subpackage
PARTS = ("cli", "scale", "workflow", "archive", "transfer", "delivery", "casa", "packaging", "sim")
BASE = "ids, errors, units, files"        # imported by every part: not drawn


def module_name(path: Path) -> str:
    """``almadeliver/casa/restore.py`` -> ``almadeliver.casa.restore``."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """The almadeliver modules ``path`` imports, anywhere in it (``from . import x`` counted as ``x``)."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("almadeliver")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if not target.startswith("almadeliver"):
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return found


def module_graph() -> dict[str, set[str]]:
    """Every almadeliver module and the almadeliver modules it imports."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts}
    return {name: {m for m in imports(path) if m in paths and m != name} for name, path in paths.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a circle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            # a package importing its own modules (__init__ re-exports) is not a circle of parts
            if len(group) > 1 and not all(g == v or g.startswith(v + ".") or v.startswith(g + ".") for g in group):
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def part_of(module: str) -> str | None:
    """The part a module belongs to (None for the base modules and the package itself)."""
    words = module.split(".")
    return words[1] if len(words) > 1 and words[1] in PARTS else None


def diagram() -> str:
    """The parts and, after each arrow, the parts it imports (in data-flow order)."""
    edges: dict[str, set[str]] = {p: set() for p in PARTS}
    for module, imported in module_graph().items():
        source = part_of(module)
        for target in filter(None, map(part_of, imported)):
            if source and target != source:
                edges[source].add(target)
    lines = [f"{p:<10} -> {', '.join(t for t in PARTS if t in edges[p]) or '(only the base)'}" for p in PARTS]
    return "\n".join(lines + [f"(every part imports the base modules: {BASE})"])


if __name__ == "__main__":
    print(diagram())
    loops = circles(module_graph())
    for group in loops:
        print("import circle: " + " <-> ".join(group), file=sys.stderr)
    sys.exit(1 if loops else 0)
