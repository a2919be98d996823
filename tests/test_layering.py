"""hullft/ is the Ray-free library: it never imports ray, hydra or omegaconf."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("ray", "hydra", "omegaconf")


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted((ROOT / "hullft").rglob("*.py")), ids=str)
def test_library_source_never_imports_the_runtime(path: Path) -> None:
    bad = _imported_roots(path) & set(FORBIDDEN)
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; move that code to actors/"


def test_importing_hullft_loads_neither_ray_nor_hydra() -> None:
    code = (
        "import sys, pkgutil, importlib, hullft\n"
        "for m in pkgutil.walk_packages(hullft.__path__, 'hullft.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_plain_import_is_light() -> None:
    """`import hullft` alone must not drag in torch or faiss (workers pay for those lazily)."""
    code = "import sys, hullft; print(sorted(m for m in ('torch','faiss','transformers') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True
    )
    assert out.stdout.strip() == "[]"
