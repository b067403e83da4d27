"""Plans for the operational flows, as plain functions (no Prefect, nothing written).

:func:`prepare_append` and :func:`prepare_backfill` read the store's extent, load
the window from the source (lazily), check it against the store, and return a
:class:`~icechunk_prefect.operations.windows.WindowPlan` with the dataset ready to write
(rechunked onto the store's chunk grid). Every refusal happens here, before
anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from icechunk_prefect.core.planning import DEFAULT_PARTITION_BYTES
from icechunk_prefect.errors import (
    ConfigurationError,
    GapError,
    InputValidationError,
    RegionError,
)
from icechunk_prefect.operations.sources import DatasetSource, check_variables, select_window
from icechunk_prefect.operations.windows import (
    StoreExtent,
    WindowPlan,
    align_to_store,
    format_value,
    label_partitions,
    plan_partitions,
    read_extent,
)
from icechunk_prefect.storage.local import RepositorySource

__all__ = ["GapPolicy", "check_dates", "prepare_append", "prepare_backfill", "require_extent"]

GapPolicy = Literal["error", "fill"]


def check_dates(start: date | None, end: date | None) -> None:
    """Refuse a window whose end is before its start."""
    if start is not None and end is not None and end < start:
        raise InputValidationError(
            f"end ({end.isoformat()}) is before start ({start.isoformat()}). Give an end date "
            "on or after the start date (both days are included)."
        )


def require_extent(
    repo: RepositorySource, branch: str, group: str | None, dim: str = "time"
) -> StoreExtent:
    """The store's extent, or a :class:`ConfigurationError` saying to create the dataset first."""
    extent = read_extent(repo, branch, group, dim)
    if extent is None:
        raise ConfigurationError(
            f"There is no dataset in {repo.describe()} (branch {branch!r}, group "
            f"{group or '/'!r}). Create it first with the create flow."
        )
    return extent


def _day(value: object) -> date:
    return pd.Timestamp(value).date()  # type: ignore[arg-type]


def _write_units(extent: StoreExtent, variables: Sequence[str]) -> dict[str, int]:
    return {v: extent.units[v] for v in variables}


def prepare_append(
    repo: RepositorySource,
    source: DatasetSource,
    *,
    branch: str = "main",
    group: str | None = None,
    start: date | None = None,
    end: date | None = None,
    on_gap: GapPolicy = "error",
    partition_size: int | None = None,
    target_partition_bytes: int = DEFAULT_PARTITION_BYTES,
    dim: str = "time",
) -> tuple[WindowPlan, xr.Dataset | None]:
    """Plan appending the steps of the source that come after the store's last step.

    The window defaults to the day of the store's last step up to the source's
    last day. Steps the store already holds are skipped (counted in
    ``skipped_steps``). A gap between the store's end and the first new step raises
    :class:`~icechunk_prefect.errors.GapError` with ``on_gap="error"``, or is filled
    with missing values (NaN) with ``on_gap="fill"``. The dataset is ``None`` when
    there is nothing new.
    """
    check_dates(start, end)
    extent = require_extent(repo, branch, group, dim)
    last = extent.index[-1]
    lo = start or _day(last)
    if end is None:
        template = source.template()
        end = _day(template.indexes[dim][-1])
    check_dates(lo, end)
    window = select_window(source.load(lo, end), lo, end, dim)
    variables = extent.variables
    missing = [v for v in variables if v not in window.data_vars]
    if missing:
        raise InputValidationError(
            f"The source has no variable(s) {missing}, which the store holds along {dim!r} "
            f"(source variables: {sorted(map(str, window.data_vars))}). An append must bring "
            "every variable."
        )
    index = window.indexes[dim]
    new_pos = np.flatnonzero(index > last)
    skipped = len(index) - len(new_pos)
    base = {
        "operation": "append",
        "dim": dim,
        "variables": tuple(variables),
        "extent": extent.describe(),
        "skipped_steps": skipped,
    }
    if not len(new_pos):
        plan = WindowPlan(
            start=extent.length,
            stop=extent.length,
            partitions=(),
            partition_size=partition_size,
            notes=(
                f"Nothing to append: the store already ends at {format_value(last)} and the "
                f"source has no later step in {lo.isoformat()} .. {end.isoformat()}.",
            ),
            **base,  # type: ignore[arg-type]
        )
        return plan, None
    new = window.isel({dim: new_pos})
    new_index = new.indexes[dim]
    step = extent.step()
    if step is None and len(new_index) > 1:
        step = pd.Timedelta(new_index[1] - new_index[0])
    filled = 0
    notes: list[str] = []
    if step is not None and new_index[0] > last + step:
        gap = pd.date_range(last + step, new_index[0] - step, freq=step)
        if on_gap == "error":
            raise GapError(
                f"Gap along {dim!r}: the store ends at {last} and the new data starts at "
                f"{new_index[0]}; {len(gap)} step(s) of {step} are missing ({gap[0]} .. "
                f"{gap[-1]}). Load the missing days first, or pass on_gap='fill' to write "
                "them as missing values."
            )
        full = pd.date_range(last + step, new_index[-1], freq=step)
        new = new.reindex({dim: full})
        filled = len(full) - len(new_index)
        notes.append(f"Filled {filled} missing step(s) ({gap[0]} .. {gap[-1]}) with NaN.")
    if skipped:
        notes.append(
            f"Skipped {skipped} step(s) the store already holds (up to {format_value(last)})."
        )
    new = new[variables]
    offset = extent.length
    n = new.sizes[dim]
    size, parts = plan_partitions(
        offset,
        offset + n,
        _write_units(extent, variables),
        partition_size=partition_size,
        bytes_per_step=extent.bytes_per_step,
        target_partition_bytes=target_partition_bytes,
        dim=dim,
    )
    new = align_to_store(new, extent, offset)
    plan = WindowPlan(
        start=offset,
        stop=offset + n,
        partitions=tuple(label_partitions(parts, new.indexes[dim], offset)),
        partition_size=size,
        first=format_value(new.indexes[dim][0]),
        last=format_value(new.indexes[dim][-1]),
        filled_steps=filled,
        notes=tuple(notes),
        **base,  # type: ignore[arg-type]
    )
    return plan, new


def prepare_backfill(
    repo: RepositorySource,
    source: DatasetSource,
    *,
    start: date,
    end: date,
    variables: Sequence[str] | None = None,
    branch: str = "main",
    group: str | None = None,
    partition_size: int | None = None,
    target_partition_bytes: int = DEFAULT_PARTITION_BYTES,
    dim: str = "time",
) -> tuple[WindowPlan, xr.Dataset]:
    """Plan rewriting the days ``start`` .. ``end`` of an existing dataset (a region write).

    Refuses (before anything is written) a range reaching outside the stored
    extent, unknown variables, a partition size that splits chunks, and source
    data whose time steps differ from the store's in that range.
    """
    check_dates(start, end)
    extent = require_extent(repo, branch, group, dim)
    index = extent.index
    first_day, last_day = _day(index[0]), _day(index[-1])
    if start < first_day or end > last_day:
        raise RegionError(
            f"Backfill range {start.isoformat()} .. {end.isoformat()} lies outside the "
            f"dataset's extent {first_day.isoformat()} .. {last_day.isoformat()} along {dim!r}. "
            "Backfill rewrites existing steps only: use the append flow to add new ones."
        )
    lo, hi = pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1)
    i0 = int(index.searchsorted(lo, "left"))  # type: ignore[arg-type]
    i1 = int(index.searchsorted(hi, "left"))  # type: ignore[arg-type]
    if i1 <= i0:
        raise RegionError(
            f"The store holds no {dim!r} step within {start.isoformat()} .. {end.isoformat()}."
        )
    chosen = check_variables(variables, extent.variables, f"the dataset ({extent.describe()})")
    size, parts = plan_partitions(
        i0,
        i1,
        _write_units(extent, chosen),
        partition_size=partition_size,
        bytes_per_step=extent.bytes_per_step,
        target_partition_bytes=target_partition_bytes,
        dim=dim,
    )
    window = select_window(source.load(start, end), start, end, dim)
    absent = [v for v in chosen if v not in window.data_vars]
    if absent:
        raise InputValidationError(
            f"The source has no variable(s) {absent} (it has "
            f"{sorted(map(str, window.data_vars))}); choose variables it provides."
        )
    wanted = index[i0:i1]
    got = window.indexes[dim]
    if not got.equals(wanted):
        raise RegionError(
            f"The source's {dim!r} steps for {start.isoformat()} .. {end.isoformat()} "
            f"({len(got)} steps{', ' + str(got[0]) + ' .. ' + str(got[-1]) if len(got) else ''})"
            f" differ from the store's ({len(wanted)} steps, {wanted[0]} .. {wanted[-1]}). "
            "A backfill rewrites existing steps one for one: check the source."
        )
    ds = window[chosen]
    ds = ds.drop_vars([c for c in ds.coords if dim not in ds[c].dims])
    ds = align_to_store(ds, extent, i0)
    plan = WindowPlan(
        operation="backfill",
        dim=dim,
        start=i0,
        stop=i1,
        variables=tuple(chosen),
        partitions=tuple(label_partitions(parts, wanted, i0)),
        partition_size=size,
        extent=extent.describe(),
        first=format_value(wanted[0]),
        last=format_value(wanted[-1]),
    )
    return plan, ds
