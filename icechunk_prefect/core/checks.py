"""The validation gate: checks the merged fork must pass before anything is committed.

Built in:

- **coverage**: every chunk the plan covers (for every variable written) was
  written by some step of this run: a lost partition, or a task that returned a
  fork without its writes, is caught here instead of publishing holes;
- **schema**: every variable of the dataset is an array of the store with the
  same dimension names, a shape that holds the planned region, and the dtype the
  dataset encodes to (as Zarr stores it: byte order aside, strings of any width;
  an existing array may hold it safely in a wider type, e.g. ints in a float array).

Users add their own checks: callables taking a :class:`CheckContext` that return
``None``/``True`` to pass, ``False`` or a message to fail, or raise. All failures
are gathered into one :class:`~icechunk_prefect.errors.CheckFailedError`; nothing
is committed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
import zarr
from icechunk.session import ForkSession

from icechunk_prefect.core.encoding import stored_alike, stored_unchanged
from icechunk_prefect.core.planning import WritePlan, array_path
from icechunk_prefect.errors import CheckFailedError

__all__ = [
    "Check",
    "CheckContext",
    "VariableSchema",
    "coverage_problems",
    "expected_schema",
    "run_checks",
    "schema_problems",
]


@dataclass(frozen=True)
class VariableSchema:
    """What a variable of the dataset should look like in the store."""

    dims: tuple[str, ...]
    dtype: str | None  # the stored dtype, when it can be known from the dataset; else None


def expected_schema(
    ds: xr.Dataset, encoding: Mapping[Any, Mapping[str, Any]] | None = None
) -> dict[str, VariableSchema]:
    """The schema the store must show after the write, from the dataset (no data read).

    ``encoding`` is the write's ``encoding`` argument: as in ``to_zarr``, an entry
    replaces the variable's own encoding.
    """
    given = encoding or {}
    out: dict[str, VariableSchema] = {}
    for name, var in ds.variables.items():
        dtype: str | None = None
        enc = given.get(name, var.encoding)
        if "scale_factor" not in enc and "add_offset" not in enc:
            if "dtype" in enc:
                dtype = str(np.dtype(enc["dtype"]))
            elif var.dtype.kind in "fiub":
                dtype = str(var.dtype)
        out[str(name)] = VariableSchema(tuple(map(str, var.dims)), dtype)
    return out


@dataclass(frozen=True)
class CheckContext:
    """What a check sees: the merged fork, the plan and the expected schema."""

    fork: ForkSession
    plan: WritePlan
    schema: Mapping[str, VariableSchema] = field(default_factory=dict)

    @property
    def group(self) -> zarr.Group:
        """The written group, read-only, as it would be committed."""
        return zarr.open_group(self.fork.store, path=self.plan.group or "", mode="r")

    def dataset(self) -> xr.Dataset:
        """The written group as a lazy xarray Dataset (as it would be committed)."""
        return xr.open_zarr(self.fork.store, group=self.plan.group, consolidated=False)

    def written_chunks(self) -> dict[str, set[tuple[int, ...]]]:
        """Chunks written by the run, by array path (``/group/name``)."""
        return {p: {tuple(c) for c in cs} for p, cs in self.fork.status().updated_chunks.items()}


Check = Callable[[CheckContext], Any]
"""A user check: return None/True to pass, False or a message to fail, or raise."""


def _expected_chunks(shape: Sequence[int], unit: Sequence[int], region: Sequence[slice]) -> int:
    return math.prod(
        len(range(sl.start // u, math.ceil(sl.stop / u)))
        for sl, u, n in zip(region, unit, shape, strict=True)
        if n
    )


def coverage_problems(ctx: CheckContext) -> list[str]:
    """Chunks the plan covers that no step of the run wrote."""
    from icechunk_prefect.core.validation import stored_dims

    plan = ctx.plan
    written = ctx.written_chunks()
    group = ctx.group
    problems: list[str] = []
    names = [*plan.lazy, *(n for n in plan.eager if n not in plan.skip_eager)]
    for name in names:
        if name not in group:
            problems.append(f"coverage: array {name!r} is missing from the store")
            continue
        arr = group[name]
        assert isinstance(arr, zarr.Array)
        if arr.ndim == 0:
            continue
        # The dimensions from the expected schema, else as stored (Zarr dimension names).
        dims = plan.dims.get(name) or (
            ctx.schema[name].dims if name in ctx.schema else stored_dims(arr)
        )
        if dims is None or any(d not in plan.region for d in dims):
            continue
        region = [plan.region[d] for d in dims]
        unit = tuple(arr.shards or arr.chunks)
        ranges = [
            range(sl.start // u, math.ceil(sl.stop / u)) for sl, u in zip(region, unit, strict=True)
        ]
        if any(sl.stop <= sl.start for sl in region):
            continue
        have = written.get(array_path(plan.group, name), set())
        missing = [list(c) for c in itertools.product(*ranges) if c not in have]
        if missing:
            expected = _expected_chunks(arr.shape, unit, region)
            problems.append(
                f"coverage: {len(missing)} of {expected} planned chunk(s) of {name!r} were not "
                f"written by any partition, e.g. {missing[:5]}"
            )
    return problems


def schema_problems(ctx: CheckContext) -> list[str]:
    """Differences between the store as it would be committed and the dataset's schema."""
    from icechunk_prefect.core.validation import stored_dims

    group = ctx.group
    problems: list[str] = []
    for name, want in ctx.schema.items():
        if name not in group:
            problems.append(f"schema: variable {name!r} is not in the store")
            continue
        arr = group[name]
        if not isinstance(arr, zarr.Array):
            problems.append(f"schema: {name!r} is a group in the store, not an array")
            continue
        dims = stored_dims(arr)
        if dims is not None and dims != want.dims:
            problems.append(
                f"schema: {name!r} has dimensions {dims} in the store, expected {want.dims}"
            )
            continue
        for dim, size in zip(want.dims, arr.shape, strict=False):
            sl = ctx.plan.region.get(dim)
            if sl is not None and sl.stop > size:
                problems.append(
                    f"schema: {name!r} has {size} positions along {dim!r} but the write covers "
                    f"[{sl.start}:{sl.stop}]"
                )
        # An existing array is written with its stored dtype (the plan's encoding, read
        # from the store), which may hold the dataset's dtype safely (ints in floats).
        written_as = ctx.plan.encodings.get(name, {}).get("dtype")
        existing = written_as is not None and stored_alike(written_as, arr.dtype)
        fits = stored_unchanged if existing else stored_alike
        if want.dtype is not None and not fits(want.dtype, arr.dtype):
            problems.append(
                f"schema: {name!r} holds {arr.dtype} in the store, expected {want.dtype}"
            )
    return problems


def run_checks(
    fork: ForkSession,
    plan: WritePlan,
    schema: Mapping[str, VariableSchema] | None = None,
    checks: Sequence[Check] = (),
    *,
    coverage: bool = True,
) -> None:
    """Run the built-in and the user checks on the merged ``fork``; raise if any fails.

    Example:
        ```python
        import numpy as np, xarray as xr
        from icechunk_prefect.core.checks import expected_schema, run_checks
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write, write_eager, write_metadata

        ds = xr.Dataset({"t": ("x", np.arange(4.0))}, coords={"x": np.arange(4)})
        spec = WriteSpec(mode="w")
        fork = write_metadata("/tmp/doc-checks-repo", "main", ds, spec)
        plan = plan_write(fork, ds, spec)
        fork = write_eager(fork, ds, plan)
        run_checks(fork, plan, expected_schema(ds), [lambda ctx: "x" in ctx.group])
        ```
    """
    ctx = CheckContext(fork, plan, dict(schema or {}))
    problems: list[str] = []
    if coverage:
        problems += coverage_problems(ctx)
    if schema:
        problems += schema_problems(ctx)
    for check in checks:
        name = getattr(check, "__name__", repr(check))
        try:
            outcome = check(ctx)
        except Exception as exc:
            problems.append(f"check {name}: raised {type(exc).__name__}: {exc}")
            continue
        if outcome is False:
            problems.append(f"check {name}: returned False")
        elif isinstance(outcome, str):
            problems.append(f"check {name}: {outcome}")
    if problems:
        report = "\n".join(f"  - {p}" for p in problems)
        raise CheckFailedError(
            f"The validation gate refused the write ({len(problems)} problem(s)); nothing was "
            f"committed and the branch is unchanged:\n{report}\nFix the input or the failing "
            "step and run again."
        )
