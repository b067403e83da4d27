"""The documentation site builds without warnings, and every ```python block in docs/ runs.

Each page's blocks run in a fresh subprocess (one per page), each block in a fresh
namespace, against the test session's Prefect server (``PREFECT_API_URL``).
Blocks that cannot run as they stand are marked ```text or ```bash in the docs.
Flows that would start their own local Dask cluster run on the session's shared
cluster instead (same code path, minus a cluster start per flow run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every fenced block tagged ``python`` (or ``py``)."""
    blocks: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m["indent"], m["fence"], m["lang"].lower()
        body: list[str] = []
        start = i + 2
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if lang in ("python", "py"):
            blocks.append((start, "\n".join(body) + "\n"))
    return blocks


RUNNER = r"""
import json, os, sys, traceback

addr = os.environ.get("ICECHUNK_PREFECT_DOCS_DASK_ADDRESS")
if addr:
    # Flows whose task runner would start a local cluster use the test session's
    # shared cluster instead (a cluster start per flow run is slow on a shared machine).
    from prefect_dask import DaskTaskRunner

    _enter = DaskTaskRunner.__enter__

    def __enter__(self):
        if not self.address and not self.cluster_class:
            self.address = addr
        return _enter(self)

    DaskTaskRunner.__enter__ = __enter__

page, blocks = sys.argv[1], json.load(sys.stdin)
for line, code in blocks:
    print(f"--- {page}:{line}", flush=True)
    try:
        exec(compile(code, f"{page}:{line}", "exec"), {"__name__": "__main__"})
    except BaseException:
        traceback.print_exc()
        print(f"FAILED block at {page}:{line}", flush=True)
        sys.exit(1)
print("ALL BLOCKS PASSED", flush=True)
"""

PAGES = sorted(p for p in DOCS.glob("*.md") if python_blocks(p.read_text()))


def test_block_extraction_finds_fenced_python_only():
    text = "intro\n```python\nx = 1\n```\n```text\nnot = code(\n```\n  ```python\n  y = 2\n  ```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (9, "y = 2\n")]


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.glob("*.md"):
        assert f" {page.name}" in nav, f"{page.name} is missing from the mkdocs nav"


def test_site_builds_strict(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "api" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "FlowDatasetWriter" in api and "track_progress" in api


def run_blocks(label: str, blocks: list, cwd: Path, scheduler_address: str) -> None:
    """Run ``blocks`` ((where, code) pairs) in one fresh interpreter, as :data:`RUNNER` does,
    against the test session's Prefect server and Dask cluster; fail with its output."""
    import json

    env = dict(os.environ)  # PREFECT_API_URL: the test session's server
    env["ICECHUNK_PREFECT_DOCS_DASK_ADDRESS"] = scheduler_address
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, label],
        input=json.dumps(blocks),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    out = proc.stdout[-6000:] + proc.stderr[-6000:]
    assert proc.returncode == 0 and "ALL BLOCKS PASSED" in proc.stdout, out


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_blocks_run(page: Path, tmp_path, dask_cluster):
    run_blocks(page.name, python_blocks(page.read_text()), tmp_path, dask_cluster.scheduler_address)
