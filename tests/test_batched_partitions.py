"""Issue 14: several partitions in one task run, with resume and retries per partition."""

from __future__ import annotations

from icechunk_prefect import to_icechunk
from tests.fault_helpers import (
    BLOCKS,
    computations,
    failed_first_run,
    instrument,
    task_run_counts,
    task_states,
)
from tests.helpers import history, read_back, small_dataset

ONE_BATCH = {"partitions_per_task": 4}  # small_dataset(): 4 partitions of 10 steps


def test_rerun_of_a_batch_writes_only_its_missing_partition(
    runner, repo_path, tmp_path, monkeypatch
):
    run, ds, marks = failed_first_run(runner, repo_path, tmp_path, monkeypatch, **ONE_BATCH)
    (marks / "poison-3_0").unlink()
    state = run(ds, repo_path, mode="w", partition_size=10, return_state=True, **ONE_BATCH)
    assert state.is_completed()
    # the batch ran again, but took the three partitions the failed run had persisted
    assert [computations(marks, b) for b in BLOCKS] == [1, 1, 1, 2]
    flow_run_id = state.state_details.flow_run_id
    names = [n for n in task_states(flow_run_id) if n.startswith("write time[")]
    assert len(names) == 1 and names[0].endswith("(4 partitions)")
    assert read_back(repo_path).identical(small_dataset().compute())
    assert len(history(repo_path)) == 2


def test_retried_batch_does_not_write_finished_partitions_twice(
    runner, repo_path, tmp_path, monkeypatch
):
    from icechunk_prefect.caching import RESULT_STORAGE_ENV

    monkeypatch.setenv(RESULT_STORAGE_ENV, str(tmp_path / "results"))
    marks = tmp_path / "marks"
    ds = instrument(small_dataset(), "a", marks)
    (marks / "fail-once-2_0").touch()
    run = to_icechunk.with_options(task_runner=runner)
    state = run(ds, repo_path, mode="w", partition_size=10, return_state=True, **ONE_BATCH)
    assert state.is_completed()
    counts = task_run_counts(state.state_details.flow_run_id)
    assert [c for n, c in counts.items() if n.startswith("write time[")] == [2]  # one retry
    assert [computations(marks, b) for b in BLOCKS] == [1, 1, 2, 1]
    assert read_back(repo_path).identical(small_dataset().compute())


def test_many_partitions_share_task_runs(runner, repo_path):
    """40 one-step partitions: a handful of task runs, every chunk written once."""
    ds = small_dataset(chunk=1)
    run = to_icechunk.with_options(task_runner=runner)
    state = run(ds, repo_path, mode="w", partition_size=1, return_state=True)
    assert state.is_completed()
    names = [n for n in task_states(state.state_details.flow_run_id) if n.startswith("write ")]
    batches = [n for n in names if n.startswith("write time[")]
    assert 1 < len(batches) < 40
    assert read_back(repo_path).identical(small_dataset(chunk=1).compute())
