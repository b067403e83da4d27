"""Plain functions over xarray objects: which variables are lazy, templates, labels.

Nothing here touches a repository.
"""

from __future__ import annotations

import datetime
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import is_dask_collection
from xarray.backends.common import NONE_VAR_NAME

from icechunk_prefect.errors import InputValidationError

__all__ = [
    "as_dataset",
    "eager_variables",
    "lazy_template",
    "lazy_variables",
    "subset_variables",
]

_DATAARRAY_NAME = "__xarray_dataarray_name__"
_DATAARRAY_VARIABLE = "__xarray_dataarray_variable__"


def as_dataset(obj: xr.Dataset | xr.DataArray) -> xr.Dataset:
    """Turn a DataArray into the Dataset xarray's ``to_zarr`` would write (same naming
    rules; a variable named ``None`` is named as ``to_zarr`` stores it)."""
    if isinstance(obj, xr.Dataset):
        ds = obj
    elif isinstance(obj, xr.DataArray):
        if obj.name is None:
            ds = obj.to_dataset(name=_DATAARRAY_VARIABLE)
        elif obj.name in obj.coords or obj.name in obj.dims:
            ds = obj.to_dataset(name=_DATAARRAY_VARIABLE)
            ds.attrs[_DATAARRAY_NAME] = obj.name
        else:
            ds = obj.to_dataset()
    else:
        raise InputValidationError(
            f"Expected an xarray Dataset or DataArray, got {type(obj).__name__}. "
            "Wrap numpy/dask arrays in xarray objects, or use the store_dask flow."
        )
    if None in ds.variables:
        # to_zarr stores a variable named None as "__values__" (and reads it back as None).
        ds = ds.rename({None: NONE_VAR_NAME})  # type: ignore[dict-item]
    if not ds.variables:
        raise InputValidationError(
            "The dataset is empty (no variables): there is nothing to write. "
            "Check the source selection (time window, variable names)."
        )
    empty = {str(d): n for d, n in ds.sizes.items() if n == 0}
    if empty:
        raise InputValidationError(
            f"The dataset has zero-length dimensions {empty}: there is nothing to write. "
            "Check the time window or selection that produced it."
        )
    return ds


def _is_lazy(var: xr.Variable) -> bool:
    return is_dask_collection(var.data)


def lazy_variables(ds: xr.Dataset) -> list[str]:
    """Names of the dask-backed variables (data variables and coordinates)."""
    return [str(n) for n, v in ds.variables.items() if _is_lazy(v)]


def eager_variables(ds: xr.Dataset) -> list[str]:
    """Names of the in-memory (numpy-backed) variables, coordinates included."""
    return [str(n) for n, v in ds.variables.items() if not _is_lazy(v)]


def _time_encoding(var: xr.Variable, encoding: Mapping[str, Any]) -> dict[str, Any]:
    """``encoding`` completed with what xarray picks when it encodes ``var`` eagerly.

    xarray encodes in-memory datetimes and timedeltas with whatever of ``units``,
    ``calendar`` and ``dtype`` is prescribed, filling in (or adjusting) the rest; a
    dask-backed variable needs both ``units`` and ``dtype`` up front. The template
    is dask-backed, so it gets the values the eager encoding of the real data
    chooses, and the arrays come out as ``to_zarr`` of the in-memory variable would
    create them.
    """
    from xarray.coding.times import encode_cf_datetime, encode_cf_timedelta

    out = dict(encoding)
    packed = "scale_factor" in out or "add_offset" in out
    # Packed times are encoded to floats first, then packed to the dtype asked for.
    dtype = np.dtype("float64") if packed else out.get("dtype")
    values = np.asarray(var.values)
    # (xarray may warn here that the units need changing; it would when writing too. The
    # warning is not silenced: warnings.catch_warnings changes process-wide filters.)
    if values.dtype.kind == "M":
        num, units, calendar = encode_cf_datetime(
            values, out.get("units"), out.get("calendar"), dtype
        )
        out.update(units=units, calendar=calendar)
    else:
        num, units = encode_cf_timedelta(values, out.get("units"), dtype)
        out["units"] = units
    if not packed:
        out.setdefault("dtype", np.asarray(num).dtype)  # a given dtype is applied after
    return out


def _wrap_lazily(var: xr.Variable, encoding: Mapping[str, Any]) -> xr.Variable:
    if _is_lazy(var) or var.ndim == 0:
        return _with_encoding(var, encoding)
    values = np.asarray(var.values)
    enc = dict(encoding)
    if values.dtype.kind in "Mm":
        enc = _time_encoding(var, enc)
    whole: Any = -1  # one dask chunk (dask's stubs type `chunks` too narrowly)
    return xr.Variable(var.dims, da.from_array(values, chunks=whole), var.attrs, enc)


def _with_encoding(var: xr.Variable, encoding: Mapping[str, Any]) -> xr.Variable:
    out = var.copy(deep=False)
    out.encoding = dict(encoding)
    return out


def lazy_template(ds: xr.Dataset, encoding: Mapping[Any, Any] | None = None) -> xr.Dataset:
    """The dataset with every non-scalar variable dask-backed and no indexes.

    Writing it with ``to_zarr(compute=False)`` creates (or resizes) the arrays and
    writes attributes and scalars, but no chunk of any array. ``encoding`` is the
    ``encoding`` argument of the write: as in ``to_zarr``, an entry replaces the
    variable's own ``encoding``. Each variable's encoding is completed where the
    in-memory data would have been encoded differently from a dask array (times
    with only some of ``units``/``dtype`` given); pass
    ``{name: template[name].encoding for name in encoding}`` on to ``to_zarr``.
    """
    given = dict(encoding or {})

    def wrap(name: Hashable) -> xr.Variable:
        var = ds.variables[name]
        return _wrap_lazily(var, given.get(name, var.encoding))

    coords = xr.Coordinates({n: wrap(n) for n in ds.coords}, indexes={})
    data_vars = {n: wrap(n) for n in ds.data_vars}
    return xr.Dataset(data_vars, coords=coords, attrs=ds.attrs)


def subset_variables(ds: xr.Dataset, names: Iterable[Hashable]) -> xr.Dataset:
    """A dataset holding only ``names`` as plain variables (no coordinates attached)."""
    variables = {n: ds.variables[n] for n in names}
    coords = xr.Coordinates({n: v for n, v in variables.items() if n in ds.coords}, indexes={})
    data = {n: v for n, v in variables.items() if n not in ds.coords}
    return xr.Dataset(data, coords=coords)


def label_range(ds: xr.Dataset, dim: str, start: int, stop: int) -> str:
    """``time[2024-01-01..2024-01-07]``-style label for positions ``start:stop`` of ``ds``."""
    if dim in ds.indexes and stop > start:
        values = ds.indexes[dim][[start, stop - 1]]
        first, last = (_fmt(v) for v in values)
        return f"{dim}[{first}..{last}]"
    return f"{dim}[{start}:{stop}]"


def _fmt(value: Any) -> str:
    if isinstance(value, np.datetime64 | datetime.datetime | datetime.date):
        text = pd.Timestamp(value).isoformat()
    else:
        text = str(value)
    return text.removesuffix("T00:00:00").removesuffix(" 00:00:00")


def bytes_per_step(ds: xr.Dataset, names: Iterable[str], dim: str) -> int:
    """Uncompressed bytes of ``names`` per position along ``dim``."""
    total = 0
    for n in names:
        v = ds.variables[n]
        if dim in v.dims:
            total += int(v.dtype.itemsize * v.size // max(1, v.sizes[dim]))
    return total
