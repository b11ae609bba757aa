"""The package's shape: no import circle, and the README's Development diagram is the one the code draws."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _graph_module():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_imports_itself_through_others():
    graph = _graph_module()
    modules = graph.module_graph()
    assert "almadeliver.scale.steps" in modules["almadeliver.scale.run"]       # the graph is read at all
    assert "almadeliver.scale.run" not in modules["almadeliver.scale.steps"]   # the circle that was
    assert graph.circles(modules) == []
    # the check finds a circle when there is one
    assert graph.circles({"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}) == [["a.x", "a.y"]]


def test_the_readme_shows_the_diagram_the_code_draws():
    assert _graph_module().diagram() in (REPO / "README.md").read_text(), \
        "the import diagram changed: paste `python scripts/import_graph.py` into README.md (Development)"
