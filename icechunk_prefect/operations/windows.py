"""Planning a window write: where a window of days lands in the store, and its partitions.

Used by the operational flows (append, backfill) and by ``icechunk-prefect plan``
before anything is written. :func:`read_extent` reads what the store holds along
the time dimension (values, write units per array); :func:`plan_partitions`
splits positions ``[start, stop)`` into partitions whose bounds fall on the Zarr
chunk (and shard) boundaries of every array, and refuses a partition size that
would make two partitions write one chunk.

Example:
    ```python
    from icechunk_prefect.operations.windows import plan_partitions

    size, parts = plan_partitions(12, 40, {"t2m": 5}, partition_size=10)
    assert [(p.start, p.stop) for p in parts] == [(12, 20), (20, 30), (30, 40)]
    ```
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.errors import GroupNotFoundError

from icechunk_prefect.core.planning import DEFAULT_PARTITION_BYTES, partition_cuts
from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.storage.local import RepositorySource

__all__ = [
    "StoreExtent",
    "WindowPartition",
    "WindowPlan",
    "align_to_store",
    "format_value",
    "plan_partitions",
    "read_extent",
]


@dataclass(frozen=True)
class StoreExtent:
    """What the store holds along ``dim``: its values and each array's write unit."""

    dim: str
    index: pd.Index
    units: Mapping[str, int]
    chunks: Mapping[str, tuple[int, ...]]
    dims: Mapping[str, tuple[str, ...]]
    bytes_per_step: int
    snapshot_id: str

    @property
    def length(self) -> int:
        return len(self.index)

    @property
    def variables(self) -> list[str]:
        """Data variables along ``dim`` (coordinates excluded), sorted."""
        return sorted(n for n in self.units if n != self.dim)

    def step(self) -> pd.Timedelta | None:
        """The spacing of the last two values (None with fewer than two)."""
        if len(self.index) < 2:
            return None
        return pd.Timedelta(self.index[-1] - self.index[-2])  # type: ignore[return-value]

    def describe(self) -> str:
        if not len(self.index):
            return f"{self.dim}: empty"
        first, last = format_value(self.index[0]), format_value(self.index[-1])
        return f"{self.dim}: {first} .. {last} ({self.length} steps)"


def format_value(value: Any) -> str:
    """A coordinate value as short text (dates without a midnight time)."""
    text = (
        pd.Timestamp(value).isoformat()
        if isinstance(value, np.datetime64 | pd.Timestamp)
        else str(value)
    )
    return text.removesuffix("T00:00:00")


def read_extent(
    source: RepositorySource, branch: str = "main", group: str | None = None, dim: str = "time"
) -> StoreExtent | None:
    """The store's extent along ``dim`` on ``branch`` (None when the group holds no arrays)."""
    repo = source.open_repository()
    if branch not in repo.list_branches():
        raise ConfigurationError(
            f"Branch {branch!r} does not exist in {source.describe()} "
            f"(branches: {sorted(repo.list_branches())})."
        )
    session = repo.readonly_session(branch=branch)
    try:
        grp = zarr.open_group(session.store, path=group or "", mode="r")
    except (FileNotFoundError, KeyError, GroupNotFoundError):
        return None
    if not any(True for _ in grp.array_keys()):
        return None
    ds = xr.open_zarr(session.store, group=group, consolidated=False)
    if dim not in ds.indexes:
        raise ConfigurationError(
            f"The dataset in {source.describe()} (group {group or '/'!r}) has no {dim!r} "
            f"coordinate (coordinates: {sorted(map(str, ds.coords))})."
        )
    units: dict[str, int] = {}
    chunks: dict[str, tuple[int, ...]] = {}
    dims: dict[str, tuple[str, ...]] = {}
    per_step = 0
    for name, var in ds.variables.items():
        if dim not in var.dims:
            continue
        arr = grp[str(name)]
        assert isinstance(arr, zarr.Array)
        axis = var.dims.index(dim)
        unit = tuple(arr.shards or arr.chunks)
        units[str(name)] = int(unit[axis])
        chunks[str(name)] = tuple(int(c) for c in arr.chunks)
        dims[str(name)] = tuple(map(str, var.dims))
        if name != dim:
            per_step += int(var.dtype.itemsize * var.size // max(1, var.sizes[dim]))
    return StoreExtent(
        dim=dim,
        index=ds.indexes[dim],
        units=units,
        chunks=chunks,
        dims=dims,
        bytes_per_step=per_step,
        snapshot_id=session.snapshot_id,
    )


@dataclass(frozen=True)
class WindowPartition:
    """Positions ``[start, stop)`` of the store, written by one task."""

    index: int
    start: int
    stop: int
    first: str = ""
    last: str = ""


def plan_partitions(
    start: int,
    stop: int,
    units: Mapping[str, int],
    *,
    partition_size: int | None = None,
    bytes_per_step: int = 0,
    target_partition_bytes: int = DEFAULT_PARTITION_BYTES,
    dim: str = "time",
) -> tuple[int, list[WindowPartition]]:
    """Split store positions ``[start, stop)`` at chunk boundaries of every array.

    ``units`` maps each array to its chunk (or shard) size along ``dim``. With no
    ``partition_size``, partitions hold about ``target_partition_bytes`` (at least
    one chunk). Returns the partition size used and the partitions. A
    ``partition_size`` that puts a partition bound inside a chunk of some array
    raises :class:`~icechunk_prefect.errors.ChunkAlignmentError` naming the arrays
    and their chunk sizes (see :func:`~icechunk_prefect.core.planning.partition_cuts`).
    """
    step, cuts = partition_cuts(
        start,
        stop,
        units,
        partition_size=partition_size,
        bytes_per_step=bytes_per_step,
        target_partition_bytes=target_partition_bytes,
        dim=dim,
    )
    if stop <= start:
        return step, []
    return step, [
        WindowPartition(index=i, start=a, stop=b)
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]


@dataclass(frozen=True)
class WindowPlan:
    """What an append or backfill would write: positions, variables, partitions."""

    operation: str
    dim: str
    start: int
    stop: int
    variables: tuple[str, ...]
    partitions: tuple[WindowPartition, ...]
    partition_size: int | None
    extent: str
    first: str = ""
    last: str = ""
    skipped_steps: int = 0
    filled_steps: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def steps(self) -> int:
        return self.stop - self.start

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (flow results, artifacts, commit metadata)."""
        return {
            "operation": self.operation,
            "dim": self.dim,
            "positions": [self.start, self.stop],
            "first": self.first,
            "last": self.last,
            "steps": self.steps,
            "variables": list(self.variables),
            "partitions": [[p.start, p.stop] for p in self.partitions],
            "skipped_steps": self.skipped_steps,
            "filled_steps": self.filled_steps,
            "store_extent": self.extent,
            "notes": list(self.notes),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per partition (for a table artifact or the CLI)."""
        return [
            {
                "partition": p.index,
                "positions": f"[{p.start}:{p.stop})",
                "first": p.first,
                "last": p.last,
                "steps": p.stop - p.start,
                "variables": ", ".join(self.variables),
            }
            for p in self.partitions
        ]


def label_partitions(
    parts: Sequence[WindowPartition], index: pd.Index, offset: int
) -> list[WindowPartition]:
    """Partitions with ``first``/``last`` labels taken from ``index`` (position ``offset`` = 0)."""
    out = []
    for p in parts:
        first = format_value(index[p.start - offset]) if 0 <= p.start - offset < len(index) else ""
        last = (
            format_value(index[p.stop - 1 - offset])
            if 0 <= p.stop - 1 - offset < len(index)
            else ""
        )
        out.append(WindowPartition(p.index, p.start, p.stop, first, last))
    return out


def align_to_store(ds: xr.Dataset, extent: StoreExtent, offset: int) -> xr.Dataset:
    """Rechunk the dask-backed variables of ``ds`` onto the store's chunk grid.

    ``ds`` lands at position ``offset`` along ``extent.dim``: dask chunk boundaries
    are put on the arrays' chunk boundaries (in store coordinates), and other
    dimensions get the stored chunk sizes, so no two dask chunks share a Zarr chunk.
    """
    dim = extent.dim
    out = ds.copy()
    for name, var in ds.data_vars.items():
        name = str(name)
        if var.chunks is None or name not in extent.chunks:
            continue
        spec: dict[str, Any] = {}
        for d, c in zip(extent.dims[name], extent.chunks[name], strict=True):
            if d == dim:
                spec[d] = _aligned_chunks(offset, var.sizes[d], extent.units[name])
            elif d in var.dims:
                spec[d] = c
        out[name] = var.chunk(spec)
    return out


def _aligned_chunks(offset: int, n: int, unit: int) -> tuple[int, ...]:
    sizes = []
    pos = offset
    end = offset + n
    while pos < end:
        nxt = min(end, (pos // unit + 1) * unit)
        sizes.append(nxt - pos)
        pos = nxt
    return tuple(sizes)
