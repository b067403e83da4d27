"""Issue 21: round-trip fidelity against xarray's and Icechunk's own test suites.

Each case is the input of a round-trip test of xarray's Zarr backend suite
(``xarray/tests/test_backends.py``: ``DatasetIOBase``, ``CFEncodedBase``, ``ZarrBase``,
``TestZarrRegionAuto``, ``TestValidateAttrs``; xarray ships it, and its helpers are
imported from ``xarray.tests``) or of Icechunk's Python tests (``test_xarray.py``,
``test_dask.py``, ``test_distributed_append.py``, ``run_xarray_backends_tests.py``, which
runs xarray's ``ZarrBase`` and ``TestZarrRegionAuto`` through ``to_icechunk``); ``cite``
names the upstream test. Every case is written by upstream
(``icechunk.xarray.to_icechunk`` and a commit) into one repository and by the
``to_icechunk`` flow into a copy of the same starting repository, then both are read back
and compared: values, dtypes and encodings as xarray reads them, every array's Zarr
metadata, and every array's stored values as Zarr reads them (which also compares two
stores xarray cannot open). Or both refuse (ours with an error of the package, before the
branch moves).

Where they differ on purpose (``STRICTER``, ``EAGER``, ``CORRECT``), ``reason`` says why
(docs/reliability.md, "Differences from icechunk.xarray.to_icechunk").

The table runs twice, on the shared cluster of worker processes and on an in-process
cluster of two threads (the partition writes of several threads of one process, where a
process-wide dask setting would leak from one partition to another): each in one flow run
whose body calls ``to_icechunk.fn`` once per case (a flow call costs seconds here).
``test_through_flow_calls`` runs the issue's cases through real flow calls.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from uuid import UUID

import dask.array as da
import icechunk
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
import zarr.codecs as codecs
from dask.base import is_dask_collection
from icechunk.xarray import to_icechunk as upstream_to_icechunk
from prefect import flow
from xarray.coding.strings import create_vlen_dtype
from xarray.tests import create_test_data
from xarray.tests.test_backends import (
    create_boolean_data,
    create_encoded_masked_and_scaled_data,
    create_encoded_signed_masked_scaled_data,
    create_encoded_unsigned_false_masked_scaled_data,
    create_encoded_unsigned_masked_scaled_data,
    create_masked_and_scaled_data,
    create_signed_masked_scaled_data,
    create_unsigned_false_masked_scaled_data,
    create_unsigned_masked_scaled_data,
)
from xarray.tests.test_dataset import (
    create_append_string_length_mismatch_test_data,
    create_append_test_data,
)

from icechunk_prefect import IcechunkDaskTaskRunner, IcechunkPrefectError, to_icechunk
from icechunk_prefect.errors import (
    ChunkAlignmentError,
    ConfigurationError,
    InputValidationError,
    RegionError,
    SchemaMismatchError,
)
from tests.helpers import PeerResult, chunks_of, open_repo, task_states

Outcome = Literal["same", "refused", "stricter", "eager", "correct"]
SAME: Outcome = "same"  # both write; identical read-back, Zarr metadata and stored values
REFUSED: Outcome = "refused"  # both refuse; ours with `error`, the branch unchanged
STRICTER: Outcome = "stricter"  # upstream writes; ours refuses on purpose (`reason`)
EAGER: Outcome = "eager"  # upstream refuses the lazy input (`reason`); ours writes what
# upstream writes for the same data in memory
CORRECT: Outcome = "correct"  # both write; upstream may lose writes (`reason`), ours equals
# the input

Maker = Callable[[], xr.Dataset | xr.DataArray]
Setup = Callable[[icechunk.Session], None]

XR = "xarray test_backends.py::"
IC = "icechunk tests/"


@dataclass(frozen=True)
class Case:
    cite: str  # the upstream test(s) the input comes from
    make: Maker
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    outcome: Outcome = SAME
    error: type[IcechunkPrefectError] = InputValidationError
    match: str = ""
    setup: tuple[Setup, ...] = ()  # written first (committed), into both repositories
    reason: str = ""  # why a difference is deliberate
    flow_kwargs: Mapping[str, Any] = field(default_factory=dict)  # ours only
    expected: Maker | None = None  # CORRECT: the store's content (default: the input)


def up(make: Maker, **kwargs: Any) -> Setup:
    """A setup step: ``make()`` written by upstream ``to_icechunk``."""

    def write(session: icechunk.Session) -> None:
        upstream_to_icechunk(make(), session, **kwargs)

    return write


def metadata_only(make: Maker) -> Setup:
    """A setup step: the arrays of ``make()`` created, no chunk written
    (``to_zarr(compute=False)``, as Icechunk's test_fork_session_deep_copies does)."""

    def write(session: icechunk.Session) -> None:
        make().to_zarr(session.store, mode="w", compute=False, consolidated=False)

    return write


# ------------------------------------------------------------------ inputs


def lazy(make: Callable[[], xr.Dataset], chunks: Any = None) -> Callable[[], xr.Dataset]:
    """``make()`` with every variable dask-backed (``chunks``: dask's ``chunk`` argument)."""
    return lambda: make().chunk(chunks if chunks is not None else {})


def with_lazy_float(make: Callable[[], xr.Dataset]) -> Callable[[], xr.Dataset]:
    """``make()`` plus one dask-backed float variable along a dimension of its own (so that
    upstream's writer has dask data left after encoding computed the others)."""
    return lambda: make().assign(more=("extra", da.arange(cast(Any, 4.0), chunks=chunks_of(2))))


def sample_data(seed: int = 1, **kw: Any) -> xr.Dataset:
    return create_test_data(seed=seed, **kw)


def object_dtype() -> xr.Dataset:
    """DatasetIOBase::test_roundtrip_object_dtype's input."""
    return xr.Dataset(
        {
            "floats": ("a", np.array([0.0, 0.0, 1.0, 2.0, 3.0], dtype=object)),
            "floats_nans": ("a", np.array([np.nan, np.nan, 1.0, 2.0, 3.0], dtype=object)),
            "bytes": ("b", np.array([b"ab", b"cdef", b"g"], dtype=object)),
            "bytes_nans": ("b", np.array([b"ab", b"cdef", np.nan], dtype=object)),
            "strings": ("b", np.array(["ab", "cdef", "g"], dtype=object)),
            "strings_nans": ("b", np.array(["ab", "cdef", np.nan], dtype=object)),
            "all_nans": ("c", np.array([np.nan, np.nan], dtype=object)),
            "nan": ([], np.nan),
        }
    )


def strings(dtype: Any = None) -> xr.Dataset:
    return xr.Dataset({"x": ("t", np.array(["ab", "cdef"], dtype=dtype))})


def string_nulls() -> xr.Dataset:
    nulls = np.array(["ab", None], dtype=np.dtypes.StringDType(na_object=None))
    return xr.Dataset({"x": ("t", nulls)})


def encoded_chars(make: Callable[[], xr.Dataset], **enc: Any) -> Callable[[], xr.Dataset]:
    def build() -> xr.Dataset:
        ds = make()
        ds["x"].encoding.update({"dtype": "S1", **enc})
        return ds

    return build


def datetimes() -> xr.Dataset:
    times = pd.to_datetime(["2000-01-01", "2000-01-02", "NaT"], unit="ns")
    return xr.Dataset({"t": ("t", times), "t0": times[0]})


def timedeltas(unit: str = "s", encoded: bool = True) -> xr.Dataset:
    deltas = pd.to_timedelta(["1h", "2h", "NaT"]).as_unit(unit)  # type: ignore[arg-type]
    ds = xr.Dataset({"td": ("td", deltas), "td0": deltas[0].to_numpy()})
    if encoded:
        ds["td"].encoding = {"units": "seconds"}
        ds["td0"].encoding = {"units": "seconds"}
    return ds


def coordinates(encoding: Mapping[str, Any] | None = None) -> xr.Dataset:
    ds = xr.Dataset({"foo": ("x", [0, 1])}, {"x": [2, 3], "y": ("a", [42]), "z": ("x", [4, 5])})
    ds["foo"].encoding.update(encoding or {})
    return ds


def cf_dataset() -> xr.Dataset:
    """CFEncodedBase._create_cf_dataset's input, built the same way."""
    ds = xr.Dataset(
        {
            "variable": (
                ("ln_p", "latitude", "longitude"),
                np.arange(8, dtype="f4").reshape(2, 2, 2),
                {"ancillary_variables": "std_devs det_lim"},
            ),
            "std_devs": (
                ("ln_p", "latitude", "longitude"),
                np.arange(0.1, 0.9, 0.1).reshape(2, 2, 2),
                {"standard_name": "standard_error"},
            ),
            "det_lim": ((), 0.1, {"standard_name": "detection_minimum"}),
        },
        {
            "latitude": ("latitude", [0, 1], {"units": "degrees_north"}),
            "longitude": ("longitude", [0, 1], {"units": "degrees_east"}),
            "latlon": ((), -1, {"grid_mapping_name": "latitude_longitude"}),
            "latitude_bnds": (("latitude", "bnds2"), [[0, 1], [1, 2]]),
            "longitude_bnds": (("longitude", "bnds2"), [[0, 1], [1, 2]]),
            "areas": (("latitude", "longitude"), [[1, 1], [1, 1]], {"units": "degree^2"}),
            "ln_p": ("ln_p", [1.0, 0.5], {"standard_name": "atmosphere_ln_pressure_coordinate"}),
            "P0": ((), 1013.25, {"units": "hPa"}),
        },
    )
    ds["variable"].encoding.update({"cell_measures": "area: areas", "grid_mapping": "latlon"})
    ds.coords["latitude"].encoding.update(grid_mapping="latlon", bounds="latitude_bnds")
    ds.coords["longitude"].encoding.update(grid_mapping="latlon", bounds="longitude_bnds")
    ds.coords["ln_p"].encoding.update({"formula_terms": "p0: P0 lev : ln_p"})
    return ds


def lat_lon(encoding: Mapping[str, Any] | None = None) -> xr.Dataset:
    ds = xr.Dataset(
        {"temp": ("x", [0, 1]), "precip": ("x", [0, -1])},
        {"lat": ("x", [2, 3]), "lon": ("x", [4, 5])},
    )
    ds["temp"].encoding.update(encoding or {})
    return ds


def endian() -> xr.Dataset:
    return xr.Dataset(
        {
            "x": np.arange(3, 10, dtype=">i2"),
            "y": np.arange(3, 20, dtype="<i4"),
            "z": np.arange(3, 30, dtype="=i8"),
            "w": ("x", np.arange(3, 10, dtype=float)),
        }
    )


def named(name: Any) -> Maker:
    return lambda: xr.Dataset({name: xr.DataArray(np.arange(4.0).reshape(2, 2))})


def y_floats(**encoding: Any) -> xr.Dataset:
    ds = xr.Dataset({"x": ("y", np.arange(10.0))})
    ds["x"].encoding.update(encoding)
    return ds


def pi(coord_encoding: Mapping[str, Any] | None = None, **encoding: Any) -> xr.Dataset:
    ds = xr.Dataset({"x": ("y", [np.pi, -np.pi])}, coords={"y": [0.0, 1.0]})
    ds["x"].encoding.update(encoding)
    ds["y"].encoding.update(coord_encoding or {})
    return ds


def bytes_fill(encoding: Mapping[str, Any]) -> xr.Dataset:
    """CFEncodedBase::test_roundtrip_bytes_with_fill_value's input."""
    values = np.array([b"ab", b"cdef", np.nan], dtype=object)
    return xr.Dataset({"x": ("t", values, {}, dict(encoding))})


def bytes_fill_attr() -> xr.Dataset:
    """Fixed-width bytes with a ``_FillValue`` attribute (issue 21, defect 4)."""
    return xr.Dataset({"x": ("t", np.array([b"x", b"yy", b"x", b"yy"]), {"_FillValue": b"x"})})


def unsigned(fill: Any, encoded: bool) -> xr.Dataset:
    """CFEncodedBase::test_roundtrip_unsigned's inputs."""
    if encoded:
        raw = np.asarray([0, 1, 127, -128, -2, -1], dtype="i1")
        return xr.Dataset({"x": ("t", raw, {"_FillValue": fill, "_Unsigned": "true"})})
    x = np.array([0, 1, 127, 128, 254, np.nan], dtype=np.float32)
    encoding = {"_FillValue": fill, "_Unsigned": "true", "dtype": "i1"}
    return xr.Dataset({"x": ("t", x, {}, encoding)})


def multiindex() -> xr.Dataset:
    return xr.Dataset(coords={"y": ("x", [1, 2]), "z": ("x", ["a", "b"])}).set_index(x=["y", "z"])


def mixed_strings() -> xr.Dataset:
    """CFEncodedBase::test_indexing_roundtrip's input."""
    return xr.Dataset({"A": xr.DataArray([[1, "a"], [2, "b"]], dims=["x", "y"])})


def with_encoding(make: Maker, name: str, **encoding: Any) -> Callable[[], xr.Dataset]:
    def build() -> xr.Dataset:
        ds = cast(xr.Dataset, make())
        ds[name].encoding.update(encoding)
        return ds

    return build


def var1(dask_chunks: Any, **encoding: Any) -> Callable[[], xr.Dataset]:
    """ZarrBase chunk tests' ``DataArray(np.arange(12), dims='x', name='var1')``."""

    def build() -> xr.Dataset:
        ds = xr.DataArray(np.arange(12), dims="x", name="var1").to_dataset()
        ds = ds.chunk({"x": dask_chunks})
        ds["var1"].encoding.update(encoding)
        return ds

    return build


def appended(part: int) -> Callable[[], xr.Dataset]:
    """create_append_test_data(seed=0)[part]."""
    return lambda: create_append_test_data(seed=0)[part]


def partial_dtype(fn: Callable[[np.dtype[Any]], xr.Dataset]) -> Callable[[], xr.Dataset]:
    """A mask-and-scale maker of xarray's, for float64 (ZarrBase skips float32)."""
    return lambda: fn(np.dtype("float64"))


def lon_overwritten() -> xr.Dataset:
    """ZarrBase::test_append_with_append_dim_no_overwrite: the appended steps, with 'lon'
    (no 'time') changed."""
    ds = create_append_test_data(seed=0)[1]
    return ds.assign(lon=np.full(ds.sizes["lon"], -999))


def mismatched_strings(kind: str) -> tuple[xr.Dataset, xr.Dataset]:
    """create_append_string_length_mismatch_test_data(kind), the second one's steps after
    the first one's."""
    ds, more = create_append_string_length_mismatch_test_data(kind)
    return ds, more.assign_coords(time=[3, 4, 5])


def u_zeros() -> xr.Dataset:
    return xr.Dataset({"u": (("x",), np.zeros(10))})


def u_nonzeros(region: slice | None = None, chunk: int | None = None) -> Maker:
    def build() -> xr.Dataset:
        ds = xr.Dataset({"u": (("x",), np.arange(1, 11))})
        ds = ds.chunk(chunk) if chunk else ds
        return ds.isel(x=region) if region is not None else ds

    return build


def override(variable: str, global_: str) -> Maker:
    """ZarrBase::test_write_preexisting_override_metadata's datasets."""
    return lambda: xr.Dataset(
        {"u": (("x",), np.ones(10), {"variable": variable})}, attrs={"global": global_}
    )


def region_grid() -> xr.Dataset:
    """TestZarrRegionAuto.create's dataset."""
    x, y = np.arange(0, 50, 10), np.arange(0, 20, 2)
    return xr.Dataset(
        {"test": xr.DataArray(np.ones((5, 10)), dims=("x", "y"), coords={"x": x, "y": y})}
    )


def attrs_on(where: str, key: Any, value: Any) -> Maker:
    """TestValidateAttrs' datasets, with one attribute set on the dataset, the data
    variable or the coordinate."""

    def build() -> xr.Dataset:
        ds = xr.Dataset({"data": ("y", np.arange(10.0))}, {"y": np.arange(10)})
        target = ds.attrs if where == "dataset" else ds[where].attrs
        target[key] = value
        return ds

    return build


class MiscObject:
    pass


def growing(
    x: int, y: int, value: float, chunks: Mapping[str, int], x0: int = 0, y0: int = 0
) -> Maker:
    """Icechunk test_distributed_append's datasets (shrunk to the 'processes' sizes)."""
    return lambda: xr.Dataset(
        {
            "a": xr.DataArray(
                value,
                dims=("x", "y"),
                coords={"x": list(range(x0, x0 + x)), "y": list(range(y0, y0 + y))},
            )
        }
    ).chunk(dict(chunks))


def U5() -> xr.Dataset:
    """ZarrBase::test_write_region_errors's ``data``."""
    return xr.Dataset({"u": (("x",), np.arange(5))})


def U2() -> xr.Dataset:
    """ZarrBase::test_write_region_errors's ``data2``."""
    return xr.Dataset({"u": (("x",), np.array([10, 11]))})


APPEND = appended(0)
TO_APPEND = appended(1)
NEW_VAR = appended(2)
GRID = region_grid

CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- DatasetIOBase
    "test-data": Case(
        f"{XR}DatasetIOBase::test_roundtrip_test_data (and test_load, test_dataset_compute, "
        "test_orthogonal_indexing: the same round trip)",
        sample_data,
    ),
    "zero-dimensional": Case(
        f"{XR}DatasetIOBase::test_zero_dimensional_variable",
        lambda: sample_data().assign(
            float_var=([], 1.0e9, {"units": "units of awesome"}),
            bytes_var=([], b"foobar"),
            string_var=([], "foobar"),
        ),
    ),
    "none-variable": Case(
        f"{XR}DatasetIOBase::test_roundtrip_None_variable",
        lambda: xr.Dataset({None: (("x", "y"), [[0, 1], [2, 3]])}),
    ),
    "none-variable-lazy": Case(
        f"{XR}DatasetIOBase::test_roundtrip_None_variable (dask-backed)",
        lazy(lambda: xr.Dataset({None: (("x", "y"), [[0, 1], [2, 3]])})),
    ),
    "object-dtype": Case(f"{XR}DatasetIOBase::test_roundtrip_object_dtype", object_dtype),
    "object-dtype-lazy": Case(
        f"{XR}DatasetIOBase::test_roundtrip_object_dtype (dask-backed, one value a chunk, "
        "stored and dask: partitions holding only missing values)",
        with_lazy_float(lazy(object_dtype, {"a": 1, "b": 1, "c": 1})),
        {"encoding": {n: {"chunks": (1,)} for n in ("strings_nans", "bytes_nans", "all_nans")}},
    ),
    "object-dtype-lazy-whole-graph": Case(
        f"{XR}DatasetIOBase::test_roundtrip_object_dtype (dask-backed, one task for the whole "
        "graph)",
        with_lazy_float(lazy(object_dtype, {"a": 1, "b": 1, "c": 1})),
        flow_kwargs={"partitioned": False},
    ),
    "string-data": Case(f"{XR}DatasetIOBase::test_roundtrip_string_data", strings),
    "string-data-lazy": Case(
        f"{XR}DatasetIOBase::test_roundtrip_string_data (dask)", lazy(strings, 1)
    ),
    "stringdtype-data": Case(
        f"{XR}DatasetIOBase::test_roundtrip_stringdtype_data",
        lambda: strings(np.dtypes.StringDType()),
    ),
    "stringdtype-data-lazy": Case(
        f"{XR}DatasetIOBase::test_roundtrip_stringdtype_data (dask)",
        lazy(lambda: strings(np.dtypes.StringDType()), 1),
    ),
    "stringdtype-nulls": Case(f"{XR}DatasetIOBase::test_roundtrip_stringdtype_nulls", string_nulls),
    "stringdtype-nulls-lazy": Case(
        f"{XR}DatasetIOBase::test_roundtrip_stringdtype_nulls (dask, with another dask variable)",
        with_lazy_float(lazy(string_nulls, 1)),
    ),
    "stringdtype-nulls-lazy-only": Case(
        f"{XR}DatasetIOBase::test_roundtrip_stringdtype_nulls (dask)",
        lazy(string_nulls, 1),
        outcome=EAGER,
        reason="upstream raises 'Attempting to execute a write with dask but no dask arrays "
        "were detected' when its encoder computed every dask variable",
    ),
    "stringdtype-with-na-object": Case(
        f"{XR}DatasetIOBase::test_roundtrip_stringdtype_with_na_object",
        lambda: strings(np.dtypes.StringDType(na_object="")),
    ),
    "string-encoded-characters": Case(
        f"{XR}DatasetIOBase::test_roundtrip_string_encoded_characters",
        encoded_chars(strings),
    ),
    "string-encoded-characters-ascii": Case(
        f"{XR}DatasetIOBase::test_roundtrip_string_encoded_characters (_Encoding ascii)",
        encoded_chars(strings, _Encoding="ascii"),
    ),
    "string-encoded-characters-lazy": Case(
        f"{XR}DatasetIOBase::test_roundtrip_string_encoded_characters (dask, with another "
        "dask variable)",
        with_lazy_float(encoded_chars(lambda: strings().chunk(1))),
    ),
    "numpy-datetime-data": Case(
        f"{XR}DatasetIOBase::test_roundtrip_numpy_datetime_data",
        datetimes,
        {"encoding": {"t0": {"units": "days since 1950-01-01"}}},
    ),
    "timedelta-data": Case(f"{XR}DatasetIOBase::test_roundtrip_timedelta_data", timedeltas),
    "timedelta-data-via-dtype": Case(
        f"{XR}DatasetIOBase::test_roundtrip_timedelta_data_via_dtype[ms]",
        lambda: timedeltas("ms", encoded=False),
    ),
    "float64-data": Case(
        f"{XR}DatasetIOBase::test_roundtrip_float64_data",
        lambda: xr.Dataset({"x": ("y", np.array([1.0, 2.0, np.pi], dtype="float64"))}),
    ),
    "coordinates": Case(
        f"{XR}DatasetIOBase::test_roundtrip_coordinates, test_roundtrip_global_coordinates",
        coordinates,
    ),
    "coordinates-encoded": Case(
        f"{XR}DatasetIOBase::test_roundtrip_coordinates (encoding coordinates='y')",
        lambda: coordinates({"coordinates": "y"}),
    ),
    "coordinates-with-space": Case(
        f"{XR}DatasetIOBase::test_roundtrip_coordinates_with_space",
        lambda: xr.Dataset(coords={"x": 0, "y z": 1}),
    ),
    "boolean": Case(f"{XR}ZarrBase::test_roundtrip_boolean_dtype", create_boolean_data),
    "boolean-lazy": Case(
        f"{XR}ZarrBase::test_roundtrip_boolean_dtype (dask)", lazy(create_boolean_data, 1)
    ),
    "pickle": Case(
        f"{XR}DatasetIOBase::test_pickle, test_pickle_dataarray; "
        f"{IC}run_xarray_backends_tests.py::IcechunkStoreBase::test_pickle",
        lambda: xr.Dataset({"foo": ("x", [42])}),
    ),
    "dataset-caching": Case(
        f"{XR}DatasetIOBase::test_dataset_caching",
        lambda: xr.Dataset({"foo": ("x", [5, 6, 7])}),
    ),
    # ---------------------------------------------------------------- CFEncodedBase
    "bytes-with-fill-value-s1": Case(
        f"{XR}CFEncodedBase::test_roundtrip_bytes_with_fill_value (xfail for Zarr)",
        lambda: bytes_fill({"_FillValue": b"X", "dtype": "S1"}),
    ),
    "bytes-with-fill-value-empty": Case(
        f"{XR}CFEncodedBase::test_roundtrip_bytes_with_fill_value (_FillValue b'')",
        lambda: bytes_fill({"_FillValue": b""}),
    ),
    "bytes-fill-attribute": Case(
        f"{XR}CFEncodedBase::test_roundtrip_bytes_with_fill_value (fixed width, _FillValue "
        "in attrs: issue 21)",
        bytes_fill_attr,
    ),
    "bytes-fill-attribute-lazy": Case(
        f"{XR}CFEncodedBase::test_roundtrip_bytes_with_fill_value (dask)",
        lazy(bytes_fill_attr, 2),
    ),
    "string-with-fill-value-nchar": Case(
        f"{XR}CFEncodedBase::test_roundtrip_string_with_fill_value_nchar",
        lambda: xr.Dataset(
            {
                "x": (
                    "t",
                    np.array(["ab", "cdef", np.nan], dtype=object),
                    {},
                    {"dtype": "S1", "_FillValue": b"X"},
                )
            }
        ),
        outcome=REFUSED,
        match=r"NotImplementedError",
    ),
    "empty-vlen-string-array": Case(
        f"{XR}CFEncodedBase::test_roundtrip_empty_vlen_string_array",
        lambda: xr.Dataset({"a": np.array([], dtype=create_vlen_dtype(str))}),
        outcome=STRICTER,
        match=r"zero-length dimensions",
        reason="a dataset with a zero-length dimension holds nothing to write: in a "
        "scheduled pipeline it is an empty selection, refused before anything is touched",
    ),
    "endian": Case(f"{XR}CFEncodedBase::test_roundtrip_endian", endian),
    "endian-lazy": Case(f"{XR}CFEncodedBase::test_roundtrip_endian (dask)", lazy(endian, 4)),
    "cf-dataset": Case(
        f"{XR}CFEncodedBase::test_coordinate_variables_after_dataset_roundtrip, "
        "test_grid_mapping_and_bounds_are_not_coordinates_in_file",
        cf_dataset,
    ),
    "cf-dataarray": Case(
        f"{XR}CFEncodedBase::test_grid_mapping_and_bounds_are_coordinates_after_dataarray_"
        "roundtrip",
        lambda: cf_dataset()["variable"].to_dataset(),
    ),
    "coordinates-encoding": Case(f"{XR}CFEncodedBase::test_coordinates_encoding", lat_lon),
    "coordinates-encoding-lat": Case(
        f"{XR}CFEncodedBase::test_coordinates_encoding (encoding coordinates='lat')",
        lambda: lat_lon({"coordinates": "lat"}),
    ),
    "coordinates-encoding-coords-only": Case(
        f"{XR}CFEncodedBase::test_coordinates_encoding (coordinates only)",
        lambda: lat_lon().drop_vars(["temp", "precip"]),
    ),
    "encoding-kwarg": Case(
        f"{XR}CFEncodedBase::test_encoding_kwarg", y_floats, {"encoding": {"x": {"dtype": "f4"}}}
    ),
    "encoding-kwarg-unexpected": Case(
        f"{XR}CFEncodedBase::test_encoding_kwarg (unexpected key)",
        y_floats,
        {"encoding": {"x": {"foo": "bar"}}},
        outcome=REFUSED,
        match=r"unexpected encoding",
    ),
    "encoding-kwarg-not-a-dict": Case(
        f"{XR}CFEncodedBase::test_encoding_kwarg (encoding={{'x': 'foo'}}: issue 21)",
        y_floats,
        {"encoding": {"x": "foo"}},
        outcome=REFUSED,
        match=r"must be castable to a dictionary",
    ),
    "encoding-kwarg-invalid-variable": Case(
        f"{XR}CFEncodedBase::test_encoding_kwarg (unknown variable)",
        y_floats,
        {"encoding": {"invalid": {}}},
        outcome=REFUSED,
        match=r"encoding names variable\(s\) \['invalid'\]",
    ),
    "encoding-kwarg-dates": Case(
        f"{XR}CFEncodedBase::test_encoding_kwarg_dates",
        lambda: xr.Dataset({"t": pd.date_range("2000-01-01", periods=3, unit="ns")}),
        {"encoding": {"t": {"units": "days since 1900-01-01"}}},
    ),
    "encoding-kwarg-fixed-width-bytes": Case(
        f"{XR}CFEncodedBase::test_encoding_kwarg_fixed_width_string (bytes)",
        lambda: xr.Dataset({"x": [b"foo", b"bar", b"baz"]}),
        {"encoding": {"x": {"dtype": "S1"}}},
    ),
    "encoding-kwarg-fixed-width-str": Case(
        f"{XR}CFEncodedBase::test_encoding_kwarg_fixed_width_string (str)",
        lambda: xr.Dataset({"x": ["foo", "bar", "baz"]}),
        {"encoding": {"x": {"dtype": "S1"}}},
    ),
    "default-fill-value-f4": Case(
        f"{XR}CFEncodedBase::test_default_fill_value (f4)",
        y_floats,
        {"encoding": {"x": {"dtype": "f4"}}},
    ),
    "default-fill-value-int16": Case(
        f"{XR}CFEncodedBase::test_default_fill_value (int16 from floats)",
        y_floats,
        {"encoding": {"x": {"dtype": "int16"}}},
    ),
    "default-fill-value-implicit-int": Case(
        f"{XR}CFEncodedBase::test_default_fill_value (implicit int16)",
        lambda: xr.Dataset({"x": ("y", np.arange(10, dtype="int16"))}),
    ),
    "omit-fill-value": Case(
        f"{XR}CFEncodedBase::test_explicitly_omit_fill_value", lambda: pi(_FillValue=None)
    ),
    "omit-fill-value-kwarg": Case(
        f"{XR}CFEncodedBase::test_explicitly_omit_fill_value_via_encoding_kwarg",
        pi,
        {"encoding": {"x": {"_FillValue": None}}},
    ),
    "omit-fill-value-coord": Case(
        f"{XR}CFEncodedBase::test_explicitly_omit_fill_value_in_coord",
        lambda: pi({"_FillValue": None}),
    ),
    "omit-fill-value-coord-kwarg": Case(
        f"{XR}CFEncodedBase::test_explicitly_omit_fill_value_in_coord_via_encoding_kwarg",
        pi,
        {"encoding": {"y": {"_FillValue": None}}},
    ),
    "encoding-same-dtype": Case(
        f"{XR}CFEncodedBase::test_encoding_same_dtype",
        lambda: xr.Dataset({"x": ("y", np.arange(10.0, dtype="f4"))}),
        {"encoding": {"x": {"dtype": "f4"}}},
    ),
    "append-write": Case(
        f"{XR}CFEncodedBase::test_append_write, ZarrBase::test_append_write (the last of the "
        "variables, written one by one with mode 'a')",
        lambda: sample_data()[["var3"]],
        {"mode": "a"},
        setup=(
            up(lambda: sample_data()[["var1"]], mode="w"),
            up(lambda: sample_data()[["var2"]], mode="a"),
        ),
    ),
    "append-overwrite-values": Case(
        f"{XR}CFEncodedBase::test_append_overwrite_values",
        lambda: (
            sample_data()
            .assign(var2=lambda d: d.var2 * 0 - 999)
            .assign(var9=lambda d: d.var2 * 3)[["var2", "var9"]]
        ),
        {"mode": "a"},
        setup=(up(sample_data, mode="w"),),
    ),
    "append-with-invalid-dim": Case(
        f"{XR}CFEncodedBase::test_append_with_invalid_dim_raises",
        lambda: sample_data().assign(var9=lambda d: d.var2 * 3).isel(dim1=slice(2, 6)),
        {"mode": "a"},
        outcome=REFUSED,
        error=SchemaMismatchError,
        match=r"4 positions along 'dim1' but the stored array has 8",
        setup=(up(sample_data, mode="w"),),
    ),
    "multiindex": Case(
        f"{XR}CFEncodedBase::test_multiindex_not_implemented",
        multiindex,
        outcome=REFUSED,
        match=r"MultiIndex",
    ),
    "multiindex-reset": Case(
        f"{XR}CFEncodedBase::test_multiindex_not_implemented (reset_index)",
        lambda: multiindex().reset_index("x"),
    ),
    "string-object-warning": Case(
        f"{XR}CFEncodedBase::test_string_object_warning",
        lambda: xr.Dataset({"x": (["y"], np.array(["foo", "bar"], dtype=object))}).chunk(),
        outcome=EAGER,
        reason="upstream raises 'no dask arrays were detected' when its encoder computed "
        "every dask variable (object strings are computed to be encoded)",
    ),
    "string-object-lazy": Case(
        f"{XR}CFEncodedBase::test_string_object_warning (with another dask variable)",
        with_lazy_float(
            lambda: xr.Dataset({"x": (["y"], np.array(["foo", "bar"], dtype=object))}).chunk()
        ),
    ),
    "indexing-roundtrip": Case(f"{XR}CFEncodedBase::test_indexing_roundtrip", mixed_strings),
    "indexing-roundtrip-selected": Case(
        f"{XR}CFEncodedBase::test_indexing_roundtrip (y=[1])",
        lambda: mixed_strings().isel(y=[1]),
    ),
    # ---------------------------------------------------------------- ZarrBase
    "uneven-dask-chunks": Case(
        f"{XR}ZarrBase::test_write_uneven_dask_chunks",
        lambda: sample_data().chunk({"dim1": 3, "dim2": 4, "dim3": 3}),
    ),
    "chunk-encoding": Case(
        f"{XR}ZarrBase::test_chunk_encoding", with_encoding(sample_data, "var2", chunks=(5, 5))
    ),
    "chunk-encoding-not-integer": Case(
        f"{XR}ZarrBase::test_chunk_encoding (chunks (5, 4.5))",
        with_encoding(sample_data, "var2", chunks=(5, 4.5)),
        outcome=REFUSED,
    ),
    "shard-encoding": Case(
        f"{XR}ZarrBase::test_shard_encoding",
        with_encoding(sample_data, "var2", chunks=(1, 1), shards=(5, 5)),
    ),
    "shard-encoding-not-divisible": Case(
        f"{XR}ZarrBase::test_shard_encoding (shards not divisible by chunks)",
        with_encoding(sample_data, "var2", chunks=(2, 2), shards=(5, 5)),
        outcome=REFUSED,
    ),
    "shard-encoding-dask-equal": Case(
        f"{XR}ZarrBase::test_shard_encoding_with_dask (case 1)",
        var1(6, chunks=(3,), shards=(6,)),
    ),
    "shard-encoding-dask-multiple": Case(
        f"{XR}ZarrBase::test_shard_encoding_with_dask (case 2)",
        var1(6, chunks=(1,), shards=(3,)),
    ),
    "shard-encoding-dask-smaller": Case(
        f"{XR}ZarrBase::test_shard_encoding_with_dask (case 3)",
        var1(3, chunks=(2,), shards=(4,)),
        outcome=REFUSED,
        error=ChunkAlignmentError,
        match=r"dask chunks \(3, 3, 3, 3\)",
    ),
    "shard-encoding-dask-unsafe": Case(
        f"{XR}ZarrBase::test_shard_encoding_with_dask (case 4, safe_chunks=False)",
        var1(3, chunks=(2,), shards=(4,)),
        {"safe_chunks": False},
        outcome=CORRECT,
        reason="with safe_chunks=False two dask tasks write one shard from two forks; one "
        "write is lost at the merge (the flow's partitions are shard-aligned)",
    ),
    "chunk-encoding-dask": Case(f"{XR}ZarrBase::test_chunk_encoding_with_dask", var1(4)),
    "chunk-encoding-dask-irregular": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (irregular dask chunks)",
        var1((5, 4, 3)),
        outcome=REFUSED,
        match=r"uniform chunk sizes",
    ),
    "chunk-encoding-dask-clash": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (encoding chunks 6, dask chunks 4)",
        var1(4, chunks=(6,)),
        outcome=REFUSED,
        error=ChunkAlignmentError,
    ),
    "chunk-encoding-dask-clash-unsafe": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (safe_chunks=False)",
        var1(4, chunks=(6,)),
        {"safe_chunks": False},
        outcome=CORRECT,
        reason="with safe_chunks=False two dask tasks write one chunk from two forks; one "
        "write is lost at the merge (the flow's partitions are chunk-aligned)",
    ),
    "chunk-encoding-dask-multiple": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (dask 4, zarr 2)", var1(4, chunks=(2,))
    ),
    "chunk-encoding-dask-last-larger": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (3, 3, 6)", var1((3, 3, 6), chunks=(3,))
    ),
    "chunk-encoding-dask-middle-larger": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (3, 6, 3)", var1((3, 6, 3), chunks=(3,))
    ),
    "chunk-encoding-dask-last-irregular": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (5, 5, 2)", var1((5, 5, 2))
    ),
    "chunk-encoding-dask-unaligned": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (3, 5, 3, 1)",
        var1((3, 5, 3, 1), chunks=(3,)),
        outcome=REFUSED,
        error=ChunkAlignmentError,
    ),
    "chunk-encoding-dask-int": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (encoding chunks=4)", var1(4, chunks=4)
    ),
    "chunk-encoding-dask-overlap": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_dask (encoding chunks=5)",
        var1(4, chunks=5),
        outcome=REFUSED,
        error=ChunkAlignmentError,
    ),
    "persistence-w-group": Case(
        f"{XR}ZarrBase::test_write_persistence_modes[group1] (mode 'w')",
        sample_data,
        {"mode": "w", "group": "group1"},
    ),
    "persistence-w--group": Case(
        f"{XR}ZarrBase::test_write_persistence_modes[group1] (mode 'w-')",
        sample_data,
        {"mode": "w-", "group": "group1"},
    ),
    "persistence-a-group": Case(
        f"{XR}ZarrBase::test_write_persistence_modes[group1] (mode 'a')",
        sample_data,
        {"mode": "a", "group": "group1"},
    ),
    "persistence-overwrite": Case(
        f"{XR}ZarrBase::test_write_persistence_modes[None] (overwrite)",
        sample_data,
        {"mode": "w"},
        setup=(up(sample_data),),
    ),
    "persistence-w--existing": Case(
        f"{XR}ZarrBase::test_write_persistence_modes[None] (mode 'w-' over a store)",
        sample_data,
        {"mode": "w-"},
        outcome=REFUSED,
        error=ConfigurationError,
        match=r"already holds arrays",
        setup=(up(sample_data),),
    ),
    "persistence-append-group": Case(
        f"{XR}ZarrBase::test_write_persistence_modes[group1] (append_dim='time')",
        TO_APPEND,
        {"append_dim": "time", "group": "group1"},
        setup=(up(APPEND, mode="w", group="group1"),),
    ),
    "compressor-encoding": Case(
        f"{XR}ZarrBase::test_compressor_encoding",
        sample_data,
        {
            "encoding": {
                "var1": {
                    "serializer": codecs.BytesCodec(endian="little"),
                    "compressors": (
                        codecs.BloscCodec(
                            cname="zstd", clevel=3, shuffle="shuffle", typesize=8, blocksize=0
                        ),
                    ),
                }
            }
        },
    ),
    "group": Case(f"{XR}ZarrBase::test_group", sample_data, {"group": "some/random/path"}),
    "mode-w-overwrites-encoding": Case(
        f"{XR}ZarrBase::test_zarr_mode_w_overwrites_encoding",
        lambda: xr.Dataset({"foo": ("x", [1.0, 1.0, 1.0])}),
        {"mode": "w", "encoding": {"foo": {"add_offset": 0}}},
        setup=(
            up(
                lambda: xr.Dataset({"foo": ("x", [1.0, 1.0, 1.0])}),
                encoding={"foo": {"add_offset": 1}},
            ),
        ),
    ),
    "append-mode-rplus": Case(
        f"{XR}ZarrBase::test_append_with_mode_rplus_success",
        lambda: xr.Dataset({"foo": ("x", [2])}),
        {"mode": "r+"},
        setup=(up(lambda: xr.Dataset({"foo": ("x", [1])})),),
    ),
    "append-mode-rplus-new-variable": Case(
        f"{XR}ZarrBase::test_append_with_mode_rplus_fails",
        lambda: xr.Dataset({"bar": ("x", [2])}),
        {"mode": "r+"},
        outcome=REFUSED,
        error=SchemaMismatchError,
        match=r"Variables \['bar'\] do not exist",
        setup=(up(lambda: xr.Dataset({"foo": ("x", [1])})),),
    ),
    "append-invalid-dim": Case(
        f"{XR}ZarrBase::test_append_with_invalid_dim_raises",
        TO_APPEND,
        {"append_dim": "notvalid"},
        outcome=REFUSED,
        match=r"append_dim 'notvalid' is not a dimension",
        setup=(up(APPEND, mode="w"),),
    ),
    "append-no-dims": Case(
        f"{XR}ZarrBase::test_append_with_no_dims_raises",
        lambda: xr.Dataset({"foo": ("y", [2])}),
        {"mode": "a"},
        outcome=REFUSED,
        error=SchemaMismatchError,
        match=r"dimensions \('y',\) but the stored array has \('x',\)",
        setup=(up(lambda: xr.Dataset({"foo": ("x", [1])}), mode="w"),),
    ),
    "append-dim-not-set": Case(
        f"{XR}ZarrBase::test_append_with_append_dim_not_set_raises",
        TO_APPEND,
        {"mode": "a"},
        outcome=REFUSED,
        error=SchemaMismatchError,
        match=r"2 positions along 'time' but the stored array has 3",
        setup=(up(APPEND, mode="w"),),
    ),
    "append-mode-not-a": Case(
        f"{XR}ZarrBase::test_append_with_mode_not_a_raises",
        TO_APPEND,
        {"mode": "w", "append_dim": "time"},
        outcome=REFUSED,
        match=r"append_dim needs mode 'a' or 'a-'",
        setup=(up(APPEND, mode="w"),),
    ),
    "append-existing-encoding": Case(
        f"{XR}ZarrBase::test_append_with_existing_encoding_raises",
        TO_APPEND,
        {"append_dim": "time", "encoding": {"da": {"compressors": None}}},
        outcome=REFUSED,
        match=r"encoding is given for \['da'\], which already exist",
        setup=(up(APPEND, mode="w"),),
    ),
    **{
        f"append-string-length-mismatch-{kind.lower()}": Case(
            f"{XR}ZarrBase::test_append_string_length_mismatch_raises[{kind}]",
            (lambda kind=kind: mismatched_strings(kind)[1]),
            {"append_dim": "time"},
            outcome=REFUSED,
            match=r"Mismatched dtypes",
            setup=(up(lambda kind=kind: mismatched_strings(kind)[0], mode="w"),),
        )
        for kind in ("U", "S")
    },
    "append-encoding-consistent": Case(
        f"{XR}ZarrBase::test_check_encoding_is_consistent_after_append",
        TO_APPEND,
        {"append_dim": "time"},
        setup=(up(APPEND, mode="w", encoding={"da": {"compressors": (codecs.BloscCodec(),)}}),),
    ),
    "append-new-variable": Case(
        f"{XR}ZarrBase::test_append_with_new_variable",
        NEW_VAR,
        {"mode": "a"},
        setup=(up(lambda: xr.concat([APPEND(), TO_APPEND()], dim="time"), mode="w"),),
    ),
    "append-object-strings-with-nan": Case(
        f"{XR}DatasetIOBase::test_roundtrip_object_dtype (strings_nans appended along 'b')",
        lambda: xr.Dataset({"s": ("b", np.array(["c", np.nan], dtype=object))}, {"b": [2, 3]}),
        {"append_dim": "b"},
        outcome=CORRECT,
        setup=(
            up(lambda: xr.Dataset({"s": ("b", np.array(["a", "b"], dtype=object))}, {"b": [0, 1]})),
        ),
        expected=lambda: xr.Dataset(
            {"s": ("b", np.array(["a", "b", "c", ""]))}, {"b": [0, 1, 2, 3]}
        ),
        reason="upstream stores a missing string appended to an existing array as the text "
        "'nan' (it encodes with the stored dtype first); the flow stores '', as both do when "
        "they create the array",
    ),
    "append-a-minus-no-overwrite": Case(
        f"{XR}ZarrBase::test_append_with_append_dim_no_overwrite (mode 'a-': issue 21)",
        lon_overwritten,
        {"mode": "a-", "append_dim": "time"},
        setup=(up(APPEND, mode="w"),),
    ),
    "append-a-overwrites-other-variables": Case(
        f"{XR}ZarrBase::test_append_with_append_dim_no_overwrite (mode 'a')",
        lon_overwritten,
        {"append_dim": "time"},
        outcome=STRICTER,
        error=SchemaMismatchError,
        match=r"'lon' does not extend along \['time'\] and differs from the stored values",
        setup=(up(APPEND, mode="w"),),
        reason="an append whose variables without append_dim differ from the stored ones "
        "overwrites them for every earlier step",
    ),
    "compute-false-roundtrip": Case(
        f"{XR}ZarrBase::test_to_zarr_compute_false_roundtrip", lazy(sample_data)
    ),
    "append-compute-false": Case(
        f"{XR}ZarrBase::test_to_zarr_append_compute_false_roundtrip",
        with_encoding(lazy(TO_APPEND), "da"),
        {"append_dim": "time"},
        setup=(up(lambda: APPEND().compute(), mode="w"),),
    ),
    "save-emptydim": Case(
        f"{XR}ZarrBase::test_save_emptydim",
        lambda: xr.Dataset({"x": (("a", "b"), np.empty((5, 0))), "y": ("a", [1, 2, 5, 8, 9])}),
        outcome=STRICTER,
        match=r"zero-length dimensions",
        reason="a dataset with a zero-length dimension holds nothing to write",
    ),
    "write-region": Case(
        f"{XR}ZarrBase::test_write_region[use_dask=False] (one of its region writes); "
        f"{IC}run_xarray_backends_tests.py::IcechunkStoreBase::test_write_region",
        u_nonzeros(slice(2, 4)),
        {"region": {"x": slice(2, 4)}},
        setup=(up(u_zeros, encoding={"u": {"chunks": 2}}),),
    ),
    "write-region-dask": Case(
        f"{XR}ZarrBase::test_write_region[use_dask=True]",
        u_nonzeros(slice(2, 4), chunk=2),
        {"region": {"x": slice(2, 4)}},
        setup=(up(lambda: u_zeros().chunk(2), encoding={"u": {"chunks": 2}}),),
    ),
    "region-scalar": Case(
        f"{XR}ZarrBase::test_region_scalar (region={{}}: issue 21)",
        lambda: xr.Dataset({"x": 0}),
        {"region": {}, "mode": "r+"},
        setup=(up(lambda: xr.Dataset({"x": 0})),),
    ),
    "write-region-mode-none": Case(
        f"{XR}ZarrBase::test_write_region_mode[None]",
        u_nonzeros(slice(5, 10)),
        {"region": {"x": slice(5, 10)}},
        setup=(up(u_zeros),),
    ),
    "write-region-mode-r+": Case(
        f"{XR}ZarrBase::test_write_region_mode[r+]",
        u_nonzeros(slice(None, 5)),
        {"region": {"x": slice(None, 5)}, "mode": "r+"},
        setup=(up(u_zeros),),
    ),
    "write-region-mode-a": Case(
        f"{XR}ZarrBase::test_write_region_mode[a]",
        u_nonzeros(slice(5, 10)),
        {"region": {"x": slice(5, 10)}, "mode": "a"},
        setup=(up(u_zeros),),
    ),
    "override-metadata-mode-a": Case(
        f"{XR}ZarrBase::test_write_preexisting_override_metadata (mode 'a')",
        override("modified", "modified"),
        {"mode": "a"},
        setup=(metadata_only(override("original", "original")),),
    ),
    "override-metadata-mode-r+": Case(
        f"{XR}ZarrBase::test_write_preexisting_override_metadata (mode 'r+')",
        override("modified", "modified"),
        {"mode": "r+"},
        setup=(metadata_only(override("original", "original")),),
    ),
    "override-metadata-region": Case(
        f"{XR}ZarrBase::test_write_preexisting_override_metadata (region)",
        override("modified", "modified"),
        {"region": {"x": slice(None)}},
        setup=(metadata_only(override("original", "original")),),
    ),
    "region-errors-base": Case(
        f"{XR}ZarrBase::test_write_region_errors (the base case)",
        U2,
        {"region": {"x": slice(2)}},
        setup=(up(U5),),
    ),
    **{
        f"region-errors-{label}": Case(
            f"{XR}ZarrBase::test_write_region_errors ({what})",
            make,
            kwargs,
            outcome=REFUSED,
            error=error,
            match=match,
            setup=(up(U5),),
        )
        for label, what, make, kwargs, error, match in [
            (
                "mode-w",
                "mode 'w'",
                U5,
                {"region": {"x": slice(None)}, "mode": "w"},
                InputValidationError,
                r"region needs mode 'r\+' or 'a'",
            ),
            (
                "not-a-dict",
                "region=slice(None): issue 21",
                U5,
                {"region": slice(None)},
                RegionError,
                r"region must be a dict",
            ),
            ("not-slices", "a list", U2, {"region": {"x": [0, 1]}}, RegionError, r"give a slice"),
            ("step", "a step", U2, {"region": {"x": slice(None, None, 2)}}, RegionError, r"step 2"),
            (
                "unknown-dim",
                "a dimension the dataset lacks",
                U5,
                {"region": {"y": slice(None)}},
                RegionError,
                r"no dimension of the region \['y'\]",
            ),
            (
                "variable-off-region",
                "a variable without a region dimension",
                lambda: U2().assign(v=2),
                {"region": {"x": slice(2)}},
                RegionError,
                r"Variables \['v'\] have no dimension of the region",
            ),
            (
                "append-dim",
                "append_dim and region",
                U5,
                {"region": {"x": slice(None)}, "append_dim": "x"},
                InputValidationError,
                r"append_dim and region cannot be used together",
            ),
            (
                "size",
                "region size differs",
                U2,
                {"region": {"x": slice(3)}},
                RegionError,
                r"holds 3 positions but the dataset has 2",
            ),
        ]
    },
    "encoding-chunksizes": Case(
        f"{XR}ZarrBase::test_encoding_chunksizes",
        lambda: xr.Dataset(
            {"v": (("x", "y", "t"), np.zeros((4, 4, 5)))},
            coords={"x": np.arange(4), "y": np.arange(4), "t": np.arange(5)},
        ).chunk({"t": 1, "x": 2, "y": 2}),
    ),
    "partial-dask-chunks": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_partial_dask_chunks",
        lambda: xr.Dataset(
            {"x": xr.DataArray(np.random.default_rng(0).random((6, 8)), dims=("a", "b"))}
        ).chunk({"a": 3}),
        {"encoding": {"x": {"chunks": [3, 2]}}},
    ),
    "larger-dask-chunks": Case(
        f"{XR}ZarrBase::test_chunk_encoding_with_larger_dask_chunks",
        lambda: xr.Dataset({"a": ("x", [1, 2, 3, 4])}).chunk({"x": 2}),
        {"encoding": {"a": {"chunks": [1]}}},
    ),
    "write-read-select-write": Case(
        f"{XR}ZarrBase::test_write_read_select_write",
        lambda: (
            sample_data()
            .pipe(lambda d: d.where(d.coords["dim3"] == "a", drop=True))
            .squeeze("dim3")
        ),
    ),
    "attributes-good": Case(
        f"{XR}ZarrBase::test_attributes[Dataset]",
        lambda: xr.Dataset(attrs={"good": {"key": "value"}}).assign(x=("x", [1])),
    ),
    "attributes-dataarray": Case(
        f"{XR}ZarrBase::test_attributes[DataArray]",
        lambda: xr.DataArray(name="foo", attrs={"good": {"key": "value"}}).to_dataset(),
    ),
    "attributes-bad": Case(
        f"{XR}ZarrBase::test_attributes (a DataArray as an attribute)",
        lambda: xr.Dataset(attrs={"bad": xr.DataArray()}).assign(x=("x", [1])),
        outcome=REFUSED,
        match=r"Invalid attribute in Dataset.attrs",
    ),
    "chunked-datetime64": Case(
        f"{XR}ZarrBase::test_chunked_datetime64_or_timedelta64[datetime64[ns]]",
        lambda: sample_data().astype("datetime64[ns]").chunk(1),
    ),
    "chunked-timedelta64": Case(
        f"{XR}ZarrBase::test_chunked_datetime64_or_timedelta64[timedelta64[ns]]",
        lambda: sample_data().astype("timedelta64[ns]").chunk(1),
    ),
    "fill-value-setting": Case(
        f"{XR}ZarrBase::test_zarr_fill_value_setting[int] (the data written)",
        lambda: xr.Dataset({"foo": ("x", da.from_array(np.array([0, 0, 0]), chunks=chunks_of(3)))}),
        {"encoding": {"foo": {"fill_value": -1}}},
    ),
    "fill-value-in-encoding": Case(
        f"{XR}ZarrBase::test_zarr_fill_value_in_encoding_on_read",
        with_encoding(lambda: xr.Dataset({"foo": ("x", [1, 2, 3])}), "foo", fill_value=-99),
    ),
    # ------------------------------------------------------- mask and scale (CFEncodedBase)
    **{
        f"mask-and-scale-{label}-{form}{'-lazy' if chunked else ''}": Case(
            f"{XR}ZarrBase::test_roundtrip_mask_and_scale[float64-{fn.__name__}] ({form}"
            f"{', dask' if chunked else ''}{'; issue 21' if form == 'encoded' else ''})",
            lazy(partial_dtype(fn), 2) if chunked else partial_dtype(fn),
        )
        for label, decoded, encoded in [
            (
                "unsigned",
                create_unsigned_masked_scaled_data,
                create_encoded_unsigned_masked_scaled_data,
            ),
            ("signed", create_signed_masked_scaled_data, create_encoded_signed_masked_scaled_data),
            ("plain", create_masked_and_scaled_data, create_encoded_masked_and_scaled_data),
        ]
        for form, fn in [("decoded", decoded), ("encoded", encoded)]
        for chunked in (False, True)
    },
    "mask-and-scale-plain-encoded-lazy-whole-graph": Case(
        f"{XR}ZarrBase::test_roundtrip_mask_and_scale[float64-create_encoded_masked_and_"
        "scaled_data] (dask, one task for the whole graph; issue 21)",
        lazy(partial_dtype(create_encoded_masked_and_scaled_data), 2),
        flow_kwargs={"partitioned": False},
    ),
    "mask-and-scale-unsigned-false-decoded": Case(
        f"{XR}CFEncodedBase::test_roundtrip_mask_and_scale[float64-create_unsigned_false_"
        "masked_scaled_data] (issue 21)",
        partial_dtype(create_unsigned_false_masked_scaled_data),
        outcome=STRICTER,
        match=r"_FillValue=255 with _Unsigned='false' and dtype uint8 cannot be read back",
        reason="upstream writes a store xarray cannot open (OverflowError: the _FillValue "
        "does not fit the signed type _Unsigned='false' reads it as)",
    ),
    "mask-and-scale-unsigned-false-encoded": Case(
        f"{XR}CFEncodedBase::test_roundtrip_mask_and_scale[float64-create_encoded_unsigned_"
        "false_masked_scaled_data]",
        partial_dtype(create_encoded_unsigned_false_masked_scaled_data),
        outcome=STRICTER,
        match=r"_FillValue=255 with _Unsigned='false' and dtype uint8 cannot be read back",
        reason="upstream writes a store xarray cannot open (OverflowError)",
    ),
    **{
        f"unsigned-{fill_id}-{'encoded' if encoded else 'decoded'}": Case(
            f"{XR}CFEncodedBase::test_roundtrip_unsigned[{fill_id}]"
            f"{' (the encoded form)' if encoded else ''}",
            (lambda fill=fill, encoded=encoded: unsigned(fill, encoded)),
        )
        for fill_id, fill, encoded in [
            ("int8(-1)", np.int8(-1), False),
            ("uint8(255)", np.uint8(255), False),
            ("-1", -1, False),
            ("255", 255, False),
            ("-1", -1, True),
            ("255", 255, True),
        ]
    },
    # -------------------------------------------------------- invalid names (CFEncodedBase)
    **{
        f"invalid-name-{label}": Case(
            f"{XR}CFEncodedBase::test_invalid_dataarray_names_raise[{name!r}]",
            named(name),
            outcome=REFUSED,
            match=match,
        )
        for label, name, match in [
            ("0", 0, r"string or None"),
            ("tuple", (4, 5), r"string or None"),
            ("true", True, r"string or None"),
            ("empty", "", r"string must be length 1 or"),
        ]
    },
    # ---------------------------------------------------------------- TestZarrRegionAuto
    "region-auto-full": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region_auto[full-auto]; "
        f"{IC}run_xarray_backends_tests.py::TestIcechunkRegionAuto",
        lambda: 1 + GRID().isel(x=slice(2, 4), y=slice(6, 8)),
        {"region": "auto"},
        setup=(up(GRID),),
    ),
    "region-auto-mixed": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region_auto[mixed-auto]",
        lambda: 1 + GRID().isel(x=slice(2, 4), y=slice(6, 8)),
        {"region": {"x": "auto", "y": slice(6, 8)}},
        setup=(up(GRID),),
    ),
    "region-auto-noncontiguous": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region_auto_noncontiguous",
        lambda: GRID().isel(x=[0, 2, 3], y=[5, 6]),
        {"region": "auto"},
        outcome=REFUSED,
        error=RegionError,
        match=r"not contiguous",
        setup=(up(GRID),),
    ),
    "region-auto-values-not-stored": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region_auto_noncontiguous (x + 5)",
        lambda: GRID().assign_coords(x=GRID().x + 5),
        {"region": "auto"},
        outcome=REFUSED,
        error=RegionError,
        match=r"not in the store's 'x'",
        setup=(up(GRID),),
    ),
    "region-index-write-dict": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region_index_write (a dict, mode 'r+')",
        lambda: 1 + GRID().isel(x=slice(2, 4), y=slice(6, 8)),
        {"region": {"x": slice(2, 4), "y": slice(6, 8)}, "mode": "r+"},
        setup=(up(GRID),),
    ),
    "region-index-write-auto": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region_index_write ('auto', mode 'r+')",
        lambda: 1 + GRID().isel(x=slice(2, 4), y=slice(6, 8)),
        {"region": "auto", "mode": "r+"},
        setup=(up(GRID),),
    ),
    "region-append": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region_append",
        lambda: xr.Dataset(
            {
                "test": xr.DataArray(
                    np.ones((3, 10)),
                    dims=("x", "y"),
                    coords={"x": np.arange(40, 70, 10), "y": GRID().y},
                )
            }
        ),
        {"mode": "a", "append_dim": "x", "region": "auto"},
        outcome=REFUSED,
        match=r"would duplicate 1 value\(s\) already in the store",
        setup=(up(GRID),),
    ),
    "region-transposed": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region (a transposed region)",
        lambda: 1 + GRID().transpose("y", "x").isel(x=[0], y=[0]),
        {"region": {"x": slice(0, 1), "y": slice(0, 1)}},
        outcome=STRICTER,
        error=SchemaMismatchError,
        match=r"dimensions \('y', 'x'\) but the stored array has \('x', 'y'\)",
        setup=(up(GRID),),
        reason="a variable whose dimensions are in another order than the stored array's "
        "is transposed silently",
    ),
    "region-transposed-no-region": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region (transposed, mode 'r+', no region)",
        lambda: GRID().transpose("y", "x"),
        {"mode": "r+"},
        outcome=STRICTER,
        error=SchemaMismatchError,
        match=r"dimensions \('y', 'x'\) but the stored array has \('x', 'y'\)",
        setup=(up(GRID),),
        reason="a variable whose dimensions are in another order than the stored array's "
        "is transposed silently",
    ),
    "region-auto-index-only-dimension": Case(
        f"{XR}TestZarrRegionAuto::test_zarr_region_auto (a region dimension only its index "
        "coordinate uses: issue 21)",
        lambda: xr.Dataset(
            {"a": ("time", np.ones(4))}, coords={"time": np.arange(4, 8), "x": np.arange(3)}
        ),
        {"region": "auto"},
        setup=(
            up(
                lambda: xr.Dataset(
                    {"a": ("time", np.zeros(8))},
                    coords={"time": np.arange(8), "x": np.arange(3)},
                )
            ),
        ),
    ),
    # ---------------------------------------------------------------- TestValidateAttrs
    **{
        f"attrs-{where}-{label}": Case(
            f"{XR}TestValidateAttrs::test_validating_attrs ({where} attrs[{key!r}] = {label})",
            attrs_on(where, key, value),
            outcome=outcome,
            match=match,
        )
        for where in ("dataset", "data")
        for label, key, value, outcome, match in [
            ("int-key", 123, "test", SAME if where != "dataset" else REFUSED, r"Invalid attr"),
            ("empty-key", "", "test", SAME, ""),
            ("dict", "test", {"a": 5}, SAME, ""),
            ("object", "test", MiscObject(), REFUSED, r"Invalid attribute|not JSON"),
            ("list", "test", [1, 2, 3, 4], SAME, ""),
            ("array", "test", np.arange(5), SAME, ""),
        ]
    },
    # ---------------------------------------------------------------- Icechunk's tests
    "ic-xarray-to-icechunk": Case(
        f"{IC}test_xarray.py::test_xarray_to_icechunk", lambda: create_test_data(seed=0)
    ),
    "ic-repeated-serial": Case(
        f"{IC}test_xarray.py::test_repeated_to_icechunk_serial",
        lambda: create_test_data(seed=0),
        {"mode": "w"},
        setup=(up(lambda: create_test_data(seed=0)),),
    ),
    "ic-distributed": Case(
        f"{IC}test_dask.py::test_distributed, test_dask_schedulers",
        lambda: create_test_data(seed=0).chunk(dim1=3, dim2=4),
    ),
    "ic-nested-pickling": Case(
        f"{IC}test_dask.py::test_xarray_to_icechunk_nested_pickling",
        lambda: create_test_data(seed=0, dim_sizes=(2, 3, 4)).chunk(-1),
        {"mode": "w"},
    ),
    "ic-nested-pickling-rewrite": Case(
        f"{IC}test_dask.py::test_xarray_to_icechunk_nested_pickling (ds + 1, mode 'w')",
        lambda: create_test_data(seed=0, dim_sizes=(2, 3, 4)).chunk(-1) + 1,
        {"mode": "w"},
        setup=(up(lambda: create_test_data(seed=0, dim_sizes=(2, 3, 4)).chunk(-1), mode="w"),),
    ),
    "ic-fork-session-region-auto": Case(
        f"{IC}test_dask.py::test_fork_session_deep_copies (one of its region writes)",
        lambda: (
            create_test_data(seed=0, dim_sizes=(2, 3, 4))
            .drop_encoding()
            .chunk(dim3=1)
            .isel(dim3=[1])
        ),
        {"region": "auto"},
        setup=(
            metadata_only(
                lambda: create_test_data(seed=0, dim_sizes=(2, 3, 4)).drop_encoding().chunk(dim3=1)
            ),
        ),
    ),
    "ic-distributed-append-x": Case(
        f"{IC}test_distributed_append.py::test_dask_distributed_appends (along x)",
        growing(1, 7, 2.2, {"x": 1, "y": 6}, x0=4),
        {"append_dim": "x"},
        setup=(up(growing(4, 7, 1.1, {"x": 3, "y": 6}), mode="w"),),
    ),
    "ic-distributed-append-y": Case(
        f"{IC}test_distributed_append.py::test_dask_distributed_appends (then along y)",
        growing(5, 1, 3.3, {"x": 3, "y": -1}, y0=7),
        {"append_dim": "y"},
        setup=(
            up(growing(4, 7, 1.1, {"x": 3, "y": 6}), mode="w"),
            up(growing(1, 7, 2.2, {"x": 1, "y": 6}, x0=4), append_dim="x"),
        ),
    ),
}


# ------------------------------------------------------------------ running the table


Result = PeerResult
_repo = open_repo


def _upstream(make: Maker, path: Path, **kwargs: Any) -> None:
    session = _repo(path).writable_session("main")
    upstream_to_icechunk(make(), session, **kwargs)
    session.commit("upstream")


def _prepare(root: Path, cid: str, case: Case) -> Result:
    """The starting repository (the case's setup written by upstream), copied for ours;
    then upstream's own write of the case."""
    up_path, ours = root / cid / "upstream", root / cid / "ours"
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(up_path)))
    for step in case.setup:
        session = repo.writable_session("main")
        step(session)
        session.commit("setup")
    shutil.copytree(up_path, ours)  # the same starting repository, snapshot ids included
    result = Result(up_path, ours, _repo(ours).lookup_branch("main"))
    if case.outcome == EAGER:
        result.eager = root / cid / "eager"
        shutil.copytree(up_path, result.eager)
        _upstream(lambda: case.make().compute(), result.eager, **case.kwargs)
    try:
        _upstream(case.make, up_path, **case.kwargs)
    except Exception as exc:
        result.upstream_error = exc
    return result


@pytest.fixture(scope="module")
def threads_cluster(prefect_api: str) -> Iterator[Any]:
    """This module's in-process cluster: one worker with two threads (docs/scaling.md
    suggests it), so that two partitions are written by two threads of this process at
    once."""
    from distributed import LocalCluster

    options: dict[str, Any] = {"dashboard_address": None}  # None: no dashboard
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, **options) as cluster:
        yield cluster


def _has_dask(case: Case) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return is_dask_collection(case.make())


LAZY = [cid for cid, case in CASES.items() if _has_dask(case)]
"""The cases with dask-backed input: the only ones whose writes run on the cluster (the
others are written by the flow's own steps), so the only ones the threads cluster runs."""


def _run_table(root: Path, cluster: Any, cids: list[str]) -> dict[str, Result]:
    """The cases ``cids`` written by upstream (in this process) and by the flow on
    ``cluster`` (one flow run whose body calls the flow's once per case)."""
    with warnings.catch_warnings():  # xarray's SerializationWarnings about the inputs
        warnings.simplefilter("ignore")
        out = {cid: _prepare(root, cid, CASES[cid]) for cid in cids}

    runner = IcechunkDaskTaskRunner(address=cluster.scheduler_address)

    @flow(task_runner=cast(Any, runner))
    def peer_table() -> None:
        for cid in cids:
            case = CASES[cid]
            try:
                to_icechunk.fn(
                    case.make(), str(out[cid].ours), message=cid, **case.kwargs, **case.flow_kwargs
                )
            except Exception as exc:
                out[cid].ours_error = exc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer_table()
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, dask_cluster: Any) -> dict[str, Result]:
    """Every case, the flow on the shared cluster of worker processes."""
    return _run_table(tmp_path_factory.mktemp("peer"), dask_cluster, list(CASES))


@pytest.fixture(scope="module")
def threads_results(
    tmp_path_factory: pytest.TempPathFactory, threads_cluster: Any
) -> dict[str, Result]:
    """The dask-backed cases, the flow on this module's in-process cluster of threads."""
    return _run_table(tmp_path_factory.mktemp("peer-threads"), threads_cluster, LAZY)


def _stored(path: Path, group: str | None) -> dict[str, Any]:
    """What a repository holds: the read-back (values, dtypes, encodings) or xarray's
    error reading it, the Zarr metadata of every array, and every array's values as
    Zarr reads them."""
    store = _repo(path).readonly_session("main").store
    grp = zarr.open_group(store, path=group or "", mode="r")
    out: dict[str, Any] = {"attrs": dict(grp.attrs)}
    for name, arr in grp.arrays():
        out[f"meta {name}"] = arr.metadata.to_dict()
        out[f"values {name}"] = np.asarray(arr[...])
    try:
        ds = xr.open_zarr(store, group=group, consolidated=False).load()
    except Exception as exc:
        out["read error"] = f"{type(exc).__name__}: {exc}"
        return out
    out["read"] = ds
    out["dtypes"] = {str(k): v.dtype for k, v in ds.variables.items()}
    out["encodings"] = {str(k): repr(sorted(v.encoding.items())) for k, v in ds.variables.items()}
    return out


def _assert_same(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        if key == "read":
            xr.testing.assert_identical(ours[key], value)
        elif key.startswith("values "):
            mine = ours[key]
            assert mine.dtype == value.dtype, key
            assert np.array_equal(mine, value, equal_nan=mine.dtype.kind in "fc"), key
        else:
            assert ours[key] == value, key


def _expected(case: Case) -> xr.Dataset:
    obj = case.make()
    return (obj.to_dataset() if isinstance(obj, xr.DataArray) else obj).compute()


@pytest.mark.parametrize("cid", list(CASES))
def test_peer(cid: str, results: dict[str, Result]) -> None:
    """Each case on the shared cluster of worker processes."""
    _check(cid, results[cid])


@pytest.mark.parametrize("cid", LAZY)
def test_peer_on_threads(cid: str, threads_results: dict[str, Result]) -> None:
    """Each dask-backed case on an in-process cluster of two threads."""
    _check(cid, threads_results[cid])


def _check(cid: str, res: Result) -> None:
    case = CASES[cid]
    group = case.kwargs.get("group")
    if case.outcome == REFUSED:
        assert res.upstream_error is not None, "upstream wrote it; the table expects a refusal"
    elif case.outcome == EAGER:
        assert res.upstream_error is not None, f"upstream now writes it: {case.reason}"
    else:
        assert res.upstream_error is None, f"upstream refused: {res.upstream_error!r}"
    if case.outcome in (REFUSED, STRICTER):
        assert case.reason or case.outcome == REFUSED
        err = res.ours_error
        assert err is not None, "the flow wrote it"
        assert isinstance(err, case.error), f"{type(err).__name__}: {err}"
        assert not err.retryable
        assert re.search(case.match, str(err)), str(err)
        assert _repo(res.ours).lookup_branch("main") == res.tip  # nothing was published
        return
    assert res.ours_error is None, f"the flow refused: {res.ours_error!r}"
    ours = _stored(res.ours, group)
    if case.outcome == CORRECT:
        assert case.reason
        expected = case.expected() if case.expected is not None else _expected(case)
        xr.testing.assert_identical(ours["read"], expected)
        return
    if case.outcome == EAGER:
        assert case.reason and res.eager is not None
        _assert_same(ours, _stored(res.eager, group))
        return
    _assert_same(ours, _stored(res.upstream, group))


# ------------------------------------------------------------------ real flow calls


def _retried_task_runs(flow_run_id: Any) -> list[str]:
    """Names of a flow run's task runs that were retried (an ``AwaitingRetry`` state in
    their history, as the UI shows it), once the API has recorded them all."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    task_states(flow_run_id)  # wait until the API has every task run in a final state

    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))]))
            )
            retried = []
            for run in runs:
                history = await client.read_task_run_states(run.id)
                if any(st.name in ("AwaitingRetry", "Retrying") for st in history):
                    retried.append(run.name)
            return retried

    return asyncio.run(read())


@pytest.mark.parametrize(
    "cid",
    [
        "object-dtype-lazy",
        "mask-and-scale-plain-encoded-lazy",
        "region-auto-index-only-dimension",
        "append-a-minus-no-overwrite",
        "region-scalar",
        "encoding-kwarg-not-a-dict",
        "region-errors-not-a-dict",
        "mask-and-scale-unsigned-false-decoded",
    ],
)
def test_through_flow_calls(cid: str, runner: Any, tmp_path: Path) -> None:
    """Issue 21's cases through real calls of the flow: written as upstream writes them,
    or refused with the package's error, at once (no task run retried), the branch as it
    was."""
    case = CASES[cid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _prepare(tmp_path, cid, case)
        run = to_icechunk.with_options(task_runner=runner)
        state = run(case.make(), str(res.ours), **case.kwargs, return_state=True)
    if case.outcome in (REFUSED, STRICTER):
        with pytest.raises(case.error, match=case.match):
            state.result()
        assert _retried_task_runs(state.state_details.flow_run_id) == []
        assert _repo(res.ours).lookup_branch("main") == res.tip
        return
    assert _repo(res.ours).lookup_branch("main") == state.result() != res.tip
    _assert_same(_stored(res.ours, None), _stored(res.upstream, None))


# ------------------------------------------------------------------ the race


def test_partitions_on_threads_of_one_process(threads_cluster: Any, tmp_path: Path) -> None:
    """Many partitions written at once, by the threads of one process on the in-process
    cluster: every partition's writes reach the commit, write after write (a dask
    scheduler set process-wide by one partition's thread sent another's computation to
    the cluster, and its writes were lost: the gate refused 2-3 runs in 6)."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {f"v{i}": (("t", "x"), rng.random((64, 4000))) for i in range(6)},
        coords={"t": np.arange(64)},
    ).chunk(t=2)
    runner = IcechunkDaskTaskRunner(address=threads_cluster.scheduler_address)

    @flow(task_runner=cast(Any, runner))
    def rewrites() -> list[str]:
        path = str(tmp_path / "repo")
        return [
            to_icechunk.fn(ds + i, path, mode="w", message=f"rewrite {i}", partition_size=2)
            for i in range(3)
        ]

    snapshots = rewrites()
    assert len(set(snapshots)) == 3
    back = xr.open_zarr(_repo(tmp_path / "repo").readonly_session("main").store).load()
    xr.testing.assert_identical(back, (ds + 2).compute())
