"""How xarray and dask objects appear in flow-run parameters stored by the Prefect API.

Prefect stores each flow run's parameters as JSON, encoding them with FastAPI's
``jsonable_encoder``. On an xarray object that encoder iterates the data, which
for a dask-backed Dataset means computing it in the flow process. Registering a
summary encoder keeps the stored parameter a one-line description instead.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import xarray as xr

__all__ = ["describe_object", "register_parameter_encoders"]


def describe_object(obj: Any) -> str:
    """A one-line description of an xarray or dask object (no values)."""
    if isinstance(obj, xr.Dataset):
        dims = ", ".join(f"{d}: {n}" for d, n in obj.sizes.items())
        return f"<xarray.Dataset ({dims}) variables={sorted(map(str, obj.data_vars))}>"
    if isinstance(obj, xr.DataArray):
        dims = ", ".join(f"{d}: {n}" for d, n in obj.sizes.items())
        return f"<xarray.DataArray {obj.name!r} ({dims}) {obj.dtype}>"
    if isinstance(obj, da.Array):
        chunksize = getattr(obj, "chunksize", None)
        return f"<dask.array shape={obj.shape} dtype={obj.dtype} chunksize={chunksize}>"
    return f"<{type(obj).__name__}>"


def register_parameter_encoders() -> None:
    """Make Prefect store xarray/dask parameters as short descriptions (idempotent)."""
    from fastapi import encoders

    for cls in (xr.Dataset, xr.DataArray, da.Array):
        encoders.ENCODERS_BY_TYPE[cls] = describe_object
    encoders.encoders_by_class_tuples = encoders.generate_encoders_by_class_tuples(
        encoders.ENCODERS_BY_TYPE
    )
