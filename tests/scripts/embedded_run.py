"""Run the to_icechunk flow with no Prefect API configured; print what the run saw as JSON.

Used by tests/test_embedded.py in a subprocess whose environment has no PREFECT_API_URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, cast
from uuid import UUID

import psutil
from prefect import flow, task

from icechunk_prefect import FlowDatasetWriter, IcechunkDaskTaskRunner
from icechunk_prefect.synthetic import synthetic_climate


def _server_processes() -> int:
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    count = 0
    for p in procs:
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "uvicorn" in cmd and "prefect" in cmd:
            count += 1
    return count


@task
def probe(i: int) -> dict[str, object]:
    from prefect.server.api.server import SubprocessASGIServer

    return {
        "i": i,
        "pid": os.getpid(),
        "servers_here": sum(s.running for s in SubprocessASGIServer._instances.values()),
        "api": os.environ.get("PREFECT_API_URL"),
    }


# prefect-dask's runner is a TaskRunner[PrefectDaskFuture]; @flow is typed for the base.
@flow(task_runner=cast(Any, IcechunkDaskTaskRunner(cluster_kwargs={"n_workers": 2})))
def embedded(path: str) -> dict[str, object]:
    probes = [f.result() for f in probe.map(range(4))]
    writer = FlowDatasetWriter(
        synthetic_climate(periods=20, nlat=4, nlon=8, time_chunk=5),
        path,
        mode="w",
        partition_size=5,
    )
    writer.write_metadata()
    writer.write_eager()
    writer.write_lazy()
    writer.merge()
    result = writer.commit("embedded")
    return {"probes": probes, "snapshot": result.snapshot_id, "servers": _server_processes()}


async def _task_run_names(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))])),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=200,
        )
        return sorted(r.name for r in runs)


if __name__ == "__main__":
    state = cast(Any, embedded)(sys.argv[1], return_state=True)
    out = state.result()
    out["flow_run_id"] = str(state.state_details.flow_run_id)
    out["task_runs"] = asyncio.run(_task_run_names(out["flow_run_id"]))
    out["api"] = os.environ.get("PREFECT_API_URL")
    print("RESULT " + json.dumps(out))
