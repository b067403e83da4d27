"""Bad input refused before anything is written: the checks of a write against the
dataset and the store (plain functions, no Prefect).

:func:`check_input` looks at the dataset alone; :func:`resolve_mode` settles the write
mode as ``to_zarr`` does; the rest compares the dataset with what the store holds (the
metadata step and :func:`~icechunk_prefect.core.steps.plan_write` call them), and
:func:`refusals` turns the errors ``to_zarr`` raises into the package's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr
import zarr.errors
from icechunk import IcechunkError
from icechunk.session import ForkSession
from xarray.conventions import ensure_not_multiindex

from icechunk_prefect.core.encoding import stored_unchanged
from icechunk_prefect.core.spec import WriteMode
from icechunk_prefect.errors import (
    DuplicateStepsError,
    IcechunkPrefectError,
    InputValidationError,
    RegionError,
    SchemaMismatchError,
)

__all__ = [
    "check_index_matches",
    "check_input",
    "check_like_to_zarr",
    "creates_repository",
    "holds_data",
    "open_group",
    "refusals",
    "resolve_mode",
    "stored_dims",
    "validate_against_store",
]


_MODES: tuple[WriteMode, ...] = ("w", "w-", "a", "a-", "r+")


def resolve_mode(
    mode: WriteMode | None, append_dim: Hashable | None, region: object | None
) -> WriteMode:
    """xarray's default: ``a`` with ``append_dim``, ``r+`` with ``region``, else ``w-``.

    ``region`` must be a mapping or a string (as ``to_zarr`` requires)."""
    if region is not None and not isinstance(region, str | Mapping):
        raise RegionError(
            f"region must be a dict (dimension names to slices or 'auto') or 'auto', got "
            f"{region!r} ({type(region).__name__}); to_zarr refuses it too (``region`` must "
            "be a dict)."
        )
    if mode is not None:
        if mode not in _MODES:
            raise InputValidationError(
                f"mode must be one of {list(_MODES)} (or None), got {mode!r}."
            )
        if append_dim is not None and mode not in ("a", "a-"):
            raise InputValidationError(f"append_dim needs mode 'a' or 'a-', got mode={mode!r}.")
        if region is not None and mode not in ("r+", "a"):
            raise InputValidationError(f"region needs mode 'r+' or 'a', got mode={mode!r}.")
        return mode
    if append_dim is not None and region is not None:
        raise InputValidationError(
            "append_dim and region cannot be used together: append first, then rewrite a region."
        )
    if append_dim is not None:
        return "a"
    if region is not None:
        return "r+"
    return "w-"


def open_group(store: Any, group: str | None) -> zarr.Group | None:
    try:
        return zarr.open_group(store, path=group or "", mode="r")
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return None


def stored_dims(arr: zarr.Array) -> tuple[str, ...] | None:
    """The dimension names of a stored array (Zarr v3 names or xarray's attribute)."""
    names = getattr(arr.metadata, "dimension_names", None)
    if names:
        return tuple(str(n) for n in names)
    attr = arr.attrs.get("_ARRAY_DIMENSIONS")
    return tuple(attr) if isinstance(attr, list) else None  # type: ignore[arg-type]


def _dims_of(group: zarr.Group, name: str) -> tuple[str, ...]:
    arr = group[name]
    return (stored_dims(arr) or ()) if isinstance(arr, zarr.Array) else ()


def validate_against_store(
    ds: xr.Dataset,
    group: zarr.Group,
    store: Any,
    group_path: str | None,
    *,
    append_dim: str | None,
    region_dims: set[str],
    mode: WriteMode = "a",
) -> None:
    """Refuse writes whose variables do not fit the arrays already stored (with
    ``mode="a-"``, variables without ``append_dim`` are not written: they may differ)."""
    write_dims = set(region_dims) | ({append_dim} if append_dim else set())
    stored_ds: xr.Dataset | None = None
    for name, var in ds.variables.items():
        name = str(name)
        if name not in group:
            continue
        arr = group[name]
        if not isinstance(arr, zarr.Array):
            raise SchemaMismatchError(f"{name!r} exists in the store as a group, not an array.")
        dims = stored_dims(arr)
        if dims is not None and tuple(map(str, var.dims)) != dims:
            raise SchemaMismatchError(
                f"Variable {name!r} has dimensions {tuple(map(str, var.dims))} but the stored "
                f"array has {dims}. Transpose or rename to match the store."
            )
        for dim, size, stored in zip(var.dims, var.shape, arr.shape, strict=False):
            if str(dim) not in write_dims and size != stored:
                raise SchemaMismatchError(
                    f"Variable {name!r} has {size} positions along {str(dim)!r} but the stored "
                    f"array has {stored}; only {sorted(write_dims) or 'no dimension'} may differ."
                )
        stored_kind = np.dtype(arr.dtype).kind if hasattr(arr.dtype, "kind") else None
        if (
            var.dtype.kind in "fiub"
            and stored_kind in ("f", "i", "u", "b")
            and "scale_factor" not in arr.attrs
            and "add_offset" not in arr.attrs
            and "dtype" not in var.encoding
            and not stored_unchanged(var.dtype, arr.dtype)
        ):
            raise SchemaMismatchError(
                f"Variable {name!r} has dtype {var.dtype} but the stored array holds "
                f"{arr.dtype}, and the cast could change values. Cast it "
                f"(ds[{name!r}].astype('{arr.dtype}')) before writing."
            )
        # In-memory variables that are not being extended must match what is stored.
        extended = bool(set(map(str, var.dims)) & write_dims)
        if (append_dim or region_dims) and not extended and not (mode == "a-" and append_dim):
            if stored_ds is None:
                stored_ds = xr.open_zarr(store, group=group_path, consolidated=False)
            if name in stored_ds.variables and not _same_values(var, stored_ds.variables[name]):
                raise SchemaMismatchError(
                    f"Variable {name!r} does not extend along {sorted(write_dims)} and differs "
                    "from the stored values; the dataset does not line up with the store."
                )
    if append_dim and append_dim in ds.indexes and append_dim in group:
        _check_append_steps(ds, store, group_path, append_dim)


def _same_values(a: xr.Variable, b: xr.Variable) -> bool:
    if a.shape != b.shape:
        return False
    if a.size > 10_000_000:
        return True  # too large to compare cheaply; shapes agree
    try:
        return bool(a.equals(b.load()))
    except Exception:  # pragma: no cover - incomparable types
        return False


def _check_append_steps(ds: xr.Dataset, store: Any, group_path: str | None, dim: str) -> None:
    new = ds.indexes[dim]
    if new.has_duplicates:
        dup = new[new.duplicated()][:3].tolist()
        raise InputValidationError(f"The {dim!r} coordinate holds duplicated values {dup}.")
    if not new.is_monotonic_increasing:
        raise InputValidationError(
            f"The {dim!r} coordinate is not increasing (seen {new[:3].tolist()}...); sort it "
            f"(ds.sortby({dim!r})) before appending."
        )
    stored = xr.open_zarr(store, group=group_path, consolidated=False)
    if dim not in stored.indexes or stored.sizes.get(dim, 0) == 0:
        return
    old = stored.indexes[dim]
    present = new.intersection(old)
    if len(present):
        raise DuplicateStepsError(
            f"Appending along {dim!r} would duplicate {len(present)} value(s) already in the "
            f"store, e.g. {present[:3].tolist()} (the store ends at {old[-1]}). Select only new "
            "steps (or use the append flow, which skips them)."
        )
    if new[0] <= old[-1]:
        raise InputValidationError(
            f"Appending along {dim!r} must continue after the store's last value {old[-1]}, "
            f"but the new data starts at {new[0]}."
        )


def creates_repository(mode: WriteMode, append_dim: str | None) -> bool:
    """Whether a write in ``mode`` may create a missing repository (not to append)."""
    return mode in ("w", "w-") or (mode == "a" and append_dim is None)


def check_input(
    ds: xr.Dataset,
    *,
    append_dim: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    partition_dim: str | None = None,
) -> None:
    """Refuse input that cannot make a sensible write, before anything is touched:
    an empty dataset, zero-length dimensions, ``encoding``/``append_dim``/``partition_dim``
    naming what the dataset lacks, an ``append_dim`` coordinate that is duplicated or
    not increasing."""
    names = sorted(map(str, ds.variables))
    _check_encoding_shape(encoding)
    for name, var in ds.variables.items():
        try:
            ensure_not_multiindex(var, name)
        except NotImplementedError as exc:
            raise InputValidationError(f"{exc} (xarray and Zarr refuse it).") from exc
    if not ds.data_vars and not ds.coords:
        raise InputValidationError(
            "The dataset is empty (no variables): there is nothing to write. Check the "
            "selection that produced it."
        )
    empty = sorted(str(d) for d, n in ds.sizes.items() if n == 0)
    if empty:
        raise InputValidationError(
            f"The dataset has no positions along {empty} (sizes {dict(ds.sizes)}): there is "
            "nothing to write. Check the selection that produced it."
        )
    unknown = sorted(str(k) for k in (encoding or {}) if k not in ds.variables)
    if unknown:
        raise InputValidationError(
            f"encoding names variable(s) {unknown} that the dataset does not have "
            f"(its variables: {names}). Fix the names or drop those entries."
        )
    for label, dim in (("append_dim", append_dim), ("partition_dim", partition_dim)):
        if dim is not None and dim not in ds.dims:
            raise InputValidationError(
                f"{label} {dim!r} is not a dimension of the dataset "
                f"(dimensions: {sorted(map(str, ds.dims))})."
            )
    if append_dim is not None and append_dim in ds.indexes:
        index = ds.indexes[append_dim]
        if index.has_duplicates:
            dup = index[index.duplicated()][:3].tolist()
            raise InputValidationError(
                f"The {append_dim!r} coordinate holds duplicated values {dup}; drop them "
                f"(ds.drop_duplicates({append_dim!r})) before appending."
            )
        if not index.is_monotonic_increasing:
            raise InputValidationError(
                f"The {append_dim!r} coordinate is not increasing (seen {index[:3].tolist()}"
                f"...); sort it (ds.sortby({append_dim!r})) before appending."
            )


def _check_encoding_shape(encoding: object) -> None:
    """``encoding`` must map variable names to dicts (xarray: "must be castable to a
    dictionary")."""
    if encoding is None:
        return
    if not isinstance(encoding, Mapping):
        raise InputValidationError(
            f"encoding must be a dict of variable names to dicts, got {type(encoding).__name__} "
            f"{encoding!r}."
        )
    bad = {str(k): v for k, v in encoding.items() if not isinstance(v, Mapping)}
    if bad:
        raise InputValidationError(
            f"encoding for {sorted(bad)} must be castable to a dictionary (xarray's own "
            f"words), got {bad}. Give each variable a dict, e.g. {{'t': {{'dtype': 'f4'}}}}."
        )


# What xarray, Zarr and NumPy raise when they refuse a dataset or an argument.
_REFUSALS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    NotImplementedError,
    ArithmeticError,  # OverflowError: a value or fill value out of the stored type's range
    zarr.errors.BaseZarrError,
)


@contextlib.contextmanager
def refusals(step: str) -> Iterator[None]:
    """Re-raise what xarray/Zarr/NumPy refuse in ``step`` as :class:`InputValidationError`
    (final: not retried), with their message. The package's own errors pass through, and
    so do Icechunk's (storage, sessions, objects not found: their own retry decides)."""
    try:
        yield
    except (IcechunkPrefectError, IcechunkError):
        raise
    except _REFUSALS as exc:
        raise InputValidationError(
            f"{step} was refused by xarray/Zarr ({type(exc).__name__}: {exc}). Nothing was "
            "committed. Fix the dataset or the arguments (icechunk.xarray.to_icechunk "
            "refuses the same input)."
        ) from exc


def check_like_to_zarr(
    ds: xr.Dataset,
    group: zarr.Group,
    mode: WriteMode,
    region: Mapping[str, slice | str] | str | None,
    encoding: Mapping[str, Any] | None,
    group_path: str | None,
    append_dim: str | None,
) -> None:
    """The refusals of ``to_zarr`` into an existing group, with this package's errors."""
    where = f"group {group_path or '/'!r}"
    stored = set(group.array_keys())
    if isinstance(region, str) and region != "auto":
        raise RegionError(
            f"region must be 'auto' or a mapping of dimension names to slices, got {region!r}."
        )
    if region is not None:
        keys = set(map(str, ds.dims)) if isinstance(region, str) else set(map(str, region))
        unrelated = [str(n) for n, v in ds.variables.items() if not keys & set(map(str, v.dims))]
        if keys and unrelated:  # region={} rewrites everything (to_zarr allows it)
            raise RegionError(
                f"Variables {unrelated} have no dimension of the region {sorted(keys)}: a region "
                "write rewrites only data along the region. Drop them first "
                f"(ds.drop_vars({unrelated!r}))."
            )
    given = sorted(str(k) for k in encoding or {} if str(k) in stored)
    if given:
        raise InputValidationError(
            f"encoding is given for {given}, which already exist in {where}: existing arrays "
            "keep their stored encoding (as with to_zarr). Drop those encoding entries, or "
            "rewrite the whole dataset with mode='w'."
        )
    if mode == "r+":
        indexes = set(map(str, ds.indexes)) if region is not None else set()
        new = sorted(str(n) for n in ds.variables if str(n) not in stored | indexes)
        if new:
            raise SchemaMismatchError(
                f"Variables {new} do not exist in {where}, and mode='r+' only rewrites existing "
                "arrays. Create them first (mode='a'), or drop them from the dataset."
            )
    if append_dim is not None and stored:
        dims = {d for n in stored if (d_ := _dims_of(group, n)) for d in d_}
        if append_dim not in dims:
            raise SchemaMismatchError(
                f"append_dim {append_dim!r} is not a dimension of the arrays in {where} "
                f"(their dimensions: {sorted(dims)}). Append along one of those, or write the "
                "new dimension with mode='w'."
            )
        new = sorted(
            str(n) for n, v in ds.variables.items() if append_dim in v.dims and str(n) not in stored
        )
        if new:
            raise SchemaMismatchError(
                f"Variables {new} along {append_dim!r} do not exist in {where}: appending would "
                f"create them holding only the appended steps, shorter than the stored "
                f"{append_dim!r} (a store that cannot be read back). Create them over the whole "
                f"{append_dim!r} first (mode='a' without append_dim), or drop them."
            )


def holds_data(group: zarr.Group, name: str) -> bool:
    """Whether the stored array ``name`` has any chunk written (before this write)."""
    arr = group.get(name)
    return isinstance(arr, zarr.Array) and (arr.ndim == 0 or arr.nchunks_initialized > 0)


def check_index_matches(
    ds: xr.Dataset, fork: ForkSession, group: str | None, dim: str, where: slice
) -> None:
    stored = xr.open_zarr(fork.store, group=group, consolidated=False)[dim].isel({dim: where})
    if not stored.to_index().equals(ds.indexes[dim]):
        raise RegionError(
            f"The dataset's {dim!r} values ({ds.indexes[dim][0]} .. {ds.indexes[dim][-1]}) differ "
            f"from the store's at {dim}[{where.start}:{where.stop}] ({stored.values[0]} .. "
            f"{stored.values[-1]}). Check the region."
        )
