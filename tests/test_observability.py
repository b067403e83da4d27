"""Issue 5: what a write shows in Prefect (task names, logs, artifacts, events) and the CLI.

One small partitioned write runs once (module fixture) on the shared cluster and
real Prefect server; the tests read back what the server recorded.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import dask.array as da
import icechunk
import pytest
import zarr
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.sorting import TaskRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from rich.console import Console
from typer.testing import CliRunner

from icechunk_prefect import LocalRepository, store_dask, to_icechunk
from icechunk_prefect.cli import app, partition_progress
from icechunk_prefect.reporting.history import commit_history
from icechunk_prefect.reporting.progress import ProgressTracker, progress_listener
from icechunk_prefect.reporting.publish import COMMIT_EVENT, commit_resource_id, summary_markdown
from icechunk_prefect.reporting.summary import summarize_commit
from tests.helpers import artifacts, history, open_repo, small_dataset


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def written(dask_cluster, tmp_path_factory) -> dict[str, Any]:
    """One partitioned write (4 partitions of 10 days), with a progress listener and a log tap."""
    from icechunk_prefect import IcechunkDaskTaskRunner

    path = str(tmp_path_factory.mktemp("obs") / "repo")
    runner: Any = IcechunkDaskTaskRunner(address=dask_cluster.scheduler_address)
    seen: list[tuple[int, int, str]] = []
    tap = _Lines()
    flow_logger = logging.getLogger("prefect.flow_runs")
    old_level = flow_logger.level
    flow_logger.setLevel(logging.INFO)
    flow_logger.addHandler(tap)
    try:
        with progress_listener(lambda d, t, label: seen.append((d, t, label))):
            state = to_icechunk.with_options(task_runner=runner)(
                small_dataset(), path, mode="w", partition_size=10, return_state=True
            )
    finally:
        flow_logger.removeHandler(tap)
        flow_logger.setLevel(old_level)
    return {
        "path": path,
        "snapshot": state.result(),
        "flow_run_id": state.state_details.flow_run_id,
        "seen": seen,
        "lines": tap.lines,
    }


def _commit_events(resource_id: str, snapshot: str) -> list[Any]:
    """Events named COMMIT_EVENT on ``resource_id`` carrying ``snapshot`` (waits for delivery)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=60, at_exit=False)
    flt = EventFilter(
        event=EventNameFilter(name=[COMMIT_EVENT]),
        resource=EventResourceFilter(id=[resource_id]),
    )
    found: list[Any] = []
    for _ in range(120):  # the server persists events asynchronously
        with get_client(sync_client=True) as client:
            page = client.read_events(filter=flt, limit=50)
        found = [e for e in page.events if e.payload.get("snapshot_id") == snapshot]
        if found:
            break
        time.sleep(0.5)
    return found


def test_task_runs_are_named_by_what_they_do(written):
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[written["flow_run_id"]])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=200,
        )
    names = {r.name for r in runs}
    assert {
        "write metadata main",
        "write eager variables",
        "write time[2024-01-01..2024-01-10]",
        "write time[2024-01-31..2024-02-09]",
        "merge 4 forks",
        "commit main",
    } <= names, names


def test_progress_is_reported_per_partition(written):
    dones = [d for d, _, _ in written["seen"]]
    assert dones == [0, 1, 2, 3, 4]
    assert {t for _, t, _ in written["seen"]} == {4}
    assert {label for _, _, label in written["seen"][1:]} == {
        "time[2024-01-01..2024-01-10]",
        "time[2024-01-11..2024-01-20]",
        "time[2024-01-21..2024-01-30]",
        "time[2024-01-31..2024-02-09]",
    }
    progress = [a for a in artifacts(written["flow_run_id"]) if a["type"] == "progress"]
    assert len(progress) == 1
    assert progress[0]["key"] == "icechunk-write-progress"
    assert float(progress[0]["data"]) == 100.0
    assert "4/4 partitions written" in (progress[0]["description"] or "")


def test_commit_summary_artifact(written):
    path, snapshot = written["path"], written["snapshot"]
    parent = history(path)[1].id
    md = [a for a in artifacts(written["flow_run_id"]) if a["type"] == "markdown"]
    assert len(md) == 1 and md[0]["key"] == "icechunk-commit-main"
    text = md[0]["data"]
    assert f"| snapshot | `{snapshot}` |" in text
    assert f"| parent | `{parent}` |" in text
    assert f"| repository | `{LocalRepository(path).describe()}` |" in text
    assert "| variables | a, b, label, time, x |" in text
    assert "| region | time[0:40], x[0:6] |" in text
    assert "| partitions | 4 |" in text
    # a: 4 chunks, b: 4 chunks, time/x/label: 1 chunk each
    assert "| chunks written | 11 in 5 arrays |" in text
    nbytes = 40 * 6 * 8 + 40 * 8 + 40 * 8 + 6 * 8 + 6 * 4 * 2  # a, b, time, x, label (<U2)
    assert f"({nbytes:,} bytes, uncompressed)" in text
    assert str(written["flow_run_id"]) in text


def test_commit_event_on_repository_branch(written):
    path, snapshot = written["path"], written["snapshot"]
    rid = commit_resource_id(LocalRepository(path).describe(), "main")
    assert rid == f"icechunk.repository.file://{path}.branch.main"
    events = _commit_events(rid, snapshot)
    assert len(events) == 1
    event = events[0]
    assert event.resource["icechunk.branch"] == "main"
    assert event.payload["parent_snapshot_id"] == history(path)[1].id
    assert event.payload["chunks_written"] == 11
    related = {r.id for r in event.related}
    assert f"prefect.flow-run.{written['flow_run_id']}" in related


def test_step_logs_are_one_line_each(written):
    lines = written["lines"]
    assert all("\n" not in line for line in lines)
    assert any(
        line.startswith("write metadata main: base snapshot ")
        and "4 partition(s) along time" in line
        for line in lines
    ), lines
    done = [line for line in lines if line.startswith("write time[") and " done (" in line]
    assert len(done) == 4
    assert any(line.endswith("done (4/4)") for line in done)
    assert any(
        line.startswith(f"commit main: committed {written['snapshot']}") for line in lines
    ), lines


def test_history_command(written):
    path, snapshot = written["path"], written["snapshot"]
    result = CliRunner().invoke(app, ["history", path, "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["snapshot_id"] for r in rows] == [c.id for c in history(path)]
    top = rows[0]
    assert top["snapshot_id"] == snapshot
    assert top["flow_run_id"] == str(written["flow_run_id"])
    assert top["flow_name"] == "icechunk-to-icechunk"
    assert top["parameters"]["partition_size"] == 10
    assert top["partitions"] == 4
    assert rows[-1]["flow_run_id"] is None  # the repository's initial commit

    table = CliRunner().invoke(app, ["history", path, "--limit", "1"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert snapshot in table.output and "partition_size=10" in table.output
    assert history(path)[1].id not in table.output


def test_history_command_errors(tmp_path):
    result = CliRunner().invoke(app, ["history", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "No Icechunk repository" in result.output


def test_store_dask_reports_progress_and_commit(runner, repo_path):
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(repo_path))
    s = repo.writable_session("main")
    zarr.create_array(s.store, name="a", shape=(8, 4), chunks=(2, 4), dtype="f8")
    base = s.commit("create a")
    seen: list[tuple[int, str]] = []
    with progress_listener(lambda d, t, label: seen.append((d, label))):
        state = store_dask.with_options(task_runner=runner)(
            [da.ones((8, 4), chunks=(4, 4))], ["a"], repo_path, partition_size=4, return_state=True
        )
    sid = state.result()
    assert [d for d, _ in seen] == [0, 1, 2]
    assert sorted(label for _, label in seen[1:]) == ["a[0:4]", "a[4:8]"]
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    md = [a for a in artifacts(run_id) if a["type"] == "markdown"]
    assert len(md) == 1
    assert f"| parent | `{base}` |" in md[0]["data"]
    assert "| chunks written | 4 in 1 arrays |" in md[0]["data"]
    assert "| region | a: [0:8, 0:4] |" in md[0]["data"]
    rid = commit_resource_id(LocalRepository(repo_path).describe(), "main")
    assert len(_commit_events(rid, sid)) == 1


def test_summarize_commit_outside_a_run(repo_path):
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(repo_path))
    s = repo.writable_session("main")
    arr = zarr.create_array(s.store, name="v", shape=(6,), chunks=(2,), dtype="i4")
    arr[0:4] = 7
    sid = s.commit("two chunks")
    summary = summarize_commit(repo_path, "main", sid, bytes_written=16, seconds=1.25)
    assert summary.parent_snapshot_id == history(repo_path)[1].id
    assert (summary.chunks_written, summary.arrays_written) == (2, 1)
    assert summary.message == "two chunks"
    assert summary.flow_run_id is None
    assert "| bytes written | 16 B (16 bytes, uncompressed) |" in summary_markdown(summary)
    assert commit_history(repo_path, "main", limit=1)[0].snapshot_id == sid


def test_progress_tracker_outside_a_run_calls_listeners_only():
    seen: list[tuple[int, int]] = []
    with progress_listener(lambda d, t, label: seen.append((d, t))):
        tracker = ProgressTracker(total=3)
        tracker.start()
        tracker.advance("a")
        tracker.advance("b", ok=False)
        tracker.advance("c")
    assert tracker.artifact_id is None
    assert seen == [(0, 3), (1, 3), (1, 3), (2, 3)]
    assert tracker.failed == 1
    assert tracker.history[-1] == pytest.approx(200 / 3)


def test_progress_bar_follows_partitions(runner, repo_path):
    console = Console(record=True, width=120, force_terminal=False)
    with partition_progress(console, "writing") as progress:
        to_icechunk.with_options(task_runner=runner)(
            small_dataset(periods=20), repo_path, mode="w", partition_size=10
        )
    task = progress.tasks[0]
    assert (task.completed, task.total) == (2, 2)
    assert "2/2" in console.export_text()
    assert open_repo(repo_path).lookup_branch("main") == history(repo_path)[0].id
