"""Issue 2: the core tasks and flows, against a real Prefect server and Dask worker processes."""

from __future__ import annotations

import pickle
from typing import Any, cast

import dask.array as da
import icechunk
import numpy as np
import pytest
import xarray as xr
import zarr
from icechunk.session import ForkSession
from prefect import flow

from icechunk_prefect import FlowDatasetWriter, store_dask, to_icechunk
from icechunk_prefect.errors import ChunkAlignmentError, ConfigurationError
from tests.helpers import (
    array_in,
    chunks_of,
    completed_task_runs,
    fail_always,
    fail_first_try,
    history,
    open_repo,
    read_back,
    small_dataset,
)


def test_dataset_round_trip_partitioned(runner, repo_path):
    ds = small_dataset()
    run = to_icechunk.with_options(task_runner=runner)
    snapshot = run(ds, repo_path, mode="w", partition_size=10)
    back = read_back(repo_path)
    assert back.identical(ds.compute())
    commits = history(repo_path)
    assert commits[0].id == snapshot
    assert len(commits) == 2  # initial + exactly one commit for the run
    assert commits[0].metadata["icechunk_prefect.partitions"] == 4


def test_dataarray_round_trip_whole_graph(runner, repo_path):
    arr = small_dataset()["a"]
    run = to_icechunk.with_options(task_runner=runner)
    run(arr, repo_path, mode="w", partitioned=False)
    store: Any = open_repo(repo_path).readonly_session("main").store
    back = xr.open_dataarray(store, engine="zarr", consolidated=False)
    assert back.identical(arr.compute())


def test_group_append_and_region(runner, repo_path):
    run = to_icechunk.with_options(task_runner=runner)
    first = small_dataset(periods=20)
    run(first, repo_path, group="g/sub", mode="w", partition_size=10)
    more = small_dataset(periods=20, start="2024-01-21", seed=1)
    run(more, repo_path, group="g/sub", append_dim="time", partition_size=10)
    back = read_back(repo_path, group="g/sub")
    assert back.sizes["time"] == 40
    assert back.identical(xr.concat([first, more], dim="time").compute())

    patch = small_dataset(periods=10, start="2024-01-11", seed=7)
    patch = patch.drop_vars(["x", "label"])
    run(patch, repo_path, group="g/sub", region={"time": slice(10, 20)})
    back = read_back(repo_path, group="g/sub")
    np.testing.assert_array_equal(back.a.isel(time=slice(10, 20)).values, patch.a.values)
    np.testing.assert_array_equal(back.a.isel(time=slice(0, 10)).values, first.a[:10].values)
    np.testing.assert_array_equal(back.a.isel(time=slice(20, 40)).values, more.a.values)
    assert len(history(repo_path)) == 4


def test_more_control_steps_and_pickling(runner, repo_path):
    ds = small_dataset()
    seen: dict[str, Any] = {}

    @flow(task_runner=runner)
    def more_control() -> str:
        writer = FlowDatasetWriter(ds, repo_path, mode="w", partition_size=20)
        forks = [writer.write_metadata(), writer.write_eager()]
        group = zarr.open_group(writer.store, mode="r")
        seen["attrs"] = dict(group.attrs)
        seen["a_attrs"] = dict(group["a"].attrs)
        seen["coords"] = {n: np.asarray(array_in(group, n)[:]).tolist() for n in ("x",)}
        seen["time_chunks"] = array_in(group, "time").nchunks_initialized
        seen["lazy_chunks"] = (
            array_in(group, "a").nchunks_initialized + array_in(group, "b").nchunks_initialized
        )
        futures = writer.write_lazy()
        forks += [f.result().fork for f in futures]  # PartitionsWritten: one per batch
        forks.append(writer.merge())
        for fork in forks:
            assert isinstance(fork, ForkSession)
            assert isinstance(pickle.loads(pickle.dumps(fork)), ForkSession)
        seen["forks"] = len(forks)
        return writer.commit("more control").snapshot_id

    more_control()
    assert seen["attrs"] == {"title": "test"}
    assert seen["a_attrs"]["units"] == "K"
    assert seen["coords"] == {"x": list(range(6))}
    assert seen["time_chunks"] == 1
    assert seen["lazy_chunks"] == 0  # nothing lazy written before write_lazy
    assert seen["forks"] == 5  # metadata, eager, 2 partitions, merged
    assert read_back(repo_path).identical(ds.compute())


def test_store_dask_aligned_and_misaligned(runner, repo_path):
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(repo_path))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(40, 6), chunks=(5, 6), dtype="f8")
    zarr.create_array(session.store, name="b", shape=(40,), chunks=(10,), dtype="i8")
    created = session.commit("create arrays")
    src_a = da.random.random((40, 6), chunks=(10, 6))
    src_b = da.arange(40, chunks=chunks_of(20))
    run = store_dask.with_options(task_runner=runner)
    run([src_a, src_b], ["a", "b"], repo_path, partition_size=20)
    group = zarr.open_group(repo.readonly_session("main").store, mode="r")
    np.testing.assert_array_equal(array_in(group, "a")[:], src_a.compute())
    np.testing.assert_array_equal(array_in(group, "b")[:], np.arange(40))

    run(
        [da.ones((20, 6), chunks=(20, 6))],
        ["a"],
        repo_path,
        regions=[(slice(20, 40), slice(0, 6))],
        partitioned=False,
    )
    np.testing.assert_array_equal(
        array_in(zarr.open_group(repo.readonly_session("main").store, mode="r"), "a")[20:], 1.0
    )

    tip = repo.lookup_branch("main")
    with pytest.raises(ChunkAlignmentError, match="multiple of the Zarr chunk size 5"):
        run([da.zeros((40, 6), chunks=(7, 6))], ["a"], repo_path)
    assert repo.lookup_branch("main") == tip
    assert created in [s.id for s in repo.ancestry(branch="main")]


def test_partition_failing_first_try_retries_alone(runner, repo_path, tmp_path):
    ds = small_dataset()
    flaky = fail_first_try(ds, "a", str(tmp_path / "markers"))
    (tmp_path / "markers").mkdir()
    run = to_icechunk.with_options(task_runner=runner)
    state = run(flaky, repo_path, mode="w", partition_size=10, return_state=True)
    assert state.is_completed()
    assert read_back(repo_path).identical(ds.compute())
    assert len(history(repo_path)) == 2
    assert len(list((tmp_path / "markers").iterdir())) == 4  # every block failed once


def test_failed_lazy_step_leaves_branch_unchanged(runner, repo_path):
    run = to_icechunk.with_options(task_runner=runner)
    run(small_dataset(periods=20), repo_path, mode="w", partition_size=10)
    tip = open_repo(repo_path).lookup_branch("main")
    broken = fail_always(small_dataset(periods=20, start="2024-01-21"), "a")
    state = run(broken, repo_path, append_dim="time", partition_size=10, return_state=True)
    assert state.is_failed()
    assert open_repo(repo_path).lookup_branch("main") == tip
    assert read_back(repo_path).sizes["time"] == 20


def test_commit_metadata_provenance(runner, repo_path):
    run = to_icechunk.with_options(task_runner=runner)
    state = run(
        small_dataset(), repo_path, mode="w", partition_size=20, message="prov", return_state=True
    )
    meta = history(repo_path)[0].metadata
    assert meta["icechunk_prefect.flow_run_id"] == str(state.state_details.flow_run_id)
    assert meta["icechunk_prefect.flow_name"] == "icechunk-to-icechunk"
    assert meta["icechunk_prefect.flow_run_name"]
    assert meta["icechunk_prefect.parameters"]["mode"] == "w"
    assert meta["icechunk_prefect.parameters"]["partition_size"] == 20
    assert meta["icechunk_prefect.partitions"] == 2
    assert meta["icechunk_prefect.versions"]["icechunk"] == icechunk.__version__
    assert len(meta["icechunk_prefect.idempotency_key"]) == 32


def test_worker_task_runs_reported_to_flow_api(runner, repo_path, dask_cluster):
    from distributed import Client

    run = to_icechunk.with_options(task_runner=runner)
    state = run(small_dataset(), repo_path, mode="w", partition_size=10, return_state=True)
    flow_run_id = state.state_details.flow_run_id

    names = completed_task_runs(flow_run_id)
    assert "write metadata main" in names
    assert "commit main" in names
    assert sum(n.startswith("write time[") for n in names) == 4

    def servers_started_here() -> int:
        from prefect.server.api.server import SubprocessASGIServer

        return sum(s.running for s in SubprocessASGIServer._instances.values())

    with Client(dask_cluster.scheduler_address) as client:
        assert set(cast(dict[str, int], client.run(servers_started_here)).values()) == {0}


def test_in_memory_storage_refused():
    repo = icechunk.Repository.create(icechunk.in_memory_storage())
    with pytest.raises(ConfigurationError, match="In-memory storage"):
        to_icechunk.fn(small_dataset(), cast(Any, repo))


def _record_pid(block: np.ndarray, folder: str) -> np.ndarray:
    import os
    import uuid
    from pathlib import Path

    (Path(folder) / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
    return block


@pytest.mark.parametrize("partitioned", [True, False])
def test_data_computed_on_workers_not_in_flow_process(
    runner, repo_path, tmp_path, dask_cluster, partitioned
):
    """The write tasks run in the flow process; the blocks are computed on the workers."""
    import os

    from distributed import Client

    folder = tmp_path / "pids"
    folder.mkdir()
    ds = small_dataset()
    traced = ds.copy()
    data = ds["a"].data
    meta = np.empty((0,) * data.ndim, dtype=data.dtype)  # no call here to infer it
    traced["a"] = (
        ds["a"].dims,
        data.map_blocks(_record_pid, str(folder), meta=meta),
        ds["a"].attrs,
    )
    traced["a"].encoding = ds["a"].encoding
    run = to_icechunk.with_options(task_runner=runner)
    state = run(
        traced, repo_path, mode="w", partition_size=10, partitioned=partitioned, return_state=True
    )
    assert state.is_completed()
    assert read_back(repo_path).identical(ds.compute())

    with Client(dask_cluster.scheduler_address) as client:
        workers = set(cast(dict[str, int], client.run(os.getpid)).values())
    pids = {int(p.name.split("-")[0]) for p in folder.iterdir()}
    assert len(list(folder.iterdir())) >= 4  # every block of "a" was computed
    assert pids <= workers
    assert os.getpid() not in pids
