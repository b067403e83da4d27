"""Fault-injection helpers for the crash-safety tests (real faults: exceptions, SIGKILL)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from uuid import UUID

import numpy as np
import xarray as xr

from icechunk_prefect.errors import InputValidationError
from tests.helpers import (
    small_dataset,
    task_states,  # noqa: F401  (re-exported for the fault tests)
)


def _loc(block_info: dict | None) -> str:
    return "_".join(map(str, block_info[0]["chunk-location"])) if block_info else "x"


def _instrumented(
    block: np.ndarray, folder: str, fail_times: int, kill: bool, block_info: dict | None = None
) -> np.ndarray:
    """Record each computation of a block; fail, poison or kill as the folder says."""
    loc = _loc(block_info)
    d = Path(folder)
    tries = sorted(d.glob(f"computed-{loc}-*"))
    (d / f"computed-{loc}-{uuid.uuid4().hex}").touch()
    if (d / f"fail-once-{loc}").exists():
        (d / f"fail-once-{loc}").unlink()
        raise RuntimeError(f"injected one-time failure of block {loc} (pid {os.getpid()})")
    if (d / f"poison-{loc}").exists():
        # A final error: the task is not retried (keeps the test fast).
        raise InputValidationError(f"injected permanent failure of block {loc}")
    if len(tries) < fail_times:
        raise RuntimeError(f"injected failure {len(tries) + 1} of block {loc} (pid {os.getpid()})")
    if (d / f"hang-{loc}").exists():
        # Hold the block (a partition in progress) until the test removes the file.
        (d / f"hanging-{loc}-{os.getpid()}").touch()
        deadline = time.monotonic() + 300
        while (d / f"hang-{loc}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    if kill and (d / f"kill-{loc}").exists():
        (d / f"kill-{loc}").unlink()
        (d / f"killed-{loc}-{os.getpid()}").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return block


def instrument(
    ds: xr.Dataset, name: str, folder: str | Path, *, fail_times: int = 0, kill: bool = False
) -> xr.Dataset:
    """A copy of ``ds`` whose variable ``name`` records every block computation in ``folder``.

    ``fail_times``: each block raises on its first tries; a ``fail-once-<loc>`` file
    makes block ``loc`` raise once (a retried error); a ``poison-<loc>`` file makes
    block ``loc`` fail for good; a ``hang-<loc>`` file holds block ``loc`` (a
    ``hanging-<loc>-<pid>`` file says so) until it is removed; with ``kill``, a
    ``kill-<loc>`` file makes the process computing block ``loc`` SIGKILL itself once.
    The dask token is the same in every process for the same arguments (so resume
    keys agree across runs).
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = ds.copy()
    arr = ds[name].data
    out[name] = (
        ds[name].dims,
        arr.map_blocks(_instrumented, str(folder), fail_times, kill, dtype=arr.dtype),
    )
    out[name].attrs = ds[name].attrs
    out[name].encoding = ds[name].encoding
    return out


def computations(folder: str | Path, loc: str | None = None) -> int:
    """How many times blocks (or block ``loc``) were computed."""
    pattern = f"computed-{loc}-*" if loc else "computed-*"
    return len(list(Path(folder).glob(pattern)))


def task_run_counts(flow_run_id: object) -> dict[str, int]:
    """Task run name -> how many times it ran (retries count)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    async def read() -> dict[str, int]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))])),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=200,
            )
        return {r.name: r.run_count for r in runs}

    return asyncio.run(read())


def set_env(name: str, value: str | None) -> None:
    """Set (or, with None, remove) an environment variable in this process (for client.run)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class MotoRepository:
    """A repository on a local S3 server (moto), as a RepositorySource (no lock: S3 has
    conditional writes). Test credentials only."""

    def __init__(self, endpoint: str, bucket: str, prefix: str) -> None:
        self.endpoint, self.bucket, self.prefix = endpoint, bucket, prefix

    def _storage(self):  # type: ignore[no-untyped-def]
        import icechunk

        return icechunk.s3_storage(
            bucket=self.bucket,
            prefix=self.prefix,
            region="us-east-1",
            endpoint_url=self.endpoint,
            allow_http=True,
            force_path_style=True,
            access_key_id="testing",
            secret_access_key="testing",
        )

    def open_repository(self, *, create: bool = False):  # type: ignore[no-untyped-def]
        import icechunk

        storage = self._storage()
        if icechunk.Repository.exists(storage):
            return icechunk.Repository.open(storage)
        return icechunk.Repository.create(storage)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"

    def local_lock_path(self) -> str | None:
        return None


BLOCKS = ["0_0", "1_0", "2_0", "3_0"]  # small_dataset(): 40 steps, chunks of 10


def failed_first_run(runner, repo_path, tmp_path, monkeypatch, **kw):  # type: ignore[no-untyped-def]
    """A run whose last partition fails for good; returns (run, ds, marks) to re-run with
    (``kw``: more arguments of the ``to_icechunk`` flow)."""
    from icechunk_prefect.caching import RESULT_STORAGE_ENV

    monkeypatch.setenv(RESULT_STORAGE_ENV, str(tmp_path / "results"))
    marks = tmp_path / "marks"
    ds = instrument(small_dataset(), "a", marks)
    (marks / "poison-3_0").touch()
    from icechunk_prefect import to_icechunk

    run = to_icechunk.with_options(task_runner=runner)
    assert run(ds, repo_path, mode="w", partition_size=10, return_state=True, **kw).is_failed()
    assert [computations(marks, b) for b in BLOCKS] == [1, 1, 1, 1]
    return run, ds, marks
