"""Issue 13: every commit materializes the dataset as a Prefect asset.

The writes run on the shared cluster and the real Prefect server; the tests read
the materialization events back through the server's events API (a self-hosted
Prefect 3.8 server records assets as ``prefect.asset.materialization.*`` events
on the asset key; Prefect Cloud builds its asset catalog and lineage from them).
"""

from __future__ import annotations

import time
from typing import Any

import dask.array as da
import icechunk
import pytest
import zarr
from prefect import get_client
from prefect.assets import Asset
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from icechunk_prefect import LocalRepository, store_dask, to_icechunk
from icechunk_prefect.reporting.assets import ASSET_MATERIALIZED_BY, asset_key
from icechunk_prefect.reporting.publish import report_commit
from icechunk_prefect.reporting.summary import summarize_commit
from tests.fault_helpers import failed_first_run, task_states
from tests.helpers import history, small_dataset

MATERIALIZED = "prefect.asset.materialization.succeeded"


def _materializations(key: str, count: int) -> list[Any]:
    """The materialization events of asset ``key``, oldest first (waits for ``count``)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=60, at_exit=False)
    flt = EventFilter(
        event=EventNameFilter(name=[MATERIALIZED]), resource=EventResourceFilter(id=[key])
    )
    found: list[Any] = []
    for _ in range(120):  # the server persists events asynchronously
        with get_client(sync_client=True) as client:
            found = list(client.read_events(filter=flt, limit=50).events)
        if len(found) >= count:
            break
        time.sleep(0.5)
    return sorted(found, key=lambda e: e.occurred)


def _related(event: Any, role: str) -> set[str]:
    return {r.id for r in event.related if r.role == role}


def test_asset_key_format():
    assert asset_key("file:///data/climate.icechunk", "main") == (
        "icechunk://file/data/climate.icechunk@main"
    )
    assert asset_key("file:///data/climate.icechunk", "dev", "/ocean/surface/") == (
        "icechunk://file/data/climate.icechunk@dev/ocean/surface"
    )
    described = "s3://bucket/prefix (endpoint http://user:pw@MinIO.local:9000)"
    assert (
        asset_key(described, "main", "g") == "icechunk://s3+minio.local:9000/bucket/prefix@main/g"
    )
    assert asset_key("file:///my data/50% [v2]", "main") == (
        "icechunk://file/my_data/50___v2_@main"
    )
    long = asset_key("file:///" + "x" * 600, "main")
    assert len(long) == 512 and long.startswith("icechunk://file/xxx")
    for key in (long, asset_key(described, "main"), asset_key("my repo", "b", "g")):
        assert Asset(key=key).key == key  # a key Prefect accepts


def test_commits_materialize_one_asset(runner, repo_path):
    """A write, an append and a region backfill: one asset, three materializations."""
    run = to_icechunk.with_options(task_runner=runner)
    base = small_dataset(periods=20)
    first = run(base, repo_path, mode="w", partition_size=10, return_state=True)
    more = small_dataset(periods=20, start="2024-01-21", seed=1)
    second = run(more, repo_path, append_dim="time", partition_size=10, return_state=True)
    patch = small_dataset(periods=10, start="2024-01-11", seed=2).drop_vars(["x", "label"])
    third = run(patch, repo_path, region={"time": slice(10, 20)}, return_state=True)
    states = [first, second, third]
    snapshots = [s.result() for s in states]

    key = asset_key(LocalRepository(repo_path).describe(), "main")
    assert key == f"icechunk://file{repo_path}@main"
    events = _materializations(key, 3)
    assert [e.payload["snapshot_id"] for e in events] == snapshots
    assert [c.id for c in history(repo_path)[:3]] == snapshots[::-1]
    assert events[1].payload["parent_snapshot_id"] == snapshots[0]
    for event, state in zip(events, states, strict=True):
        assert f"prefect.flow-run.{state.state_details.flow_run_id}" in _related(event, "flow-run")
        assert _related(event, "asset-materialized-by") == {ASSET_MATERIALIZED_BY}
        assert event.resource.get("prefect.resource.name") == "repo@main"
        assert event.payload["group"] == "/"
    latest = events[-1].payload
    assert latest["variables"] == ["a", "b", "time"]
    assert latest["region"] == {"time": [10, 20], "x": [0, 6]}
    assert latest["partitions"] == 1
    assert latest["bytes_written"] == 10 * 6 * 8 + 10 * 8  # a and b (time is not rewritten)
    assert latest["chunks_written"] == 2
    assert events[1].payload["region"] == {"time": [20, 40], "x": [0, 6]}
    assert events[1].payload["partitions"] == 2
    # the materialization is a task run of each flow run, visible in its graph
    assert task_states(third.state_details.flow_run_id)["materialize main"] == ["Completed"]


def test_group_and_store_dask_assets(runner, repo_path):
    run = to_icechunk.with_options(task_runner=runner)
    run(small_dataset(periods=20), repo_path, group="ocean/surface", mode="w", partition_size=10)
    key = asset_key(LocalRepository(repo_path).describe(), "main", "ocean/surface")
    assert key.endswith("@main/ocean/surface")
    [event] = _materializations(key, 1)
    assert event.payload["group"] == "/ocean/surface"

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(repo_path))
    s = repo.writable_session("main")
    zarr.create_array(s.store, name="grid/a", shape=(8, 4), chunks=(2, 4), dtype="f8")
    zarr.create_array(s.store, name="grid/b", shape=(8,), chunks=(2,), dtype="f8")
    s.commit("create grid/a, grid/b")
    sid = store_dask.with_options(task_runner=runner)(
        [da.ones((8, 4), chunks=(4, 4)), da.ones(8, chunks=4)],
        ["grid/a", "grid/b"],
        repo_path,
        partition_size=4,
    )
    grid_key = asset_key(LocalRepository(repo_path).describe(), "main", "grid")
    [grid] = _materializations(grid_key, 1)
    assert grid.payload["snapshot_id"] == sid
    assert grid.payload["variables"] == ["grid/a", "grid/b"]
    assert grid.payload["bytes_written"] == 8 * 4 * 8 + 8 * 8
    assert grid.payload["partitions"] == 2


def test_resumed_run_records_the_materialization(
    runner, repo_path, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    run, ds, marks = failed_first_run(runner, repo_path, tmp_path, monkeypatch)
    (marks / "poison-3_0").unlink()
    state = run(ds, repo_path, mode="w", partition_size=10, return_state=True)
    states = task_states(state.state_details.flow_run_id)
    assert states["write metadata main"] == ["Cached"]
    assert sum(s.count("Cached") for n, s in states.items() if n.startswith("write time[")) == 3

    key = asset_key(LocalRepository(repo_path).describe(), "main")
    [event] = _materializations(key, 1)  # the failed run materialized nothing
    assert event.payload["snapshot_id"] == state.result()
    assert event.payload["partitions"] == 4
    assert f"prefect.flow-run.{state.state_details.flow_run_id}" in _related(event, "flow-run")


def test_commit_reported_outside_a_run_materializes(repo_path):
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(repo_path))
    s = repo.writable_session("main")
    zarr.create_array(s.store, name="v", shape=(4,), chunks=(2,), dtype="i4")[:] = 3
    sid = s.commit("by hand")
    report_commit(summarize_commit(repo_path, "main", sid, variables=["v"], bytes_written=16))
    [event] = _materializations(asset_key(f"file://{repo_path}", "main"), 1)
    assert event.payload["snapshot_id"] == sid
    assert event.payload["chunks_written"] == 2
    assert _related(event, "asset-materialized-by") == {ASSET_MATERIALIZED_BY}
    assert not _related(event, "flow-run")
