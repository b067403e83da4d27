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
import re
import subprocess
import sys
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
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort

from icechunk_prefect.operations import create_dataset
from icechunk_prefect.operations.sources import NetCDFFolderSource, SyntheticSource
from icechunk_prefect.runtime import DaskClusterConfig
from icechunk_prefect.synthetic import expected_values
from tests.helpers import (
    completed_task_runs,
    flow_run_logs,
    history,
    read_back,
    served_in_thread,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = SyntheticSource(
    data_start=date(2024, 1, 1),
    periods=20,
    nlat=3,
    nlon=4,
    variables=["t2m", "precip"],
    time_chunk=5,
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
        cluster=cluster,
        append_interval=timedelta(seconds=2),
    )
    with served_in_thread("icechunk-ops-test", deployments) as ids:
        yield {
            "ids": dict(zip((d.name for d in deployments), ids, strict=True)),
            "base": base,
            "cluster": cluster,
        }


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


def _schema(deployment_id: UUID) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async with get_client() as client:
            dep = await client.read_deployment(deployment_id)
            return dep.parameter_openapi_schema or {}

    return asyncio.run(read())


def _descriptions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from _descriptions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _descriptions(value)


def test_parameter_schema_renders_a_form(served):
    schema = _schema(served["ids"]["backfill"])
    props = schema["properties"]
    assert props["first_day"]["format"] == "date"
    assert props["last_day"]["format"] == "date"
    assert "First day to rewrite" in props["first_day"]["description"]
    assert "not before first_day" in props["last_day"]["description"]
    assert set(schema["required"]) == {"repository", "first_day", "last_day"}
    # no two parameters share a name with the form's own "Start" (scheduling) section
    assert not {"start", "end"} & set(props)
    # the source: empty (the dataset's own), or a saved block of one of the three kinds
    defs = schema.get("definitions") or schema.get("$defs") or {}
    options = [
        o.get("$ref", "").rsplit("/", 1)[-1] or o.get("type") for o in props["source"]["anyOf"]
    ]
    assert options == ["SyntheticSource", "NetCDFFolderSource", "ImportedSource", "null"]
    slugs = {defs[name]["block_type_slug"] for name in options[:3]}
    assert slugs == {
        "icechunk-synthetic-source",
        "icechunk-netcdf-folder-source",
        "icechunk-imported-source",
    }
    assert props["source"]["default"] is None
    assert "recorded with the dataset" in " ".join(props["source"]["description"].split())
    # what the UI shows is plain text: no reST roles or Markdown code marks
    shown = list(_descriptions(schema))
    assert len(shown) > 20
    for text in shown:
        assert "`" not in text and not re.search(r":(func|class|meth|mod|data|attr):", text), text
    for name in ("create", "append-daily"):
        for text in _descriptions(_schema(served["ids"][name])):
            assert "`" not in text and ":func:" not in text, (name, text)


def test_server_rejects_invalid_parameters(served):
    """The server validates run parameters against the flow's schema (types, enums).

    Prefect does not check string formats there (an invalid date string is
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
            create(
                "backfill",
                {"first_day": "2024-01-02", "last_day": "2024-01-05", "partition_size": "x"},
            )
        )


def _trigger(name: str, *params: str) -> UUID:
    """``prefect deployment run <flow>/<name> -p ...`` as a user types it; the run's id."""
    flow_name = {"backfill": "icechunk-backfill", "append-daily": "icechunk-append"}[name]
    args = [str(Path(sys.executable).parent / "prefect"), "deployment", "run"]
    args.append(f"{flow_name}/{name}")
    for p in params:
        args += ["-p", p]
    out = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 0, out.stdout + out.stderr
    found = re.search(r"UUID: ([0-9a-f-]{36})", out.stdout)
    assert found, out.stdout
    return UUID(found.group(1))


def test_backfill_deployment_run_with_parameters(served, tmp_path):
    """The usual backfill names no source: the one recorded with the dataset is read.

    The run a user triggers holds the write's task runs and the plan, progress and
    commit artifacts (no subflow).
    """
    repo = str(tmp_path / "repo")
    cluster = DaskClusterConfig(**served["cluster"])
    create_dataset(repo, SOURCE, cluster=cluster)  # arrays hold fill values only
    before = len(history(repo))
    run_id = _trigger(
        "backfill",
        f"repository={repo}",
        "first_day=2024-01-04",
        "last_day=2024-01-15",
        'variables=["t2m"]',
        "partition_size=5",
    )
    run = _wait(run_id)
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
    assert meta["icechunk_prefect.flow_run_id"] == str(run.id)  # the commit's own run
    assert meta["icechunk_prefect.source_origin"] == "dataset"
    recorded = meta["icechunk_prefect.parameters"]
    assert (recorded["first_day"], recorded["last_day"]) == ("2024-01-04", "2024-01-15")
    assert recorded["variables"] == ["t2m"]
    assert recorded["partition_size"] == 5
    assert recorded["source"]["kind"] == "synthetic" and recorded["source"]["periods"] == 20

    names = completed_task_runs(run.id)
    assert "commit main" in names and sum(n.startswith("write time[") for n in names) == 3

    async def artifacts() -> dict[str, str]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
        return {str(a.key): f"{a.description} {a.data}" for a in found}

    shown = asyncio.run(artifacts())
    assert set(shown) == {
        "icechunk-backfill-plan",
        "icechunk-write-progress",
        "icechunk-commit-main",
    }
    assert "Source: synthetic: 20 steps of D from 2024-01-01" in shown["icechunk-backfill-plan"]
    assert "(recorded with the dataset)" in shown["icechunk-backfill-plan"]
    assert str(run.id) in shown["icechunk-commit-main"]


def test_runs_refuse_bad_input_in_one_line(served, tmp_path):
    """A source naming no kind (or a wrong one) and a last day before the first day are
    refused before anything is written, each with one log line and no traceback."""
    repo = str(tmp_path / "repo")
    cluster = DaskClusterConfig(**served["cluster"])
    create_dataset(repo, SOURCE, cluster=cluster)
    tip = history(repo)[0].id
    cases = {
        "names no kind": ['source={"folder": "/data/era5"}'],
        "Unknown source kind 'ftp'": ['source={"kind": "ftp", "folder": "/data/era5"}'],
        "last_day (2024-01-02) is before first_day (2024-01-05)": [
            "first_day=2024-01-05",
            "last_day=2024-01-02",
        ],
        # refused by the flow itself (after validation): one line too, not two tracebacks
        "lies outside the dataset's extent": ["first_day=2024-03-01", "last_day=2024-03-05"],
    }
    runs = {}
    for expected, params in cases.items():
        days = (
            []
            if params[0].startswith("first_day")
            else ["first_day=2024-01-02", "last_day=2024-01-05"]
        )
        runs[expected] = _trigger("backfill", f"repository={repo}", *days, *params)
    for expected, run_id in runs.items():
        run = _wait(run_id)
        assert run.state is not None and run.state.is_failed(), (expected, run.state)
        logs = flow_run_logs(run_id, contains=expected)
        said = [m for m in logs if expected in m]
        assert said, (expected, logs)
        assert not any("Traceback" in m for m in logs), logs
        assert len(said[0].strip().splitlines()) <= 2, said[0]
    assert history(repo)[0].id == tip


def test_append_schedule_fires_and_appends(served, tmp_path):
    """A dataset made from a folder of daily netCDF files; ten more files arrive; the
    scheduled append (no source set on the deployment) reads the dataset's own folder."""
    repo = str(served["base"] / "default-repo")
    cluster = DaskClusterConfig(**served["cluster"])
    days = SOURCE.template().compute()
    folder = tmp_path / "daily"
    folder.mkdir()

    def arrive(first: int, last: int) -> None:
        for i in range(first, last):
            days.isel(time=slice(i, i + 1)).to_netcdf(folder / f"day-{i:03d}.nc")

    arrive(0, 10)
    create_dataset(
        repo, NetCDFFolderSource(folder=str(folder), time_chunk=5), fill=True, cluster=cluster
    )
    arrive(10, 20)
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
    assert set(by_name) == {"create", "append-daily", "backfill", "maintenance-weekly"}
    # no source to re-type: create takes one, the others read the dataset's own
    assert all("source" not in (d.get("parameters") or {}) for d in by_name.values())
    flows = {n: load_flow_from_entrypoint(d["entrypoint"]).name for n, d in by_name.items()}
    assert flows == {
        "create": "icechunk-create",
        "append-daily": "icechunk-append",
        "backfill": "icechunk-backfill",
        "maintenance-weekly": "icechunk-maintenance",
    }
    assert by_name["append-daily"]["schedules"][0]["cron"]
    assert by_name["maintenance-weekly"]["schedules"][0]["cron"]
    assert "schedules" not in by_name["backfill"] and "schedules" not in by_name["create"]
