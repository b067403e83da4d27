"""Issue 7: real faults. Each ends with the expected data, one commit for the run, and
nothing partial on the branch before it."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from distributed import Client
from prefect import flow

from icechunk_prefect import FlowDatasetWriter, to_icechunk
from icechunk_prefect.caching import RESULT_STORAGE_ENV
from icechunk_prefect.core.planning import Partition
from icechunk_prefect.errors import CommitConflictError, DoubleWriteError
from icechunk_prefect.testing.faults import FAIL_AFTER_COMMIT, PAUSE_BEFORE_COMMIT
from tests.fault_helpers import (
    computations,
    instrument,
    set_env,
    task_run_counts,
    task_states,
)
from tests.helpers import history, read_back, small_dataset

ROOT = str(Path(__file__).resolve().parent.parent)
BLOCKS = ["0_0", "1_0", "2_0", "3_0"]


def test_partition_failing_twice_is_retried(runner, repo_path, tmp_path):
    marks = tmp_path / "marks"
    ds = instrument(small_dataset(), "a", marks, fail_times=2)
    state = to_icechunk.with_options(task_runner=runner)(
        ds, repo_path, mode="w", partition_size=10, return_state=True
    )
    assert state.is_completed()
    assert [computations(marks, b) for b in BLOCKS] == [3, 3, 3, 3]
    assert read_back(repo_path).identical(small_dataset().compute())
    assert len(history(repo_path)) == 2


def test_worker_sigkilled_while_writing_partition(runner, repo_path, tmp_path, dask_cluster):
    marks = tmp_path / "marks"
    ds = instrument(small_dataset(), "a", marks, kill=True)
    (marks / "kill-1_0").touch()
    with Client(dask_cluster.scheduler_address) as client:
        pids_before = set(cast(dict[str, int], client.run(os.getpid)).values())
    state = to_icechunk.with_options(task_runner=runner)(
        ds, repo_path, mode="w", partition_size=10, return_state=True
    )
    assert state.is_completed()
    killed = list(marks.glob("killed-1_0-*"))
    assert len(killed) == 1  # the worker process really died there
    assert int(killed[0].name.rsplit("-", 1)[1]) in pids_before
    assert read_back(repo_path).identical(small_dataset().compute())
    assert len(history(repo_path)) == 2


def test_commit_lands_then_step_fails_is_retried_once(
    runner, repo_path, tmp_path, dask_cluster, monkeypatch
):
    marker = tmp_path / "commit-landed"
    # the commit step runs in the flow process (this one); set the hook on the workers too
    monkeypatch.setenv(FAIL_AFTER_COMMIT, str(marker))
    with Client(dask_cluster.scheduler_address) as client:
        client.run(set_env, FAIL_AFTER_COMMIT, str(marker))
        try:
            state = to_icechunk.with_options(task_runner=runner)(
                small_dataset(), repo_path, mode="w", partition_size=20, return_state=True
            )
        finally:
            client.run(set_env, FAIL_AFTER_COMMIT, None)
    assert state.is_completed()
    landed = marker.read_text()  # the fault fired after this commit landed
    commits = history(repo_path)
    assert len(commits) == 2  # exactly one commit for the run
    assert commits[0].id == landed == state.result()
    assert task_run_counts(state.state_details.flow_run_id)["commit main"] == 2
    assert read_back(repo_path).identical(small_dataset().compute())


def test_flow_killed_between_merge_and_commit_then_rerun(
    runner, repo_path, tmp_path, dask_cluster, monkeypatch
):
    results = str(tmp_path / "results")
    marks = tmp_path / "marks"
    marker = tmp_path / "about-to-commit"
    script = textwrap.dedent(
        f"""
        from icechunk_prefect import IcechunkDaskTaskRunner, to_icechunk
        from tests.fault_helpers import instrument
        from tests.helpers import small_dataset

        ds = instrument(small_dataset(), "a", {str(marks)!r})
        runner = IcechunkDaskTaskRunner(address={dask_cluster.scheduler_address!r})
        to_icechunk.with_options(task_runner=runner)(ds, {repo_path!r}, mode="w", partition_size=10)
        """
    )
    env = {**os.environ, PAUSE_BEFORE_COMMIT: str(marker), RESULT_STORAGE_ENV: results}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
    try:
        while not marker.exists() and proc.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), f"the flow process ended ({proc.returncode}) before the commit"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(history(repo_path)) == 1  # merged, never committed: nothing visible
    assert [computations(marks, b) for b in BLOCKS] == [1, 1, 1, 1]

    monkeypatch.setenv(RESULT_STORAGE_ENV, results)
    ds = instrument(small_dataset(), "a", marks)
    state = to_icechunk.with_options(task_runner=runner)(
        ds, repo_path, mode="w", partition_size=10, return_state=True
    )
    assert state.is_completed()
    assert [computations(marks, b) for b in BLOCKS] == [1, 1, 1, 1]  # all resumed
    states = task_states(state.state_details.flow_run_id)
    assert sum(s.count("Cached") for n, s in states.items() if n.startswith("write time[")) == 4
    assert read_back(repo_path).identical(small_dataset().compute())
    assert len(history(repo_path)) == 2


def _other_writer(repo_path: str, start: int, stop: int, value: float) -> str:
    """Commit a region of 'a' from another process (honouring the local commit lock)."""
    script = textwrap.dedent(
        f"""
        import numpy as np, xarray as xr
        from icechunk_prefect.storage.local import LocalRepository, commit_lock
        source = LocalRepository({repo_path!r})
        with commit_lock(source):
            session = source.open_repository().writable_session("main")
            patch = xr.Dataset({{"a": (("time", "x"), np.full(({stop - start}, 6), {value}))}})
            patch.to_zarr(session.store, region={{"time": slice({start}, {stop}),
                          "x": slice(0, 6)}}, mode="r+", consolidated=False)
            print(session.commit("other writer"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def _write_region_with_interloper(
    runner, repo_path: str, start: int, stop: int, **options: Any
) -> dict:
    seen: dict = {}
    patch = small_dataset(periods=20, seed=7).drop_vars(["x", "label"])

    @flow(task_runner=runner)
    def region_write() -> str:
        writer = FlowDatasetWriter(
            patch, repo_path, region={"time": slice(0, 20)}, partition_size=10, **options
        )
        writer.write_metadata()
        writer.write_eager()
        writer.write_lazy()
        writer.merge()
        seen["other"] = _other_writer(repo_path, start, stop, 7.0)  # during the run
        return writer.commit("region 0:20").snapshot_id

    seen["state"] = region_write(return_state=True)
    seen["patch"] = patch
    return seen


def test_concurrent_writer_disjoint_both_land(runner, repo_path):
    base = small_dataset()
    to_icechunk.with_options(task_runner=runner)(base, repo_path, mode="w", partition_size=20)
    seen = _write_region_with_interloper(runner, repo_path, 20, 40)
    assert seen["state"].is_completed()
    commits = history(repo_path)
    assert [c.id for c in commits[:2]] == [seen["state"].result(), seen["other"]]
    assert len(commits) == 4
    assert "icechunk_prefect.rebase" not in commits[0].metadata  # no chunk in common
    back = read_back(repo_path)
    np.testing.assert_array_equal(back.a[:20].values, seen["patch"].a.values)
    np.testing.assert_array_equal(back.a[20:].values, 7.0)
    np.testing.assert_array_equal(back.b[:20].values, seen["patch"].b.values)


def test_concurrent_writer_overlapping_lands_after(runner, repo_path):
    """The other writer rewrote [10, 30) while this run wrote [0, 20): by default this
    run lands after it (its values win on [10, 20), as a later run's would); only the
    partition holding the collided chunk is written again, on the new tip."""
    base = small_dataset()
    to_icechunk.with_options(task_runner=runner)(base, repo_path, mode="w", partition_size=20)
    seen = _write_region_with_interloper(runner, repo_path, 10, 30)
    assert seen["state"].is_completed(), seen["state"]
    commits = history(repo_path)
    assert [c.id for c in commits[:2]] == [seen["state"].result(), seen["other"]]
    assert len(commits) == 4
    assert commits[0].parent_id == seen["other"]
    rebase = commits[0].metadata["icechunk_prefect.rebase"]
    assert (rebase["rounds"], rebase["commits"], rebase["rewritten"], rebase["kept"]) == (
        1,
        1,
        1,
        1,
    )
    assert (
        rebase["text"] == "branch moved (1 commit), 1 partition re-written on the new tip, 1 kept"
    )
    back = read_back(repo_path)
    np.testing.assert_array_equal(back.a[:20].values, seen["patch"].a.values)
    np.testing.assert_array_equal(back.a[20:30].values, 7.0)  # the other writer's, kept
    np.testing.assert_array_equal(back.a[30:].values, base.a[30:].values)
    states = task_states(seen["state"].state_details.flow_run_id)
    assert sum(len(v) for n, v in states.items() if n.startswith("write time[")) == 3


def test_concurrent_writer_overlapping_refused_on_request(runner, repo_path):
    base = small_dataset()
    to_icechunk.with_options(task_runner=runner)(base, repo_path, mode="w", partition_size=20)
    seen = _write_region_with_interloper(runner, repo_path, 10, 30, on_overlap="refuse")
    state = seen["state"]
    assert state.is_failed()
    with pytest.raises(CommitConflictError) as info:
        state.result()
    text = str(info.value)
    assert "60 element(s) inside this run's region" in text  # [10, 20) x 6 of 'a'
    assert "'/a'" in text and "on_overlap is 'refuse'" in text and "Nothing of this run" in text
    assert seen["other"] in text and "'other writer'" in text  # names the other commit
    commits = history(repo_path)
    assert commits[0].id == seen["other"]  # the other writer's commit, nothing of ours
    assert len(commits) == 3
    back = read_back(repo_path)
    np.testing.assert_array_equal(back.a[10:30].values, 7.0)
    np.testing.assert_array_equal(back.a[:10].values, base.a[:10].values)


def test_two_partitions_writing_one_chunk_refused(runner, repo_path):
    ds = small_dataset()

    @flow(task_runner=runner)
    def overlapping() -> str:
        writer = FlowDatasetWriter(ds, repo_path, mode="w", partition_size=20)
        writer.write_metadata()
        assert writer.plan is not None
        p0, p1 = writer.plan.partitions
        # a bad plan: the second partition starts one chunk early
        p1 = dataclasses.replace(
            p1, source={"time": slice(10, 40)}, target={**p1.target, "time": slice(10, 40)}
        )
        assert isinstance(p1, Partition)
        writer.plan = dataclasses.replace(writer.plan, partitions=(p0, p1))
        writer.write_eager()
        writer.write_lazy()
        writer.merge()
        return writer.commit("never").snapshot_id

    state = overlapping(return_state=True)
    with pytest.raises(DoubleWriteError, match=r"chunk \[1, 0\] of array '/a'"):
        state.result()
    assert len(history(repo_path)) == 1  # nothing published
