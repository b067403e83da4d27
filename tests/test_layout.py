"""The package's layout: no import circle, a core without Prefect, a curated API that is
documented, and a README layout table that matches the tree."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import icechunk_prefect

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "icechunk_prefect"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules ``path`` imports, at module level or in a function (not for typing)."""
    tree = ast.parse(path.read_text())
    typing_only = _type_checking_lines(tree)
    exports = icechunk_prefect._EXPORTS
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("icechunk_prefect"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif node.module == "icechunk_prefect" and alias.name in exports:
                    found.add(f"icechunk_prefect.{exports[alias.name]}")
                elif node.module in modules:
                    found.add(node.module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    packages = {n for n, p in modules.items() if p.name == "__init__.py"}
    graph = {}
    for name, path in modules.items():
        if name in packages:
            continue  # package docstrings and lazy re-exports are not dependencies
        graph[name] = {m for m in _imports(path, names) if m != name and m not in packages}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle() -> None:
    graph = _graph()
    assert len(graph) > 20  # the walk found the package
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph) or [])}"


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_core_imports_no_prefect() -> None:
    core = [p for p in sorted((PACKAGE / "core").glob("*.py"))]
    assert len(core) >= 8
    for path in core:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                )
                bad = [m for m in mods if m and (m.split(".")[0] in ("prefect", "prefect_dask"))]
                assert not bad, f"{path.name}:{node.lineno} imports {bad}"
                outside = [
                    m
                    for m in mods
                    if m
                    and m.startswith("icechunk_prefect.")
                    and not m.startswith(("icechunk_prefect.core", "icechunk_prefect.errors"))
                    and m
                    not in ("icechunk_prefect.storage.local", "icechunk_prefect.storage.resolve")
                ]
                assert not outside, f"{path.name}:{node.lineno} imports {outside} (outside core)"
    names = ", ".join(_module_name(p) for p in core)
    code = f"import sys, {names}; assert 'prefect' not in sys.modules, 'prefect was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_public_api_is_curated_and_documented() -> None:
    names = icechunk_prefect.__all__
    assert 20 <= len(names) <= 30, len(names)
    api_doc = (ROOT / "docs" / "api.md").read_text()
    for name in names:
        obj = getattr(icechunk_prefect, name)
        assert obj is not None
        if name.isupper():
            continue  # a constant (documented with its module)
        assert obj.__doc__, f"{name} has no docstring"
        assert re.search(rf"\b{name}\b", api_doc), f"{name} is not in docs/api.md"


def test_readme_layout_table_matches_the_tree() -> None:
    """One row per entry of the package (and per top-level folder); a subpackage's row
    names its modules."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, re.M))
    tree = {
        f"icechunk_prefect/{p.name}" + ("/" if p.is_dir() else "")
        for p in PACKAGE.iterdir()
        if p.name not in ("__pycache__", "__init__.py")
    }
    tree |= {f"{d}/" for d in ("flows", "deployments", "tests", "docs", "benchmarks")}
    assert set(rows) == tree, (
        f"in the README, not in the tree: {sorted(set(rows) - tree)}; "
        f"in the tree, not in the README: {sorted(tree - set(rows))}"
    )
    for row, what in rows.items():
        if row.startswith("icechunk_prefect/") and row.endswith("/"):
            modules = {p.stem for p in (ROOT / row).glob("*.py") if p.name != "__init__.py"}
            named = set(re.findall(r"`([a-z_]+)`", what))
            assert named == modules, f"{row}: README names {sorted(named)}, holds {sorted(modules)}"
