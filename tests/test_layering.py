"""The import graph, read from the source with ``ast``: dependencies point one way
(api → search / indexer → foundation and store), the runtime never imports the training
wing, only the store speaks SQL, and no module imports itself through others (no
circle, lazy imports inside functions included; ``if TYPE_CHECKING:`` blocks never run
and are left out).

Documented exceptions, each above the layers it imports:
- ``clipfind.library`` (and its argument helpers ``clipfind.library_args``): the Python
  API facade, which calls search and the indexer as the shells do;
- ``clipfind/__init__.py``: lazy exports of that facade's names (by string, on first use);
- ``clipfind.__main__``: ``python -m clipfind``, the CLI entry point.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FACADE = {"clipfind", "clipfind.library", "clipfind.library_args", "clipfind.__main__"}
SQL_LIBRARIES = ("sqlalchemy", "alembic")


def package_dirs(repo: Path) -> dict[str, Path]:
    """``import name -> folder`` from pyproject's setuptools package-dir."""
    doc = tomllib.loads((repo / "pyproject.toml").read_text())
    return {name: repo / folder for name, folder in doc["tool"]["setuptools"]["package-dir"].items()}


def modules(repo: Path) -> dict[str, Path]:
    """Every module of the distribution, by its import name."""
    found: dict[str, Path] = {}
    dirs = package_dirs(repo)
    for package, folder in sorted(dirs.items(), key=lambda kv: -len(kv[0])):
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            # a folder mapped to its own package (clipfind/indexer would be clipfind.indexer
            # twice): the longest mapping wins
            found.setdefault(name, path)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk_runtime(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules ``name`` imports anywhere in its file (known modules resolved to the
    module itself when ``from pkg import submodule``), plus literal
    ``importlib.import_module("...")`` calls."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in _walk_runtime(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            out.add(node.args[0].value)
    return out


def graph(repo: Path) -> dict[str, set[str]]:
    mods = modules(repo)
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def _within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer(module: str) -> str:
    for part in ("store", "indexer", "search", "api", "training", "data"):
        if _within(module, f"clipfind.{part}"):
            return part
    return "facade" if module in FACADE else "foundation"


# layer -> layers it must not import
FORBIDDEN = {
    "foundation": {"indexer", "search", "api", "training", "facade"},
    "store": {"indexer", "search", "api", "training", "facade"},
    "indexer": {"search", "api", "training", "facade"},
    "search": {"indexer", "api", "training", "facade"},
}


def violations(g: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(g.items()):
        own = layer(module)
        for target in sorted(targets):
            if _within(target, *SQL_LIBRARIES) and own != "store":
                found.append(f"{module} imports {target}: only clipfind.store speaks SQL")
            if _within(target, "clipfind.store.schema") and own != "store":
                found.append(f"{module} imports {target}: the tables are the store's own")
            if not _within(target, "clipfind"):
                continue
            if layer(target) in FORBIDDEN.get(own, set()):
                found.append(f"{module} ({own}) imports {target} ({layer(target)})")
    return found


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


# -- the project ---------------------------------------------------------------------
def test_dependencies_point_one_way() -> None:
    assert violations(graph(REPO)) == []


def test_no_import_circle() -> None:
    assert cycles(graph(REPO)) == []


def test_the_walk_sees_the_whole_distribution() -> None:
    """Guards the guard: a mapping that found no files would pass every rule above."""
    g = graph(REPO)
    for expected in ("clipfind.store.catalog", "clipfind.indexer.writer", "clipfind.search.engine",
                     "clipfind.search.detect.detector", "clipfind.api.http.app",
                     "clipfind.training.trainer"):
        assert expected in g
    assert "sqlalchemy" in g["clipfind.store.catalog"]
    assert "clipfind.store.catalog" in g["clipfind.indexer.writer"] or any(
        t.startswith("clipfind.store") for t in g["clipfind.indexer.writer"])


# -- the checker catches what it should (a scratch tree with forbidden imports) ------------
def _scratch(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.package-dir]\n"clipfind" = "clipfind"\n"clipfind.search" = "search"\n'
        '"clipfind.indexer" = "indexer"\n"clipfind.training" = "training"\n')
    for rel, text in {"clipfind/__init__.py": "", "clipfind/store/__init__.py": "",
                      "search/__init__.py": "", "indexer/__init__.py": "",
                      "training/__init__.py": "", **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return graph(tmp_path)


@pytest.mark.parametrize(("rel", "text", "why"), [
    ("clipfind/store/x.py", "from clipfind.search import engine\n", "(store) imports clipfind.search"),
    ("clipfind/store/x.py", "def f():\n    import clipfind.indexer.run\n",
     "(store) imports clipfind.indexer"),
    ("search/x.py", "from clipfind.indexer import run\n", "(search) imports clipfind.indexer"),
    ("indexer/x.py", "from ..search import engine\n", "(indexer) imports clipfind.search"),
    ("search/x.py", "import clipfind.training.trainer\n", "(search) imports clipfind.training"),
    ("clipfind/x.py", "from clipfind.training import state\n", "(foundation) imports clipfind.training"),
    ("search/x.py", "from sqlalchemy import select\n", "only clipfind.store speaks SQL"),
    ("clipfind/x.py", "import sqlalchemy.orm\n", "only clipfind.store speaks SQL"),
    ("search/x.py", "from clipfind.store.schema import Item\n", "the tables are the store's own"),
    ("search/x.py", "import importlib\nimportlib.import_module('clipfind.indexer.run')\n",
     "(search) imports clipfind.indexer"),
])
def test_checker_reports_forbidden_imports(tmp_path: Path, rel: str, text: str, why: str) -> None:
    found = violations(_scratch(tmp_path, {rel: text, "search/engine.py": "", "indexer/run.py": "",
                                           "training/trainer.py": "", "training/state.py": ""}))
    assert any(why in v for v in found), found


def test_checker_allows_the_documented_exceptions(tmp_path: Path) -> None:
    g = _scratch(tmp_path, {
        "clipfind/library.py": "from clipfind.search import engine\nfrom clipfind.indexer import run\n",
        "clipfind/store/x.py": "from sqlalchemy import select\nfrom clipfind.store import schema\n",
        "clipfind/store/schema.py": "", "search/engine.py": "", "indexer/run.py": "",
        "search/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlalchemy\n"})
    assert violations(g) == []


def test_checker_finds_a_circle(tmp_path: Path) -> None:
    g = _scratch(tmp_path, {"training/state.py": "def f():\n    from clipfind.training import trainer\n",
                            "training/trainer.py": "from clipfind.training.state import f\n"})
    assert cycles(g) == [["clipfind.training.state", "clipfind.training.trainer"]]
