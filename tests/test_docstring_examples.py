"""Every ```python example in the package's docstrings runs, as a user would paste it.

The examples of one package run in one subprocess (as ``tests/test_docs.py`` runs a
page), each in a fresh namespace, with the suite's Prefect server and Dask cluster,
after the ``/tmp/doc-*`` folders they name are removed (so that a second run starts as
the first did). An example that only imports, or only defines, is refused:
the examples are the documentation's promise that the code works.
"""

from __future__ import annotations

import ast
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.test_docs import run_blocks

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "icechunk_prefect"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _examples() -> list[tuple[str, str, str]]:
    """(name, package, code) of every example."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if not isinstance(
                node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                continue
            doc = ast.get_docstring(node)
            for i, block in enumerate(_BLOCK.findall(doc or "")):
                name = getattr(node, "name", "<module>")
                label = f"{module}:{name}" + (f"#{i + 1}" if i else "")
                # Prefect's convention for block examples is the placeholder name
                # "BLOCK_NAME" (its standard block tests require it), not a valid name.
                code = textwrap.dedent(block).replace('"BLOCK_NAME"', '"block-name"')
                found.append((label, package, code))
    return found


EXAMPLES = _examples()
GROUPS = sorted({package for _, package, _ in EXAMPLES})
CODE = {name: code for name, _, code in EXAMPLES}


def _does_something(code: str) -> bool:
    """Whether an example runs a statement beyond imports, definitions and comments."""
    tree = ast.parse(code)
    inert = ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef
    return any(not isinstance(node, inert) for node in tree.body)


def test_examples_are_collected() -> None:
    assert len(EXAMPLES) >= 40
    assert "icechunk_prefect.flows:to_icechunk" in CODE
    assert not _does_something("import os\ndef f():\n    return 1\n# f()\n")


@pytest.mark.parametrize("name", list(CODE))
def test_example_does_something(name: str) -> None:
    assert _does_something(CODE[name]), f"{name}: the example only imports or defines; make it run"


@pytest.mark.parametrize("group", GROUPS)
def test_docstring_examples_run(group: str, tmp_path: Path, dask_cluster: Any) -> None:
    """The examples of the modules in ``group``, in one subprocess (as test_docs runs a page)."""
    blocks = [(name, code) for name, package, code in EXAMPLES if package == group]
    for _, code in blocks:
        for folder in set(re.findall(r"/tmp/doc-[\w.-]+", code)):
            shutil.rmtree(folder, ignore_errors=True)
    run_blocks(group, blocks, tmp_path, dask_cluster.scheduler_address)
