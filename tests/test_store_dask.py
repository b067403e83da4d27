"""store_dask runs the writer's steps: resume after a failed run, the validation gate."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import icechunk
import numpy as np
import pytest
import zarr

from icechunk_prefect import store_dask
from icechunk_prefect.caching import RESULT_STORAGE_ENV
from icechunk_prefect.core.arrays import arrays_dataset, plan_arrays, write_block
from icechunk_prefect.core.checks import run_checks
from icechunk_prefect.core.datasets import subset_variables
from icechunk_prefect.errors import CheckFailedError
from tests.fault_helpers import _instrumented, computations
from tests.helpers import array_in, chunks_of, task_states

BLOCKS = ["0_0", "1_0", "2_0", "3_0"]  # a (40, 6) source in chunks of 10 rows


def _create(path: str) -> icechunk.Repository:
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="grid/a", shape=(40, 6), chunks=(10, 6), dtype="f8")
    session.commit("create grid/a")
    return repo


def _source(marks: Path) -> da.Array:
    marks.mkdir(parents=True, exist_ok=True)
    src = da.arange(240, chunks=chunks_of(60), dtype="f8").reshape(40, 6)
    return src.map_blocks(_instrumented, str(marks), 0, False, dtype="f8")


def test_store_dask_resumes_after_a_failed_run(
    runner, repo_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULT_STORAGE_ENV, str(tmp_path / "results"))
    repo = _create(repo_path)
    tip = repo.lookup_branch("main")
    marks = tmp_path / "marks"
    src = _source(marks)
    (marks / "poison-3_0").touch()  # the last block fails for good
    run = store_dask.with_options(task_runner=runner)
    state = run([src], ["grid/a"], repo_path, partition_size=10, return_state=True)
    assert state.is_failed()
    assert repo.lookup_branch("main") == tip  # nothing published
    assert [computations(marks, b) for b in BLOCKS] == [1, 1, 1, 1]

    (marks / "poison-3_0").unlink()
    state = run([src], ["grid/a"], repo_path, partition_size=10, return_state=True)
    assert state.is_completed()
    # The re-run wrote only the partition that had failed; the others were reused.
    assert [computations(marks, b) for b in BLOCKS] == [1, 1, 1, 2]
    states = task_states(state.state_details.flow_run_id)
    assert sorted(s for n, ss in states.items() if n.startswith("write grid/a[") for s in ss) == [
        "Cached",
        "Cached",
        "Cached",
        "Completed",
    ]
    back = array_in(zarr.open_group(repo.readonly_session("main").store, mode="r"), "grid/a")
    np.testing.assert_array_equal(back[:], np.arange(240.0).reshape(40, 6))
    assert len(list(repo.ancestry(branch="main"))) == 3  # initial, create, one commit


def test_store_dask_gate_refuses_a_partition_not_written(tmp_path: Path) -> None:
    """The gate checks every planned chunk of plain arrays (by the plan's dimensions)."""
    repo = _create(str(tmp_path / "repo"))
    fork = repo.writable_session("main").fork()
    sources = [da.ones((40, 6), chunks=(10, 6))]
    plan = plan_arrays(fork, sources, ["grid/a"], partition_size=10)
    ds = arrays_dataset(sources, ["grid/a"])
    for p in plan.partitions[:3]:  # the last partition is never written
        write_block(fork, subset_variables(ds, p.variables).isel(p.source), p)
    with pytest.raises(CheckFailedError, match=r"1 of 4 planned chunk\(s\) of 'grid/a'"):
        run_checks(fork, plan, {}, [])
    write_block(
        fork,
        subset_variables(ds, plan.partitions[3].variables).isel(plan.partitions[3].source),
        plan.partitions[3],
    )
    run_checks(fork, plan, {}, [])  # all written: passes
