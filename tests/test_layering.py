"""Layering: hullft/ is the Ray-free library (it never imports ray, hydra or omegaconf),
the project's modules import each other without circles, and the installed packages
never import the repository's tools/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("ray", "hydra", "omegaconf")
PACKAGES = ("hullft", "actors", "tools")


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


# ---- the project's own import graph ---------------------------------------------------

# Circles owned by work in progress elsewhere, each with where it is being removed.
# A circle not listed here fails the test; remove an entry once its circle is gone.
KNOWN_CIRCLES: dict[frozenset[str], str] = {}


def _module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _prefixes(name: str) -> set[str]:
    """``a.b.c`` -> {a, a.b}: the packages Python initialises before ``a.b.c``."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at module level or in a function (a lazy import is still
    a dependency), except under ``if TYPE_CHECKING:``, which never runs."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules whose code runs when it imports them.

    ``import a.b.c`` / ``from a.b.c import x`` runs ``a``, ``a.b`` and ``a.b.c`` (and
    ``a.b.c.x`` if that is a module), so all of them are edges; except the importer's own
    enclosing packages, which Python has already started initialising (a package's
    ``__init__`` importing its submodules is not a circle), unless a name other than a
    submodule is taken from one of them.
    """
    files = _module_files()
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        own = _prefixes(module)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(), filename=str(path))):
            targets: set[str] = set()
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets |= _prefixes(alias.name) | {alias.name}
            else:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = node.module or ""
                if node.level:
                    name = ".".join([*base, *([node.module] if node.module else [])])
                targets |= _prefixes(name) | {name}
                for alias in node.names:
                    if f"{name}.{alias.name}" in files:
                        targets.add(f"{name}.{alias.name}")
                    elif name in own:
                        graph[module].add(name)  # a name from a half-initialised package
            graph[module] |= {t for t in targets if t in files and t != module and t not in own}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = {stack.pop()}
            while v not in component:
                component.add(stack.pop())
            if len(component) > 1:
                circles.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_the_graph_sees_real_edges() -> None:
    graph = import_graph()
    assert "hullft.selection.registry" in graph["hullft.config"]  # config reads the table
    assert "hullft.selection" in graph["hullft.config"]  # ...and so runs the package init
    assert "hullft.selection" not in graph["hullft.selection.fw"]  # own package: not an edge
    assert "hullft.selection.fw_kernel" in graph["hullft.selection.fw"]


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert import_circles(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_circles() -> None:
    """No module of hullft/, actors/ or tools/ imports itself through others."""
    circles = import_circles(import_graph())
    unexpected = [sorted(c) for c in circles if c not in KNOWN_CIRCLES]
    assert not unexpected, f"import circles: {unexpected}"
    in_library = [sorted(c) for c in circles if any(m.startswith("hullft") for m in c)]
    assert not in_library, f"import circles in hullft/: {in_library}"


def test_installed_packages_never_import_tools() -> None:
    graph = import_graph()
    bad = {m: sorted(t for t in ts if t.split(".")[0] == "tools") for m, ts in graph.items()}
    bad = {m: ts for m, ts in bad.items() if ts and not m.startswith("tools")}
    assert not bad, f"tools/ is not installed, yet {bad} import it"


# ---- lazy imports ---------------------------------------------------------------------

# Packages that cost a noticeable part of a second (or a GPU context) to import; a
# function may import one of these, or a project module that imports one, lazily.
HEAVY = frozenset(
    {
        "faiss",
        "matplotlib",
        "pandas",
        "pyarrow",
        "ray",
        "sentence_transformers",
        "tokenizers",
        "torch",
        "transformers",
    }
)


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported (not in a function or class,
    not under ``if TYPE_CHECKING:``)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                stack.extend(block)
    return found


def _absolute(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement imports (relative ones made absolute)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not node.level:
        return [node.module or ""]
    package = module if is_package else module.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return [".".join([*base, *([node.module] if node.module else [])])]


def heavy_at_import() -> dict[str, set[str]]:
    """Module -> the HEAVY packages that importing it loads (module-level imports,
    followed through the project's own modules)."""
    files = _module_files()
    direct: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        names = [
            n
            for node in _module_level_imports(tree)
            for n in _absolute(node, module, path.name == "__init__.py")
        ]
        direct[module] = {n for n in names if n}
    memo: dict[str, set[str]] = {}

    def heavy(module: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if module in memo:
            return memo[module]
        out: set[str] = set()
        for name in direct.get(module, ()):
            root = name.split(".")[0]
            if root in HEAVY:
                out.add(root)
            for target in {*_prefixes(name), name} & files.keys():
                if target != module and target not in seen:
                    out |= heavy(target, seen | {module})
        memo[module] = out
        return out

    return {m: heavy(m) for m in files}


def _has_reason(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line or in the run of import/comment lines above it."""
    if "#" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and (
        not lines[i].strip() or lines[i].strip().startswith(("#", "import ", "from "))
    ):
        if "#" in lines[i]:
            return True
        i -= 1
    return False


def _optional_imports(tree: ast.AST) -> set[int]:
    """Imports in a ``try`` that handles ImportError (or ModuleNotFoundError): optional
    or platform-bound packages, whose ``except`` clause is the reason they are there."""
    handles = ("ImportError", "ModuleNotFoundError")
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            h.type is not None and any(e in ast.unparse(h.type) for e in handles)
            for h in node.handlers
        ):
            found |= {
                id(n)
                for stmt in node.body
                for n in ast.walk(stmt)
                if isinstance(n, (ast.Import, ast.ImportFrom))
            }
    return found


def lazy_import_findings() -> list[str]:
    """Function-level imports that import nothing heavy, or give no reason (imports
    of optional packages, in a ``try`` that handles ImportError, are exempt)."""
    files = _module_files()
    heavy = heavy_at_import()
    findings = []
    for module, path in files.items():
        if module.startswith("tools"):
            continue
        source = path.read_text()
        tree = ast.parse(source, filename=str(path))
        top = {id(n) for n in _module_level_imports(tree)} | _optional_imports(tree)
        lines = source.splitlines()
        for node in _runtime_imports(tree):
            if id(node) in top:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            for name in _absolute(node, module, path.name == "__init__.py"):
                root = name.split(".")[0]
                loads = (
                    heavy.get(name, set()) | heavy.get(name.rpartition(".")[0], set())
                    if root in PACKAGES
                    else {root} & HEAVY
                )
                if not loads:
                    findings.append(f"{where}: {name} is light; import it at module level")
                elif not _has_reason(lines, node.lineno):
                    findings.append(f"{where}: say why {name} ({sorted(loads)}) is lazy")
    return findings


def test_heavy_at_import_follows_project_modules() -> None:
    heavy = heavy_at_import()
    assert "torch" in heavy["hullft.ttft"]
    assert "ray" in heavy["actors.sweep"]  # through actors.driver
    assert "torch" not in heavy["hullft.pipeline"]  # it imports the engines lazily


def test_lazy_imports_are_heavy_and_say_why() -> None:
    """A function imports lazily only what is heavy to import (a HEAVY package, or a
    project module that loads one), with a comment saying why; the rest of the
    project's imports are at module level, where the import graph shows them."""
    findings = lazy_import_findings()
    assert not findings, "\n".join(findings)
