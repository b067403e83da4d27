"""Issue 3: the operational flows (create, append, backfill, maintenance) and their planner.

Flows run against the real Prefect server fixture and write on the shared Dask
LocalCluster (worker processes) into real repositories on disk.
"""

from __future__ import annotations

from datetime import date, timedelta

import icechunk
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from prefect.exceptions import ParameterTypeError

from icechunk_prefect import DaskClusterConfig
from icechunk_prefect.errors import (
    ChunkAlignmentError,
    ConfigurationError,
    GapError,
    InputValidationError,
    RegionError,
)
from icechunk_prefect.operations import (
    append_dataset,
    backfill_dataset,
    create_dataset,
    maintain_repository,
)
from icechunk_prefect.operations.sources import ImportedSource, NetCDFFolderSource, SyntheticSource
from icechunk_prefect.operations.windows import plan_partitions
from icechunk_prefect.synthetic import expected_values
from tests.helpers import array_in, history, open_repo, read_back

START = date(2024, 1, 1)
VARS = ["t2m", "precip"]


def source(periods: int = 20) -> SyntheticSource:
    return SyntheticSource(
        data_start=START, periods=periods, nlat=3, nlon=4, variables=VARS, time_chunk=5
    )


@pytest.fixture
def cluster(dask_cluster) -> DaskClusterConfig:  # type: ignore[no-untyped-def]
    return DaskClusterConfig(address=dask_cluster.scheduler_address)


def assert_exact(ds: xr.Dataset, names=VARS) -> None:  # type: ignore[no-untyped-def]
    for name in names:
        np.testing.assert_array_equal(ds[name].values, expected_values(ds, name))


# ------------------------------------------------------------------ planner (no server)


def test_plan_partitions_aligned_and_refused():
    size, parts = plan_partitions(12, 40, {"t2m": 5, "precip": 10}, partition_size=20)
    assert size == 20
    assert [(p.start, p.stop) for p in parts] == [(12, 20), (20, 40)]
    _, parts = plan_partitions(0, 40, {"t2m": 5}, bytes_per_step=100, target_partition_bytes=1000)
    assert [(p.start, p.stop) for p in parts] == [(0, 10), (10, 20), (20, 30), (30, 40)]
    with pytest.raises(ChunkAlignmentError) as err:
        plan_partitions(0, 40, {"t2m": 5, "precip": 10}, partition_size=15)
    text = str(err.value)
    assert "'precip'" in text and "size along 'time' is 10" in text and "[0:15)" in text


def test_source_json_must_name_its_kind():
    """JSON sources (CLI, recorded, from Python) name their kind; anything else is refused."""
    from pydantic import TypeAdapter, ValidationError

    from icechunk_prefect.operations.sources import (
        OptionalSourceParameter,
        as_source,
        source_config,
        source_from_config,
    )

    adapter = TypeAdapter(OptionalSourceParameter)
    assert isinstance(adapter.validate_python({"kind": "synthetic"}), SyntheticSource)
    nc = adapter.validate_python({"kind": "netcdf", "folder": "/data/x"})
    assert isinstance(nc, NetCDFFolderSource) and nc.folder == "/data/x"
    assert adapter.validate_python(None) is None
    # the fields of a netCDF source, no kind: refused, never read as a synthetic source
    with pytest.raises(ValidationError, match="names no kind"):
        adapter.validate_python({"folder": "/data/x"})
    with pytest.raises(ValidationError, match="Unknown source kind 'ftp'"):
        adapter.validate_python({"kind": "ftp", "folder": "/data/x"})
    with pytest.raises(ValidationError, match=r"synthetic source has no field\(s\) \['folder'\]"):
        adapter.validate_python({"kind": "synthetic", "folder": "/data/x"})
    with pytest.raises(ValidationError, match="saved source block or an object naming its kind"):
        adapter.validate_python("netcdf")
    config = source_config(source(9))
    assert config["kind"] == "synthetic" and source_from_config(config) == source(9)
    imported = as_source(
        {"kind": "import", "path": "tests.test_operations:source", "kwargs": {"periods": 7}}
    )
    assert imported.template().sizes["time"] == 7
    with pytest.raises(ConfigurationError, match="Cannot import source"):
        ImportedSource(path="no_such_module:thing").resolve()


# ------------------------------------------------------------------ create


def test_create_fill_values_then_refuse_existing(repo_path, cluster):
    result = create_dataset(repo_path, source(), cluster=cluster)
    assert result.committed
    back = read_back(repo_path)
    assert back.sizes == {"time": 20, "lat": 3, "lon": 4}
    assert np.isnan(back.t2m.values).all()  # arrays hold fill values only
    assert back.time.to_index().equals(pd.date_range("2024-01-01", periods=20))
    group = zarr.open_group(open_repo(repo_path).readonly_session("main").store, mode="r")
    assert array_in(group, "t2m").nchunks_initialized == 0
    tip = open_repo(repo_path).lookup_branch("main")
    with pytest.raises(ConfigurationError, match="overwrite=True"):
        create_dataset(repo_path, source(), cluster=cluster)
    assert open_repo(repo_path).lookup_branch("main") == tip
    create_dataset(repo_path, source(), overwrite=True, fill=True, cluster=cluster)
    assert_exact(read_back(repo_path))


# ------------------------------------------------------------------ append


def test_append_twice_commits_once_without_duplicates(repo_path, cluster):
    create_dataset(repo_path, source(20), fill=True, cluster=cluster)
    longer = source(33)
    first = append_dataset(repo_path, longer, partition_size=5, cluster=cluster)
    assert first.committed and first.snapshot_id
    n_commits = len(history(repo_path))
    back = read_back(repo_path)
    assert back.sizes["time"] == 33
    assert back.time.to_index().equals(pd.date_range("2024-01-01", periods=33))
    assert_exact(back)
    meta = history(repo_path)[0].metadata
    assert meta["icechunk_prefect.operation"] == "append"
    assert meta["icechunk_prefect.partitions"] == 3  # [20:25) [25:30) [30:33)

    again = append_dataset(repo_path, longer, first_day=date(2024, 1, 10), cluster=cluster)
    assert not again.committed
    assert "Nothing to append" in again.summary
    assert len(history(repo_path)) == n_commits
    assert read_back(repo_path).time.to_index().is_unique
    assert read_back(repo_path).sizes["time"] == 33


def test_append_gap_error_or_fill(repo_path, cluster):
    create_dataset(repo_path, source(20), fill=True, cluster=cluster)
    tip = open_repo(repo_path).lookup_branch("main")
    later = source(30)
    with pytest.raises(GapError, match="3 step"):
        append_dataset(repo_path, later, first_day=date(2024, 1, 24), cluster=cluster)
    assert open_repo(repo_path).lookup_branch("main") == tip
    result = append_dataset(
        repo_path, later, first_day=date(2024, 1, 24), on_gap="fill", cluster=cluster
    )
    assert result.plan["filled_steps"] == 3
    back = read_back(repo_path)
    assert back.time.to_index().equals(pd.date_range("2024-01-01", periods=30))
    assert np.isnan(back.t2m.isel(time=slice(20, 23)).values).all()
    assert_exact(back.isel(time=slice(23, 30)))
    assert_exact(back.isel(time=slice(0, 20)))


# ------------------------------------------------------------------ backfill


def test_backfill_region_dry_run_and_refusals(repo_path, cluster):
    create_dataset(repo_path, source(20), cluster=cluster)  # fill values only
    tip = open_repo(repo_path).lookup_branch("main")

    dry = backfill_dataset(
        repo_path, date(2024, 1, 6), date(2024, 1, 15), source(), dry_run=True, cluster=cluster
    )
    assert not dry.committed
    assert dry.plan["positions"] == [5, 15]
    assert open_repo(repo_path).lookup_branch("main") == tip

    with pytest.raises(RegionError, match="outside the dataset's extent"):
        backfill_dataset(repo_path, date(2024, 1, 15), date(2024, 1, 25), source(30))
    with pytest.raises(ChunkAlignmentError, match=r"chunk .*size along 'time' is 5"):
        backfill_dataset(repo_path, date(2024, 1, 1), date(2024, 1, 20), source(), partition_size=7)
    with pytest.raises(ParameterTypeError, match=r"last_day \(2024-01-02\) is before first_day"):
        backfill_dataset(repo_path, date(2024, 1, 5), date(2024, 1, 2), source())
    with pytest.raises(InputValidationError, match=r"Unknown variable\(s\) \['snow'\]"):
        backfill_dataset(repo_path, date(2024, 1, 5), date(2024, 1, 6), source(), ["snow"])
    assert open_repo(repo_path).lookup_branch("main") == tip

    result = backfill_dataset(
        repo_path,
        date(2024, 1, 4),
        date(2024, 1, 15),
        source(),
        variables=["t2m"],
        partition_size=5,
        cluster=cluster,
    )
    assert result.committed
    back = read_back(repo_path)
    assert_exact(back.isel(time=slice(3, 15)), ["t2m"])
    assert np.isnan(back.t2m.isel(time=slice(0, 3)).values).all()
    assert np.isnan(back.t2m.isel(time=slice(15, 20)).values).all()
    assert np.isnan(back.precip.values).all()
    meta = history(repo_path)[0].metadata
    assert meta["icechunk_prefect.parameters"]["first_day"] == "2024-01-04"
    assert meta["icechunk_prefect.parameters"]["variables"] == ["t2m"]
    assert meta["icechunk_prefect.partitions"] == 3  # [3:5) [5:10) [10:15)


def test_invalid_parameter_types_rejected(repo_path):
    with pytest.raises(ParameterTypeError, match="first_day"):
        backfill_dataset(repo_path, "not a date", date(2024, 1, 2))  # type: ignore[arg-type]
    with pytest.raises(ParameterTypeError, match="on_gap"):
        append_dataset(repo_path, on_gap="ignore")  # type: ignore[arg-type]


# ------------------------------------------------------------------ the dataset's own source


def test_flows_default_to_the_source_recorded_with_the_dataset(repo_path, cluster):
    """create records its source; append and backfill use it unless given another one."""
    from icechunk_prefect.operations.dataset_source import SOURCE_ATTRIBUTE

    other = SyntheticSource(
        data_start=date(2023, 6, 1), periods=40, nlat=3, nlon=4, variables=VARS, time_chunk=5
    )
    create_dataset(repo_path, source(20), fill=True, cluster=cluster)
    recorded = read_back(repo_path).attrs[SOURCE_ATTRIBUTE]
    assert recorded["kind"] == "synthetic" and recorded["periods"] == 20

    # no source: the recorded one (a default synthetic source would not match the store)
    dry = backfill_dataset(repo_path, date(2024, 1, 3), date(2024, 1, 8), dry_run=True)
    assert dry.plan["source_origin"] == "dataset" and dry.plan["source"] == recorded
    # another source, for this run only: said in the result and the commit metadata
    longer = source(25)
    appended = append_dataset(repo_path, longer, cluster=cluster)
    assert appended.committed and appended.plan["source_origin"] == "parameter"
    meta = history(repo_path)[0].metadata
    assert meta["icechunk_prefect.source_origin"] == "parameter"
    assert meta["icechunk_prefect.source"]["periods"] == 25
    assert meta["icechunk_prefect.parameters"]["source"]["periods"] == 25
    back = read_back(repo_path)
    assert back.sizes["time"] == 25 and back.attrs[SOURCE_ATTRIBUTE] == recorded  # kept
    assert_exact(back)

    backfill_dataset(
        repo_path, date(2024, 1, 3), date(2024, 1, 8), variables=["t2m"], cluster=cluster
    )
    meta = history(repo_path)[0].metadata
    assert meta["icechunk_prefect.source_origin"] == "dataset"
    assert meta["icechunk_prefect.source"] == recorded
    # a source whose days are elsewhere is used when given (and refused: nothing matches)
    with pytest.raises(RegionError, match="differ from the store's"):
        backfill_dataset(repo_path, date(2024, 1, 3), date(2024, 1, 8), other, cluster=cluster)


def test_no_recorded_source_and_none_given_is_refused(repo_path):
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(repo_path))
    session = repo.writable_session("main")
    source(10).template().to_zarr(session.store, mode="w", consolidated=False, zarr_format=3)
    session.commit("written directly")
    with pytest.raises(ConfigurationError, match="records no source"):
        backfill_dataset(repo_path, date(2024, 1, 2), date(2024, 1, 3), dry_run=True)
    with pytest.raises(ParameterTypeError, match="names no kind"):
        backfill_dataset(
            repo_path,
            date(2024, 1, 2),
            date(2024, 1, 3),
            {"periods": 10},  # type: ignore[arg-type]  # JSON, as the CLI sends it
            dry_run=True,
        )
    assert len(history(repo_path)) == 2


def test_the_write_runs_in_the_triggered_flow_run(repo_path, cluster):
    """Task runs and the plan, progress and commit artifacts belong to the run itself."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    from tests.helpers import completed_task_runs

    create_dataset(repo_path, source(20), cluster=cluster)
    state = backfill_dataset(
        repo_path,
        date(2024, 1, 4),
        date(2024, 1, 15),
        variables=["t2m"],
        partition_size=5,
        cluster=cluster,
        return_state=True,
    )
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    names = completed_task_runs(run_id)
    assert "commit main" in names and any(n.startswith("write metadata") for n in names)
    assert sum(n.startswith("write time[") for n in names) == 3, names

    async def read() -> tuple[list[str], int]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
                )
            )
        return sorted(str(a.key) for a in artifacts), len(children)

    keys, subflows = asyncio.run(read())
    assert keys == ["icechunk-backfill-plan", "icechunk-commit-main", "icechunk-write-progress"]
    assert subflows == 0
    assert history(repo_path)[0].metadata["icechunk_prefect.flow_run_id"] == str(run_id)


# ------------------------------------------------------------------ netCDF source


def test_netcdf_folder_source_create_and_append(tmp_path, repo_path, cluster):
    full = source(12).template().compute()
    folder = tmp_path / "nc"
    folder.mkdir()
    for i in range(12):
        day = full.isel(time=slice(i, i + 1))
        day.to_netcdf(folder / f"day-{i:03d}.nc", engine="h5netcdf")
    nc = NetCDFFolderSource(folder=str(folder), time_chunk=5)
    create_dataset(repo_path, nc, fill=True, cluster=cluster)
    back = read_back(repo_path)
    assert back.sizes["time"] == 12
    assert_exact(back)
    assert back.t2m.encoding["chunks"] == (5, 3, 4)
    assert not append_dataset(repo_path, nc, cluster=cluster).committed


# ------------------------------------------------------------------ maintenance


def test_maintenance_dry_run_then_collect(repo_path, cluster):
    create_dataset(repo_path, source(10), fill=True, cluster=cluster)
    repo = open_repo(repo_path)
    # a failed run: chunks written, never committed
    session = repo.writable_session("main")
    junk = zarr.create_array(session.store, name="junk", shape=(4096,), chunks=(4096,), dtype="f8")
    junk[:] = np.random.default_rng(0).random(4096)  # a chunk object in storage (not inlined)
    del session
    for i in range(2):
        s = repo.writable_session("main")
        zarr.open_group(s.store, mode="r+").attrs[f"k{i}"] = i
        s.commit(f"attr {i}")
    before = history(repo_path)
    dry = maintain_repository(
        repo_path, expire_older_than_days=0, keep_unreferenced_hours=0, dry_run=True
    )
    assert dry.chunks_deleted >= 1
    assert len(dry.expired_snapshots) == len(before) - 2
    assert [s.id for s in history(repo_path)] == [s.id for s in before]

    done = maintain_repository(repo_path, expire_older_than_days=0, keep_unreferenced_hours=0)
    assert sorted(done.expired_snapshots) == sorted(dry.expired_snapshots)
    assert done.chunks_deleted >= dry.chunks_deleted
    after = history(repo_path)
    assert after[0].id == before[0].id and len(after) < len(before)
    assert_exact(read_back(repo_path))
    assert read_back(repo_path).attrs["k1"] == 1


def test_maintenance_keeps_recent_objects(repo_path):
    icechunk.Repository.create(icechunk.local_filesystem_storage(repo_path))
    repo = open_repo(repo_path)
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(4,), chunks=(2,), dtype="f8")
    session.commit("array")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="a", mode="r+")[:] = 2.0  # uncommitted
    report = maintain_repository(repo_path, keep_unreferenced_hours=1, dry_run=False)
    assert report.chunks_deleted == 0
    assert report.delete_unreferenced_before < pd.Timestamp.now(tz="UTC") - timedelta(minutes=59)


# ------------------------------------------------------------------ CLI plan (no flow run)


def test_cli_plan_prints_partitions_and_refuses(repo_path):
    import json

    from typer.testing import CliRunner

    from icechunk_prefect.cli import app
    from icechunk_prefect.operations.sources import source_config

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(repo_path))
    session = repo.writable_session("main")
    source(20).template().to_zarr(session.store, mode="w", consolidated=False, zarr_format=3)
    session.commit("store written directly")
    tip = repo.lookup_branch("main")
    src = json.dumps(source_config(source(30)))
    cli = CliRunner()
    backfill = ["plan", "backfill", repo_path, "--source", src]
    backfill += ["--first-day", "2024-01-03", "--last-day", "2024-01-12"]
    ok = cli.invoke(
        app,
        [*backfill, "--partition-size", "5", "--variables", "t2m"],
        terminal_width=200,
    )
    assert ok.exit_code == 0, ok.output
    assert "[2:5)" in ok.output and "[5:10)" in ok.output and "[10:12)" in ok.output
    appended = cli.invoke(app, ["plan", "append", repo_path, "--source", src], terminal_width=200)
    assert appended.exit_code == 0, appended.output
    assert "[20:30)" in appended.output
    bad = cli.invoke(
        app,
        [*backfill, "--partition-size", "7"],
        terminal_width=200,
    )
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: ") and "chunk" in bad.stderr
    # written directly, not by create_dataset: no source recorded, and no default kind
    unnamed = cli.invoke(app, ["plan", "append", repo_path], terminal_width=200)
    assert unnamed.exit_code == 2
    assert unnamed.stderr.startswith("error: ") and "records no source" in unnamed.stderr
    assert repo.lookup_branch("main") == tip
