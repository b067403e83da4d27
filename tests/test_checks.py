"""Issue 7: the validation gate before the commit (coverage, schema, user checks)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from prefect import flow

from icechunk_prefect import FlowDatasetWriter, to_icechunk
from icechunk_prefect.core.checks import CheckContext, VariableSchema, expected_schema, run_checks
from icechunk_prefect.core.spec import WriteSpec
from icechunk_prefect.core.steps import plan_write, write_eager, write_metadata
from icechunk_prefect.errors import CheckFailedError
from tests.helpers import history, read_back, small_dataset


def _no_negative(ctx: CheckContext) -> str | None:
    low = float(ctx.dataset()["a"].min())
    return f"'a' has negative values (min {low})" if low < 0 else None


def test_user_check_failure_blocks_commit(runner, repo_path):
    ds = small_dataset(periods=20)
    ds["a"] = ds["a"] - 10.0
    ds["a"].encoding["chunks"] = (10, 6)
    run = to_icechunk.with_options(task_runner=runner)
    with pytest.raises(CheckFailedError) as info:
        run(ds, repo_path, mode="w", partition_size=10, checks=[_no_negative])
    text = str(info.value)
    assert "check _no_negative: 'a' has negative values" in text
    assert "nothing was committed" in text
    assert len(history(repo_path)) == 1


def test_passing_user_check_commits(runner, repo_path):
    ds = small_dataset(periods=20)
    seen = []

    def count_chunks(ctx: CheckContext) -> bool:
        seen.append(len(ctx.written_chunks()["/a"]))
        return True

    run = to_icechunk.with_options(task_runner=runner)
    run(ds, repo_path, mode="w", partition_size=10, checks=[_no_negative, count_chunks])
    assert read_back(repo_path).identical(ds.compute())
    assert len(history(repo_path)) == 2


def test_lost_partition_caught_by_coverage(runner, repo_path):
    ds = small_dataset()

    @flow(task_runner=runner)
    def lossy() -> str:
        writer = FlowDatasetWriter(ds, repo_path, mode="w", partition_size=10)
        writer.write_metadata()
        writer.write_eager()
        forks = writer.write_lazy()
        writer._lazy_forks = forks[:-1]  # a partition's result gets lost
        writer.merge()
        return writer.commit("never").snapshot_id

    with pytest.raises(CheckFailedError) as info:
        lossy()
    text = str(info.value)
    assert "coverage: 1 of 4 planned chunk(s) of 'a' were not written" in text
    assert "[[3, 0]]" in text and "of 'b'" in text
    assert len(history(repo_path)) == 1


def test_schema_and_coverage_checks_without_prefect(tmp_path):
    ds = xr.Dataset({"t": (("x",), np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
    ds["t"].encoding["chunks"] = (4,)
    spec = WriteSpec(mode="w")
    fork = write_metadata(str(tmp_path / "r"), "main", ds, spec)
    plan = plan_write(fork, ds, spec)
    fork = write_eager(fork, ds, plan)
    with pytest.raises(CheckFailedError) as info:
        run_checks(
            fork,
            plan,
            {**expected_schema(ds), "t": VariableSchema(("x",), "float32")},
            [lambda ctx: False],
        )
    text = str(info.value)
    assert "coverage: 2 of 2 planned chunk(s) of 't' were not written" in text
    assert "schema: 't' holds float64 in the store, expected float32" in text
    assert "returned False" in text
    assert "3 problem(s)" in text


def test_chunks_holding_only_fill_values_pass_the_gate(runner, repo_path):
    """A partition whose data is all NaN in some chunks (e.g. a masked region) is not a
    lost write: those chunks are recorded (inlined, no object stored) and the run commits."""
    from tests.helpers import open_repo

    ds = small_dataset()
    ds["a"] = ds["a"].where(ds["time"] >= ds["time"][10])  # first chunk all NaN
    ds["a"].encoding["chunks"] = (10, 6)
    run = to_icechunk.with_options(task_runner=runner)
    run(ds, repo_path, mode="w", partition_size=10)
    assert read_back(repo_path).identical(ds.compute())
    session = open_repo(repo_path).readonly_session("main")
    assert str(session.chunk_type("/a", [0, 0])).endswith("inline")
    assert len(history(repo_path)) == 2
