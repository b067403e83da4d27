"""Library flows: ``to_icechunk``, ``store_dask`` and the two halves of a "more control" write.

All run on :class:`~icechunk_prefect.runtime.IcechunkDaskTaskRunner`: by default a
local Dask cluster sized to the data (threads in the flow process up to 256 MiB,
else worker processes; a script that would run itself again in those processes is
refused: :class:`~icechunk_prefect.runtime.ScriptSafeFlow`). To run on another
cluster, use Prefect's ``with_options``::

    to_icechunk.with_options(task_runner=DaskClusterConfig(address="tcp://sched:8786").task_runner())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import dask.array as da
import xarray as xr

from icechunk_prefect.core import metadata
from icechunk_prefect.core.checks import Check
from icechunk_prefect.core.planning import (
    DEFAULT_PARTITION_BYTES,
)
from icechunk_prefect.core.rebase import OverlapPolicy
from icechunk_prefect.core.spec import WriteMode
from icechunk_prefect.runtime import IcechunkDaskTaskRunner, ScriptSafeFlow
from icechunk_prefect.serialization import register_parameter_encoders
from icechunk_prefect.storage.resolve import RepositoryLike, resolve_repository
from icechunk_prefect.writer import FlowArrayWriter, FlowDatasetWriter

__all__ = ["finish_write", "prepare_write", "store_dask", "to_icechunk"]

register_parameter_encoders()


P = ParamSpec("P")
R = TypeVar("R")


def _default_runner() -> Any:
    """The flows' default task runner: a local cluster sized to the data of each run
    (threads up to ``SMALL_WRITE_BYTES``, else worker processes; see
    :func:`~icechunk_prefect.runtime.local_cluster_kwargs`).

    (Typed ``Any``: prefect's ``Flow`` wants ``TaskRunner[PrefectFuture]``,
    which ``DaskTaskRunner``'s ``TaskRunner[PrefectDaskFuture]`` is not, by variance.)
    """
    return IcechunkDaskTaskRunner()


def _library_flow(name: str, **options: Any) -> Callable[[Callable[P, R]], ScriptSafeFlow[P, R]]:
    """``@flow`` for the library flows: a :class:`~icechunk_prefect.runtime.ScriptSafeFlow`
    on the default runner, parameters not validated (datasets are not pydantic types)."""

    def decorate(fn: Callable[P, R]) -> ScriptSafeFlow[P, R]:
        return ScriptSafeFlow(
            fn, name=name, task_runner=_default_runner(), validate_parameters=False, **options
        )

    return decorate


def _parameters(**kwargs: Any) -> dict[str, Any]:
    return {k: metadata.jsonable(v) for k, v in kwargs.items()}


@_library_flow("icechunk-to-icechunk", log_prints=True)
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
    on_overlap: OverlapPolicy = "land-after",
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
    When other writers commit to the branch during the run, the partitions holding
    chunks they wrote too are written again on the new tip; ``on_overlap`` says what
    to do when they also changed elements of this run's region (``"land-after"``:
    land after them, this run's values win; ``"refuse"``: commit nothing; see
    docs/reliability.md, "Two writers on one dataset").

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
        on_overlap=on_overlap,
        parameters=_parameters(
            branch=branch,
            group=group,
            mode=mode,
            append_dim=append_dim,
            region=region,
            partitioned=partitioned,
            partition_dim=partition_dim,
            partition_size=partition_size,
            on_overlap=on_overlap,
            repo=resolve_repository(repo).describe(),
        ),
    )
    result = writer.run(message, commit_metadata)
    return result.snapshot_id


@_library_flow("icechunk-prepare-write")
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
    writer.prepare()
    return writer


@_library_flow("icechunk-finish-write")
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
    return writer.finish(message).snapshot_id


# ---------------------------------------------------------------- store_dask


@_library_flow("icechunk-store-dask")
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
    resume: bool = True,
    cluster_timeout: float | None = None,
) -> str:
    """Write dask arrays into existing Zarr arrays (paths in the repository), commit once.

    Like ``icechunk.dask.store_dask``: ``sources[i]`` goes to array ``targets[i]``
    (at ``regions[i]``, default the whole array). Zarr chunks must divide the dask
    chunks: otherwise :class:`~icechunk_prefect.errors.ChunkAlignmentError` is
    raised before anything is written. It runs the same steps as :func:`to_icechunk`
    (:class:`~icechunk_prefect.writer.FlowArrayWriter`): ``partitioned`` writes blocks
    along the first axis (``partition_size`` positions, a multiple of every target's
    chunk), each a Dask task, retried and resumed on its own (``resume``: a re-run
    after a failure skips the blocks already written); otherwise one task runs the
    whole graph. The validation gate checks that every planned chunk was written
    before the one commit.

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
    writer = FlowArrayWriter.for_arrays(
        sources,
        targets,
        repo,
        regions=regions,
        branch=branch,
        partitioned=partitioned,
        partition_size=partition_size,
        split_every=split_every,
        resume=resume,
        cluster_timeout=cluster_timeout,
        parameters=_parameters(
            targets=list(targets),
            regions=[list(r) for r in regions] if regions else None,
            branch=branch,
            partitioned=partitioned,
            partition_size=partition_size,
            repo=resolve_repository(repo).describe(),
        ),
    )
    return writer.run(message, commit_metadata).snapshot_id
