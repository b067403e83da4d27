"""A synthetic, climate-model-shaped dataset whose values are a pure function of the coordinates.

Any region can be checked exactly: :func:`expected_values` recomputes it with
numpy from the coordinates alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["VARIABLES", "expected_values", "synthetic_climate"]

VARIABLES: dict[str, dict[str, str]] = {
    "t2m": {"units": "K", "long_name": "2 metre temperature"},
    "precip": {"units": "mm day-1", "long_name": "total precipitation"},
    "wind": {"units": "m s-1", "long_name": "10 metre wind speed"},
    "rh": {"units": "%", "long_name": "relative humidity"},
}

_EPOCH = np.datetime64("2000-01-01T00:00:00", "s")


def _formula(name: str, days: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    season = np.sin(2 * np.pi * days / 365.25)
    rlat = np.deg2rad(lat)
    rlon = np.deg2rad(lon)
    if name == "t2m":
        out = 288.0 - 30.0 * np.sin(rlat) ** 2 + 10.0 * season * np.sin(rlat) + np.cos(rlon)
    elif name == "precip":
        out = 3.0 + 2.0 * np.cos(3 * rlat) * np.cos(rlon + days / 10.0)
    elif name == "wind":
        out = 5.0 + 3.0 * np.abs(np.sin(2 * rlat)) + np.sin(rlon * 2 + days / 7.0)
    elif name == "rh":
        out = 60.0 + 30.0 * np.cos(rlat) * np.sin(rlon + days / 30.0)
    else:
        out = days * 0.001 + lat * 0.01 + lon * 0.0001
    return out.astype(np.float32)


def _days(time: np.ndarray) -> np.ndarray:
    return (time.astype("datetime64[s]") - _EPOCH).astype(np.float64) / 86400.0


def synthetic_climate(
    *,
    start: str = "2020-01-01",
    periods: int = 365,
    freq: str = "D",
    nlat: int = 180,
    nlon: int = 360,
    variables: Sequence[str] = ("t2m", "precip", "wind"),
    time_chunk: int = 10,
) -> xr.Dataset:
    """A lazy (dask-backed) time x lat x lon dataset with in-memory coordinates.

    Dask chunks are ``time_chunk`` steps by the full grid; the Zarr encoding
    (``chunks``) is set to the same, so it writes with aligned chunks.

    Example:
        ```python
        from icechunk_prefect.synthetic import synthetic_climate

        ds = synthetic_climate(periods=20, nlat=4, nlon=8)
        assert ds.t2m.shape == (20, 4, 8)
        ```
    """
    time = pd.date_range(start, periods=periods, freq=freq)
    lat = np.linspace(-89.5, 89.5, nlat)
    lon = np.linspace(0.0, 360.0, nlon, endpoint=False)
    # dask's stubs type `chunks` too narrowly: pass through Any
    tchunks: Any = time_chunk
    whole: Any = -1
    t = da.from_array(_days(time.values), chunks=tchunks)[:, None, None]
    la = da.from_array(lat, chunks=whole)[None, :, None]
    lo = da.from_array(lon, chunks=whole)[None, None, :]
    data_vars = {}
    for name in variables:
        arr = _formula_lazy(name, t, la, lo)
        data_vars[name] = xr.Variable(
            ("time", "lat", "lon"),
            arr,
            attrs=VARIABLES.get(name, {}),
            encoding={"chunks": (time_chunk, nlat, nlon)},
        )
    return xr.Dataset(
        data_vars,
        coords={
            "time": time,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
        attrs={"title": "icechunk-prefect synthetic climate", "source": "synthetic"},
    )


def _formula_lazy(name: str, t: da.Array, la: da.Array, lo: da.Array) -> da.Array:
    chunks = (t.chunks[0], (la.shape[1],), (lo.shape[2],))
    return da.map_blocks(
        functools.partial(_formula, name), t, la, lo, dtype=np.float32, chunks=chunks
    )


def expected_values(ds_or_coords: xr.Dataset, name: str) -> np.ndarray:
    """The exact values of variable ``name`` over the coordinates of ``ds_or_coords``."""
    days = _days(ds_or_coords["time"].values)[:, None, None]
    lat = ds_or_coords["lat"].values[None, :, None]
    lon = ds_or_coords["lon"].values[None, None, :]
    return _formula(name, days, lat, lon)
