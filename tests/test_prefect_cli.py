"""Issue 13: the Prefect CLI works against a server started from this environment.

Every command runs as a subprocess exactly as a user types it (no extra ``--limit`` or
sort options), against the test session's real Prefect server (``PREFECT_API_URL`` is
exported by the ``prefect_api`` fixture):

- the list commands (``prefect deployment ls``, ``flow-run ls``, ``work-pool ls``,
  ``block ls``): with fastapi 0.151-0.154, prefect 3.8.8's server answers 422 to list
  calls made without ``limit`` / ``sort``, so these fail (hence ``fastapi<0.151``);
- the README's ``prefect deploy --all --prefect-file deployments/prefect.yaml`` from the
  project root, non-interactive, then a deployment run executed by
  ``prefect worker start --pool icechunk --run-once``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from uuid import UUID

import icechunk
import zarr
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import FlowRun

from icechunk_prefect import IcechunkRepository

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")


def prefect(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``prefect ARGS...`` from the project root, no terminal (non-interactive), wide output."""
    out = subprocess.run(
        [PREFECT, *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "250"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, (
        f"prefect {' '.join(args)} exited {out.returncode}:\n" + (out.stdout + out.stderr)[-4000:]
    )
    return out


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@flow(name="icechunk-cli-ls-check")
def _tiny_flow() -> int:
    return 1


def _create_deployment(flow_name: str, name: str, pool: str) -> UUID:
    async def create() -> UUID:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name(flow_name)
            return await client.create_deployment(
                flow_id=flow_id, name=name, work_pool_name=pool, entrypoint="flows/x.py:x"
            )

    return asyncio.run(create())


def _read_flow_run(flow_run_id: UUID) -> FlowRun:
    async def read() -> FlowRun:
        async with get_client() as client:
            return await client.read_flow_run(flow_run_id)

    return asyncio.run(read())


def test_prefect_list_commands(prefect_api, tmp_path):
    pool = _unique("cli-ls-pool")
    prefect("work-pool", "create", pool, "--type", "process")
    deployment = _unique("cli-ls-deployment")
    _create_deployment("icechunk-cli-ls-check", deployment, pool)
    state = _tiny_flow(return_state=True)
    assert state.is_completed()
    run_id = str(state.state_details.flow_run_id)
    block = _unique("cli-ls-block")
    IcechunkRepository(path=str(tmp_path / "repo")).save(block)

    listed = prefect("deployment", "ls").stdout
    assert f"icechunk-cli-ls-check/{deployment}" in listed
    runs = prefect("flow-run", "ls").stdout
    assert run_id in runs
    assert re.search(rf"{run_id}\s.*icechunk-cli-ls-check\s.*COMPLETED", runs), runs
    pools = prefect("work-pool", "ls").stdout
    assert re.search(rf"{pool}\s.*process", pools), pools
    blocks = prefect("block", "ls").stdout
    assert f"icechunk-repository/{block}" in blocks


def test_deploy_all_from_prefect_yaml_and_run_with_a_worker(prefect_api, tmp_path):
    """The README's deploy commands, then one run of the maintenance deployment."""
    prefect("work-pool", "create", "icechunk", "--type", "process", "--overwrite")
    deployed = prefect("deploy", "--all", "--prefect-file", "deployments/prefect.yaml", timeout=300)
    for name in ("append-daily", "backfill", "maintenance-weekly"):
        assert f"Deploying {name}" in deployed.stdout
    listed = prefect("deployment", "ls").stdout
    for name in (
        "icechunk-append/append-daily",
        "icechunk-backfill/backfill",
        "icechunk-maintenance/maintenance-weekly",
    ):
        assert re.search(rf"{name}\s.*\sicechunk\s", listed), listed

    path = str(tmp_path / "repo")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(4,), chunks=(2,), dtype="i4")[:] = 1
    session.commit("one array")

    triggered = prefect(
        "deployment",
        "run",
        "icechunk-maintenance/maintenance-weekly",
        "-p",
        f"repository={path}",
    ).stdout
    found = re.search(r"UUID: ([0-9a-f-]{36})", triggered)
    assert found, triggered
    flow_run_id = UUID(found.group(1))
    worker = prefect("worker", "start", "--pool", "icechunk", "--run-once", timeout=420)

    run = _read_flow_run(flow_run_id)
    assert run.state is not None and run.state.is_completed(), (
        run.state,
        worker.stdout[-3000:] + worker.stderr[-3000:],
    )
    assert run.parameters["repository"] == path
    assert run.work_pool_name == "icechunk"

    async def artifacts() -> list[str]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                ),
                limit=10,
            )
            return [f"{a.key}: {a.description}" for a in found]

    notes = asyncio.run(artifacts())
    expected = f"icechunk-maintenance: Maintenance of file://{path}"
    assert any(n.startswith(expected) for n in notes), notes
