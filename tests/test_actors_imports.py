"""No actor module reaches into another's private names (import circles are
checked for the whole project in tests/test_layering.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_no_actor_module_imports_another_ones_private_names() -> None:
    for path in (ROOT / "actors").glob("*.py"):
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("actors"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
