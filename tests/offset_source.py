"""A source for the tests of writers that collide: synthetic values plus an offset (so
that each writer's values can be told apart), optionally instrumented (fault_helpers).

Used by path, as a user's own source is: ``ImportedSource(path="tests.offset_source:make",
kwargs={...})``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import xarray as xr

from icechunk_prefect.operations.sources import SyntheticSource


@dataclass
class OffsetSource:
    """``inner``'s data plus ``offset``; with ``marks`` (a folder), the first variable's
    blocks record their computations there (and obey poison files, see
    ``tests.fault_helpers.instrument``)."""

    inner: SyntheticSource
    offset: float = 0.0
    marks: str | None = None

    def template(self) -> xr.Dataset:
        return self.inner.template()

    def load(self, start: date, end: date) -> xr.Dataset:
        ds = self.inner.window(start, end)
        out = ds.copy()
        for name, var in ds.data_vars.items():
            out[name] = var + self.offset
            out[name].attrs, out[name].encoding = var.attrs, var.encoding
        if self.marks:
            from tests.fault_helpers import instrument

            out = instrument(out, str(next(iter(out.data_vars))), self.marks)
        return out


def make(offset: float = 0.0, marks: str | None = None, **synthetic: Any) -> OffsetSource:
    """The factory named by the tests' ImportedSource."""
    return OffsetSource(SyntheticSource(**synthetic), offset, marks)
