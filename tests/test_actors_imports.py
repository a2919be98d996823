"""actors/ imports form no circle (lazy imports inside functions included), and
no actor module reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def _graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in (ROOT / "actors").glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "actors":
                    graph[name].update(a.name for a in node.names if a.name in modules)
                elif node.module.startswith("actors."):
                    graph[name].add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("actors."):
                        graph[name].add(a.name.split(".")[1])
    return graph


def test_actors_import_no_circle() -> None:
    graph = _graph()
    assert "ray_session" in graph and graph["ray_embed"] >= {"ray_session"}

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"import circle: {' -> '.join([*path, node])}"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])

    for module in graph:
        visit(module, [])


def test_no_actor_module_imports_another_ones_private_names() -> None:
    for path in (ROOT / "actors").glob("*.py"):
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("actors"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
