"""Planning a write: where each variable lands in the store, and how it is split.

A :class:`WritePlan` is computed in the flow process once the arrays exist (after
the metadata step): it maps the dataset onto a region of the store and splits
the lazy variables into :class:`Partition` objects aligned to the Zarr chunk (and
shard) boundaries along one dimension, so that no two partitions ever touch the
same stored object.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
import zarr

from icechunk_prefect.core.datasets import bytes_per_step, label_range
from icechunk_prefect.errors import ChunkAlignmentError, InputValidationError, RegionError

__all__ = [
    "DEFAULT_PARTITION_BYTES",
    "Partition",
    "WritePlan",
    "WriteResult",
    "array_path",
    "check_dask_chunks",
    "check_region_bounds",
    "check_region_chunks",
    "partition_cuts",
    "plan_partitions",
    "region_of",
    "resolve_region",
    "stored_chunking",
]

DEFAULT_PARTITION_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Partition:
    """One unit of lazy writing: some variables over a block of one dimension.

    ``source`` selects the block from the dataset (``isel``), ``target`` is where
    it lands in the store (a region over every dimension of the variables).
    """

    index: int
    variables: tuple[str, ...]
    source: Mapping[str, slice]
    target: Mapping[str, slice]
    label: str
    arrays: bool = False
    """The variables are plain Zarr arrays written by region (``store_dask``, see
    :mod:`icechunk_prefect.core.arrays`), not a Dataset's variables encoded by xarray."""
    encodings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The encoding each variable's values are written with (see
    :func:`~icechunk_prefect.core.encoding.write_encodings`)."""

    @property
    def key(self) -> str:
        """A stable text form of the target region, for cache keys and logs."""
        parts = [f"{d}={s.start}:{s.stop}" for d, s in sorted(self.target.items())]
        return f"{','.join(self.variables)}@{';'.join(parts)}"


@dataclass(frozen=True)
class WritePlan:
    """Where a dataset goes in the store, and its partitions.

    ``region`` holds, for every dimension of the dataset, the slice of the store it
    covers. ``eager`` and ``lazy`` name the in-memory and dask-backed variables;
    ``skip_eager`` the in-memory ones already in the store unchanged.
    """

    group: str | None
    region: Mapping[str, slice]
    eager: tuple[str, ...]
    lazy: tuple[str, ...]
    partition_dim: str | None
    partitions: tuple[Partition, ...]
    base_snapshot: str
    skip_eager: tuple[str, ...] = field(default=())
    dims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Plain-array writes: each array's dimensions in ``region`` (see
    :mod:`icechunk_prefect.core.arrays`); empty for a Dataset."""
    encodings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The encoding each variable written is encoded with, as the one-shot write picks
    it (see :func:`~icechunk_prefect.core.encoding.write_encodings`)."""

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (for commit metadata and artifacts)."""
        return {
            "group": self.group,
            "region": {d: [s.start, s.stop] for d, s in self.region.items()},
            "variables": sorted(self.lazy + self.eager),
            "partition_dim": self.partition_dim,
            "partitions": len(self.partitions),
        }


def stored_chunking(group: zarr.Group, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, write unit) of a stored array: the shard shape when sharded, else the chunks."""
    arr = group[name]
    assert isinstance(arr, zarr.Array)
    unit = arr.shards or arr.chunks
    return tuple(arr.shape), tuple(unit)


def partition_cuts(
    start: int,
    stop: int,
    units: Mapping[str, int],
    *,
    partition_size: int | None = None,
    bytes_per_step: int = 0,
    target_partition_bytes: int = DEFAULT_PARTITION_BYTES,
    dim: str = "time",
) -> tuple[int, list[int]]:
    """The one chunk-aligned partition cutter (the writer's plan, the operational
    windows and ``store_dask`` all cut here).

    Cuts store positions ``[start, stop)`` along ``dim`` every ``partition_size``
    positions (default: about ``target_partition_bytes`` at ``bytes_per_step`` bytes a
    position, at least one chunk), at multiples of every array's chunk (or shard) size
    ``units[name]``, so that each chunk belongs to exactly one piece; the first and
    last pieces may hold partial chunks. Returns the step and the cut points
    (``start``, the inner cuts, ``stop``). A ``partition_size`` that would put a cut
    inside a chunk raises :class:`~icechunk_prefect.errors.ChunkAlignmentError`
    naming the arrays.

    Example:
        ```python
        from icechunk_prefect.core.planning import partition_cuts

        assert partition_cuts(3, 20, {"t2m": 4, "wind": 2}, partition_size=8) == (8, [3, 8, 16, 20])
        ```
    """
    unit = math.lcm(*units.values()) if units else 1
    if partition_size is None:
        step = max(unit, (target_partition_bytes // max(1, bytes_per_step)) // unit * unit)
    elif partition_size < 1:
        raise InputValidationError(f"partition_size must be at least 1, got {partition_size}.")
    else:
        step = partition_size
    cuts = [start]
    nxt = (start // step + 1) * step
    while nxt < stop:
        cuts.append(nxt)
        nxt += step
    cuts.append(stop)
    if step % unit:
        for name, u in sorted(units.items()):
            for a, b in itertools.pairwise(cuts):
                if b % u and b != stop:
                    raise ChunkAlignmentError(
                        f"Partition [{a}:{b}) along {dim!r} ends inside a chunk of array "
                        f"{name!r}, whose chunk (shard) size along {dim!r} is {u} (the chunk "
                        f"[{b // u * u}:{b // u * u + u}) would be written by two partitions). "
                        f"partition_size={step} must be a multiple of {unit}."
                    )
        raise ChunkAlignmentError(
            f"Partition size {step} along {dim!r} is not a multiple of the chunk (shard) size "
            f"{unit} of the arrays written ({sorted(units)}): two partitions would write one "
            f"chunk. Use a multiple of {unit}."
        )
    return step, cuts


def check_dask_chunks(
    name: str,
    chunks: Sequence[Sequence[int]],
    dims: Sequence[str],
    units: Sequence[int],
    offsets: Sequence[int],
    sizes: Sequence[int],
) -> None:
    """Refuse dask chunks that would make two tasks write one Zarr chunk.

    Every dask chunk boundary, shifted by the region offset, must fall on a
    multiple of the Zarr write unit, except at the end of the array.
    """
    for dim, dchunks, unit, offset, size in zip(dims, chunks, units, offsets, sizes, strict=True):
        pos = offset
        for c in dchunks[:-1]:
            pos += c
            if pos % unit and pos != size:
                raise ChunkAlignmentError(
                    f"Variable {name!r}: dask chunks {tuple(dchunks)} along {dim!r} put a boundary "
                    f"at store position {pos}, which is not a multiple of the Zarr chunk size "
                    f"{unit}; two tasks would write the same chunk. Rechunk to a multiple of "
                    f"{unit} (e.g. ds.chunk({{{dim!r}: {unit}}})), or pass align_chunks=True."
                )


def check_region_chunks(
    name: str,
    dims: Sequence[str],
    units: Sequence[int],
    region: Mapping[str, slice],
    sizes: Sequence[int],
) -> None:
    """Refuse a region that starts or ends inside a Zarr chunk, for a dask-backed variable
    written with mode ``'r+'`` (``to_zarr`` refuses these partial chunks with
    ``safe_chunks``: a concurrent writer of the rest of the chunk would be lost)."""
    for dim, unit, size in zip(dims, units, sizes, strict=True):
        sl = region[dim]
        start, stop = int(sl.start), int(sl.stop)
        if start % unit or (stop % unit and stop != size):
            raise ChunkAlignmentError(
                f"Variable {name!r}: the region {dim}[{start}:{stop}] starts or ends inside a "
                f"Zarr chunk of {unit} along {dim!r}, and mode 'r+' does not write partial "
                "chunks of dask-backed variables (as to_zarr with safe_chunks). Use a region "
                f"on multiples of {unit}, mode='a', align_chunks=True or safe_chunks=False."
            )


def resolve_region(
    ds: xr.Dataset,
    group: zarr.Group,
    *,
    append_dim: str | None,
    region: Mapping[str, slice | str] | str | None,
    appended_from: Mapping[str, int],
) -> dict[str, slice]:
    """Map every dimension of ``ds`` to the slice of the store it covers.

    ``appended_from`` gives, for an append, the length of ``append_dim`` before
    this write's resize.
    """
    sizes = {str(d): int(n) for d, n in ds.sizes.items()}
    out: dict[str, slice] = {d: slice(0, n) for d, n in sizes.items()}
    if append_dim is not None:
        start = appended_from[str(append_dim)]
        out[str(append_dim)] = slice(start, start + sizes[str(append_dim)])
    if region is not None:
        items: dict[str, Any] = (
            dict.fromkeys(sizes, "auto") if isinstance(region, str) else dict(region)
        )
        for dim, sel in items.items():
            if dim not in sizes:
                raise RegionError(
                    f"Region names dimension {dim!r}, which the dataset does not have "
                    f"(its dimensions: {sorted(sizes)})."
                )
            if isinstance(sel, str) and sel == "auto":
                out[dim] = _auto_region(ds, group, dim)
            else:
                if not isinstance(sel, slice):
                    raise RegionError(
                        f"Region for {dim!r} is {sel!r} ({type(sel).__name__}); give a slice "
                        "of positions or 'auto'."
                    )
                if sel.step not in (None, 1):
                    raise RegionError(f"Region for {dim!r} has step {sel.step}; only 1 works.")
                start = int(sel.start or 0)
                stop = int(sel.stop if sel.stop is not None else start + sizes[dim])
                if stop - start != sizes[dim]:
                    raise RegionError(
                        f"Region {dim}[{start}:{stop}] holds {stop - start} positions but the "
                        f"dataset has {sizes[dim]} along {dim!r}. Make them agree."
                    )
                out[dim] = slice(start, stop)
    return out


def _auto_region(ds: xr.Dataset, group: zarr.Group, dim: str) -> slice:
    """The positions of ``ds``'s ``dim`` values in the store (as xarray finds them).

    A dimension without a coordinate variable covers its whole extent from 0.
    """
    if dim not in ds.variables:
        return slice(0, int(ds.sizes[dim]))
    if dim not in ds.indexes or dim not in group:
        raise RegionError(
            f"region='auto' for {dim!r} needs a coordinate {dim!r} in both the dataset and "
            "the store; give an explicit slice instead."
        )
    stored = xr.open_zarr(group.store, group=group.path or None, consolidated=False)[dim]
    index = stored.to_index()
    wanted = ds.indexes[dim]
    pos = index.get_indexer(wanted)
    if (pos < 0).any():
        missing = wanted[pos < 0][:3].tolist()
        raise RegionError(
            f"region='auto': values {missing} of {dim!r} are not in the store's {dim!r} "
            f"(which spans {index[0]} .. {index[-1]}). Only existing positions can be rewritten."
        )
    if not (np.diff(pos) == 1).all():
        raise RegionError(f"region='auto': the {dim!r} values are not contiguous in the store.")
    return slice(int(pos[0]), int(pos[-1]) + 1)


def check_region_bounds(region: Mapping[str, slice], group: zarr.Group, ds: xr.Dataset) -> None:
    """Every dimension's slice must lie within the stored arrays' shapes."""
    for name, var in ds.variables.items():
        if str(name) not in group:
            continue
        arr = group[str(name)]
        assert isinstance(arr, zarr.Array)
        for dim, size in zip(var.dims, arr.shape, strict=False):
            sl = region[str(dim)]
            if sl.start < 0 or sl.stop > size:
                raise RegionError(
                    f"Region {dim}[{sl.start}:{sl.stop}] lies outside array {str(name)!r}, whose "
                    f"{dim!r} has {size} positions. Rewrite existing positions only (append "
                    "with append_dim to grow it)."
                )


def plan_partitions(
    ds: xr.Dataset,
    group: zarr.Group,
    region: Mapping[str, slice],
    *,
    variables: Sequence[str],
    partition_dim: str | None,
    partition_size: int | None,
    target_partition_bytes: int,
) -> tuple[str | None, list[Partition]]:
    """Split the lazy ``variables`` along ``partition_dim`` at chunk-aligned cuts."""
    if not variables:
        return None, []
    dim = partition_dim or _default_partition_dim(ds, variables)
    if dim not in ds.dims:
        raise InputValidationError(
            f"partition_dim {dim!r} is not a dimension of the dataset "
            f"(dimensions: {sorted(map(str, ds.dims))})."
        )
    along = [v for v in variables if dim in ds.variables[v].dims]
    other = [v for v in variables if dim not in ds.variables[v].dims]
    units = {v: stored_chunking(group, v)[1][ds.variables[v].dims.index(dim)] for v in along}
    sl = region[dim]
    _, cuts = partition_cuts(
        sl.start,
        sl.stop,
        units,
        partition_size=partition_size,
        bytes_per_step=bytes_per_step(ds, along, dim),
        target_partition_bytes=target_partition_bytes,
        dim=dim,
    )
    parts: list[Partition] = []
    for a, b in itertools.pairwise(cuts):
        src = {dim: slice(a - sl.start, b - sl.start)}
        tgt = dict(region)
        tgt[dim] = slice(a, b)
        parts.append(
            Partition(
                index=len(parts),
                variables=tuple(along),
                source=src,
                target=tgt,
                label=label_range(ds, dim, a - sl.start, b - sl.start),
            )
        )
    if other:
        parts.append(
            Partition(
                index=len(parts),
                variables=tuple(other),
                source={},
                target=dict(region),
                label="+".join(other),
            )
        )
    return dim, parts


def _default_partition_dim(ds: xr.Dataset, variables: Sequence[str]) -> str:
    biggest = max(variables, key=lambda v: ds.variables[v].nbytes)
    dims = ds.variables[biggest].dims
    if not dims:
        raise InputValidationError(f"Variable {biggest!r} is a scalar; nothing to partition.")
    return str(dims[0])


def region_of(var: xr.Variable, region: Mapping[str, slice]) -> tuple[slice, ...]:
    """``var``'s part of ``region`` (dimension name -> slice): one slice per axis."""
    return tuple(region[str(d)] for d in var.dims)


def array_path(group: str | None, name: str) -> str:
    """The Icechunk path of array ``name`` in ``group`` (``/g/sub/name``)."""
    parts = [p for p in (group or "").strip("/").split("/") if p]
    return "/" + "/".join([*parts, name])


@dataclass(frozen=True)
class WriteResult:
    """What a write committed."""

    snapshot_id: str
    parent_snapshot_id: str
    branch: str
    plan: WritePlan
    metadata: Mapping[str, Any]
    seconds: float
