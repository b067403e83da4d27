"""The measurements of the benchmark, one function per row of the table.

Each function writes into a fresh repository under ``workdir``, checks what it
wrote against the values it should hold, and returns plain numbers. Only the
public API of icechunk-prefect is used, so that the benchmark keeps working
while the internals change.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from profiling import flow_process_profile

from icechunk_prefect.synthetic import expected_values, synthetic_climate

VARIABLES = ("t2m", "precip", "wind")


@dataclass(frozen=True)
class Shape:
    """The generated dataset: a time x lat x lon grid of float32, chunked along time."""

    nlat: int
    nlon: int
    time_chunk: int

    @property
    def step_bytes(self) -> int:
        return self.nlat * self.nlon * 4

    @property
    def chunk_bytes(self) -> int:
        return self.step_bytes * self.time_chunk

    def periods_for(self, total_bytes: float, nvars: int = len(VARIABLES)) -> int:
        """Time steps (a multiple of the chunk) so that the dataset holds >= ``total_bytes``."""
        chunks = max(1, math.ceil(total_bytes / (nvars * self.chunk_bytes)))
        return chunks * self.time_chunk

    def dataset(self, total_bytes: float, variables: tuple[str, ...] = VARIABLES) -> xr.Dataset:
        return synthetic_climate(
            periods=self.periods_for(total_bytes, len(variables)),
            nlat=self.nlat,
            nlon=self.nlon,
            variables=variables,
            time_chunk=self.time_chunk,
        )


def data_bytes(ds: xr.Dataset) -> int:
    """Bytes of the data variables (what the MB/s figures count)."""
    return int(sum(v.nbytes for v in ds.data_vars.values()))


@dataclass
class Timing:
    """One measured write."""

    seconds: float
    nbytes: int
    flow_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    to_commit: float | None = None
    """Seconds from the call to the commit landing (the snapshot's ``written_at``)."""
    cpu_s: float | None = None
    """CPU seconds of this (the flow's) process during the call: ``time.process_time()``,
    all its threads; the Dask workers and the Prefect API are other processes."""

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds else float("nan")


def fresh(workdir: Path, name: str) -> str:
    """An empty folder for one repository (removed first if a previous run left it)."""
    path = workdir / name
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def _utcnow() -> Any:
    import datetime

    return datetime.datetime.now(datetime.UTC)


def seconds_to_commit(repo: Any, started: Any) -> float:
    """Seconds from ``started`` (UTC) to the newest commit on main (its ``written_at``)."""
    snap = next(iter(repo.ancestry(branch="main")))
    return float((snap.written_at - started).total_seconds())


def create_repo(path: str) -> Any:
    from icechunk_prefect import LocalRepository

    return LocalRepository(path).open_repository(create=True)


def verify(path: str, ds: xr.Dataset, full: bool) -> None:
    """Read the repository back; compare the first and last chunk of every variable (or all)."""
    import icechunk

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(path))
    back = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
    n = ds.sizes["time"]
    tc = ds[next(iter(ds.data_vars))].data.chunksize[0]
    windows = [slice(0, n)] if full else [slice(0, min(tc, n)), slice(max(0, n - tc), n)]
    for name in ds.data_vars:
        for w in windows:
            got = back[name].isel(time=w).values
            want = expected_values(ds.isel(time=w), str(name))
            if not np.array_equal(got, want):
                raise AssertionError(f"{path}: {name}[{w.start}:{w.stop}] differs from expected")


def cleanup(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ row 1


def write_plain(ds: xr.Dataset, path: str, address: str) -> Timing:
    """``icechunk.xarray.to_icechunk`` with a distributed client on the cluster, one commit."""
    from distributed import Client
    from icechunk.xarray import to_icechunk

    repo = create_repo(path)
    started = _utcnow()
    t0 = time.perf_counter()
    with Client(address, set_as_default=True):
        session = repo.writable_session("main")
        to_icechunk(ds, session, mode="w")
        session.commit("plain icechunk.xarray.to_icechunk")
    seconds = time.perf_counter() - t0
    return Timing(seconds, data_bytes(ds), to_commit=seconds_to_commit(repo, started))


def write_flow(ds: xr.Dataset, path: str, address: str, *, partitioned: bool, **kw: Any) -> Timing:
    """This project's ``to_icechunk`` flow on the same cluster."""
    from icechunk_prefect import IcechunkDaskTaskRunner, to_icechunk

    repo = create_repo(path)
    run = to_icechunk.with_options(task_runner=IcechunkDaskTaskRunner(address=address))
    started = _utcnow()
    c0 = time.process_time()
    t0 = time.perf_counter()
    state = run(ds, path, mode="w", partitioned=partitioned, return_state=True, **kw)
    seconds = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    if not state.is_completed():
        raise RuntimeError(f"flow run did not complete: {state.type.value} {state.message}")
    meta = next(iter(repo.ancestry(branch="main"))).metadata or {}
    return Timing(
        seconds,
        data_bytes(ds),
        flow_run_id=str(state.state_details.flow_run_id),
        extra={"partitions": meta.get("icechunk_prefect.partitions", "?")},
        to_commit=seconds_to_commit(repo, started),
        cpu_s=cpu_s,
    )


def empty_flow_call() -> float:
    """Wall time of calling a flow that does nothing (Prefect's own cost per flow call)."""
    from prefect import flow

    @flow(name="empty flow (benchmark)")
    def empty() -> None:
        return None

    t0 = time.perf_counter()
    empty()
    return time.perf_counter() - t0


# ------------------------------------------------------------------ row 2


def write_limit(ds: xr.Dataset, path: str) -> Timing:
    """The same arrays written from numpy by zarr's own threads in this process, one commit.

    Generating the values (numpy) is not timed; it is reported as ``generate_s``.
    """
    import zarr

    repo = create_repo(path)
    session = repo.writable_session("main")
    group = zarr.open_group(session.store, mode="w", zarr_format=3)
    write_s = generate_s = 0.0
    for name in ds.data_vars:
        var = ds[name]
        t0 = time.perf_counter()
        data = expected_values(ds, str(name))
        generate_s += time.perf_counter() - t0
        arr = group.create_array(
            str(name),
            shape=var.shape,
            chunks=var.encoding["chunks"],
            dtype=var.dtype,
            dimension_names=[str(d) for d in var.dims],
        )
        t0 = time.perf_counter()
        arr[...] = data
        write_s += time.perf_counter() - t0
        del data
    t0 = time.perf_counter()
    session.commit("write limit: numpy -> zarr")
    write_s += time.perf_counter() - t0
    return Timing(write_s, data_bytes(ds), extra={"generate_s": generate_s})


# ------------------------------------------------------------------ row 3


def tiny_partitions(n: int, path: str, address: str) -> tuple[Timing, Timing]:
    """``n`` one-step partitions of a tiny dataset, and the same dataset as one partition."""
    ds = synthetic_climate(periods=n, nlat=2, nlon=4, variables=("t2m",), time_chunk=1)
    many = write_flow(ds, path + "-many", address, partitioned=True, partition_size=1)
    verify(path + "-many", ds, full=True)
    one = write_flow(ds, path + "-one", address, partitioned=True, partition_size=n)
    verify(path + "-one", ds, full=True)
    cleanup(path + "-many")
    cleanup(path + "-one")
    return many, one


# ------------------------------------------------------------------ row 4


def merge_commit_forks(
    n: int, path: str, profile: dict[str, str] | None = None
) -> dict[str, float]:
    """Merge ``n`` forks (one chunk each) with ``merge_forks``, commit with ``commit_fork``.

    The forks are pickled copies of one fork of a clean session, as partition
    tasks return them, with their chunk counts read where they were written (as a
    partition's Dask task reads them on the worker). Making them is not timed.
    """
    import zarr

    from icechunk_prefect import commit_fork, merge_forks
    from icechunk_prefect.core.integrity import chunk_counts, unreadable_chunks, written_chunks

    repo = create_repo(path)
    session = repo.writable_session("main")
    width = 80  # float64 -> 640-byte chunks: stored as chunk objects, not inlined
    zarr.create_array(session.store, name="a", shape=(n, width), chunks=(1, width), dtype="f8")
    base = session.commit("create array")
    parent = repo.writable_session("main").fork()
    blob = pickle.dumps(parent)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    forks = []
    counts = []
    for i in range(n):
        child = pickle.loads(blob)
        zarr.open_array(child.store, path="a", mode="r+")[i] = rng.random(width)
        counts.append(chunk_counts(child))  # read on the worker, as a partition's Dask task does
        forks.append(pickle.loads(pickle.dumps(child)))  # as it comes back from a worker
    make_s = time.perf_counter() - t0
    into = pickle.loads(blob)
    out: dict[str, str] = {}
    with flow_process_profile(profile is not None, out):
        t0 = time.perf_counter()
        merged = merge_forks(forks, into, counts=counts)
        merge_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        commit_fork(path, "main", merged, message=f"{n} forks", base_snapshot=base, key=f"k{n}")
        commit_s = time.perf_counter() - t0
    if profile is not None:
        profile["text"] = out.get("text", "")
    # The gate's object check, as a resumed run pays it for reused forks: probe every
    # chunk once through the merged fork (the commit does it under the commit lock).
    chunks = written_chunks(merged)
    t0 = time.perf_counter()
    bad = unreadable_chunks(merged, chunks)
    gate_s = time.perf_counter() - t0
    if bad:
        raise AssertionError(f"unreadable chunks: {bad[:3]}")
    # Count the committed chunks from the snapshot's manifest (zarr's nchunks_initialized
    # lists the store: minutes for 100,000 chunks).
    committed = asyncio.run(_count(repo.readonly_session("main").chunk_coordinates("/a")))
    if committed != n:
        raise AssertionError(f"{committed} of {n} chunks committed")
    cleanup(path)
    return {"make_s": make_s, "merge_s": merge_s, "commit_s": commit_s, "gate_s": gate_s}


async def _count(items: Any) -> int:
    return sum([1 async for _ in items])


# ------------------------------------------------------------------ row 5


def _die_in_second_half(block: np.ndarray, marker: str, first: int, block_info: Any = None) -> Any:
    """Fail blocks from time chunk ``first`` on while ``marker`` exists (a simulated kill).

    The error is one of the package's final errors, so Prefect does not retry it:
    the run stops with the first half of its partitions done.
    """
    from icechunk_prefect.errors import InputValidationError

    loc = block_info[0]["chunk-location"][0] if block_info else 0
    if loc >= first and os.path.exists(marker):
        raise InputValidationError(f"simulated kill of the run at time chunk {loc}")
    return block


def killable(ds: xr.Dataset, marker: str, first_chunk: int) -> xr.Dataset:
    """``ds`` whose blocks from ``first_chunk`` on fail while ``marker`` exists.

    The dask graph is the same with or without the marker, so both runs have the same inputs.
    """
    out = ds.copy()
    for name in ds.data_vars:
        arr = ds[name].data
        out[name] = (
            ds[name].dims,
            arr.map_blocks(_die_in_second_half, marker, first_chunk, dtype=arr.dtype),
            ds[name].attrs,
        )
        out[name].encoding = ds[name].encoding
    return out


def resume(ds: xr.Dataset, path: str, address: str, partitions: int) -> dict[str, Any]:
    """A full run; a run killed after half its partitions; the re-run of the killed one."""
    tc = ds[VARIABLES[0]].data.chunksize[0]
    nchunks = ds.sizes["time"] // tc
    per = max(1, nchunks // partitions)
    actual = math.ceil(nchunks / per)
    first_failing = (actual // 2) * per
    marker = path + ".kill"
    ds = killable(ds, marker, first_failing)
    full = write_flow(ds, path + "-full", address, partitioned=True, partition_size=per * tc)
    cleanup(path + "-full")

    from icechunk_prefect import IcechunkDaskTaskRunner, to_icechunk

    create_repo(path)
    Path(marker).touch()
    run = to_icechunk.with_options(task_runner=IcechunkDaskTaskRunner(address=address))
    t0 = time.perf_counter()
    state = run(ds, path, mode="w", partition_size=per * tc, return_state=True)
    killed_s = time.perf_counter() - t0
    if not state.is_failed():
        raise RuntimeError(f"the killed run should have failed, it is {state.type.value}")
    os.unlink(marker)
    rerun = write_flow(ds, path, address, partitioned=True, partition_size=per * tc)
    verify(path, ds, full=False)
    cleanup(path)
    return {
        "full": full,
        "killed_s": killed_s,
        "rerun": rerun,
        "partitions": actual,
        "done_before_kill": actual // 2,
    }


# ------------------------------------------------------------------ row 8


def next_step(ds: xr.Dataset, k: int) -> xr.Dataset:
    """The ``k``-th daily time step after ``ds``'s last one (k = 1: the next), lazy.

    No encoding: an append takes the chunks of the arrays it extends.
    """
    import pandas as pd

    start = pd.Timestamp(ds["time"].values[-1]) + pd.Timedelta(days=k)
    return synthetic_climate(
        start=str(start),
        periods=1,
        nlat=ds.sizes["lat"],
        nlon=ds.sizes["lon"],
        variables=[str(v) for v in ds.data_vars],
        time_chunk=1,
    ).drop_encoding()


def append_plain(step: xr.Dataset, path: str, address: str) -> Timing:
    """Upstream: ``icechunk.xarray.to_icechunk(..., append_dim="time")`` + ``session.commit``
    under a distributed client on the cluster (connecting the client is timed, as in 1a)."""
    import icechunk
    from distributed import Client
    from icechunk.xarray import to_icechunk

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(path))
    t0 = time.perf_counter()
    with Client(address, set_as_default=True):
        session = repo.writable_session("main")
        to_icechunk(step, session, append_dim="time")
        session.commit("plain append of one time step")
    return Timing(time.perf_counter() - t0, data_bytes(step))


def append_flow(step: xr.Dataset, path: str, address: str) -> Timing:
    """This project's ``to_icechunk`` flow with ``append_dim="time"`` on the same cluster."""
    from icechunk_prefect import IcechunkDaskTaskRunner, to_icechunk

    run = to_icechunk.with_options(task_runner=IcechunkDaskTaskRunner(address=address))
    c0 = time.process_time()
    t0 = time.perf_counter()
    state = run(step, path, append_dim="time", message="append one step", return_state=True)
    seconds = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    if not state.is_completed():
        raise RuntimeError(f"append flow run did not complete: {state.type.value} {state.message}")
    return Timing(
        seconds,
        data_bytes(step),
        flow_run_id=str(state.state_details.flow_run_id),
        cpu_s=cpu_s,
    )


def verify_append(path: str, base_steps: int, steps: list[xr.Dataset]) -> None:
    """The repository holds the base's steps and then exactly ``steps``, with their values."""
    import icechunk

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(path))
    back = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
    want = base_steps + len(steps)
    if back.sizes["time"] != want:
        raise AssertionError(f"{path}: {back.sizes['time']} time steps, expected {want}")
    for i, step in enumerate(steps):
        at = back.isel(time=[base_steps + i])
        if not np.array_equal(at["time"].values, step["time"].values):
            raise AssertionError(f"{path}: step {base_steps + i} has the wrong time")
        for name in step.data_vars:
            if not np.array_equal(at[name].values, expected_values(step, str(name))):
                raise AssertionError(f"{path}: {name} at step {base_steps + i} differs")


# ------------------------------------------------------------------ row 9


def tiny_dataset() -> xr.Dataset:
    """A few KB: 8 daily steps of a 4 x 8 grid, three variables, two time chunks."""
    return synthetic_climate(periods=8, nlat=4, nlon=8, time_chunk=4)


# ------------------------------------------------------------------ row 10


def small_dataset(steps: int) -> xr.Dataset:
    """``steps`` x 205 x 275 float64, one chunk per step (24 steps: 10.8 MB), lazy and
    deterministic (a seeded dask random field): the same values wherever it is built."""
    import dask.array as da

    chunks: Any = (1, 205, 275)
    data = da.random.RandomState(22).random_sample((steps, 205, 275), chunks=chunks)
    return xr.Dataset(
        {"v": (("time", "lat", "lon"), data)},
        coords={"time": np.arange(steps), "lat": np.arange(205.0), "lon": np.arange(275.0)},
    )


def verify_small(path: str, ds: xr.Dataset) -> None:
    """The repository holds ``ds``'s values (all of them)."""
    import icechunk

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(path))
    back = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
    if not np.array_equal(back["v"].values, ds["v"].values):
        raise AssertionError(f"{path}: v differs from the dataset written")


class StartupTimers:
    """Wall time a call spends starting Prefect's API (``SubprocessASGIServer.start``: the
    ephemeral server Prefect or this package starts), starting a Dask ``LocalCluster``
    (its ``__init__``), and importing modules in the calling thread outside those two
    (outermost ``_find_and_load``). Installed in a fresh benchmark child process only."""

    def __init__(self) -> None:
        import threading

        self.api = self.cluster = self.imports = 0.0
        self._main = threading.get_ident()
        self._depth = 0
        self._busy = False

    def install(self) -> None:
        """Wrap the import machinery now, and the API and cluster starts when their modules
        are imported (not before: importing them is part of a user's first call)."""
        import _frozen_importlib  # type: ignore[import-not-found]

        bootstrap: Any = _frozen_importlib
        import sys

        pending = {
            "prefect.server.api.server": lambda m: self._wrap(
                m.SubprocessASGIServer, "start", "api"
            ),
            "distributed.deploy.local": lambda m: self._wrap(m.LocalCluster, "__init__", "cluster"),
        }
        for name in list(pending):
            if name in sys.modules:
                pending.pop(name)(sys.modules[name])
        find_and_load = bootstrap._find_and_load
        timers = self

        def timed_find_and_load(name: str, import_: Any) -> Any:
            import threading

            if threading.get_ident() != timers._main or timers._busy or timers._depth:
                module = find_and_load(name, import_)
            else:
                timers._depth += 1
                t0 = time.perf_counter()
                try:
                    module = find_and_load(name, import_)
                finally:
                    timers.imports += time.perf_counter() - t0
                    timers._depth -= 1
            if name in pending:
                pending.pop(name)(module)
            return module

        bootstrap._find_and_load = timed_find_and_load

    def _wrap(self, cls: Any, name: str, field_name: str) -> None:
        original = getattr(cls, name)
        timers = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            outer = not timers._busy
            timers._busy = True
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if outer:
                    timers._busy = False
                    setattr(
                        timers, field_name, getattr(timers, field_name) + time.perf_counter() - t0
                    )

        setattr(cls, name, timed)

    def snapshot(self) -> dict[str, float]:
        return {"api_s": self.api, "cluster_s": self.cluster, "imports_s": self.imports}


def first_calls(kind: str, steps: int, workdir: str) -> dict[str, Any]:
    """In this fresh process: the first and the second call of ``to_icechunk(ds, path)``
    with no cluster argument (``kind="flow"``) or of an empty flow (``kind="empty"``), the
    first broken down by :class:`StartupTimers`."""
    timers = StartupTimers()
    timers.install()
    ds = small_dataset(steps) if kind != "empty" else None
    if ds is None:
        from prefect import flow

        @flow(name="empty flow (benchmark)")
        def empty() -> None:
            return None

        def call(i: int) -> None:
            empty()

        nbytes = 0
    else:
        from icechunk_prefect import to_icechunk

        nbytes = data_bytes(ds)

        def call(i: int) -> None:
            to_icechunk(ds, fresh(Path(workdir), f"first-call-{steps}-{i}"), mode="w")

    out: dict[str, Any] = {"kind": kind, "nbytes": nbytes, "calls": []}
    for i in range(2):
        before = timers.snapshot()
        t0 = time.perf_counter()
        call(i)
        seconds = time.perf_counter() - t0
        parts = {k: v - before[k] for k, v in timers.snapshot().items()}
        parts["rest_s"] = seconds - sum(parts.values())
        out["calls"].append({"seconds": seconds, **parts})
    if ds is not None:
        for i in range(2):
            path = str(Path(workdir) / f"first-call-{steps}-{i}")
            verify_small(path, ds)
            cleanup(path)
    return out


# ------------------------------------------------------------- row 11: two writers

_APPENDER = """
import sys, time
from pathlib import Path
from icechunk_prefect import DaskClusterConfig, SyntheticSource, append_dataset
repo, address, stop, every, first, nlat, nlon, chunk = sys.argv[1:9]
cluster = DaskClusterConfig(address=address)
periods = int(first)
while not Path(stop).exists():
    t0 = time.monotonic()
    periods += 1
    source = SyntheticSource(periods=periods, nlat=int(nlat), nlon=int(nlon),
                             time_chunk=int(chunk))  # data_start: the default
    result = append_dataset(repo, source, partition_size=int(chunk), cluster=cluster)
    print("APPENDED" if result.committed else "NOTHING", result.snapshot_id, flush=True)
    time.sleep(max(0.0, float(every) - (time.monotonic() - t0)))
"""


def backfill_under_appends(
    workdir: Path,
    address: str,
    *,
    nlat: int,
    nlon: int,
    time_chunk: int,
    partitions: int,
    append_every: float,
    repeat: int = 1,
) -> dict[str, Any]:
    """A backfill of the newest ``partitions`` chunks of a daily dataset (the last chunk
    partly filled), run from a fresh plan ``repeat`` times each way: alone; while another process
    appends one day every ``append_every`` seconds to a copy of the dataset (the same
    load on the machine, no collision); and while it appends to the same dataset (as an
    hourly schedule would, only faster). Returns the wall times each way, and for the
    last way the rounds, their seconds, the partitions re-written and the appends that
    landed during each backfill; checks the values."""
    import shutil
    import subprocess
    import sys
    import threading

    from icechunk_prefect import DaskClusterConfig, SyntheticSource
    from icechunk_prefect.core.metadata import REBASE
    from icechunk_prefect.operations import backfill_dataset, create_dataset

    path = fresh(workdir, "row11")
    periods = partitions * time_chunk + time_chunk // 2  # the last chunk half full
    cluster = DaskClusterConfig(address=address)

    def source(n: int) -> SyntheticSource:
        return SyntheticSource(periods=n, nlat=nlat, nlon=nlon, time_chunk=time_chunk)

    create_dataset(path, source(periods), fill=True, partition_size=time_chunk, cluster=cluster)
    start = source(periods).template().indexes["time"][time_chunk // 2].date()

    def backfill() -> tuple[float, dict[str, Any]]:
        """From ``start`` to the newest stored day (appends move it)."""
        stored = create_repo_handle(path).readonly_session("main").store
        days = xr.open_zarr(stored, consolidated=False).sizes["time"]
        end = source(days).template().indexes["time"][-1].date()
        t0 = time.perf_counter()
        result = backfill_dataset(
            path, start, end, source(days), partition_size=time_chunk, cluster=cluster
        )
        seconds = time.perf_counter() - t0
        repo = create_repo_handle(path)
        meta = next(iter(repo.ancestry(snapshot_id=result.snapshot_id))).metadata or {}
        return seconds, meta.get(REBASE) or {}

    def under_appends(target: str) -> tuple[list[tuple[float, dict[str, Any], int]], int]:
        """``repeat`` backfills of ``path`` while a process appends to ``target``: for each
        its time, its rounds and the appends that landed on ``path`` during it; and the
        appends in all."""
        stop = workdir / "row11-stop"
        stop.unlink(missing_ok=True)
        appender = subprocess.Popen(
            [sys.executable, "-c", _APPENDER, target, address, str(stop), str(append_every),
             str(periods), str(nlat), str(nlon), str(time_chunk)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(appender.stdout.readline, "")))
        reader.start()
        runs = []
        try:
            deadline = time.monotonic() + 300
            while not any(line.startswith("APPENDED") for line in lines):  # appends under way
                if appender.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the appender did not append: {appender.stderr.read()[-2000:]}"
                    )
                time.sleep(0.1)
            for _ in range(repeat):
                before = len(list(create_repo_handle(path).ancestry(branch="main")))
                seconds, rebase = backfill()
                after = len(list(create_repo_handle(path).ancestry(branch="main")))
                runs.append((seconds, rebase, after - before - 1))
        finally:
            stop.touch()
            _, err = appender.communicate(timeout=300)
            reader.join()
        appended = sum(line.startswith("APPENDED") for line in lines)
        if appender.returncode != 0 or not appended:
            raise RuntimeError(f"the appender failed: {err[-2000:]}")
        return runs, appended

    backfill()  # warm-up (untimed): imports, first plan
    alone = [backfill()[0] for _ in range(repeat)]
    copy = f"{path}-copy"
    shutil.copytree(path, copy)
    loaded, _ = under_appends(copy)
    cleanup(copy)
    if any(rebase for _, rebase, _ in loaded):
        raise RuntimeError(f"a backfill of a dataset nobody else wrote needed rounds: {loaded}")
    during, appended = under_appends(path)
    ds = xr.open_zarr(create_repo_handle(path).readonly_session("main").store, consolidated=False)
    ds = ds.isel(time=slice(0, periods + appended)).load()
    for name in ds.data_vars:
        np.testing.assert_allclose(ds[name].values, expected_values(ds, name), rtol=1e-6)
    cleanup(path)
    rebases = [rebase for _, rebase, _ in during]
    return {
        "alone": alone,
        "loaded": [seconds for seconds, _, _ in loaded],
        "during": [seconds for seconds, _, _ in during],
        "rounds": [rebase.get("rounds", 0) for rebase in rebases],
        "round_seconds": [rebase.get("seconds", 0.0) for rebase in rebases],
        "rewritten": [rebase.get("rewritten", 0) for rebase in rebases],
        "partitions": max(rebase.get("kept", 0) + rebase.get("rewritten", 0) for rebase in rebases)
        or None,
        "appends_during": [n for _, _, n in during],
        "appends": appended,
        "days": periods - time_chunk // 2,
    }


def create_repo_handle(path: str) -> Any:
    import icechunk

    return icechunk.Repository.open(icechunk.local_filesystem_storage(path))
