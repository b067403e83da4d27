"""Library flows: ``to_icechunk``, ``store_dask`` and the two halves of a "more control" write.

All run on :class:`~icechunk_prefect.runtime.IcechunkDaskTaskRunner` (a local
Dask cluster by default). To run on another cluster, use Prefect's
``with_options``::

    to_icechunk.with_options(task_runner=DaskClusterConfig(address="tcp://sched:8786").task_runner())
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import xarray as xr
import zarr
from icechunk.session import ForkSession
from prefect import flow, task

from icechunk_prefect.core import metadata
from icechunk_prefect.core.checks import Check
from icechunk_prefect.core.planning import (
    DEFAULT_PARTITION_BYTES,
    WriteResult,
    check_dask_chunks,
    partition_cuts,
)
from icechunk_prefect.core.sessions import idempotency_key, tree_groups
from icechunk_prefect.core.validation import WriteMode
from icechunk_prefect.errors import InputValidationError, RegionError
from icechunk_prefect.reporting.progress import track_progress
from icechunk_prefect.reporting.publish import publish_commit
from icechunk_prefect.runtime import IcechunkDaskTaskRunner, flow_run_metadata
from icechunk_prefect.serialization import register_parameter_encoders
from icechunk_prefect.storage.resolve import RepositoryLike, resolve_repository
from icechunk_prefect.tasks import _RETRY, commit_task, merge_task
from icechunk_prefect.writer import FlowDatasetWriter

__all__ = ["finish_write", "prepare_write", "store_dask", "to_icechunk"]

register_parameter_encoders()


def _default_runner() -> Any:
    """The flows' default task runner: a local cluster of worker processes.

    (Typed ``Any``: prefect's ``@flow`` stub wants ``TaskRunner[PrefectFuture]``,
    which ``DaskTaskRunner``'s ``TaskRunner[PrefectDaskFuture]`` is not, by variance.)
    """
    return IcechunkDaskTaskRunner()


def _parameters(**kwargs: Any) -> dict[str, Any]:
    return {k: metadata.jsonable(v) for k, v in kwargs.items()}


@flow(
    name="icechunk-to-icechunk",
    task_runner=_default_runner(),
    validate_parameters=False,
    log_prints=True,
)
def to_icechunk(
    obj: xr.Dataset | xr.DataArray,
    repo: RepositoryLike,
    *,
    branch: str = "main",
    message: str = "Write with icechunk-prefect",
    group: str | None = None,
    mode: WriteMode | None = None,
    safe_chunks: bool = True,
    align_chunks: bool = False,
    append_dim: str | None = None,
    region: Mapping[str, slice | str] | str | None = None,
    encoding: Mapping[str, Any] | None = None,
    split_every: int | None = None,
    partitioned: bool = True,
    partition_dim: str | None = None,
    partition_size: int | None = None,
    target_partition_bytes: int = DEFAULT_PARTITION_BYTES,
    commit_metadata: Mapping[str, Any] | None = None,
    checks: Sequence[Check] = (),
    resume: bool = True,
    cluster_timeout: float | None = None,
    partitions_per_task: int | None = None,
) -> str:
    """Write an xarray object to a group of an Icechunk repository, and commit once.

    The Prefect counterpart of ``icechunk.xarray.to_icechunk`` (same keyword
    arguments), as Prefect tasks on a Dask cluster: metadata, in-memory variables,
    the dask-backed variables (``partitioned``: one retryable task per
    chunk-aligned partition; otherwise one task running the whole graph), a tree
    merge of the forks and one commit. Returns the snapshot id. A failure at any
    step leaves the branch as it was. Before the commit, the validation gate checks
    that every planned chunk was written, that the schema matches, and runs
    ``checks`` (see :mod:`icechunk_prefect.core.checks`). With ``resume``, a re-run after a
    failure skips the partitions already written (see docs/reliability.md).
    ``cluster_timeout`` (seconds) bounds the wait on a cluster that cannot run the
    writes (no workers, the scheduler gone): the step then fails with
    :class:`~icechunk_prefect.errors.ClusterUnavailableError` and is retried.
    ``partitions_per_task`` groups partitions into one task run each (default: one
    each while there are few; see :class:`~icechunk_prefect.writer.FlowDatasetWriter`);
    each partition still is its own Dask task and is resumed on its own.

    Example:
        ```python
        import numpy as np, xarray as xr
        from icechunk_prefect import to_icechunk

        ds = xr.Dataset(
            {"t2m": (("time", "x"), np.random.rand(8, 4))},
            coords={"time": np.arange(8), "x": np.arange(4)},
        ).chunk(time=4)
        snapshot = to_icechunk(ds, "/tmp/doc-to-icechunk", mode="w", partition_size=4)
        ```
    """
    writer = FlowDatasetWriter(
        obj,
        repo,
        branch=branch,
        group=group,
        mode=mode,
        append_dim=append_dim,
        region=region,
        encoding=encoding,
        safe_chunks=safe_chunks,
        align_chunks=align_chunks,
        split_every=split_every,
        partitioned=partitioned,
        partition_dim=partition_dim,
        partition_size=partition_size,
        target_partition_bytes=target_partition_bytes,
        checks=checks,
        resume=resume,
        cluster_timeout=cluster_timeout,
        partitions_per_task=partitions_per_task,
        parameters=_parameters(
            branch=branch,
            group=group,
            mode=mode,
            append_dim=append_dim,
            region=region,
            partitioned=partitioned,
            partition_dim=partition_dim,
            partition_size=partition_size,
            repo=resolve_repository(repo).describe(),
        ),
    )
    result = _run(writer, message, commit_metadata)
    return result.snapshot_id


def _run(writer: FlowDatasetWriter, message: str, extra: Mapping[str, Any] | None) -> WriteResult:
    # Each step logs one line; commit() publishes the summary artifact and the commit event.
    writer.write_metadata()
    writer.write_eager()
    writer.write_lazy()
    writer.merge()
    return writer.commit(message, extra)


@flow(
    name="icechunk-prepare-write",
    task_runner=_default_runner(),
    validate_parameters=False,
)
def prepare_write(writer: FlowDatasetWriter) -> FlowDatasetWriter:
    """First half of a "more control" write as its own flow: metadata and eager variables.

    Returns the writer, holding the fork (inspect ``writer.store``). Nothing is
    committed: pass the writer to :func:`finish_write`.

    Example:
        ```python
        import numpy as np, xarray as xr, zarr
        from icechunk_prefect import FlowDatasetWriter, finish_write, prepare_write

        ds = xr.Dataset({"v": ("time", np.arange(8.0))}, coords={"time": np.arange(8)})
        writer = prepare_write(FlowDatasetWriter(ds.chunk(time=4), "/tmp/doc-two-flows", mode="w"))
        print(dict(zarr.open_group(writer.store, mode="r").attrs))
        snapshot = finish_write(writer, "two flows")
        ```
    """
    writer.write_metadata()
    writer.write_eager()
    return writer


@flow(
    name="icechunk-finish-write",
    task_runner=_default_runner(),
    validate_parameters=False,
)
def finish_write(writer: FlowDatasetWriter, message: str = "Write with icechunk-prefect") -> str:
    """Second half of a "more control" write: lazy variables, merge, commit; returns the snapshot.

    Example:
        ```python
        import numpy as np, xarray as xr
        from icechunk_prefect import FlowDatasetWriter, finish_write, prepare_write

        ds = xr.Dataset({"v": ("time", np.arange(8.0))}, coords={"time": np.arange(8)})
        writer = prepare_write(FlowDatasetWriter(ds.chunk(time=4), "/tmp/doc-finish", mode="w"))
        snapshot = finish_write(writer, "the second half")
        ```
    """
    writer.write_lazy()
    writer.merge()
    return writer.commit(message).snapshot_id


# ---------------------------------------------------------------- store_dask


@task(name="write dask block", task_run_name="write {label}", **_RETRY)
def _store_block_task(
    fork: ForkSession,
    sources: Sequence[da.Array],
    targets: Sequence[str],
    regions: Sequence[tuple[slice, ...]],
    label: str,
) -> ForkSession:
    import dask.config

    with dask.config.set(scheduler="threads"):
        for src, path, reg in zip(sources, targets, regions, strict=True):
            arr = zarr.open_array(fork.store, path=path, mode="r+")
            arr[reg] = src.compute()
    return fork


@task(name="write dask graph", task_run_name="write dask graph", **_RETRY)
def _store_graph_task(
    fork: ForkSession,
    sources: Sequence[da.Array],
    targets: Sequence[str],
    regions: Sequence[tuple[slice, ...]],
    split_every: int | None,
) -> ForkSession:
    from distributed import worker_client
    from icechunk.dask import store_dask as ic_store_dask

    with worker_client():
        arrays = [zarr.open_array(fork.store, path=p, mode="r+") for p in targets]
        srcs: Any = list(sources)
        merged = ic_store_dask(
            sources=srcs, targets=arrays, regions=list(regions), split_every=split_every
        )
    fork.merge(merged)
    return fork


def _full_regions(
    sources: Sequence[da.Array],
    shapes: Sequence[tuple[int, ...]],
    regions: Sequence[tuple[slice, ...]] | None,
    targets: Sequence[str],
) -> list[tuple[slice, ...]]:
    out = []
    for i, (src, shape) in enumerate(zip(sources, shapes, strict=True)):
        reg = tuple(regions[i]) if regions else tuple(slice(0, n) for n in shape)
        if len(reg) != len(shape):
            raise RegionError(
                f"Region for target {targets[i]!r} has {len(reg)} slices; the array has "
                f"{len(shape)} dimensions."
            )
        full = []
        for axis, (sl, size, n) in enumerate(zip(reg, shape, src.shape, strict=True)):
            start = int(sl.start or 0)
            stop = int(sl.stop if sl.stop is not None else size)
            if stop > size or start < 0:
                raise RegionError(
                    f"Region axis {axis} [{start}:{stop}] lies outside target {targets[i]!r} "
                    f"(size {size})."
                )
            if stop - start != n:
                raise RegionError(
                    f"Region axis {axis} of target {targets[i]!r} holds {stop - start} positions "
                    f"but the source has {n}."
                )
            full.append(slice(start, stop))
        out.append(tuple(full))
    return out


@flow(
    name="icechunk-store-dask",
    task_runner=_default_runner(),
    validate_parameters=False,
)
def store_dask(
    sources: Sequence[da.Array],
    targets: Sequence[str],
    repo: RepositoryLike,
    *,
    regions: Sequence[tuple[slice, ...]] | None = None,
    branch: str = "main",
    message: str = "store_dask with icechunk-prefect",
    partitioned: bool = True,
    partition_size: int | None = None,
    split_every: int | None = None,
    commit_metadata: Mapping[str, Any] | None = None,
) -> str:
    """Write dask arrays into existing Zarr arrays (paths in the repository), commit once.

    Like ``icechunk.dask.store_dask``: ``sources[i]`` goes to array ``targets[i]``
    (at ``regions[i]``, default the whole array). Zarr chunks must divide the dask
    chunks: otherwise :class:`~icechunk_prefect.errors.ChunkAlignmentError` is
    raised before anything is written. ``partitioned`` writes blocks along the
    first axis as separate retryable tasks (``partition_size`` positions, a multiple
    of every target's chunk); otherwise one task runs the whole graph.

    Example:
        ```python
        import dask.array as da, icechunk, zarr
        from icechunk_prefect import store_dask

        repo = icechunk.Repository.open_or_create(icechunk.local_filesystem_storage("/tmp/doc-sd"))
        s = repo.writable_session("main")
        zarr.create_array(s.store, name="a", shape=(8, 4), chunks=(2, 4), dtype="f8",
                          overwrite=True)
        s.commit("create a")
        snapshot = store_dask([da.ones((8, 4), chunks=(4, 4))], ["a"], "/tmp/doc-sd")
        ```
    """
    started = time.monotonic()
    if len(sources) != len(targets):
        raise InputValidationError(
            f"store_dask got {len(sources)} sources and {len(targets)} targets; give one target "
            "path per source."
        )
    if regions is not None and len(regions) != len(sources):
        raise InputValidationError(f"Got {len(regions)} regions for {len(sources)} sources.")
    source = resolve_repository(repo)
    repository = source.open_repository()
    parent = repository.writable_session(branch).fork()
    base = parent.snapshot_id
    arrays = []
    for path in targets:
        try:
            arrays.append(zarr.open_array(parent.store, path=path, mode="r"))
        except (FileNotFoundError, KeyError) as exc:
            raise InputValidationError(
                f"Target array {path!r} does not exist on branch {branch!r}; create it first."
            ) from exc
    shapes = [tuple(a.shape) for a in arrays]
    units = [tuple(a.shards or a.chunks) for a in arrays]
    full = _full_regions(sources, shapes, regions, targets)
    for src, path, unit, reg, shape in zip(sources, targets, units, full, shapes, strict=True):
        check_dask_chunks(
            path,
            src.chunks,
            [f"axis {i}" for i in range(src.ndim)],
            unit,
            [s.start for s in reg],
            shape,
        )
    if partitioned:
        unit0 = math.lcm(*(unit[0] for unit in units))
        n = sources[0].shape[0]
        if any(s.shape[0] != n for s in sources):
            raise InputValidationError(
                "Partitioned store_dask needs sources of one length along axis 0; "
                "pass partitioned=False."
            )
        starts = sorted({r[0].start for r in full})
        if len(starts) != 1:
            raise InputValidationError(
                "Partitioned store_dask needs the same region start on axis 0 for all sources."
            )
        off = starts[0]
        _, cuts = partition_cuts(
            off,
            off + n,
            {t: unit[0] for t, unit in zip(targets, units, strict=True)},
            partition_size=partition_size or max(unit0, *(s.chunks[0][0] for s in sources)),
            dim="axis 0",
        )
        futures = []
        names = ",".join(targets) if len(targets) <= 3 else f"{len(targets)} arrays"
        labels = [f"{names}[{a}:{b}]" for a, b in itertools.pairwise(cuts)]
        for (a, b), label in zip(itertools.pairwise(cuts), labels, strict=True):
            blocks = [s[a - off : b - off] for s in sources]
            regs = [(slice(a, b), *r[1:]) for r in full]
            futures.append(
                _store_block_task.submit(parent, blocks, list(targets), regs, label=label)
            )
    else:
        futures = [_store_graph_task.submit(parent, sources, list(targets), full, split_every)]
        labels = ["dask graph"]
    track_progress(futures, labels, what=f"store_dask {branch}")
    level: list[Any] = futures
    while len(level) > 256:
        level = [merge_task.submit(g, label=f"{len(g)} forks") for g in tree_groups(level, 256)]
    merged = merge_task.submit(level, label=f"{len(futures)} forks").result()
    params = _parameters(
        targets=list(targets), regions=full, branch=branch, partitioned=partitioned
    )
    meta = metadata.commit_metadata(
        run=flow_run_metadata(),
        parameters=params,
        extra=commit_metadata or {},
        partitions=len(futures),
    )
    run_key = idempotency_key(meta.get(metadata.FLOW_RUN_ID), params, message)
    sid = commit_task.submit(
        source, branch, merged, message, metadata=meta, base_snapshot=base, key=run_key
    ).result()
    publish_commit(
        source,
        branch,
        sid,
        message=message,
        variables=list(targets),
        region={
            t: "[" + ", ".join(f"{x.start}:{x.stop}" for x in r) + "]"
            for t, r in zip(targets, full, strict=True)
        },
        partitions=len(futures),
        bytes_written=int(sum(math.prod(s.shape) * s.dtype.itemsize for s in sources)),
        seconds=time.monotonic() - started,
        group=_common_group(targets),
    )
    return sid


def _common_group(targets: Sequence[str]) -> str | None:
    """The deepest group holding every target array (``None``: the root)."""
    parents = [[p for p in t.split("/") if p][:-1] for t in targets]
    common: list[str] = []
    for parts in zip(*parents, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common) or None
