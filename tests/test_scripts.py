"""Issue 22: scripts that run as pasted, and the local cluster a flow picks for its data.

Each script runs as ``python script.py`` in its own process against the test session's
Prefect server, with no cluster argument (the flow starts its own local cluster), as a
user runs the README's "Use it from Python".
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import history
from tests.test_docs import python_blocks

ROOT = Path(__file__).resolve().parents[1]
GUARD = 'if __name__ == "__main__":'


def run_script(tmp_path: Path, code: str, env: dict[str, str] | None = None, timeout: int = 300):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def _count_flow_runs(name: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async with get_client() as client:
        return await client.count_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[name]))
        )


def flow_runs(name: str = "icechunk-to-icechunk") -> int:
    return asyncio.run(_count_flow_runs(name))


def readme_snippet() -> str:
    section = (ROOT / "README.md").read_text().split("## Use it from Python", 1)[1]
    return python_blocks(section.split("\n## ", 1)[0])[0][1]


def test_readme_snippet_runs_as_a_script_with_retries(tmp_path):
    """The README's snippet, saved as script.py and run with no cluster argument (10 MB: a
    cluster of threads in the script's process): one flow run, one commit; the commit
    step's injected failure is retried there and finds its own commit."""
    repo = tmp_path / "climate.icechunk"
    code = readme_snippet().replace("/tmp/climate.icechunk", str(repo))
    assert GUARD in code and "to_icechunk(" in code
    marker = tmp_path / "fault-marker"
    before = flow_runs()
    proc = run_script(tmp_path, code, env={"ICECHUNK_PREFECT_FAULT_FAIL_AFTER_COMMIT": str(marker)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Nanny" not in out
    commits = history(str(repo))
    assert [c.message for c in commits] == ["initial load", "Repository initialized"]
    assert commits[0].id in proc.stdout  # the printed snapshot id
    assert marker.exists()  # the commit step failed once after committing, and was retried
    assert flow_runs() == before + 1


def test_unguarded_call_that_would_start_worker_processes_is_refused_in_one_line(tmp_path):
    """Called from unguarded top-level code with a cluster of processes, the flow refuses
    before any flow run exists: one line on stderr, exit code 1, nothing written."""
    repo = tmp_path / "repo"
    before = flow_runs()
    proc = run_script(
        tmp_path,
        f"""
        from icechunk_prefect import DaskClusterConfig, to_icechunk
        from icechunk_prefect.synthetic import synthetic_climate

        ds = synthetic_climate(periods=8, nlat=4, nlon=8)
        run = to_icechunk.with_options(task_runner=DaskClusterConfig(n_workers=1).task_runner())
        print(run(ds, {str(repo)!r}, mode="w"))
        """,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: to_icechunk() is called by the top level of")
    assert "(line 7)" in lines[0] and GUARD in lines[0]
    assert not repo.exists()
    assert flow_runs() == before


def test_flow_called_by_a_worker_process_being_spawned_is_refused(tmp_path):
    """A script writes (threads: allowed), then starts a cluster of processes without the
    guard: the spawned worker runs the script again, and its flow call is refused with
    one line before any flow run exists. One flow run, one commit: never recursive."""
    repo = tmp_path / "repo"
    before = flow_runs()
    proc = run_script(
        tmp_path,
        f"""
        from distributed import LocalCluster
        from icechunk_prefect import to_icechunk
        from icechunk_prefect.synthetic import synthetic_climate

        to_icechunk(synthetic_climate(periods=8, nlat=4, nlon=8), {str(repo)!r}, mode="w")
        LocalCluster(n_workers=1, processes=True, dashboard_address=None).close()
        """,
    )
    refusal = (
        "error: to_icechunk() was called while a worker process of a local Dask cluster "
        "was starting"
    )
    assert proc.returncode != 0  # the script's own unguarded cluster cannot start
    assert proc.stderr.count(refusal) == 1, proc.stderr[-4000:]
    assert GUARD in proc.stderr
    assert len(history(str(repo))) == 2  # "Repository initialized" and the parent's commit
    assert flow_runs() == before + 1


@pytest.mark.parametrize(("mib", "threads"), [(8, True), (300, False)])
def test_default_runner_picks_threads_for_small_data_and_processes_beyond(tmp_path, mib, threads):
    """``IcechunkDaskTaskRunner()`` with no cluster settings: a task sees the flow's own
    process for data up to ``SMALL_WRITE_BYTES``, a worker process beyond."""
    proc = run_script(
        tmp_path,
        f"""
        import os
        import dask.array as da
        from prefect import flow, task
        from icechunk_prefect import IcechunkDaskTaskRunner

        @task
        def where() -> int:
            return os.getpid()

        @flow(task_runner=IcechunkDaskTaskRunner())
        def probe(data) -> int:
            return where.submit().result()

        if __name__ == "__main__":
            data = da.zeros(({mib} * 2**20 // 8,), chunks=2**20)  # lazy: nothing allocated
            print("SAME_PROCESS", probe(data) == os.getpid())
        """,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"SAME_PROCESS {threads}" in proc.stdout
