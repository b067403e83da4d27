"""Issue 7: resume. A re-run after a failure skips what the failed run already wrote."""

from __future__ import annotations

import zarr

from icechunk_prefect.caching import RESULT_STORAGE_ENV
from tests.fault_helpers import BLOCKS, computations, failed_first_run, task_states
from tests.helpers import history, open_repo, read_back, small_dataset


def _cached(states: dict[str, list[str]], prefix: str) -> int:
    return sum(s.count("Cached") for n, s in states.items() if n.startswith(prefix))


def test_rerun_after_failed_partition_skips_written_partitions(
    runner, repo_path, tmp_path, monkeypatch
):
    run, ds, marks = failed_first_run(runner, repo_path, tmp_path, monkeypatch)
    assert len(history(repo_path)) == 1  # the repository exists, nothing committed

    (marks / "poison-3_0").unlink()
    state = run(ds, repo_path, mode="w", partition_size=10, return_state=True)
    assert state.is_completed()
    # only the failed partition was computed again
    assert [computations(marks, b) for b in BLOCKS] == [1, 1, 1, 2]
    states = task_states(state.state_details.flow_run_id)
    assert states["write metadata main"] == ["Cached"]
    assert _cached(states, "write time[") == 3
    # the forks of the failed run merged into this run's parent: data and history right
    assert read_back(repo_path).identical(small_dataset().compute())
    commits = history(repo_path)
    assert len(commits) == 2
    assert commits[0].id == state.result()


def test_branch_moved_nothing_stale_reused(runner, repo_path, tmp_path, monkeypatch):
    run, ds, marks = failed_first_run(runner, repo_path, tmp_path, monkeypatch)

    # another writer moves the branch before the re-run
    repo = open_repo(repo_path)
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").attrs["other"] = "writer"
    moved = session.commit("someone else")

    (marks / "poison-3_0").unlink()
    state = run(ds, repo_path, mode="w", partition_size=10, return_state=True)
    assert state.is_completed()
    states = task_states(state.state_details.flow_run_id)
    assert _cached(states, "write") == 0  # new tip: new keys, nothing reused
    assert [computations(marks, b) for b in BLOCKS] == [2, 2, 2, 2]
    assert read_back(repo_path).identical(small_dataset().compute())
    commits = history(repo_path)
    assert [c.id for c in commits[1:]] == [moved, commits[-1].id]
    assert commits[0].metadata["icechunk_prefect.base_snapshot"] == moved


def test_resume_off_recomputes(runner, repo_path, tmp_path, monkeypatch):
    from prefect import flow

    from icechunk_prefect import FlowDatasetWriter

    monkeypatch.setenv(RESULT_STORAGE_ENV, str(tmp_path / "results"))
    ds = small_dataset(periods=20)

    @flow(task_runner=runner)
    def write(resume: bool) -> None:
        writer = FlowDatasetWriter(ds, repo_path, mode="w", partition_size=10, resume=resume)
        writer.write_metadata()
        writer.write_eager()
        writer.write_lazy()
        writer.validate()  # no commit: the branch stays where it is

    def cached(resume: bool) -> int:
        state = write(resume, return_state=True)
        assert state.is_completed()
        return _cached(task_states(state.state_details.flow_run_id), "write")

    assert cached(False) == 0
    assert cached(False) == 0
    assert cached(True) == 0
    assert cached(True) == 3  # metadata and both partitions
    assert len(history(repo_path)) == 1


def test_recreated_repository_reuses_nothing(runner, repo_path, tmp_path, monkeypatch):
    """Every new repository starts from the same snapshot id: a repository deleted and
    created again at the same path must not pick up the forks written into the old one
    (their chunks were deleted with it)."""
    import shutil

    run, ds, marks = failed_first_run(runner, repo_path, tmp_path, monkeypatch)
    first_tip = history(repo_path)[0].id

    shutil.rmtree(repo_path)
    (marks / "poison-3_0").unlink()
    state = run(ds, repo_path, mode="w", partition_size=10, return_state=True)
    assert state.is_completed()
    assert history(repo_path)[-1].id == first_tip  # the same initial snapshot id
    states = task_states(state.state_details.flow_run_id)
    assert _cached(states, "write") == 0
    assert [computations(marks, b) for b in BLOCKS] == [2, 2, 2, 2]
    assert read_back(repo_path).identical(small_dataset().compute())
