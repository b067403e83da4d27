"""Plain dask arrays into existing Zarr arrays (``store_dask``), as a write plan.

``store_dask`` runs the same steps as a Dataset write (partitions, merge, the
validation gate, one commit, resume): its sources become the variables of a
Dataset named by their target paths, each with dimensions of its own
(``"<path>[<axis>]"``), and :func:`plan_arrays` maps them onto the arrays the
branch holds, refusing what would write wrongly before anything is written.
Partitions cut along axis 0 of every target at once
(:func:`~icechunk_prefect.core.planning.partition_cuts`); :func:`write_block` and
:func:`write_graph` write them by region, through Zarr (the arrays need no xarray
metadata).

Example:
    ```python
    import dask.array as da, icechunk, zarr
    from icechunk_prefect.core.arrays import arrays_dataset, plan_arrays

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage("/tmp/doc-arrays"))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(8, 4), chunks=(2, 4), dtype="f8")
    session.commit("create a")
    sources = [da.ones((8, 4), chunks=(4, 4))]
    plan = plan_arrays(repo.writable_session("main").fork(), sources, ["a"], partition_size=4)
    assert [p.label for p in plan.partitions] == ["a[0:4]", "a[4:8]"]
    assert list(arrays_dataset(sources, ["a"]).data_vars) == ["a"]
    ```
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import dask.array as da
import xarray as xr
import zarr
from icechunk.session import ForkSession

from icechunk_prefect.core.planning import (
    Partition,
    WritePlan,
    check_dask_chunks,
    partition_cuts,
    region_of,
)
from icechunk_prefect.errors import InputValidationError, RegionError

__all__ = [
    "array_dims",
    "arrays_dataset",
    "check_counts",
    "common_group",
    "plan_arrays",
    "region_text",
    "source_bytes",
    "write_block",
    "write_graph",
]


def array_dims(path: str, ndim: int) -> tuple[str, ...]:
    """The dimension names the plan gives array ``path``: ``("a[0]", "a[1]")``."""
    return tuple(f"{path}[{axis}]" for axis in range(ndim))


def check_counts(
    sources: Sequence[Any], targets: Sequence[str], regions: Sequence[Any] | None = None
) -> None:
    """One target (and one region, if any) per source."""
    if len(sources) != len(targets):
        raise InputValidationError(
            f"store_dask got {len(sources)} sources and {len(targets)} targets; give one target "
            "path per source."
        )
    if regions is not None and len(regions) != len(sources):
        raise InputValidationError(f"Got {len(regions)} regions for {len(sources)} sources.")


def arrays_dataset(sources: Sequence[da.Array], targets: Sequence[str]) -> xr.Dataset:
    """``sources`` as one Dataset: variable ``targets[i]`` holds ``sources[i]`` (one
    target per source: see :func:`check_counts`)."""
    return xr.Dataset(
        {t: (array_dims(t, s.ndim), s) for s, t in zip(sources, targets, strict=True)}
    )


def _full_regions(
    sources: Sequence[da.Array],
    shapes: Sequence[tuple[int, ...]],
    regions: Sequence[Sequence[slice]] | None,
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


def plan_arrays(
    fork: ForkSession,
    sources: Sequence[da.Array],
    targets: Sequence[str],
    regions: Sequence[Sequence[slice]] | None = None,
    *,
    partitioned: bool = True,
    partition_size: int | None = None,
    branch: str = "main",
) -> WritePlan:
    """Map ``sources`` onto the existing arrays ``targets`` of ``fork`` (a fork of
    ``branch``), and split them.

    Refuses (before anything is written) a source count that differs from the
    targets', a missing target, a region outside its target or of the wrong size,
    dask chunks that Zarr chunks do not divide
    (:class:`~icechunk_prefect.errors.ChunkAlignmentError`), and, partitioned,
    sources of different lengths or region starts along axis 0.
    """
    check_counts(sources, targets, regions)
    arrays = []
    for path in targets:
        try:
            arrays.append(zarr.open_array(fork.store, path=path, mode="r"))
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
    dims = {t: array_dims(t, s.ndim) for s, t in zip(sources, targets, strict=True)}
    region = {
        d: sl
        for t, reg in zip(targets, full, strict=True)
        for d, sl in zip(dims[t], reg, strict=True)
    }
    names = ",".join(targets) if len(targets) <= 3 else f"{len(targets)} arrays"
    partitions: list[Partition] = []
    if partitioned:
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
        unit0 = math.lcm(*(unit[0] for unit in units))
        _, cuts = partition_cuts(
            off,
            off + n,
            {t: unit[0] for t, unit in zip(targets, units, strict=True)},
            partition_size=partition_size or max(unit0, *(s.chunks[0][0] for s in sources)),
            dim="axis 0",
        )
        for a, b in itertools.pairwise(cuts):
            first = {dims[t][0] for t in targets}
            partitions.append(
                Partition(
                    index=len(partitions),
                    variables=tuple(targets),
                    source={d: slice(a - off, b - off) for d in first},
                    target={d: (slice(a, b) if d in first else sl) for d, sl in region.items()},
                    label=f"{names}[{a}:{b}]",
                    arrays=True,
                )
            )
    return WritePlan(
        group=None,
        region=region,
        eager=(),
        lazy=tuple(targets),
        partition_dim="axis 0" if partitioned else None,
        partitions=tuple(partitions),
        base_snapshot=fork.snapshot_id,
        dims=dims,
    )


def write_block(
    fork: ForkSession, dataset: xr.Dataset, partition: Partition, *, scheduler: str = "threads"
) -> ForkSession:
    """Write one partition's block of plain arrays into ``fork`` by region, on this
    process's threads (``scheduler``; each dask chunk computed and stored by one
    thread). Chunks holding only the fill value are written too (set on the arrays,
    not in Zarr's process-wide configuration)."""
    for name in partition.variables:
        var = dataset.variables[name]
        target = zarr.open_array(
            fork.store, path=name, mode="r+", config={"write_empty_chunks": True}
        )
        region = region_of(var, partition.target)
        data: Any = var.data
        if isinstance(data, da.Array):
            da.store(data, target, regions=region, lock=False, scheduler=scheduler)
        else:
            target[region] = data
    return fork


def write_graph(
    fork: ForkSession, dataset: xr.Dataset, plan: WritePlan, split_every: int | None
) -> ForkSession:
    """The whole graph of plain arrays at once (``icechunk.dask.store_dask``), on the
    current Dask client; merges the result into ``fork``."""
    from icechunk.dask import store_dask

    names = list(plan.lazy)
    arrays = [zarr.open_array(fork.store, path=n, mode="r+") for n in names]
    sources: Any = [dataset.variables[n].data for n in names]
    regions = [tuple(plan.region[d] for d in plan.dims[n]) for n in names]
    merged = store_dask(sources=sources, targets=arrays, regions=regions, split_every=split_every)
    fork.merge(merged)
    return fork


def region_text(plan: WritePlan) -> dict[str, str]:
    """Each target's region as text, ``{"a": "[0:8, 0:4]"}`` (for the commit summary)."""
    return {
        name: "[" + ", ".join(f"{plan.region[d].start}:{plan.region[d].stop}" for d in dims) + "]"
        for name, dims in plan.dims.items()
    }


def common_group(targets: Sequence[str]) -> str | None:
    """The deepest group holding every target array (``None``: the root)."""
    parents = [[p for p in t.split("/") if p][:-1] for t in targets]
    common: list[str] = []
    for parts in zip(*parents, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common) or None


def source_bytes(dataset: xr.Dataset) -> int:
    """Uncompressed bytes of the sources."""
    return int(sum(v.nbytes for v in dataset.data_vars.values()))
