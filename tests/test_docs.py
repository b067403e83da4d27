"""The documentation site builds without warnings, and every ```python block of the README
and of docs/ runs as a file, as a user who pastes it into a script runs it.

Each block is written to a file of its own and run as the ``__main__`` module, as
``python FILE`` runs it (``runpy.run_path(FILE, run_name="__main__")``: ``__name__``,
``__file__`` and ``sys.modules["__main__"]`` are the file's, so a local cluster of worker
processes would re-import that file). The blocks of one page run one after another in one
fresh interpreter, against the test session's Prefect server (``PREFECT_API_URL``).
Blocks that cannot run as they stand are marked ```text or ```bash in the docs.

Flows that would start their own local Dask cluster run on the session's shared cluster
instead (same code path, minus a cluster start per flow run); a block whose flow would
start a cluster of worker processes from unguarded top-level code (which those workers
would run again) fails instead, as it would fail for the user.
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

FILE_RUNNER = r"""
import json, os, runpy, sys, traceback

from icechunk_prefect.runtime import IcechunkDaskTaskRunner, unguarded_script_line

addr = os.environ["ICECHUNK_PREFECT_DOCS_DASK_ADDRESS"]
_client = IcechunkDaskTaskRunner.client.fget


def client(self):
    # The session's shared cluster instead of a local one; but a block that would start a
    # cluster of worker processes from unguarded top-level code fails, as it would for a user.
    if self._client is None and not self.address and self._cluster is None:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        values = ctx.parameters.values() if ctx is not None and ctx.parameters else ()
        kwargs = self.cluster_kwargs_for(values)
        found = unguarded_script_line()
        if kwargs is not None and kwargs.get("processes", True) is not False and found:
            raise RuntimeError(
                f"{found[0]} line {found[1]} starts a local cluster of worker processes "
                "outside `if __name__ == '__main__':`: every worker would run it again"
            )
        self.address = addr
    return _client(self)


IcechunkDaskTaskRunner.client = property(client)

label, files = sys.argv[1], json.load(sys.stdin)
for where, path in files:
    print(f"--- {where} ({path})", flush=True)
    sys.argv = [path]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            print(f"FAILED block at {where}: exit {exc.code}", flush=True)
            sys.exit(1)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED block at {where}", flush=True)
        sys.exit(1)
    finally:
        sys.path.remove(os.path.dirname(path))
print("ALL BLOCKS PASSED", flush=True)
"""

PAGES = sorted(p for p in [ROOT / "README.md", *DOCS.glob("*.md")] if python_blocks(p.read_text()))


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


def run_blocks(
    label: str, blocks: list, cwd: Path, scheduler_address: str, runner: str = RUNNER
) -> None:
    """Run ``blocks`` (pairs) in one fresh interpreter with ``runner`` (:data:`RUNNER`:
    (where, code) pairs, each exec'd; :data:`FILE_RUNNER`: (where, file) pairs, each run
    as ``__main__``), against the test session's Prefect server and Dask cluster; fail
    with its output."""
    import json

    env = dict(os.environ)  # PREFECT_API_URL: the test session's server
    env["ICECHUNK_PREFECT_DOCS_DASK_ADDRESS"] = scheduler_address
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", runner, label],
        input=json.dumps(blocks),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    out = proc.stdout[-6000:] + proc.stderr[-6000:]
    assert proc.returncode == 0 and "ALL BLOCKS PASSED" in proc.stdout, out


def block_files(page: Path, folder: Path) -> list[tuple[str, str]]:
    """Each python block of ``page`` written to a file of its own in ``folder``:
    (where, path) pairs."""
    files = []
    for line, code in python_blocks(page.read_text()):
        path = folder / f"{page.stem.lower()}_line{line}.py"
        path.write_text(code)
        files.append((f"{page.name}:{line}", str(path)))
    return files


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_blocks_run_as_files(page: Path, tmp_path, dask_cluster):
    files = block_files(page, tmp_path)
    run_blocks(page.name, files, tmp_path, dask_cluster.scheduler_address, FILE_RUNNER)


def test_an_unguarded_block_that_starts_worker_processes_fails(tmp_path, dask_cluster):
    """The harness fails a block as a user's script would fail: the flow below would start
    a local cluster of worker processes from top-level code that those workers run again."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\n"
        "from prefect import flow, task\n"
        "from icechunk_prefect import DaskClusterConfig\n\n"
        "@task\n"
        "def one() -> int:\n"
        "    return 1\n\n"
        "@flow(task_runner=DaskClusterConfig(n_workers=1).task_runner())\n"
        "def hello() -> int:\n"
        "    return one.submit().result()\n\n"
        "hello()\n"
        "```\n"
    )
    with pytest.raises(AssertionError, match="outside `if __name__ == '__main__':`"):
        run_blocks("page.md", block_files(page, tmp_path), tmp_path, "", FILE_RUNNER)
    guarded = page.read_text().replace(
        "hello()\n```", 'if __name__ == "__main__":\n    hello()\n```'
    )
    page.write_text(guarded)
    run_blocks(
        "page.md",
        block_files(page, tmp_path),
        tmp_path,
        dask_cluster.scheduler_address,
        FILE_RUNNER,
    )
