"""Issue 3: the deployments in deployments/serve.py, served by a real Prefect Runner.

The deployments are registered on the real Prefect server fixture and served by
a ``prefect.runner.Runner`` in a background thread (what ``serve.py`` does);
each flow run executes in its own subprocess, as in production, and writes on
the shared Dask cluster. Runs are created through the API with parameters, as
the UI and ``prefect deployment run -p ...`` do.

The test server is Prefect's ephemeral server, which does not run the scheduler
service; the schedule test asks the server to schedule the deployment
(``POST /deployments/{id}/schedule``, the scheduler service's own code path).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.runner import Runner

from icechunk_prefect.operations import create_dataset
from icechunk_prefect.operations.sources import SyntheticSource
from icechunk_prefect.runtime import DaskClusterConfig
from icechunk_prefect.synthetic import expected_values
from tests.helpers import history, read_back

ROOT = Path(__file__).resolve().parents[1]
SOURCE = SyntheticSource(
    start=date(2024, 1, 1), periods=20, nlat=3, nlon=4, variables=["t2m", "precip"], time_chunk=5
)
WAIT_SECONDS = 420  # bound on waiting for a served run (subprocess start included)


def _load_serve_module() -> Any:
    spec = importlib.util.spec_from_file_location("ops_serve", ROOT / "deployments" / "serve.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served(dask_cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The deployments of serve.py (append on a 2 s interval), served in a thread."""
    serve = _load_serve_module()
    base = tmp_path_factory.mktemp("deployed")
    cluster = {"address": dask_cluster.scheduler_address}
    deployments = serve.build_deployments(
        str(base / "default-repo"),
        source=SOURCE.model_dump(mode="json"),
        cluster=cluster,
        append_interval=timedelta(seconds=2),
    )
    runner = Runner(name="icechunk-ops-test", query_seconds=1, limit=2, pause_on_shutdown=True)
    ids = {d.name: runner.add_deployment(d) for d in deployments}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(runner.start(),), daemon=True)
    thread.start()
    try:
        yield {"ids": ids, "base": base, "cluster": cluster}
    finally:
        for _ in range(100):  # the runner sets itself up in its thread
            if runner.started:
                break
            time.sleep(0.1)
        if runner.started:
            asyncio.run_coroutine_threadsafe(runner.astop(), loop).result(timeout=60)
        thread.join(timeout=60)


def _wait(flow_run_id: UUID) -> FlowRun:
    async def poll() -> FlowRun:
        async with get_client() as client:
            deadline = time.monotonic() + WAIT_SECONDS
            while True:
                run = await client.read_flow_run(flow_run_id)
                if run.state and run.state.is_final():
                    return run
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flow run {flow_run_id} still {run.state} after wait")
                await asyncio.sleep(1)

    return asyncio.run(poll())


def test_parameter_schema_renders_a_form(served):
    async def read() -> dict[str, Any]:
        async with get_client() as client:
            dep = await client.read_deployment(served["ids"]["backfill"])
            return dep.parameter_openapi_schema or {}

    schema = asyncio.run(read())
    props = schema["properties"]
    assert props["start"]["format"] == "date"
    assert props["end"]["format"] == "date"
    assert "First day to rewrite" in props["start"]["description"]
    assert set(schema["required"]) >= {"repository", "start", "end"}
    defs = schema.get("definitions") or schema.get("$defs") or {}
    assert {"SyntheticSource", "NetCDFFolderSource", "ImportedSource"} <= set(defs)


def test_server_rejects_invalid_parameters(served):
    """The server validates run parameters against the flow's schema (types, enums).

    Prefect 3.8.8 does not check string formats there (an invalid date string is
    refused by the flow's own validation when the run starts; see
    test_operations.test_invalid_parameter_types_rejected).
    """
    from prefect.exceptions import PrefectHTTPStatusError

    async def create(name: str, params: dict[str, Any]) -> None:
        async with get_client() as client:
            await client.create_flow_run_from_deployment(served["ids"][name], parameters=params)

    with pytest.raises(PrefectHTTPStatusError, match="on_gap"):
        asyncio.run(create("append-daily", {"on_gap": "ignore"}))
    with pytest.raises(PrefectHTTPStatusError, match="partition_size"):
        asyncio.run(
            create("backfill", {"start": "2024-01-02", "end": "2024-01-05", "partition_size": "x"})
        )
    with pytest.raises(PrefectHTTPStatusError, match=r"kind|source"):
        asyncio.run(
            create(
                "backfill", {"start": "2024-01-02", "end": "2024-01-05", "source": {"kind": "ftp"}}
            )
        )


def test_backfill_deployment_run_with_parameters(served, tmp_path):
    repo = str(tmp_path / "repo")
    cluster = DaskClusterConfig(**served["cluster"])
    create_dataset(repo, SOURCE, cluster=cluster)  # arrays hold fill values only
    before = len(history(repo))
    params = {
        "repository": repo,
        "start": "2024-01-04",
        "end": "2024-01-15",
        "variables": ["t2m"],
        "partition_size": 5,
    }

    async def trigger() -> FlowRun:
        async with get_client() as client:
            return await client.create_flow_run_from_deployment(
                served["ids"]["backfill"], parameters=params
            )

    run = _wait(asyncio.run(trigger()).id)
    assert run.state is not None and run.state.is_completed(), run.state
    back = read_back(repo)
    region = back.isel(time=slice(3, 15))
    np.testing.assert_array_equal(region.t2m.values, expected_values(region, "t2m"))
    assert np.isnan(back.t2m.isel(time=slice(0, 3)).values).all()
    assert np.isnan(back.t2m.isel(time=slice(15, 20)).values).all()
    assert np.isnan(back.precip.values).all()
    commits = history(repo)
    assert len(commits) == before + 1
    meta = commits[0].metadata
    assert meta["icechunk_prefect.operation"] == "backfill"
    assert meta["icechunk_prefect.operation_flow_run_id"] == str(run.id)
    recorded = meta["icechunk_prefect.parameters"]
    assert (recorded["start"], recorded["end"]) == ("2024-01-04", "2024-01-15")
    assert recorded["variables"] == ["t2m"]
    assert recorded["partition_size"] == 5


def test_append_schedule_fires_and_appends(served, tmp_path):
    repo = str(served["base"] / "default-repo")
    cluster = DaskClusterConfig(**served["cluster"])
    create_dataset(repo, SOURCE.model_copy(update={"periods": 10}), fill=True, cluster=cluster)
    deployment_id = served["ids"]["append-daily"]

    async def schedule() -> list[FlowRun]:
        async with get_client() as client:
            now = datetime.now(UTC)
            response = await client._client.post(
                f"/deployments/{deployment_id}/schedule",
                json={
                    "start_time": now.isoformat(),
                    "end_time": (now + timedelta(seconds=3)).isoformat(),
                    "max_runs": 1,
                },
            )
            response.raise_for_status()
            return await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=10,
            )

    runs = asyncio.run(schedule())
    assert len(runs) == 1
    assert runs[0].auto_scheduled
    run = _wait(runs[0].id)
    assert run.state is not None and run.state.is_completed(), run.state
    back = read_back(repo)
    assert back.time.to_index().equals(pd.date_range("2024-01-01", periods=20))
    np.testing.assert_array_equal(back.t2m.values, expected_values(back, "t2m"))
    assert history(repo)[0].metadata["icechunk_prefect.operation"] == "append"


def test_prefect_yaml_entrypoints_and_schedules(monkeypatch):
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    config = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    monkeypatch.chdir(ROOT)
    by_name = {d["name"]: d for d in config["deployments"]}
    assert set(by_name) == {"append-daily", "backfill", "maintenance-weekly"}
    flows = {n: load_flow_from_entrypoint(d["entrypoint"]).name for n, d in by_name.items()}
    assert flows == {
        "append-daily": "icechunk-append",
        "backfill": "icechunk-backfill",
        "maintenance-weekly": "icechunk-maintenance",
    }
    assert by_name["append-daily"]["schedules"][0]["cron"]
    assert by_name["maintenance-weekly"]["schedules"][0]["cron"]
    assert "schedules" not in by_name["backfill"]
