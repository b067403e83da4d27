"""Issue 12: resume never publishes a broken snapshot (real faults, real processes).

A write is killed half way (SIGKILL of the flow's process group), garbage collection
then runs with no grace period (it deletes the failed run's anonymous snapshot and
chunk objects, which the persisted forks refer to), and the write is run again: it
must end with one commit whose every value reads back exactly, with no manual step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icechunk_prefect import to_icechunk
from icechunk_prefect.caching import RESULT_STORAGE_ENV
from icechunk_prefect.errors import MaintenanceIncompleteError
from icechunk_prefect.operations import maintain_repository
from tests import resume_cases
from tests.fault_helpers import computations, task_states
from tests.helpers import history, read_back

ROOT = Path(__file__).resolve().parents[1]


def _persisted(results: Path) -> int:
    """Task results persisted so far (one file per result; the per-partition records a
    ``write partitions`` task keeps beside its own result are not counted)."""
    if not results.exists():
        return 0
    return sum(
        1
        for p in results.iterdir()
        if p.is_file()
        and not p.name.endswith(".lock")
        and not p.name.startswith("icechunk-prefect-partition-")
    )


def _kill_half_way(scenario: str, repo: str, marks: Path, results: Path, address: str) -> None:
    """Run the write in its own process group; SIGKILL the group once the metadata fork
    (and, but for the metadata scenario, three of four partitions) are persisted, while
    the rest hang on the cluster."""
    marks.mkdir(parents=True, exist_ok=True)
    hung = resume_cases.BLOCKS if scenario == "metadata" else resume_cases.BLOCKS[3:]
    for loc in hung:
        (marks / f"hang-{loc}").touch()
    want = 1 if scenario == "metadata" else 1 + 3
    env = {**os.environ, RESULT_STORAGE_ENV: str(results), "PYTHONPATH": str(ROOT)}
    script = str(ROOT / "tests" / "scripts" / "killable_write.py")
    proc = subprocess.Popen(
        [sys.executable, script, scenario, repo, str(marks), address],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group, as a flow run under a worker
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if _persisted(results) >= want and list(marks.glob("hanging-*")):
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"the write ended ({proc.returncode}) before the kill"
        assert _persisted(results) >= want, "the write did not get half way in time"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for loc in hung:  # let the cluster's worker threads go (their work is orphaned)
            (marks / f"hang-{loc}").unlink(missing_ok=True)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("scenario", resume_cases.SCENARIOS)
def test_killed_write_then_gc_then_rerun_commits_exact_data(
    scenario, runner, dask_cluster, repo_path, tmp_path, monkeypatch
):
    base = resume_cases.base(scenario)
    if base is not None:
        to_icechunk.with_options(task_runner=runner)(base, repo_path, mode="w", partition_size=20)
    before = history(repo_path) if base is not None else []
    results, marks = tmp_path / "results", tmp_path / "marks"

    _kill_half_way(scenario, repo_path, marks, results, dask_cluster.scheduler_address)
    assert history(repo_path)[0].id == (before[0].id if before else history(repo_path)[-1].id)

    # Maintenance with no grace: the failed run's anonymous snapshot and chunks go.
    time.sleep(1.1)  # objects strictly older than the cut-off
    report = maintain_repository(repo_path, expire_older_than_days=0, keep_unreferenced_hours=0)
    assert report.snapshots_deleted + report.chunks_deleted > 0, report.summary

    monkeypatch.setenv(RESULT_STORAGE_ENV, str(results))
    ds, kwargs = resume_cases.write_call(scenario, marks)
    state = to_icechunk.with_options(task_runner=runner)(ds, repo_path, return_state=True, **kwargs)
    assert state.is_completed(), state.message
    commits = history(repo_path)
    assert commits[0].id == state.result()
    assert len(commits) == (len(before) if before else 1) + 1  # one commit for the run
    assert read_back(repo_path).load().identical(resume_cases.expected(scenario))
    if scenario != "metadata":
        # the forks of the killed run referred to deleted objects: written again
        assert [computations(marks, b) for b in resume_cases.BLOCKS[:3]] == [2, 2, 2]
        states = task_states(state.state_details.flow_run_id)
        assert states["check 3 reused forks"] == ["Completed"]


def test_rerun_without_gc_still_reuses(runner, dask_cluster, repo_path, tmp_path, monkeypatch):
    """The check costs no recomputation when nothing was collected: the three finished
    partitions of the killed run are merged as they are."""
    results, marks = tmp_path / "results", tmp_path / "marks"
    _kill_half_way("create", repo_path, marks, results, dask_cluster.scheduler_address)
    monkeypatch.setenv(RESULT_STORAGE_ENV, str(results))
    ds, kwargs = resume_cases.write_call("create", marks)
    state = to_icechunk.with_options(task_runner=runner)(ds, repo_path, return_state=True, **kwargs)
    assert state.is_completed()
    assert [computations(marks, b) for b in resume_cases.BLOCKS[:3]] == [1, 1, 1]
    assert read_back(repo_path).load().identical(resume_cases.expected("create"))


def test_gc_that_stops_early_fails_the_maintenance_run(runner, repo_path, tmp_path):
    """A snapshot garbage collection cannot delete (an immutable file: a real delete
    failure) makes it skip its later phases: the run fails and says so."""
    results, marks = tmp_path / "results", tmp_path / "marks"
    ds, kwargs = resume_cases.write_call("create", marks)
    marks.mkdir(parents=True, exist_ok=True)
    (marks / "poison-3_0").touch()  # a failed run: an anonymous snapshot left behind
    os.environ[RESULT_STORAGE_ENV] = str(results)
    try:
        state = to_icechunk.with_options(task_runner=runner)(
            ds, repo_path, return_state=True, **kwargs
        )
    finally:
        os.environ.pop(RESULT_STORAGE_ENV)
    assert state.is_failed()
    committed = {s.id for s in history(repo_path)}
    garbage = [p for p in Path(repo_path, "snapshots").iterdir() if p.name not in committed]
    assert garbage
    subprocess.run(["chattr", "+i", str(garbage[0])], check=True)
    try:
        time.sleep(1.1)
        state = maintain_repository(
            repo_path, expire_older_than_days=0, keep_unreferenced_hours=0, return_state=True
        )
    finally:
        subprocess.run(["chattr", "-i", str(garbage[0])], check=True)
    assert state.is_failed()
    with pytest.raises(MaintenanceIncompleteError, match="INCOMPLETE") as info:
        state.result()
    assert info.value.report.skipped_phases == ["transaction_logs", "manifests", "chunks"]
    assert info.value.report.objects_failed_to_delete == 1
