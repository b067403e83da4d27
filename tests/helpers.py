"""Helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import dask.array as da
import httpx
import icechunk
import numpy as np
import pandas as pd
import xarray as xr
import zarr


def open_repo(path: str | Path) -> icechunk.Repository:
    return icechunk.Repository.open(icechunk.local_filesystem_storage(str(path)))


@dataclass
class PeerResult:
    """One input written both ways (tests/test_parity.py, tests/test_peer_roundtrip.py):
    by upstream into ``upstream`` and by the flow into ``ours``, a copy of the same
    starting repository whose branch was at ``tip``; each side's error, if it refused."""

    upstream: Path
    ours: Path
    tip: str
    upstream_error: BaseException | None = None
    ours_error: BaseException | None = None
    eager: Path | None = None  # upstream's write of the computed input, where compared


def read_back(path: str, branch: str = "main", group: str | None = None) -> xr.Dataset:
    repo = open_repo(path)
    return xr.open_zarr(repo.readonly_session(branch).store, group=group, consolidated=False)


def history(path: str, branch: str = "main") -> list[icechunk.SnapshotInfo]:
    return list(open_repo(path).ancestry(branch=branch))


def array_in(group: Any, name: str) -> Any:
    """Array ``name`` of a Zarr group, typed for reading (zarr types ``group[name]`` as
    an array or a group, and ``arr[:]`` as an array or a scalar)."""
    arr = group[name]
    assert isinstance(arr, zarr.Array), f"{name!r} is not an array"
    return arr


def chunks_of(*sizes: int) -> Any:
    """Dask chunk sizes (dask's stubs type ``chunks`` as ``str``)."""
    return sizes[0] if len(sizes) == 1 else sizes


def small_dataset(
    periods: int = 40, start: str = "2024-01-01", nx: int = 6, chunk: int = 10, seed: int = 0
) -> xr.Dataset:
    """time x x dataset: one dask-backed float var, one int var, in-memory coords."""
    rng = np.random.default_rng(seed)
    time = pd.date_range(start, periods=periods, freq="D")
    a = da.from_array(rng.random((periods, nx)), chunks=chunks_of(chunk, nx))
    b = da.from_array(np.arange(periods, dtype="int64") + seed * 1000, chunks=chunks_of(chunk))
    ds = xr.Dataset(
        {"a": (("time", "x"), a, {"units": "K"}), "b": (("time",), b)},
        coords={"time": time, "x": np.arange(nx), "label": ("x", [f"p{i}" for i in range(nx)])},
        attrs={"title": "test"},
    )
    ds["a"].encoding["chunks"] = (chunk, nx)
    ds["b"].encoding["chunks"] = (chunk,)
    return ds


def _fail_first(block: np.ndarray, marker_dir: str, block_info: dict | None = None) -> np.ndarray:
    """Raise the first time each block is computed (a marker file remembers it)."""
    loc = "_".join(map(str, block_info[0]["chunk-location"])) if block_info else "x"
    marker = Path(marker_dir) / f"tried-{loc}"
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"injected failure on first try of block {loc} (pid {os.getpid()})")
    return block


def fail_first_try(ds: xr.Dataset, name: str, marker_dir: str) -> xr.Dataset:
    """A copy of ``ds`` whose variable ``name`` fails once per dask block."""
    out = ds.copy()
    arr = ds[name].data
    out[name] = (ds[name].dims, arr.map_blocks(_fail_first, marker_dir, dtype=arr.dtype))
    out[name].attrs = ds[name].attrs
    out[name].encoding = ds[name].encoding
    return out


def _always_fail(block: np.ndarray) -> np.ndarray:
    raise RuntimeError("injected permanent failure")


def fail_always(ds: xr.Dataset, name: str) -> xr.Dataset:
    out = ds.copy()
    arr = ds[name].data
    out[name] = (ds[name].dims, arr.map_blocks(_always_fail, dtype=arr.dtype))
    out[name].encoding = ds[name].encoding
    return out


_FINAL_STATES = {"Completed", "Cached", "Failed", "Crashed", "Cancelled", "NotReady"}


def task_states(
    flow_run_id: object, settle: float = 1.0, wait: float = 20.0
) -> dict[str, list[str]]:
    """Names of a flow run's task runs -> their final state names (e.g. 'Cached').

    The API records task runs from the events the run emitted, after the flow call has
    returned (as the UI sees them, a moment later): read until every task run is in a
    final state and nothing changed for ``settle`` seconds (at most ``wait`` seconds)."""
    import time

    deadline = time.monotonic() + wait
    last = _read_task_states(flow_run_id)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _read_task_states(flow_run_id)
        if now != last:
            last, stable_since = now, time.monotonic()
            continue
        final = all(st in _FINAL_STATES for states in now.values() for st in states)
        # A task run of a failed flow may stay Running for good: settle longer, not forever.
        if time.monotonic() - stable_since >= (settle if final else 5 * settle):
            break
    return last


def _read_task_states(flow_run_id: object) -> dict[str, list[str]]:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    async def read() -> dict[str, list[str]]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))])),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=200,
            )
        out: dict[str, list[str]] = {}
        for r in runs:
            out.setdefault(r.name, []).append(str(r.state.name) if r.state else "?")
        return out

    return asyncio.run(read())


def completed_task_runs(flow_run_id: object) -> list[str]:
    """Sorted names of a flow run's task runs that completed (once per run)."""
    return sorted(
        name
        for name, states in task_states(flow_run_id).items()
        for st in states
        if st in ("Completed", "Cached")
    )


def flow_run_logs(flow_run_id: object, contains: str = "", wait: float = 15.0) -> list[str]:
    """Messages a flow run logged to the Prefect API (as the UI shows them). Logs are
    shipped in batches: wait up to ``wait`` seconds for one that ``contains`` the text."""
    import asyncio
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(str(flow_run_id))]))
            )
        return [log.message for log in logs]

    deadline = time.monotonic() + wait
    while True:
        messages = asyncio.run(read())
        if any(contains in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def artifacts(flow_run_id: object) -> list[dict[str, Any]]:
    """The flow run's artifacts, as the API returns them (raw: prefect 3.8's client sends
    nulls this server version refuses)."""
    body = {
        "artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}},
        "limit": 50,
        "offset": 0,
        "sort": "CREATED_DESC",
    }
    response = httpx.post(f"{os.environ['PREFECT_API_URL']}/artifacts/filter", json=body)
    response.raise_for_status()
    return response.json()


@contextlib.contextmanager
def served_in_thread(name: str, deployments: list[Any]) -> Iterator[list[Any]]:
    """Serve ``deployments`` with a ``prefect.runner.Runner`` in a background thread (what
    ``prefect.serve`` / ``deployments/serve.py`` do); yields their ids. Each flow run
    executes in its own subprocess, as in production."""
    import asyncio
    import threading
    import time

    from prefect.runner import Runner

    runner = Runner(name=name, query_seconds=1, limit=2, pause_on_shutdown=True)
    ids = [runner.add_deployment(d) for d in deployments]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(runner.start(),), daemon=True)
    thread.start()
    try:
        yield ids
    finally:
        for _ in range(100):  # the runner sets itself up in its thread
            if runner.started:
                break
            time.sleep(0.1)
        if runner.started:
            asyncio.run_coroutine_threadsafe(runner.astop(), loop).result(timeout=60)
        thread.join(timeout=60)
