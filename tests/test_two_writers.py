"""Issue 20: two writers on one dataset, each its own OS process (as deployment runs are).

A backfill runs in a process of its own and pauses right before each commit attempt
(the fault hook ``ICECHUNK_PREFECT_FAULT_PAUSE_BEFORE_COMMIT``); meanwhile another
writer (a scheduled append, a second backfill) commits. Every scenario checks the
values read back, the number of commits, and that nothing of the paused run was
visible before its commit.

Dataset: 45 daily steps of 4 x 8 (t2m, precip), chunks of 10 steps, so the last chunk
(positions 40-49) is partly filled and every append rewrites it. Backfills write the
synthetic values plus an offset (``tests.offset_source``), so each writer's values
can be told apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import icechunk
import numpy as np
import pytest
import xarray as xr

from icechunk_prefect import DaskClusterConfig
from icechunk_prefect.caching import RESULT_STORAGE_ENV
from icechunk_prefect.core.metadata import FLOW_RUN_ID, REBASE
from icechunk_prefect.operations import append_dataset, backfill_dataset, create_dataset
from icechunk_prefect.operations.sources import ImportedSource, SyntheticSource, source_config
from icechunk_prefect.synthetic import expected_values
from icechunk_prefect.testing.faults import PAUSE_BEFORE_COMMIT
from tests.fault_helpers import computations
from tests.helpers import artifacts, task_states

ROOT = Path(__file__).resolve().parent.parent
VARS = ["t2m", "precip"]
SHAPE: dict[str, Any] = {
    "data_start": "2024-01-01",
    "nlat": 4,
    "nlon": 8,
    "variables": VARS,
    "time_chunk": 10,
}


def synthetic(periods: int) -> SyntheticSource:
    return SyntheticSource(periods=periods, **SHAPE)


def offset_source(value: float, periods: int = 45, marks: Path | None = None) -> ImportedSource:
    """An imported source (as a user names their own): synthetic values + ``value``."""
    kwargs = {"offset": value, "periods": periods, **SHAPE}
    if marks is not None:
        kwargs["marks"] = str(marks)
    return ImportedSource(path="tests.offset_source:make", kwargs=kwargs)


def offset(value: float, periods: int = 45, marks: Path | None = None) -> dict[str, Any]:
    """:func:`offset_source` as the JSON of a run's parameters (naming its kind)."""
    return source_config(offset_source(value, periods, marks))


@pytest.fixture
def cluster(dask_cluster) -> DaskClusterConfig:  # type: ignore[no-untyped-def]
    return DaskClusterConfig(address=dask_cluster.scheduler_address)


@pytest.fixture
def dataset(repo_path: str, cluster: DaskClusterConfig) -> str:
    """The dataset: 45 days with data (2024-01-01 .. 2024-02-14)."""
    create_dataset(repo_path, synthetic(45), fill=True, partition_size=10, cluster=cluster)
    return repo_path


class Run:
    """An operational flow in its own process; ``drive`` answers its pauses before commit."""

    def __init__(
        self,
        flow: str,
        parameters: dict[str, Any],
        tmp: Path,
        *,
        pause: bool = True,
        **env_extra: str,
    ) -> None:
        self.marker = tmp / f"pause-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, RESULT_STORAGE_ENV: str(tmp / "results"), **env_extra}
        if pause:
            env[PAUSE_BEFORE_COMMIT] = str(self.marker)
        self.proc = subprocess.Popen(
            [sys.executable, "tests/scripts/operation.py", flow, json.dumps(parameters)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def drive(
        self, at_pause: Sequence[Callable[[], None] | None] = (), timeout: float = 300
    ) -> str:
        """Let the run go on at each pause, first running ``at_pause[i]`` (another
        writer) at the i-th one; return the run's last line (``OK ...``/``ERROR ...``)."""
        deadline = time.monotonic() + timeout
        pauses = 0
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "the run did not end"
            if self.marker.exists():
                action = at_pause[pauses] if pauses < len(at_pause) else None
                if action is not None:
                    action()
                self.marker.unlink()
                pauses += 1
            time.sleep(0.05)
        out, err = self.proc.communicate()
        lines = out.strip().splitlines()
        assert lines, err[-3000:]
        self.pauses = pauses
        return lines[-1]


def backfill(repo: str, start: str, end: str, source: dict[str, Any], address: str, **kw: Any):
    """Parameters of a backfill run (as the UI or ``prefect deployment run`` give them)."""
    return {
        "repository": repo,
        "first_day": start,
        "last_day": end,
        "source": source,
        "partition_size": 10,
        "cluster": {"address": address},
        **kw,
    }


def commits(repo: str) -> list[icechunk.SnapshotInfo]:
    storage = icechunk.local_filesystem_storage(repo)
    return list(icechunk.Repository.open(storage).ancestry(branch="main"))


def read(repo: str) -> xr.Dataset:
    storage = icechunk.local_filesystem_storage(repo)
    session = icechunk.Repository.open(storage).readonly_session("main")
    return xr.open_zarr(session.store, consolidated=False).load()


def assert_values(ds: xr.Dataset, positions: slice, plus: float) -> None:
    part = ds.isel(time=positions)
    for name in VARS:
        np.testing.assert_allclose(part[name].values, expected_values(part, name) + plus)


def appender(repo: str, periods: int, cluster: DaskClusterConfig) -> Callable[[], None]:
    """The scheduled append, landing while the paused run waits (in this process)."""

    def append() -> None:
        result = append_dataset(repo, synthetic(periods), partition_size=10, cluster=cluster)
        assert result.committed, result.summary

    return append


def test_backfill_of_the_newest_days_lands_while_an_append_commits(
    dataset: str, cluster: DaskClusterConfig, tmp_path: Path
) -> None:
    """The usual "rewrite the last days": the append rewrote the last (partial) chunk
    before the backfill's commit; only the backfill's partition holding that chunk is
    written again, on the new tip, and the append's new day is kept."""
    address = str(cluster.address)
    run = Run(
        "backfill", backfill(dataset, "2024-01-01", "2024-02-14", offset(100), address), tmp_path
    )

    def append_then_check() -> None:
        appender(dataset, 46, cluster)()
        assert len(commits(dataset)) == 3  # initial, create, the append: nothing of the backfill
        assert_values(read(dataset), slice(0, 46), 0.0)

    assert run.drive([append_then_check]).startswith("OK"), run.proc.stderr
    history = commits(dataset)
    assert len(history) == 4
    assert [c.message.split()[0] for c in history[:3]] == ["Backfill", "Append", "Create"]
    rebase = history[0].metadata[REBASE]
    assert (
        rebase["text"] == "branch moved (1 commit), 1 partition re-written on the new tip, 4 kept"
    )
    assert (rebase["rounds"], rebase["commits"]) == (1, 1)
    assert rebase["seconds"] > 0  # the round's own time (benchmark row 11 reads it)
    shown = [str(a["data"]) for a in artifacts(history[0].metadata[FLOW_RUN_ID])]
    assert any(f"| landing | {rebase['text']} |" in d for d in shown), shown  # commit artifact
    ds = read(dataset)
    assert ds.sizes["time"] == 46
    assert_values(ds, slice(0, 45), 100.0)  # the backfill, in full
    assert_values(ds, slice(45, 46), 0.0)  # the append's day, kept


def test_backfill_keeps_landing_while_appends_keep_committing(
    dataset: str, cluster: DaskClusterConfig, tmp_path: Path
) -> None:
    """The production loop: an append lands before each of the backfill's first two
    commit attempts; the backfill needs two rounds and lands on the third attempt."""
    address = str(cluster.address)
    run = Run(
        "backfill", backfill(dataset, "2024-01-20", "2024-02-14", offset(100), address), tmp_path
    )
    line = run.drive([appender(dataset, 46, cluster), appender(dataset, 47, cluster)])
    assert line.startswith("OK"), line
    assert run.pauses == 3
    history = commits(dataset)
    assert len(history) == 5  # initial, create, two appends, the backfill
    rebase = history[0].metadata[REBASE]
    assert (rebase["rounds"], rebase["commits"], rebase["rewritten"]) == (2, 2, 2)
    assert "2 partitions re-written" not in rebase["text"]  # one per round
    ds = read(dataset)
    assert ds.sizes["time"] == 47
    assert_values(ds, slice(0, 19), 0.0)
    assert_values(ds, slice(19, 45), 100.0)
    assert_values(ds, slice(45, 47), 0.0)


def test_two_backfills_split_inside_one_chunk_both_land(
    dataset: str, cluster: DaskClusterConfig, tmp_path: Path
) -> None:
    """Split on a date inside chunk 1 (positions 10-19): the two runs share a chunk but
    no element; the paused one re-writes its partition holding that chunk."""
    address = str(cluster.address)
    run = Run(
        "backfill", backfill(dataset, "2024-01-01", "2024-01-15", offset(100), address), tmp_path
    )

    def other_backfill() -> None:
        result = backfill_dataset(
            dataset, date(2024, 1, 16), date(2024, 2, 14), offset_source(200),
            partition_size=10, cluster=cluster,
        )  # fmt: skip
        assert result.committed

    assert run.drive([other_backfill]).startswith("OK")
    history = commits(dataset)
    assert len(history) == 4
    rebase = history[0].metadata[REBASE]
    assert (rebase["rewritten"], rebase["kept"]) == (1, 1)  # [10, 15) again; [0, 10) kept
    ds = read(dataset)
    assert_values(ds, slice(0, 15), 100.0)
    assert_values(ds, slice(15, 45), 200.0)


@pytest.mark.parametrize("policy", ["land-after", "refuse"])
def test_overlapping_backfills_follow_the_policy(
    dataset: str, cluster: DaskClusterConfig, tmp_path: Path, policy: str
) -> None:
    """Both runs rewrite 2024-01-11 .. 2024-01-25. By default the paused run lands after
    the other (its values win there, as a later run's would); with on_overlap="refuse"
    it commits nothing and names what overlapped and the other commit."""
    address = str(cluster.address)
    params = backfill(dataset, "2024-01-01", "2024-01-25", offset(100), address, on_overlap=policy)
    run = Run("backfill", params, tmp_path)
    other: dict[str, Any] = {}

    def other_backfill() -> None:
        result = backfill_dataset(
            dataset, date(2024, 1, 11), date(2024, 2, 4), offset_source(200),
            partition_size=10, cluster=cluster,
        )  # fmt: skip
        other["snapshot"] = result.snapshot_id

    line = run.drive([other_backfill])
    ds = read(dataset)
    if policy == "land-after":
        assert line.startswith("OK"), line
        assert len(commits(dataset)) == 4
        assert_values(ds, slice(0, 25), 100.0)
        assert_values(ds, slice(25, 35), 200.0)
    else:
        assert line.startswith("ERROR CommitConflictError"), line
        assert "on_overlap is 'refuse'" in line and other["snapshot"] in line
        assert "'/t2m'" in line and "element(s) inside this run's region" in line
        assert len(commits(dataset)) == 3  # the other backfill's only
        assert_values(ds, slice(0, 10), 0.0)
        assert_values(ds, slice(10, 35), 200.0)
    assert_values(ds, slice(35, 45), 0.0)


def test_failed_backfill_rerun_after_an_append_reuses_untouched_partitions(
    dataset: str, cluster: DaskClusterConfig, tmp_path: Path
) -> None:
    """A backfill fails in one partition; an append lands; the re-run writes only the
    failed partition and the one holding the chunk the append rewrote, and reuses the
    three others (their task runs are Cached), though the branch moved."""
    address = str(cluster.address)
    marks = tmp_path / "marks"
    marks.mkdir()
    (marks / "poison-2_0_0").touch()  # positions 20-29 fail for good
    params = backfill(dataset, "2024-01-01", "2024-02-14", offset(100, marks=marks), address)
    line = Run("backfill", params, tmp_path, pause=False).drive()
    assert line.startswith("ERROR"), line
    assert len(commits(dataset)) == 2  # nothing of it

    appender(dataset, 46, cluster)()
    (marks / "poison-2_0_0").unlink()
    assert Run("backfill", params, tmp_path, pause=False).drive().startswith("OK")
    blocks = [f"{i}_0_0" for i in range(5)]
    # first run: each once (block 2 failed); re-run: 2 (failed) and 4 (the append's chunk)
    assert [computations(marks, b) for b in blocks] == [1, 1, 2, 1, 2]
    history = commits(dataset)
    assert len(history) == 4
    assert REBASE not in history[0].metadata  # it started on the new tip
    states = task_states(history[0].metadata[FLOW_RUN_ID])
    cached = [n for n, s in states.items() if n.startswith("write time[") and "Cached" in s]
    assert len(cached) == 4, states  # 0, 1, 3, and 4 (found stale, then written again)
    ds = read(dataset)
    assert_values(ds, slice(0, 45), 100.0)
    assert_values(ds, slice(45, 46), 0.0)


def test_append_racing_an_append_never_duplicates_steps(
    dataset: str, cluster: DaskClusterConfig, tmp_path: Path
) -> None:
    """Two appends of the same new day: the second to commit was planned against the
    old length; it is refused (nothing written twice), and its re-run appends nothing."""
    params = {
        "repository": dataset,
        "source": source_config(synthetic(46)),
        "partition_size": 10,
        "cluster": {"address": str(cluster.address)},
    }
    run = Run("append", params, tmp_path)
    line = run.drive([appender(dataset, 46, cluster)])
    assert line.startswith("ERROR CommitConflictError"), line
    assert "both changed the array's metadata" in line and "re-run to plan again" in line
    assert len(commits(dataset)) == 3
    ds = read(dataset)
    assert ds.sizes["time"] == 46 and ds.indexes["time"].is_unique
    again = append_dataset(dataset, synthetic(46), cluster=cluster)
    assert not again.committed
    assert len(commits(dataset)) == 3


def test_backfill_lands_while_an_append_commits_on_s3(
    s3_server: Any, s3_prefix: str, cluster: DaskClusterConfig, tmp_path: Path
) -> None:
    """The first scenario on object storage (a local S3 server): no commit lock there,
    Icechunk's conditional writes order the commits."""

    name = s3_server.save_block(s3_prefix, "two-writers")
    repo = f"icechunk-repository/{name}"
    create_dataset(repo, synthetic(45), fill=True, partition_size=10, cluster=cluster)
    address = str(cluster.address)
    run = Run(
        "backfill", backfill(repo, "2024-01-01", "2024-02-14", offset(100), address), tmp_path
    )
    assert run.drive([appender(repo, 46, cluster)]).startswith("OK")
    repository = icechunk.Repository.open(s3_server.storage(s3_prefix))
    history = list(repository.ancestry(branch="main"))
    assert len(history) == 4
    assert history[0].metadata[REBASE]["rewritten"] == 1
    ds = xr.open_zarr(repository.readonly_session("main").store, consolidated=False).load()
    assert_values(ds, slice(0, 45), 100.0)
    assert_values(ds, slice(45, 46), 0.0)


def test_take_turns_makes_the_append_wait_for_the_backfill(
    dataset: str, cluster: DaskClusterConfig, tmp_path: Path
) -> None:
    """With take_turns on both, the scheduled append waits (holding nothing) while the
    backfill holds the dataset's turn, then appends after the backfill's commit: the
    backfill needs no round, and the append's day is there."""
    from prefect.client.orchestration import get_client

    from icechunk_prefect.operations.turns import turn_name

    address = str(cluster.address)
    params = backfill(dataset, "2024-01-01", "2024-02-14", offset(100), address, take_turns=True)
    run = Run("backfill", params, tmp_path)
    deadline = time.monotonic() + 120
    while not run.marker.exists():  # paused before its commit, holding the turn
        assert run.proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    append = {
        "repository": dataset,
        "source": source_config(synthetic(46)),
        "partition_size": 10,
        "cluster": {"address": address},
        "take_turns": True,
    }
    waiting = Run("append", append, tmp_path, pause=False, PREFECT_LOGGING_LEVEL="INFO")
    lines: list[str] = []
    stderr = waiting.proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")))
    reader.start()
    while not any("Waiting for the dataset's turn" in line for line in lines):
        assert waiting.proc.poll() is None and time.monotonic() < deadline + 60, lines[-20:]
        time.sleep(0.1)
    time.sleep(3)
    assert waiting.proc.poll() is None  # still waiting
    assert len(commits(dataset)) == 2  # nothing landed meanwhile
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(turn_name(dataset, "main", None))
    assert (limit.limit, limit.active_slots) == (1, 1)
    run.marker.unlink()
    assert run.drive().startswith("OK")
    out, _ = waiting.proc.communicate(timeout=300)
    reader.join()
    assert out.strip().splitlines()[-1].startswith("OK"), lines[-20:]
    history = commits(dataset)
    assert [c.message.split()[0] for c in history[:3]] == ["Append", "Backfill", "Create"]
    assert REBASE not in history[1].metadata  # the backfill landed without a round
    ds = read(dataset)
    assert_values(ds, slice(0, 45), 100.0)
    assert_values(ds, slice(45, 46), 0.0)
