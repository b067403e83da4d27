"""What a write stores for a variable's values: the encoding xarray's one-shot write picks.

``icechunk.xarray.to_icechunk`` (like ``to_zarr``) encodes every variable once, whole: an
array it creates with the variable's own encoding (or the ``encoding`` argument's
entry), an array that already exists with the encoding read back from the store. The
write steps here create the arrays first and write the values afterwards, in
partitions; were each partition a region write of ``to_zarr``, xarray would encode it
with the encoding read back from the store, which is not what the one-shot write picks
for an array it creates (missing strings would become ``'nan'``, values already
CF-encoded in ``attrs`` would be encoded twice, ...). So the plan fixes, once, the
encoding each variable is written with (:func:`write_encodings`), and every step
encodes its block with it (:func:`encode_for_store`, xarray's own encoder) and stores
the encoded values into the Zarr array by region (:func:`write_variable`).

Encoding is element-wise once the encoding is fixed, except for object arrays, whose
type xarray infers from the whole variable: the array the metadata step created holds
that inference (its dtype), and each block is converted to it.

Example:
    ```python
    import numpy as np, xarray as xr, zarr
    from icechunk_prefect.core.encoding import encode_for_store

    var = xr.Variable("x", np.array(["a", np.nan, "c"], dtype=object))
    store = zarr.storage.MemoryStore()
    arr = zarr.create_array(store, shape=(3,), dtype=str, chunks=(3,))
    assert list(encode_for_store("s", var, {}, arr).values) == ["a", "", "c"]
    ```
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from dask.base import is_dask_collection

from icechunk_prefect.errors import InputValidationError

__all__ = [
    "VALUE_KEYS",
    "check_readable",
    "encode_for_store",
    "encodes_eagerly",
    "stored_alike",
    "stored_unchanged",
    "write_encodings",
    "write_variable",
]

VALUE_KEYS = (
    "dtype",
    "scale_factor",
    "add_offset",
    "_FillValue",
    "missing_value",
    "units",
    "calendar",
    "_Unsigned",
    "_Encoding",
)
"""The encoding keys that change the values stored (the others, such as ``chunks`` or
``compressors``, only shape the array, which the metadata step created)."""


def _values_part(encoding: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in encoding.items() if k in VALUE_KEYS}


def write_encodings(
    dataset: xr.Dataset,
    group: zarr.Group,
    names: Sequence[str],
    *,
    created: Collection[str],
    encoding: Mapping[Any, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The encoding each variable ``names`` of ``dataset`` is written with, as the
    one-shot write picks it: for an array this write ``created``, the variable's own
    encoding (or its entry in the write's ``encoding`` argument, which replaces it);
    for an array that existed, the encoding xarray reads back from the store.

    Only the keys that change values are kept (:data:`VALUE_KEYS`).

    Example:
        ```python
        import numpy as np, xarray as xr, zarr
        from icechunk_prefect.core.encoding import write_encodings

        ds = xr.Dataset({"t": ("x", np.arange(3.0), {}, {"dtype": "f4", "chunks": (3,)})})
        store = zarr.storage.MemoryStore()
        ds.to_zarr(store, compute=False, zarr_format=3, consolidated=False)
        group = zarr.open_group(store, mode="r+")
        assert write_encodings(ds, group, ["t"], created={"t"}) == {"t": {"dtype": "f4"}}
        assert write_encodings(ds, group, ["t"], created=())["t"]["dtype"] == np.float32
        ```
    """
    given = encoding or {}
    out: dict[str, dict[str, Any]] = {}
    existing = [n for n in names if n not in created]
    if existing:
        from xarray import conventions
        from xarray.backends.zarr import ZarrStore

        store = ZarrStore(group, mode="r+")
        decoded, _, _ = conventions.decode_cf_variables(
            {n: store.open_store_variable(n) for n in existing}, {}
        )
        out.update({n: _values_part(decoded[n].encoding) for n in existing})
    for name in names:
        if name in created:
            var = dataset.variables[name]
            out[name] = _values_part(given.get(name, var.encoding))
    return out


def _fill_missing_objects(var: xr.Variable, stored: np.dtype[Any]) -> xr.Variable:
    """``var`` (object dtype, in memory) with its missing values replaced as xarray's whole-variable
    inference did when it created the array of string dtype ``stored``: ``''`` in
    string arrays, ``b''`` in bytes arrays (a block on its own would infer again, and
    one holding only missing values would become floats, stored as the text ``'nan'``).
    Numeric arrays keep their NaN (xarray infers floats for them, block by block too).
    """
    if stored.kind not in "UTS":
        return var
    values = np.asarray(var.values)
    missing = pd.isnull(values)
    if not missing.any():
        return var
    values = values.copy()
    values[missing] = b"" if stored.kind == "S" else ""
    return var.copy(deep=False, data=values)


def encode_for_store(
    name: Hashable,
    var: xr.Variable,
    encoding: Mapping[str, Any],
    array: zarr.Array,
    *,
    scheduler: str | None = "threads",
) -> xr.Variable:
    """``var``'s values encoded with ``encoding`` (see :func:`write_encodings`) by
    xarray's own Zarr encoder, for the stored ``array``. Dask-backed numbers, booleans
    and times stay lazy; strings and objects, which xarray's encoder would compute on
    dask's default scheduler (on a Dask worker: the cluster), are computed first, on
    ``scheduler`` (``None``: dask's default, e.g. the cluster of a current client).

    Example:
        ```python
        import numpy as np, xarray as xr, zarr
        from icechunk_prefect.core.encoding import encode_for_store

        arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(3,), dtype="i2")
        var = xr.Variable("x", np.array([10.0, 10.5, np.nan]))
        enc = {"dtype": "i2", "scale_factor": 0.5, "add_offset": 10.0, "_FillValue": -1}
        assert list(encode_for_store("v", var, enc, arr).values) == [0, 1, -1]
        ```
    """
    from xarray.backends.zarr import encode_zarr_variable

    var = var.copy(deep=False)
    var.encoding = dict(encoding)
    if var.dtype.kind in "OSUT" and is_dask_collection(var.data):
        var = var.compute(scheduler=scheduler)
    masked = encoding.get("_FillValue") is not None or encoding.get("missing_value") is not None
    if var.dtype.kind == "O" and not masked:  # (a fill value replaces them otherwise)
        var = _fill_missing_objects(var, np.dtype(array.dtype))  # type: ignore[arg-type]
    return encode_zarr_variable(var, name=name, zarr_format=3)


def encodes_eagerly(name: Hashable, var: xr.Variable, encoding: Mapping[str, Any]) -> bool:
    """Whether xarray's encoder computes ``var`` (dask-backed) to encode it with
    ``encoding``: objects, and strings it converts (e.g. to ``dtype: "S1"``, or from a
    ``StringDType`` with a missing-value object). The one-shot write then stores them
    as in-memory arrays, whatever their dask chunks. Found by encoding a one-element
    stand-in of the same dtype (nothing of ``var`` is computed).

    Example:
        ```python
        import dask.array as da, numpy as np, xarray as xr
        from icechunk_prefect.core.encoding import encodes_eagerly

        text = xr.Variable("x", da.from_array(np.array(["ab", "c"]), chunks=1))
        assert encodes_eagerly("s", text, {"dtype": "S1"})
        assert not encodes_eagerly("s", text, {})
        ```
    """
    if var.dtype.kind == "O":
        return True
    if var.dtype.kind not in "SUT" or not is_dask_collection(var.data):
        return False
    from xarray.backends.zarr import encode_zarr_variable

    whole: Any = -1  # one dask chunk (dask's stubs type `chunks` too narrowly)
    one = da.from_array(np.zeros((1,) * var.ndim, dtype=var.dtype), chunks=whole)
    stand_in = xr.Variable(var.dims, one, dict(var.attrs), _values_part(encoding))
    try:
        encoded = encode_zarr_variable(stand_in, name=name, zarr_format=3)
    except Exception:  # refused: the metadata step said why already
        return False
    return not is_dask_collection(encoded.data)


def write_variable(
    array: zarr.Array,
    name: Hashable,
    var: xr.Variable,
    encoding: Mapping[str, Any],
    region: tuple[slice, ...],
    *,
    stream: bool,
    scheduler: str = "threads",
) -> None:
    """Encode ``var`` (:func:`encode_for_store`) and store it into ``array`` at
    ``region``, on ``scheduler`` (passed to the computation: no process-wide dask
    setting is changed). With ``stream``, each dask chunk is computed and stored by one
    thread (the chunks must line up with the array's); otherwise the block is computed
    whole, then stored.

    Example:
        ```python
        import dask.array as da, numpy as np, xarray as xr, zarr
        from icechunk_prefect.core.encoding import write_variable

        arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), chunks=(2,), dtype="f8")
        var = xr.Variable("x", da.arange(4.0, chunks=2))
        write_variable(arr, "v", var, {}, (slice(0, 4),), stream=True)
        assert list(arr[:]) == [0.0, 1.0, 2.0, 3.0]
        ```
    """
    encoded = encode_for_store(name, var, encoding, array, scheduler=scheduler)
    data: Any = encoded.data
    if is_dask_collection(data):
        if stream:
            da.store(data, array, regions=region, lock=False, scheduler=scheduler)
            return
        data = data.compute(scheduler=scheduler)
    array[region] = np.asarray(data)


def stored_alike(dtype: Any, stored: Any) -> bool:
    """Whether Zarr stores ``dtype`` as ``stored``: byte order aside (Zarr sets one), and
    text as text of any width or kind, bytes as bytes (character arrays, ``dtype: "S1"``,
    are stored as fixed-width bytes of the longest value; strings as variable-length).

    Example:
        ```python
        import numpy as np
        from icechunk_prefect.core.encoding import stored_alike

        assert stored_alike(">i2", "int16") and stored_alike("S1", "S4")
        assert stored_alike(np.dtypes.StringDType(), "<U2")
        assert not stored_alike("int64", "float64") and not stored_alike("S2", "<U2")
        ```
    """
    x, y = np.dtype(dtype), np.dtype(stored)
    text = "SUTO"  # fixed-width bytes or unicode, variable-length strings, objects
    if x.kind in text or y.kind in text:
        return x.kind in text and y.kind in text and (x.kind == "S") == (y.kind == "S")
    return x.newbyteorder("=") == y.newbyteorder("=")


def stored_unchanged(dtype: Any, stored: Any) -> bool:
    """Whether values of ``dtype`` are stored unchanged in an existing Zarr array of dtype
    ``stored``: :func:`stored_alike`, or a safe cast (ints into floats).

    Example:
        ```python
        from icechunk_prefect.core.encoding import stored_unchanged

        assert stored_unchanged(">i2", "int16") and stored_unchanged("int64", "float64")
        assert not stored_unchanged("float64", "int64")
        ```
    """
    return stored_alike(dtype, stored) or bool(
        np.can_cast(np.dtype(dtype), np.dtype(stored), casting="safe")
    )


def check_readable(name: Hashable, var: xr.Variable) -> None:
    """Refuse a variable whose stored attributes xarray could not read back: with
    ``_Unsigned: "false"`` on an unsigned type, xarray reads ``_FillValue`` (and
    ``missing_value``) as the signed type of the same size, where 255 (in 8 bits) does
    not fit (an ``OverflowError`` on every open of the store). The attributes come from
    the variable's encoding, or its ``attrs`` when its values are already encoded.

    Example:
        ```python
        import numpy as np, xarray as xr
        from icechunk_prefect.core.encoding import check_readable
        from icechunk_prefect.errors import InputValidationError

        enc = {"dtype": "u1", "_Unsigned": "false", "_FillValue": 255}
        try:
            check_readable("x", xr.Variable("t", np.ones(2), {}, enc))
        except InputValidationError as exc:
            print(exc)  # xarray would read 255 as int8: the store could not be opened
        check_readable("x", xr.Variable("t", np.ones(2), {}, {**enc, "_FillValue": 127}))
        ```
    """
    cf = {**var.attrs, **var.encoding}
    if str(cf.get("_Unsigned", "")).lower() != "false":
        return
    try:
        stored = np.dtype(var.encoding.get("dtype", var.dtype))
    except TypeError:
        return
    if stored.kind != "u":
        return
    signed = np.dtype(f"i{stored.itemsize}")
    for key in ("_FillValue", "missing_value"):
        value = cf.get(key)
        if value is None:
            continue
        try:
            signed.type(int(value))
        except (OverflowError, ValueError, TypeError) as exc:
            raise InputValidationError(
                f"Variable {name!r}: {key}={value!r} with _Unsigned='false' and dtype "
                f"{stored} cannot be read back: xarray reads it as {signed} "
                f"({type(exc).__name__}: {exc}), so the store could not be opened. Give a "
                f"{key} within {signed}'s range (e.g. -1), or drop _Unsigned."
            ) from exc
