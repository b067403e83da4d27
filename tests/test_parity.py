"""Issue 13 (parity): what ``icechunk.xarray.to_icechunk`` (then a commit) accepts, the
``to_icechunk`` flow accepts with the same store; what it refuses, the flow refuses with an
error of the package's hierarchy, before anything is published (the branch is unchanged).

Every case of the table is written by upstream into one repository and by our flow into a
copy of the same starting repository, then compared: the read-back (``identical``) and the
raw Zarr metadata of every array (dtype, shape, chunks, codecs, fill value, attributes).
The table runs in one flow run (the flow's body, ``to_icechunk.fn``, once per case, on the
shared cluster) since each flow call costs seconds here; ``test_through_flow_calls`` runs
a few cases through real flow calls.

A few cases are refused on purpose where upstream writes (``STRICTER``, see
docs/reliability.md, "Differences from icechunk.xarray.to_icechunk"), and with
``safe_chunks=False`` on misaligned chunks upstream loses writes where the flow does not
(``CORRECT``: compared with the input instead).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import dask.array as da
import icechunk
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from icechunk.xarray import to_icechunk as upstream_to_icechunk
from prefect import flow

from icechunk_prefect import IcechunkDaskTaskRunner, IcechunkPrefectError, to_icechunk
from icechunk_prefect.errors import (
    ChunkAlignmentError,
    ConfigurationError,
    DuplicateStepsError,
    InputValidationError,
    RegionError,
    SchemaMismatchError,
)
from tests.helpers import PeerResult, chunks_of, open_repo

Outcome = Literal["same", "refused", "stricter", "correct"]
SAME: Outcome = "same"  # both write; identical stores
REFUSED: Outcome = "refused"  # both refuse; ours with `error`, branch unchanged
STRICTER: Outcome = "stricter"  # upstream writes; ours refuses on purpose (docs/reliability.md)
CORRECT: Outcome = "correct"  # both write; upstream loses writes, ours equals the input


def base(periods: int = 8, start: str = "2024-01-01", seed: int = 0, chunk: int = 4) -> xr.Dataset:
    """time x x: a dask-backed float variable, an in-memory int variable, index coordinates."""
    rng = np.random.default_rng(seed)
    a = da.from_array(rng.random((periods, 3)), chunks=chunks_of(chunk, 3))
    return xr.Dataset(
        {"a": (("time", "x"), a, {"units": "K"}), "b": ("time", np.arange(periods) + seed)},
        coords={"time": pd.date_range(start, periods=periods, freq="D"), "x": np.arange(3)},
        attrs={"title": "t"},
    )


def patch(start: str = "2024-01-05", periods: int = 4, seed: int = 3) -> xr.Dataset:
    """Positions 4:8 of ``base()`` with new values, without the 'x' coordinate."""
    return base(periods=periods, start=start, seed=seed).drop_vars("x")


def curvilinear(periods: int = 8, start: str = "2024-01-01", seed: int = 0) -> xr.Dataset:
    """time x y x with 2-D coordinates xc, yc and no index on y or x."""
    rng = np.random.default_rng(seed)
    grid = np.arange(6.0).reshape(2, 3)
    return xr.Dataset(
        {
            "v": (
                ("time", "y", "x"),
                da.from_array(rng.random((periods, 2, 3)), chunks=chunks_of(4, 2, 3)),
            )
        },
        coords={
            "time": pd.date_range(start, periods=periods, freq="D"),
            "xc": (("y", "x"), grid),
            "yc": (("y", "x"), grid * 2),
        },
    )


def lazy_times(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with a dask-backed datetime variable (not an index, so it stays lazy)."""
    values = pd.date_range("2024-01-01", periods=ds.sizes["time"]).values
    return ds.assign(ts=("time", da.from_array(values, chunks=chunks_of(4))))


@dataclass(frozen=True)
class Case:
    make: Callable[[], xr.Dataset | xr.DataArray]
    kwargs: Mapping[str, Any]
    outcome: Outcome = SAME
    error: type[IcechunkPrefectError] | None = None
    match: str = ""
    setup: Callable[[], xr.Dataset] | None = None  # written first (upstream, mode="w")
    flow_kwargs: Mapping[str, Any] = field(default_factory=dict)  # ours only


SETUP = base
UNITS = {"units": "days since 2000-01-01"}

CASES: dict[str, Case] = {
    # ---- creating
    "create-w": Case(base, {"mode": "w"}),
    "create-w-": Case(base, {"mode": "w-"}),
    "create-default-mode": Case(base, {}),
    "create-w-whole-graph": Case(base, {"mode": "w"}, flow_kwargs={"partitioned": False}),
    "w-on-existing": Case(
        base, {"mode": "w-"}, REFUSED, ConfigurationError, r"already holds arrays", SETUP
    ),
    "w-over-existing": Case(
        lambda: base(seed=2),
        {"mode": "w"},
        setup=lambda: base().assign(e=("x", np.zeros(3))),
    ),
    "group": Case(base, {"mode": "w", "group": "g/sub"}),
    "dataarray": Case(lambda: base()["a"], {"mode": "w"}),
    "dataarray-unnamed": Case(lambda: base()["a"].rename(None), {"mode": "w"}),
    "dataarray-named-like-dim": Case(lambda: base()["a"].rename("time"), {"mode": "w"}),
    "scalars": Case(
        lambda: base().assign(s=((), 3.5), t=((), np.datetime64("2024-01-01", "ns"))),
        {"mode": "w"},
    ),
    "string-and-object-coords": Case(
        lambda: base().assign_coords(
            name=("x", ["aa", "b", "ccc"]), obj=("x", np.array(["p", "qq", "r"], dtype=object))
        ),
        {"mode": "w"},
    ),
    "lazy-strings": Case(
        lambda: base().assign(
            s=("time", da.from_array(np.array(list("abcdefgh"), dtype="U1"), chunks=chunks_of(4))),
            o=(
                "time",
                da.from_array(np.array(list("abcdefgh"), dtype=object), chunks=chunks_of(4)),
            ),
        ),
        {"mode": "w"},
    ),
    "mixed-object-coord": Case(
        lambda: base().assign_coords(mix=("x", np.array([1, "a", 2.5], dtype=object))),
        {"mode": "w"},
        REFUSED,
        InputValidationError,
        r"refused by xarray/Zarr \(ValueError: unable to infer dtype",
    ),
    "nat-nan-timedelta-bool": Case(
        lambda: base().assign(
            c=("time", np.array(["2024-01-01", "NaT"] * 4, dtype="M8[ns]")),
            d=("time", np.array([np.nan, 1.0] * 4)),
            td=("time", pd.to_timedelta(np.arange(8), "h")),
            bo=("time", np.arange(8) % 2 == 0),
        ),
        {"mode": "w"},
    ),
    "attrs": Case(
        lambda: base().assign_attrs(n=1, seq=[1, 2], s="x", arr=np.arange(3), f=np.float32(1.5)),
        {"mode": "w"},
    ),
    "lazy-coordinate": Case(
        lambda: base().assign_coords(lat=("x", da.arange(cast(Any, 3.0), chunks=chunks_of(3)))),
        {"mode": "w"},
    ),
    "bad-mode": Case(base, {"mode": "x"}, REFUSED, InputValidationError, r"got 'x'"),
    # ---- encoding
    "encoding-units-only": Case(base, {"mode": "w", "encoding": {"time": UNITS}}),
    "encoding-units-and-dtype": Case(
        base, {"mode": "w", "encoding": {"time": {**UNITS, "dtype": "int32"}}}
    ),
    "encoding-dtype-only": Case(base, {"mode": "w", "encoding": {"time": {"dtype": "int64"}}}),
    "encoding-units-too-coarse": Case(
        lambda: base().assign_coords(time=pd.date_range("2024-01-01", periods=8, freq="h")),
        {"mode": "w", "encoding": {"time": UNITS}},
    ),
    "encoding-timedelta-units-only": Case(
        lambda: base().assign(td=("time", pd.to_timedelta(np.arange(8), "h"))),
        {"mode": "w", "encoding": {"td": {"units": "minutes"}}},
    ),
    "encoding-packed": Case(
        base,
        {
            "mode": "w",
            "encoding": {
                "a": {"dtype": "int16", "scale_factor": 0.01, "_FillValue": -9999},
                "time": {"scale_factor": 0.5, "dtype": "i4"},
            },
        },
    ),
    "encoding-chunks-and-fill": Case(
        base, {"mode": "w", "encoding": {"a": {"chunks": (2, 3), "_FillValue": np.nan}}}
    ),
    "encoding-lazy-datetime": Case(
        lambda: lazy_times(base()), {"mode": "w", "encoding": {"ts": {**UNITS, "dtype": "i4"}}}
    ),
    "encoding-lazy-datetime-units-only": Case(
        lambda: lazy_times(base()),
        {"mode": "w", "encoding": {"ts": UNITS}},
        REFUSED,
        InputValidationError,
        r"refused by xarray/Zarr \(ValueError: When encoding chunked arrays of datetime",
    ),
    "encoding-unknown-variable": Case(
        base,
        {"mode": "w", "encoding": {"nope": {"dtype": "f4"}}},
        REFUSED,
        InputValidationError,
        r"encoding names variable\(s\) \['nope'\]",
    ),
    "encoding-unknown-key": Case(
        base,
        {"mode": "w", "encoding": {"a": {"bogus": 1}}},
        REFUSED,
        InputValidationError,
        r"unexpected encoding parameters for zarr backend:\s+\['bogus'\]",
    ),
    # ---- chunks
    "misaligned-safe-chunks": Case(
        lambda: base().chunk(time=3),
        {"mode": "w", "encoding": {"a": {"chunks": (4, 3)}}},
        REFUSED,
        ChunkAlignmentError,
        r"dask chunks \(3, 3, 2\) along 'time'",
    ),
    "misaligned-align-chunks": Case(
        lambda: base().chunk(time=3),
        {"mode": "w", "encoding": {"a": {"chunks": (4, 3)}}, "align_chunks": True},
    ),
    "misaligned-unsafe": Case(
        lambda: base().chunk(time=3),
        {"mode": "w", "encoding": {"a": {"chunks": (4, 3)}}, "safe_chunks": False},
        CORRECT,
    ),
    "misaligned-unsafe-whole-graph": Case(
        lambda: base().chunk(time=3),
        {"mode": "w", "encoding": {"a": {"chunks": (4, 3)}}, "safe_chunks": False},
        CORRECT,
        flow_kwargs={"partitioned": False},
    ),
    # ---- appending and updating
    "append": Case(lambda: base(start="2024-01-09", seed=1), {"append_dim": "time"}, setup=SETUP),
    "append-a-": Case(
        lambda: base(start="2024-01-09", seed=1), {"append_dim": "time", "mode": "a-"}, setup=SETUP
    ),
    "append-with-gap": Case(lambda: base(start="2024-02-09"), {"append_dim": "time"}, setup=SETUP),
    "append-new-x-coordinate": Case(
        lambda: base(start="2024-01-09").assign_coords(lbl=("x", ["q", "r", "s"])),
        {"append_dim": "time"},
        setup=SETUP,
    ),
    "append-attrs-changed": Case(
        lambda: (
            base(start="2024-01-09")
            .assign_attrs(title="new")
            .assign(a=lambda d: d.a.assign_attrs(units="C"))
        ),
        {"append_dim": "time"},
        setup=SETUP,
    ),
    "append-other-dim-size": Case(
        lambda: base(start="2024-01-09").isel(x=slice(0, 2)),
        {"append_dim": "time"},
        REFUSED,
        SchemaMismatchError,
        r"2 positions along 'x' but the stored array has 3",
        SETUP,
    ),
    "append-encoding-for-existing": Case(
        lambda: base(start="2024-01-09"),
        {"append_dim": "time", "encoding": {"b": {"dtype": "i4"}}},
        REFUSED,
        InputValidationError,
        r"encoding is given for \['b'\], which already exist",
        SETUP,
    ),
    "append-unknown-stored-dim": Case(
        lambda: base().expand_dims(member=[0]),
        {"append_dim": "member"},
        REFUSED,
        SchemaMismatchError,
        r"append_dim 'member' is not a dimension of the arrays",
        SETUP,
    ),
    "append-missing-group": Case(
        base,
        {"append_dim": "time", "group": "nope"},
        REFUSED,
        ConfigurationError,
        r"Group 'nope' does not exist",
        SETUP,
    ),
    "mode-a-add-variable": Case(
        lambda: base(seed=5)[["b"]].assign(c=("x", np.ones(3))), {"mode": "a"}, setup=SETUP
    ),
    "mode-a-overwrite": Case(lambda: base(seed=5), {"mode": "a"}, setup=SETUP),
    "mode-r+": Case(
        lambda: base(seed=5).assign_attrs(title="new").assign(a=lambda d: d.a.assign_attrs(u="C")),
        {"mode": "r+"},
        setup=SETUP,
    ),
    "mode-r+-new-variable": Case(
        lambda: base(seed=5).assign(c=("x", np.ones(3))),
        {"mode": "r+"},
        REFUSED,
        SchemaMismatchError,
        r"Variables \['c'\] do not exist in group '/', and mode='r\+'",
        SETUP,
    ),
    # ---- regions
    "region-dict": Case(patch, {"region": {"time": slice(4, 8)}}, setup=SETUP),
    "region-open-slice": Case(patch, {"region": {"time": slice(4, None)}}, setup=SETUP),
    "region-attrs-changed": Case(
        lambda: patch().assign_attrs(title="new").assign(a=lambda d: d.a.assign_attrs(units="C")),
        {"region": {"time": slice(4, 8)}},
        setup=SETUP,
    ),
    "region-mode-a": Case(patch, {"region": {"time": slice(4, 8)}, "mode": "a"}, setup=SETUP),
    "region-auto": Case(
        lambda: base(periods=4, start="2024-01-05", seed=3), {"region": "auto"}, setup=SETUP
    ),
    "region-auto-unindexed-dims": Case(
        lambda: curvilinear(periods=4, start="2024-01-05", seed=3),
        {"region": "auto"},
        setup=curvilinear,
    ),
    "region-variable-off-region": Case(
        lambda: base(periods=4, start="2024-01-05"),
        {"region": {"time": slice(4, 8)}},
        REFUSED,
        RegionError,
        r"Variables \['x'\] have no dimension of the region \['time'\]",
        SETUP,
    ),
    "region-auto-scalar": Case(
        lambda: base(periods=4, start="2024-01-05").assign(s=((), 1.0)),
        {"region": "auto"},
        REFUSED,
        RegionError,
        r"Variables \['s'\] have no dimension of the region",
        SETUP,
    ),
    "region-out-of-range": Case(
        lambda: patch(start="2024-01-07"),
        {"region": {"time": slice(6, 10)}},
        REFUSED,
        RegionError,
        r"time\[6:10\] lies outside array",
        SETUP,
    ),
    "region-new-variable": Case(
        lambda: patch().assign(c=("time", np.ones(4))),
        {"region": {"time": slice(4, 8)}},
        REFUSED,
        SchemaMismatchError,
        r"Variables \['c'\] do not exist",
        SETUP,
    ),
    "region-not-a-slice": Case(
        patch, {"region": {"time": 4}}, REFUSED, RegionError, r"is 4 \(int\)", SETUP
    ),
    "region-bad-string": Case(
        patch, {"region": "everything"}, REFUSED, RegionError, r"got 'everything'", SETUP
    ),
    "region-unknown-dim": Case(
        patch,
        {"region": {"time": slice(4, 8), "z": slice(0, 1)}},
        REFUSED,
        RegionError,
        r"names dimension 'z'",
        SETUP,
    ),
    "region-with-mode-w": Case(
        patch,
        {"region": {"time": slice(4, 8)}, "mode": "w"},
        REFUSED,
        InputValidationError,
        r"region needs mode 'r\+' or 'a'",
        SETUP,
    ),
    "region-auto-not-in-store": Case(
        lambda: patch(start="2025-01-01"),
        {"region": "auto"},
        REFUSED,
        RegionError,
        r"not in the store's 'time'",
        SETUP,
    ),
    "region-auto-not-contiguous": Case(
        lambda: base().isel(time=[0, 2]),
        {"region": "auto"},
        REFUSED,
        RegionError,
        r"not contiguous",
        SETUP,
    ),
    "region-auto-no-coordinate-in-store": Case(
        lambda: base(periods=4, start="2024-01-05"),
        {"region": "auto"},
        REFUSED,
        RegionError,
        r"needs a coordinate 'x' in both",
        lambda: base().drop_vars("x"),
    ),
    "region-partial-chunk": Case(
        lambda: base(periods=4, start="2024-01-05", seed=3).chunk(),
        {"region": "auto"},
        REFUSED,
        ChunkAlignmentError,
        r"region time\[4:8\] starts or ends inside a Zarr chunk of 8",
        SETUP,
    ),
    "region-partial-chunk-align": Case(
        lambda: base(periods=4, start="2024-01-05", seed=3).chunk(),
        {"region": "auto", "align_chunks": True},
        setup=SETUP,
    ),
    "region-partial-chunk-mode-a": Case(
        lambda: base(periods=4, start="2024-01-05", seed=3).chunk(),
        {"region": "auto", "mode": "a"},
        setup=SETUP,
    ),
    "region-partial-chunk-mode-a-whole-graph": Case(
        lambda: base(periods=4, start="2024-01-05", seed=3).chunk(),
        {"region": "auto", "mode": "a"},
        setup=SETUP,
        flow_kwargs={"partitioned": False},
    ),
    # ---- refused on purpose although upstream writes (docs/reliability.md)
    "stricter-append-dtype": Case(
        lambda: base(start="2024-01-09").assign(b=lambda d: d.b + 0.5),
        {"append_dim": "time"},
        STRICTER,
        SchemaMismatchError,
        r"'b' has dtype float64 but the stored array holds int64",
        SETUP,
    ),
    "stricter-append-transposed": Case(
        lambda: base(start="2024-01-09").transpose("x", "time"),
        {"append_dim": "time"},
        STRICTER,
        SchemaMismatchError,
        r"'a' has dimensions \('x', 'time'\) but the stored array has \('time', 'x'\)",
        SETUP,
    ),
    "stricter-append-duplicate-steps": Case(
        lambda: base(start="2024-01-05"),
        {"append_dim": "time"},
        STRICTER,
        DuplicateStepsError,
        r"would duplicate 4 value\(s\)",
        SETUP,
    ),
    "stricter-append-unsorted": Case(
        lambda: base(start="2024-01-09").isel(time=[1, 0, 2, 3, 4, 5, 6, 7]),
        {"append_dim": "time"},
        STRICTER,
        InputValidationError,
        r"'time' coordinate is not increasing",
        SETUP,
    ),
    "stricter-append-static-differs": Case(
        lambda: base(start="2024-01-09").assign(e=("x", np.ones(3))),
        {"append_dim": "time"},
        STRICTER,
        SchemaMismatchError,
        r"'e' does not extend along \['time'\] and differs from the stored values",
        lambda: base().assign(e=("x", np.zeros(3))),
    ),
    "stricter-append-new-variable": Case(
        lambda: base(start="2024-01-09").assign(c=("time", np.ones(8))),
        {"append_dim": "time"},
        STRICTER,
        SchemaMismatchError,
        r"Variables \['c'\] along 'time' do not exist",
        SETUP,
    ),
    "stricter-region-mode-a-missing-group": Case(
        patch,
        {"region": {"time": slice(4, 8)}, "mode": "a", "group": "nope"},
        STRICTER,
        ConfigurationError,
        r"Group 'nope' does not exist on branch 'main': nothing to rewrite",
        SETUP,
    ),
    "stricter-region-other-labels": Case(
        lambda: patch(start="2025-01-05"),
        {"region": {"time": slice(4, 8)}},
        STRICTER,
        RegionError,
        r"'time' values .* differ from the store's at time\[4:8\]",
        SETUP,
    ),
}


# ------------------------------------------------------------------ running the table


Result = PeerResult
_repo = open_repo


def _write_upstream(obj: xr.Dataset | xr.DataArray, path: Path, **kwargs: Any) -> None:
    session = _repo(path).writable_session("main")
    upstream_to_icechunk(obj, session, **kwargs)
    session.commit("upstream")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, dask_cluster: Any) -> dict[str, Result]:
    """Every case written by upstream (in this process) and by our flow (one flow run)."""
    root = tmp_path_factory.mktemp("parity")
    out: dict[str, Result] = {}
    for cid, case in CASES.items():
        up, ours = root / cid / "upstream", root / cid / "ours"
        icechunk.Repository.create(icechunk.local_filesystem_storage(str(up)))
        if case.setup is not None:
            _write_upstream(case.setup(), up, mode="w")
        shutil.copytree(up, ours)  # the same starting repository, snapshot ids included
        out[cid] = Result(up, ours, _repo(ours).lookup_branch("main"))
        try:
            _write_upstream(case.make(), up, **case.kwargs)
        except Exception as exc:
            out[cid].upstream_error = exc

    @flow(task_runner=cast(Any, IcechunkDaskTaskRunner(address=dask_cluster.scheduler_address)))
    def parity_table() -> None:
        for cid, case in CASES.items():
            try:
                to_icechunk.fn(
                    case.make(), str(out[cid].ours), message=cid, **case.kwargs, **case.flow_kwargs
                )
            except Exception as exc:
                out[cid].ours_error = exc

    parity_table()
    return out


def _read(path: Path, group: str | None) -> xr.Dataset:
    store = _repo(path).readonly_session("main").store
    return xr.open_zarr(store, group=group, consolidated=False).load()


def _raw(path: Path, group: str | None) -> dict[str, Any]:
    """The group's attributes and every array's Zarr metadata (dtype, chunks, codecs, ...)."""
    store = _repo(path).readonly_session("main").store
    grp = zarr.open_group(store, path=group or "", mode="r")
    meta: dict[str, Any] = {"/": dict(grp.attrs)}
    meta.update({name: arr.metadata.to_dict() for name, arr in grp.arrays()})
    return meta


def _expected(case: Case) -> xr.Dataset:
    obj = case.make()
    ds = obj.to_dataset() if isinstance(obj, xr.DataArray) else obj
    return ds.compute()


@pytest.mark.parametrize("cid", list(CASES))
def test_parity(cid: str, results: dict[str, Result]) -> None:
    case, res = CASES[cid], results[cid]
    group = case.kwargs.get("group")
    if case.outcome in (SAME, CORRECT):
        assert res.upstream_error is None, f"upstream refused: {res.upstream_error!r}"
        assert res.ours_error is None, f"the flow refused: {res.ours_error!r}"
        ours = _read(res.ours, group)
        if case.outcome == SAME:
            xr.testing.assert_identical(ours, _read(res.upstream, group))
            assert _raw(res.ours, group) == _raw(res.upstream, group)
        else:
            xr.testing.assert_identical(ours, _expected(case))
        return
    if case.outcome == REFUSED:
        assert res.upstream_error is not None, "upstream wrote it; the table expects a refusal"
    else:
        assert res.upstream_error is None, f"upstream now refuses: {res.upstream_error!r}"
    err = res.ours_error
    assert err is not None, "the flow wrote it"
    assert case.error is not None and issubclass(case.error, IcechunkPrefectError)
    assert isinstance(err, case.error), f"{type(err).__name__}: {err}"
    assert re.search(case.match, str(err)), str(err)
    assert _repo(res.ours).lookup_branch("main") == res.tip  # nothing was published


# ------------------------------------------------------------------ real flow calls


@pytest.mark.parametrize(
    "cid",
    ["encoding-units-only", "region-auto-unindexed-dims", "encoding-unknown-key"],
)
def test_through_flow_calls(cid: str, runner: Any, tmp_path: Path) -> None:
    """The known gaps and a wrapped xarray refusal through a real call of the flow."""
    case = CASES[cid]
    up, ours = tmp_path / "upstream", tmp_path / "ours"
    icechunk.Repository.create(icechunk.local_filesystem_storage(str(up)))
    if case.setup is not None:
        _write_upstream(case.setup(), up, mode="w")
    shutil.copytree(up, ours)
    tip = _repo(ours).lookup_branch("main")
    run = to_icechunk.with_options(task_runner=runner)
    if case.outcome == REFUSED:
        with pytest.raises(ValueError):
            _write_upstream(case.make(), up, **case.kwargs)
        assert case.error is not None
        with pytest.raises(case.error, match=case.match):
            run(case.make(), str(ours), **case.kwargs)
        assert _repo(ours).lookup_branch("main") == tip
        return
    _write_upstream(case.make(), up, **case.kwargs)
    snapshot = run(case.make(), str(ours), **case.kwargs)
    assert _repo(ours).lookup_branch("main") == snapshot != tip
    xr.testing.assert_identical(_read(ours, None), _read(up, None))
    assert _raw(ours, None) == _raw(up, None)
