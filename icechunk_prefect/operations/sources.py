"""Where the operational flows get their data: sources with a template and a window loader.

A *source* answers two questions:

- :meth:`DatasetSource.template`: what the whole dataset looks like (coordinates,
  variables, dtypes, attributes, Zarr chunking in each variable's ``encoding``),
  as a lazy Dataset over its full known extent. The ``create`` flow writes it.
- :meth:`DatasetSource.load`: the data for a window of days, as a lazy
  (dask-backed) Dataset. ``start`` and ``end`` are dates, both included: every
  time step from ``start`` 00:00 up to (not including) the day after ``end``.

Shipped sources, usable as typed flow parameters (the ``kind`` field selects one,
so the Prefect UI shows a choice and a form for each):

- :class:`SyntheticSource`: values are a pure function of the coordinates
  (:mod:`icechunk_prefect.synthetic`), so any region can be checked exactly;
- :class:`NetCDFFolderSource`: a folder of netCDF files (e.g. one per day), opened
  lazily with ``xarray.open_mfdataset``;
- :class:`ImportedSource`: your own source, by dotted import path.

Example:
    ```python
    from datetime import date
    from icechunk_prefect.operations.sources import SyntheticSource

    source = SyntheticSource(start=date(2024, 1, 1), periods=30, nlat=4, nlon=8)
    window = source.load(date(2024, 1, 5), date(2024, 1, 9))
    assert window.sizes["time"] == 5
    ```
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from icechunk_prefect.errors import ConfigurationError, InputValidationError

__all__ = [
    "DatasetSource",
    "ImportedSource",
    "NetCDFFolderSource",
    "SourceConfig",
    "SyntheticSource",
    "as_source",
    "select_window",
]


@runtime_checkable
class DatasetSource(Protocol):
    """What the operational flows need from a source of data."""

    def template(self) -> xr.Dataset:
        """The dataset over its full known extent, lazy, with Zarr chunks in ``encoding``."""
        ...

    def load(self, start: date, end: date) -> xr.Dataset:
        """The data for the days ``start`` .. ``end`` (both included), lazy."""
        ...


def window_bounds(start: date, end: date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start 00:00, day after end 00:00)``: the half-open time range of a window of days."""
    return pd.Timestamp(start), pd.Timestamp(end + timedelta(days=1))  # type: ignore[return-value]


def select_window(ds: xr.Dataset, start: date, end: date, dim: str = "time") -> xr.Dataset:
    """The steps of ``ds`` within the days ``start`` .. ``end`` (both included)."""
    lo, hi = window_bounds(start, end)
    index = ds.indexes[dim]
    i0 = int(index.searchsorted(lo, "left"))  # type: ignore[arg-type]
    i1 = int(index.searchsorted(hi, "left"))  # type: ignore[arg-type]
    return ds.isel({dim: slice(i0, i1)})


class SyntheticSource(BaseModel):
    """Generated climate-like data (time x lat x lon) whose values depend only on the coordinates.

    The full extent is ``periods`` steps of ``freq`` from ``start``. Use it for
    demos and tests: :func:`icechunk_prefect.synthetic.expected_values` recomputes
    any region exactly.
    """

    model_config = ConfigDict(title="Synthetic source")

    kind: Literal["synthetic"] = Field(default="synthetic", description="Source type.")
    start: date = Field(default=date(2020, 1, 1), description="First day of the full extent.")
    periods: int = Field(default=365, ge=1, description="Time steps in the full extent.")
    freq: Literal["D", "6h", "h"] = Field(default="D", description="Time step.")
    nlat: int = Field(default=180, ge=1, description="Number of latitudes.")
    nlon: int = Field(default=360, ge=1, description="Number of longitudes.")
    variables: list[str] = Field(
        default_factory=lambda: ["t2m", "precip", "wind"],
        description="Variables to generate (t2m, precip, wind, rh).",
    )
    time_chunk: int = Field(default=10, ge=1, description="Time steps per Zarr chunk.")

    def template(self) -> xr.Dataset:
        """The whole generated dataset (lazy)."""
        from icechunk_prefect.synthetic import synthetic_climate

        return synthetic_climate(
            start=self.start.isoformat(),
            periods=self.periods,
            freq=self.freq,
            nlat=self.nlat,
            nlon=self.nlon,
            variables=tuple(self.variables),
            time_chunk=self.time_chunk,
        )

    def load(self, start: date, end: date) -> xr.Dataset:
        """The generated steps within ``start`` .. ``end`` (only those in the full extent)."""
        return select_window(self.template(), start, end)


class NetCDFFolderSource(BaseModel):
    """A folder of netCDF files (e.g. one per day) concatenated along ``time``, opened lazily.

    File names are sorted; each file's time steps must be increasing and files must
    not overlap. Only the files are opened, never read in full: data stays lazy.
    """

    model_config = ConfigDict(title="netCDF folder source")

    kind: Literal["netcdf"] = Field(default="netcdf", description="Source type.")
    folder: str = Field(description="Folder holding the netCDF files.")
    pattern: str = Field(default="*.nc", description="Glob pattern of the files in the folder.")
    variables: list[str] | None = Field(
        default=None, description="Variables to keep (default: all data variables)."
    )
    time_chunk: int = Field(default=10, ge=1, description="Time steps per Zarr chunk.")
    engine: Literal["h5netcdf", "netcdf4", "scipy"] = Field(
        default="h5netcdf", description="xarray backend used to open the files."
    )

    def _files(self) -> list[str]:
        files = sorted(glob.glob(str(Path(self.folder).expanduser() / self.pattern)))
        if not files:
            raise ConfigurationError(
                f"No file matches {self.pattern!r} in folder {self.folder!r}. Check the folder "
                "and pattern parameters."
            )
        return files

    def _open(self) -> xr.Dataset:
        ds = xr.open_mfdataset(
            self._files(),
            engine=self.engine,
            combine="nested",
            concat_dim="time",
            data_vars="minimal",
            coords="minimal",  # type: ignore[arg-type]
            compat="override",
            join="override",
            chunks={},
            parallel=False,
        )
        if self.variables is not None:
            missing = sorted(set(self.variables) - set(map(str, ds.data_vars)))
            if missing:
                raise InputValidationError(
                    f"Variables {missing} are not in the netCDF files of {self.folder!r} "
                    f"(they hold {sorted(map(str, ds.data_vars))})."
                )
            ds = ds[self.variables]
        return _zarr_encoding(ds, self.time_chunk)

    def template(self) -> xr.Dataset:
        """All files, concatenated (lazy)."""
        return self._open()

    def load(self, start: date, end: date) -> xr.Dataset:
        """The steps of the files within ``start`` .. ``end``."""
        return select_window(self._open(), start, end)


class ImportedSource(BaseModel):
    """Your own source, found by import path (``package.module:factory``).

    The object at ``path`` is either a source (anything with ``template()`` and
    ``load(start, end)``) or a callable returning one; it is called with ``kwargs``.
    """

    model_config = ConfigDict(title="Imported source")

    kind: Literal["import"] = Field(default="import", description="Source type.")
    path: str = Field(
        description="Import path of a source or source factory, e.g. mypkg.sources:make_source."
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the factory."
    )

    def resolve(self) -> DatasetSource:
        """Import the object and build the source."""
        from prefect.utilities.importtools import import_object

        try:
            obj = import_object(self.path)
        except (ImportError, AttributeError, ValueError, FileNotFoundError) as exc:
            raise ConfigurationError(
                f"Cannot import source {self.path!r}: {exc}. Give 'package.module:name' of an "
                "importable object on the machine that runs the flow."
            ) from exc
        if not isinstance(obj, DatasetSource) and callable(obj):
            obj = obj(**self.kwargs)
        if not isinstance(obj, DatasetSource):
            raise ConfigurationError(
                f"{self.path!r} gave a {type(obj).__name__}, which has no template() and "
                "load(start, end) methods; point to a source or a function returning one."
            )
        return obj

    def template(self) -> xr.Dataset:
        """The imported source's template."""
        return self.resolve().template()

    def load(self, start: date, end: date) -> xr.Dataset:
        """The imported source's window."""
        return self.resolve().load(start, end)


SourceConfig = Annotated[
    SyntheticSource | NetCDFFolderSource | ImportedSource, Field(discriminator="kind")
]
"""A source as a flow parameter: one of the shipped kinds, chosen by ``kind``."""


def as_source(source: Any) -> DatasetSource:
    """A :class:`DatasetSource` from a source model, a source object, or a dict with ``kind``."""
    if isinstance(source, ImportedSource):
        return source.resolve()
    if isinstance(source, dict):
        from pydantic import TypeAdapter

        return as_source(TypeAdapter(SourceConfig).validate_python(source))
    if isinstance(source, DatasetSource):
        return source
    raise ConfigurationError(
        f"Expected a source (with template() and load(start, end)), got {type(source).__name__}."
    )


_KEEP_ENCODING = ("dtype", "_FillValue", "units", "calendar", "scale_factor", "add_offset")


def _zarr_encoding(ds: xr.Dataset, time_chunk: int, dim: str = "time") -> xr.Dataset:
    """Replace file-format encodings by Zarr chunks of ``time_chunk`` steps (full other dims)."""
    ds = ds.copy()
    for name, var in ds.variables.items():
        enc = {k: v for k, v in var.encoding.items() if k in _KEEP_ENCODING}
        if name in ds.data_vars and var.ndim:
            enc["chunks"] = tuple(
                min(time_chunk, n) if d == dim else n
                for d, n in zip(var.dims, var.shape, strict=True)
            )
        var.encoding = enc
    return ds


def check_variables(
    requested: Sequence[str] | None, available: Sequence[str], where: str
) -> list[str]:
    """``requested`` (default all of ``available``), refusing names not available."""
    if not requested:
        return list(available)
    unknown = [v for v in requested if v not in available]
    if unknown:
        raise InputValidationError(
            f"Unknown variable(s) {unknown}: {where} has {sorted(available)}. Pick variables "
            "from that list (or leave 'variables' empty for all)."
        )
    return list(dict.fromkeys(requested))
