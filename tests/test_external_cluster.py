"""Issue 4: the flows on an existing Dask cluster started by hand, as a separate cluster would be.

The scheduler and two workers are separate processes whose environment holds no
Prefect setting and no storage credential: the flow's API URL reaches them only
through the task runner (the serialized settings context), and the S3 keys only
through the Prefect API (the saved IcechunkRepository block).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import icechunk
import pytest
import xarray as xr

from icechunk_prefect import DaskClusterConfig, to_icechunk
from tests.cluster_helpers import hand_started_cluster
from tests.helpers import completed_task_runs, small_dataset


@pytest.fixture
def hand_made_cluster(tmp_path: Path) -> Iterator[str]:
    """``dask scheduler`` + two ``dask worker`` processes on loopback; yields the address."""
    with hand_started_cluster(tmp_path) as (address, _):
        yield address


def _worker_state() -> tuple[str | None, str | None, int]:
    from prefect.server.api.server import SubprocessASGIServer

    servers = sum(s.running for s in SubprocessASGIServer._instances.values())
    return os.environ.get("PREFECT_API_URL"), os.environ.get("AWS_SECRET_ACCESS_KEY"), servers


def test_flow_on_existing_cluster_reports_to_flow_api(hand_made_cluster, s3_server, s3_prefix):
    from distributed import Client

    name = s3_server.save_block(s3_prefix, "ext")
    ds = small_dataset()
    runner: Any = DaskClusterConfig(address=hand_made_cluster).task_runner()
    state = to_icechunk.with_options(task_runner=runner)(
        ds, f"icechunk-repository/{name}", mode="w", partition_size=10, return_state=True
    )
    assert state.is_completed()

    repo = icechunk.Repository.open(s3_server.storage(s3_prefix))
    back = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
    assert back.identical(ds.compute())

    names = completed_task_runs(state.state_details.flow_run_id)
    assert "write metadata main" in names
    assert "commit main" in names
    assert sum(n.startswith("write time[") for n in names) == 4

    with Client(hand_made_cluster) as client:
        seen = cast(dict[str, Any], client.run(_worker_state))
    # The workers had neither the API URL nor keys in their environment, started no
    # Prefect server of their own (the task runs above were reported by them).
    assert set(seen.values()) == {(None, None, 0)}
