"""The write steps as plain functions (no Prefect): metadata, eager, lazy.

Each takes and returns an :class:`icechunk.session.ForkSession`, so that it can
run in any process; :mod:`icechunk_prefect.tasks` wraps them as Prefect tasks.

The chain (all of it verified across pickling):

1. :func:`write_metadata` forks a *clean* writable session on the branch and, in
   that fork, creates or resizes the arrays and writes attributes;
2. :func:`plan_write` (flow process) maps the dataset onto the store and splits it;
3. :func:`write_eager` writes the in-memory variables (coordinates) into that fork;
4. the flow forks it once more (``fork.fork()``) for the lazy writers;
5. :func:`write_partition` (one per partition) or :func:`write_lazy_graph` (one
   task, whole dask graph) writes the dask-backed variables into copies of that
   child fork;
6. :mod:`icechunk_prefect.core.sessions` merges and commits.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import dask
import dask.core
import numpy as np
import xarray as xr
import zarr
from dask.base import is_dask_collection
from icechunk.session import ForkSession

from icechunk_prefect.core import arrays
from icechunk_prefect.core.cluster import cluster_watchdog, inside_dask_worker
from icechunk_prefect.core.datasets import (
    eager_variables,
    lazy_template,
    lazy_variables,
)
from icechunk_prefect.core.encoding import (
    check_readable,
    encode_for_store,
    encodes_eagerly,
    write_encodings,
    write_variable,
)
from icechunk_prefect.core.integrity import chunk_counts
from icechunk_prefect.core.planning import (
    Partition,
    WritePlan,
    array_path,
    check_dask_chunks,
    check_region_bounds,
    check_region_chunks,
    plan_partitions,
    region_of,
    resolve_region,
    stored_chunking,
)
from icechunk_prefect.core.spec import WriteSpec
from icechunk_prefect.core.validation import (
    check_index_matches,
    check_input,
    check_like_to_zarr,
    creates_repository,
    holds_data,
    open_group,
    refusals,
    resolve_mode,
    validate_against_store,
)
from icechunk_prefect.errors import (
    ChunkAlignmentError,
    ConfigurationError,
    InputValidationError,
)
from icechunk_prefect.storage.resolve import RepositoryLike, open_repository

__all__ = [
    "plan_write",
    "write_eager",
    "write_lazy_graph",
    "write_metadata",
    "write_partition",
    "write_partitions",
]


def write_metadata(
    repo: RepositoryLike,
    branch: str,
    dataset: xr.Dataset,
    spec: WriteSpec | None = None,
) -> ForkSession:
    """Create or resize the arrays and write attributes in a fork of a clean session
    (where and how: ``spec``'s ``group``, ``mode``, ``append_dim``, ``region`` and
    ``encoding``).

    Nothing is written for any chunk of any non-scalar array. Returns the fork,
    whose ``snapshot_id`` is the branch tip this run builds on.

    Example:
        ```python
        import numpy as np, xarray as xr
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import write_metadata

        ds = xr.Dataset({"t": ("x", np.arange(4.0))}).chunk(x=2)
        fork = write_metadata("/tmp/doc-meta-repo", "main", ds, WriteSpec(mode="w"))
        ```
    """
    spec = spec or WriteSpec()
    group, mode, append_dim = spec.group, spec.mode, spec.append_dim
    region, encoding = spec.region, spec.encoding
    concrete = resolve_mode(mode, append_dim, region)
    check_input(dataset, append_dim=append_dim, encoding=encoding)
    repository = open_repository(repo, create=creates_repository(concrete, append_dim))
    if branch not in repository.list_branches():
        raise ConfigurationError(
            f"Branch {branch!r} does not exist (branches: {sorted(repository.list_branches())}). "
            "Create it first with repo.create_branch."
        )
    fork = repository.writable_session(branch).fork()
    existing = open_group(fork.store, group)
    updates = append_dim is not None or region is not None
    if existing is None and (concrete == "r+" or (concrete in ("a", "a-") and updates)):
        raise ConfigurationError(
            f"Group {group or '/'!r} does not exist on branch {branch!r}: nothing to "
            f"{'append to' if append_dim else 'rewrite'}. Create the dataset first."
        )
    if concrete == "w-" and existing is not None and any(True for _ in existing.array_keys()):
        raise ConfigurationError(
            f"Group {group or '/'!r} on branch {branch!r} already holds arrays and mode is "
            "'w-' (create only). Pass mode='w' to overwrite, or append_dim / region to update."
        )
    with refusals("The metadata step (creating the arrays)"):
        template = lazy_template(dataset, encoding)
        resolved: dict[str, slice] | None = None
        if existing is not None and concrete != "w":
            check_like_to_zarr(dataset, existing, concrete, region, encoding, group, append_dim)
            keys = dataset.dims if isinstance(region, str) else (region or {})
            region_dims = {str(d) for d in keys}
            validate_against_store(
                dataset,
                existing,
                fork.store,
                group,
                append_dim=append_dim,
                region_dims=region_dims,
                mode=concrete,
            )
            if region is not None:
                # The slices of the region dimensions; index variables are not rewritten
                # (nor are dimensions only they use: to_zarr drops them too).
                full = resolve_region(
                    dataset, existing, append_dim=None, region=region, appended_from={}
                )
                check_region_bounds(full, existing, dataset)
                template = template.drop_vars([str(n) for n in dataset.indexes])
                resolved = {d: full[d] for d in region_dims if d in template.dims}
        stored = set() if existing is None or concrete == "w" else set(existing.array_keys())
        for name, var in template.variables.items():
            if str(name) not in stored:
                check_readable(name, var)
        template.to_zarr(
            fork.store,
            group=group,
            mode=concrete,
            append_dim=append_dim,
            region=resolved,
            encoding={k: template.variables[k].encoding for k in encoding or {}},
            compute=False,
            consolidated=False,
            zarr_format=3,
            safe_chunks=False,
        )
    return fork


def plan_write(fork: ForkSession, dataset: xr.Dataset, spec: WriteSpec | None = None) -> WritePlan:
    """Map ``dataset`` onto the store the metadata fork describes, and split it (by
    ``spec``: the same spec as the metadata step's).

    Raises :class:`~icechunk_prefect.errors.ChunkAlignmentError` when
    ``safe_chunks`` is on (and ``align_chunks`` off) and a dask chunk boundary falls
    inside a Zarr chunk, or, in mode ``'r+'`` (the default with a region), the region
    starts or ends inside one (as ``to_zarr`` refuses these).
    """
    with refusals("Planning the write"):
        return _plan_write(fork, dataset, spec or WriteSpec())


def _plan_write(fork: ForkSession, dataset: xr.Dataset, spec: WriteSpec) -> WritePlan:
    group, mode, append_dim, region = spec.group, spec.mode, spec.append_dim, spec.region
    safe_chunks, align_chunks = spec.safe_chunks, spec.align_chunks
    concrete = resolve_mode(mode, append_dim, region)
    grp = open_group(fork.store, group)
    if grp is None:
        raise ConfigurationError(f"Group {group or '/'!r} is missing after the metadata step.")
    new_arrays = set(fork.status().new_arrays)
    created = {str(n) for n in dataset.variables if array_path(group, str(n)) in new_arrays}
    appended_from: dict[str, int] = {}
    if append_dim is not None:
        ref = next(
            (
                str(n)
                for n, v in dataset.variables.items()
                if append_dim in v.dims and str(n) in grp
            ),
            None,
        )
        if ref is None:
            raise InputValidationError(f"No variable of the dataset has dimension {append_dim!r}.")
        shape, _ = stored_chunking(grp, ref)
        axis = dataset.variables[ref].dims.index(append_dim)
        appended_from[append_dim] = shape[axis] - dataset.sizes[append_dim]
    full = resolve_region(
        dataset, grp, append_dim=append_dim, region=region, appended_from=appended_from
    )
    check_region_bounds(full, grp, dataset)
    lazy = tuple(lazy_variables(dataset))
    eager = tuple(eager_variables(dataset))
    if concrete == "a-" and append_dim is not None:
        # As to_zarr: existing variables without append_dim are left as stored.
        lazy = tuple(n for n in lazy if n in created or append_dim in dataset.variables[n].dims)
    write_dims = set(region or {}) if not isinstance(region, str) else set(map(str, dataset.dims))
    if append_dim:
        write_dims.add(append_dim)
    skip: list[str] = []
    if write_dims:
        for name in eager:
            dims = set(map(str, dataset.variables[name].dims))
            is_region_index = name in dims and name in write_dims and name != append_dim
            # Unchanged variables already stored (checked in the metadata step) are left;
            # new ones (their arrays were just created, empty) are written.
            unchanged = not (dims & write_dims) and (
                holds_data(grp, name) or (concrete == "a-" and name not in created)
            )
            if is_region_index or unchanged:
                skip.append(name)
        if region is not None:
            for name in skip:
                if name in dataset.indexes and name in grp:
                    check_index_matches(dataset, fork, group, name, full[name])
    written = [n for n in (*eager, *lazy) if n not in skip and n in grp]
    encodings = write_encodings(dataset, grp, written, created=created, encoding=spec.encoding)
    if safe_chunks and not align_chunks:
        for name in lazy:
            var = dataset.variables[name]
            if encodes_eagerly(name, var, encodings.get(name, {})):
                continue  # xarray computes these to encode them: their chunks do not matter
            shape, unit = stored_chunking(grp, name)
            dims = [str(d) for d in var.dims]
            check_dask_chunks(
                name, var.chunks or (), dims, unit, [full[d].start for d in dims], shape
            )
            if concrete == "r+":
                check_region_chunks(name, dims, unit, full, shape)
    pdim, parts = plan_partitions(
        dataset,
        grp,
        full,
        variables=lazy,
        partition_dim=spec.partition_dim or append_dim,
        partition_size=spec.partition_size,
        target_partition_bytes=spec.target_partition_bytes,
    )
    return WritePlan(
        group=group,
        region=full,
        eager=eager,
        lazy=lazy,
        partition_dim=pdim,
        partitions=tuple(
            replace(p, encodings={n: encodings[n] for n in p.variables}) for p in parts
        ),
        base_snapshot=fork.snapshot_id,
        skip_eager=tuple(skip),
        encodings=encodings,
    )


def _open_array(fork: ForkSession, group: str | None, name: str) -> zarr.Array:
    """Array ``name`` of ``group`` in ``fork``, for writing. Chunks holding only the fill
    value are written too (Zarr would skip them; see :func:`write_partition`): set on
    the array, not in Zarr's process-wide configuration."""
    return zarr.open_array(
        fork.store,
        path=array_path(group, name).lstrip("/"),
        mode="r+",
        config={"write_empty_chunks": True},
    )


def write_eager(fork: ForkSession, dataset: xr.Dataset, plan: WritePlan) -> ForkSession:
    """Write the in-memory variables of ``dataset`` (e.g. coordinates) into ``fork``,
    each encoded as the one-shot write encodes it (``plan.encodings``, see
    :mod:`icechunk_prefect.core.encoding`).

    Variables the plan marks as unchanged (``skip_eager``) are not rewritten.
    """
    for name in plan.eager:
        if name in plan.skip_eager:
            continue
        var = dataset.variables[name]
        if var.ndim == 0:
            continue  # written with the metadata
        with refusals(f"Writing the in-memory variable {name!r}"):
            write_variable(
                _open_array(fork, plan.group, name),
                name,
                var,
                plan.encodings.get(name, {}),
                region_of(var, plan.region),
                stream=False,
            )
    return fork


def _cluster_client(client: Any | None) -> Any | None:
    """``client``, else distributed's default client (``None`` on a Dask worker, where
    work stays on the worker's own threads, and when there is no cluster at all). The
    tasks pass the flow's (:func:`~icechunk_prefect.runtime.flow_dask_client`)."""
    if client is not None:
        return client
    if inside_dask_worker():
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


@contextlib.contextmanager
def _cluster(client: Any | None = None) -> Iterator[None]:
    """Run dask computations on the cluster: on a Dask worker by seceding
    (``distributed.worker_client``, the slot is freed meanwhile); elsewhere on
    ``client`` (default: the flow's), or dask's default scheduler when there is none."""
    if inside_dask_worker():
        from distributed import worker_client

        with worker_client():
            yield
        return
    client = _cluster_client(client)
    with client.as_current() if client is not None else contextlib.nullcontext():
        yield


def _streamable(array: zarr.Array, var: xr.Variable, region: tuple[slice, ...]) -> bool:
    """Whether ``var``'s dask chunks line up with ``array``'s chunks (shards) at ``region``.

    Then the block can be written chunk by chunk on local threads (each thread
    writes whole Zarr chunks of its own); otherwise it is computed first.
    """
    if var.chunks is None:
        return False
    try:
        check_dask_chunks(
            "",
            var.chunks,
            [str(d) for d in var.dims],
            tuple(array.shards or array.chunks),
            [sl.start for sl in region],
            tuple(array.shape),
        )
    except ChunkAlignmentError:
        return False
    return True


def write_partition(
    fork: ForkSession,
    dataset: xr.Dataset,
    partition: Partition,
    group: str | None,
    *,
    client: Any | None = None,
    cluster_timeout: float | None = None,
) -> ForkSession:
    """Write one partition (``dataset`` is already the partition's block) into a copy
    of ``fork``; return the fork that holds the writes.

    With a Dask cluster (``client``, default: distributed's default client;
    the tasks pass the flow's ``DaskTaskRunner`` client) the partition is one
    Dask task: a worker computes and writes the block on its own threads and sends
    back only the fork (chunk references), so the data never passes through this
    process. Without one (or on a Dask worker) it is written here.

    On those threads the block streams when its dask chunks line up with the
    stored chunks (each dask chunk is computed and written by one thread, so
    compute and I/O overlap and memory stays at a few chunks); otherwise it is
    computed whole, then written. Writing it again (a retry) rewrites the same
    chunks. Chunks holding only the fill value are written too (Zarr would skip
    them): compressed, they are a few bytes that Icechunk inlines in the manifest
    (no object is stored), and every chunk of the partition is then accounted for,
    so the validation gate can tell an empty chunk from a lost write.

    While the cluster cannot run the partition (no workers, the scheduler gone) for
    ``cluster_timeout`` seconds (see :func:`~icechunk_prefect.core.cluster.cluster_timeout`),
    the wait ends with :class:`~icechunk_prefect.errors.ClusterUnavailableError`.
    """
    (written,) = write_partitions(
        fork, [dataset], [partition], group, client=client, cluster_timeout=cluster_timeout
    )
    return written


def write_partitions(
    fork: ForkSession,
    datasets: Sequence[xr.Dataset],
    partitions: Sequence[Partition],
    group: str | None,
    *,
    on_written: Callable[[int, ForkSession], None] | None = None,
    client: Any | None = None,
    cluster_timeout: float | None = None,
    counts: list[dict[str, int]] | None = None,
) -> list[ForkSession]:
    """Write several partitions (``datasets[i]`` is ``partitions[i]``'s block), each
    into its own copy of ``fork``, as :func:`write_partition` does one; return their
    forks in order.

    On a cluster every partition is its own Dask task, all submitted at once (the
    scheduler spreads them over the workers); ``on_written(i, fork)`` is called in
    this process as each one finishes, so that a caller can persist it before the
    others end. A partition that fails raises its error once the others have
    finished (so that their writes are not lost to a retry); the wait on a cluster
    that cannot run them is bounded as in :func:`write_partition`.

    ``counts`` (optional, an empty list) receives each fork's
    :func:`~icechunk_prefect.core.integrity.chunk_counts`, in order, read where the
    partition was written: pass them to :func:`~icechunk_prefect.core.sessions.merge_forks`.
    """
    if len(datasets) != len(partitions):
        raise ValueError("write_partitions needs one dataset per partition")
    written: list[tuple[ForkSession, dict[str, int]] | None] = [None] * len(partitions)
    client = _cluster_client(client)
    if client is None:
        for i, (ds, p) in enumerate(zip(datasets, partitions, strict=True)):
            # A private copy, as a Dask task gets: concurrent partitions never share a fork.
            one = _write_partition_here(pickle.loads(pickle.dumps(fork)), ds, p, group)
            written[i] = (one, chunk_counts(one))
            if on_written is not None:
                on_written(i, one)
        return _forks_and_counts(written, counts)
    import queue

    futures = [
        client.submit(_write_wrapped, fork, _Block.wrap(ds), p, group, pure=False)
        for ds, p in zip(datasets, partitions, strict=True)
    ]
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i, future in enumerate(futures):
        future.add_done_callback(lambda _f, i=i: finished.put(i))
    what = (
        f"partition {partitions[0].label}"
        if len(partitions) == 1
        else f"{len(partitions)} partitions {partitions[0].label}..{partitions[-1].label}"
    )
    try:
        with cluster_watchdog(client, what=what, timeout=cluster_timeout, futures=futures) as watch:
            failed: BaseException | None = None
            left = len(futures)
            while left:
                try:
                    ready = [finished.get(timeout=1.0)]
                except queue.Empty:
                    watch.check()
                    continue
                while True:  # take every one finished by now: one round trip for them all
                    try:
                        ready.append(finished.get_nowait())
                    except queue.Empty:
                        break
                left -= len(ready)
                good = [i for i in ready if futures[i].status == "finished"]
                for i in ready:
                    if i not in good:
                        try:
                            futures[i].result()
                        except Exception as exc:
                            watch.check()  # the cluster went away: raise that at once
                            failed = failed or exc  # else let the others finish (and persist)
                for i, one in zip(good, client.gather([futures[i] for i in good]), strict=True):
                    written[i] = one
                    if on_written is not None:
                        on_written(i, one[0])
            if failed is not None:
                raise failed
    finally:
        unfinished = [f for f in futures if not f.done()]
        if unfinished:
            client.cancel(unfinished)
    return _forks_and_counts(written, counts)


def _forks_and_counts(
    written: Sequence[tuple[ForkSession, dict[str, int]] | None],
    counts: list[dict[str, int]] | None,
) -> list[ForkSession]:
    done = [w for w in written if w is not None]
    if counts is not None:
        counts.extend(c for _, c in done)
    return [f for f, _ in done]


@dataclass(frozen=True)
class _Block:
    """A lazy dataset on its way to a Dask task, cloudpickled.

    As a bare argument, distributed would compute a dask collection before the task
    runs (shipping its values), and its plain pickle would refer to functions of
    the caller's ``__main__`` or scripts by name, which workers cannot import.
    """

    payload: bytes

    @classmethod
    def wrap(cls, dataset: xr.Dataset) -> _Block:
        import cloudpickle

        return cls(cloudpickle.dumps(_culled(dataset)))

    def unwrap(self) -> xr.Dataset:
        dataset: xr.Dataset = pickle.loads(self.payload)
        return dataset


def _culled(dataset: xr.Dataset) -> xr.Dataset:
    """``dataset`` with each dask variable's graph reduced to what its own chunks need.

    A partition's block is a slice of the whole dataset, and its graph still holds
    every task of the whole dataset: pickled as is, each partition would ship the
    whole graph (measured: a cost per partition that grows with the number of
    partitions). Culling keeps the keys, so the block's token (and the resume cache
    keys computed from it) are unchanged.
    """
    import dask.array as da

    variables = {}
    for name, var in dataset.variables.items():
        data = var.data
        if isinstance(data, da.Array):
            culled = da.Array(_culled_graph(data), data.name, data.chunks, meta=data._meta)  # type: ignore[call-arg]
            var = var.copy(deep=False, data=cast(Any, culled))
        variables[name] = var
    return dataset._replace(variables=variables)


_BASE_GRAPHS: dict[frozenset[str], dict[Any, Any]] = {}
_BASE_GRAPHS_LOCK = threading.Lock()
_BASE_GRAPHS_KEPT = 8


def _culled_graph(data: Any) -> dict[Any, Any]:
    """The tasks ``data``'s own chunks need, found by walking back from its keys.

    The graph below the block's own (slicing) layer is the same for every partition
    of a write: it is flattened once and kept (a few, by layer names), so that each
    partition costs a walk over its own tasks only, not over the whole graph.
    """
    from collections import ChainMap

    from dask.optimization import cull

    graph = data.__dask_graph__()
    keys = list(dask.core.flatten(data.__dask_keys__()))
    layers = getattr(graph, "layers", None)
    if layers is None or data.name not in layers:
        culled, _ = cull(dict(graph), keys)
        return culled
    below = frozenset(k for k in layers if k != data.name)
    with _BASE_GRAPHS_LOCK:
        base = _BASE_GRAPHS.get(below)
    if base is None:
        base = dict(ChainMap(*(layers[k] for k in below)))
        with _BASE_GRAPHS_LOCK:
            _BASE_GRAPHS[below] = base
            while len(_BASE_GRAPHS) > _BASE_GRAPHS_KEPT:
                _BASE_GRAPHS.pop(next(iter(_BASE_GRAPHS)))
    culled, _ = cull(ChainMap(dict(layers[data.name]), base), keys)
    return culled


def _write_wrapped(
    fork: ForkSession, block: _Block, partition: Partition, group: str | None
) -> tuple[ForkSession, dict[str, int]]:
    """The Dask task of a partition: its fork, and its chunk counts read here, where
    the fork's snapshot is at hand (the merge checks overlaps with them)."""
    written = _write_partition_here(fork, block.unwrap(), partition, group)
    return written, chunk_counts(written)


def _write_partition_here(
    fork: ForkSession, dataset: xr.Dataset, partition: Partition, group: str | None
) -> ForkSession:
    """Write the partition on this process's threads (see :func:`write_partition`):
    dask's threaded scheduler is passed to each computation (a process-wide setting
    would change what concurrent partitions on other threads of this process use)."""
    if partition.arrays:  # plain Zarr arrays (store_dask): by region, through Zarr
        return arrays.write_block(fork, dataset, partition, scheduler=_THREADS)
    for name in partition.variables:
        var = dataset.variables[name]
        array = _open_array(fork, group, name)
        region = region_of(var, partition.target)
        with refusals(f"Writing {name!r} of partition {partition.label}"):
            write_variable(
                array,
                name,
                var,
                partition.encodings.get(name, {}),
                region,
                stream=_streamable(array, var, region),
                scheduler=_THREADS,
            )
    return fork


_THREADS = "threads"
"""The scheduler partitions compute on: this process's threads, even inside a Dask
worker (whose default scheduler, the cluster, would ship copies of the fork to other
workers and lose their writes)."""


def write_lazy_graph(
    fork: ForkSession,
    dataset: xr.Dataset,
    plan: WritePlan,
    *,
    split_every: int | None = None,
    client: Any | None = None,
    cluster_timeout: float | None = None,
) -> ForkSession:
    """Hand the whole dask graph of the lazy variables to the cluster; merge into ``fork``.

    The graph runs on ``client`` (default: distributed's default client;
    the tasks pass the flow's ``DaskTaskRunner`` client). Inside a Dask worker the
    task secedes (``distributed.worker_client``) so the graph runs on the same
    cluster without holding a worker thread.

    Each variable is encoded as the one-shot write encodes it (``plan.encodings``, see
    :mod:`icechunk_prefect.core.encoding`), then stored with
    ``icechunk.dask.store_dask``. The spec's ``safe_chunks`` and ``align_chunks`` were
    applied by :func:`plan_write`, which refuses what they refuse. The graph itself is
    always aligned onto the Zarr chunks: misaligned chunks that were allowed
    (``safe_chunks=False``) would otherwise have two dask tasks write one chunk from
    two forks (one write lost at the merge).
    A cluster that cannot run the graph for ``cluster_timeout`` seconds ends the
    wait as :func:`write_partition` does.
    """
    from icechunk.dask import store_dask
    from xarray.backends.chunks import grid_rechunk

    client = _cluster_client(client)
    watched = (
        cluster_watchdog(client, what="the lazy graph", timeout=cluster_timeout)
        if client is not None
        else contextlib.nullcontext()
    )
    with watched, _cluster(client):
        if plan.dims:  # plain arrays (store_dask)
            return arrays.write_graph(fork, dataset, plan, split_every)
        sources: list[Any] = []
        targets: list[zarr.Array] = []
        regions: list[tuple[slice, ...]] = []
        for name in plan.lazy:
            var = dataset.variables[name]
            array = zarr.open_array(
                fork.store, path=array_path(plan.group, name).lstrip("/"), mode="r+"
            )
            region = region_of(var, plan.region)
            with refusals(f"Encoding the lazy variable {name!r}"):
                encoded = encode_for_store(  # strings computed on the cluster, as upstream
                    name, var, plan.encodings.get(name, {}), array, scheduler=None
                )
            if not is_dask_collection(encoded.data):  # computed to be encoded (strings)
                array[region] = np.asarray(encoded.data)
                continue
            encoded = grid_rechunk(encoded, tuple(array.shards or array.chunks), region)
            sources.append(encoded.data)
            targets.append(array)
            regions.append(region)
        if sources:
            fork.merge(
                store_dask(
                    sources=sources, targets=targets, regions=regions, split_every=split_every
                )
            )
    return fork
