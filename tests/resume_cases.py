"""The writes that tests/test_resume_maintenance.py kills half way, shared with the script
(tests/scripts/killable_write.py) that runs them in a process of their own.

Chunks are 10 x 64 float64 (5 KiB): stored as objects, not inlined in the manifest,
so garbage collection has chunk objects to delete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from tests.fault_helpers import instrument
from tests.helpers import small_dataset

SCENARIOS = ("create", "region", "append", "metadata")
BLOCKS = ["0_0", "1_0", "2_0", "3_0"]
NX = 64


def base(scenario: str) -> xr.Dataset | None:
    """What the repository holds before the write (None: the write creates it)."""
    return small_dataset(nx=NX) if scenario in ("region", "append") else None


def new_data(scenario: str) -> xr.Dataset:
    """The data the write brings (not instrumented)."""
    if scenario == "region":
        return small_dataset(nx=NX, seed=7).drop_vars(["x", "label"])
    if scenario == "append":
        return small_dataset(nx=NX, start="2024-02-10", seed=1)
    return small_dataset(nx=NX)


def write_call(scenario: str, marks: str | Path) -> tuple[xr.Dataset, dict[str, Any]]:
    """The dataset (instrumented: blocks record computations in ``marks``) and the
    keyword arguments of the ``to_icechunk`` call."""
    ds = instrument(new_data(scenario), "a", marks)
    kwargs: dict[str, Any] = {"partition_size": 10}
    if scenario == "region":
        kwargs["region"] = {"time": slice(0, 40)}
    elif scenario == "append":
        kwargs["append_dim"] = "time"
    else:
        kwargs["mode"] = "w"
    return ds, kwargs


def expected(scenario: str) -> xr.Dataset:
    """What the branch must read back after the write committed."""
    if scenario == "region":
        return small_dataset(nx=NX, seed=7).compute()
    if scenario == "append":
        old = small_dataset(nx=NX).compute()
        new = new_data("append").compute()
        return xr.concat([old, new], dim="time", data_vars="minimal", coords="minimal")
    return small_dataset(nx=NX).compute()
