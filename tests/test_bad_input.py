"""Issue 7: bad input is refused through the to_icechunk flow with a clear error, before
anything is published: the branch tip does not move."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import icechunk
import pytest
import xarray as xr

from icechunk_prefect import to_icechunk
from icechunk_prefect.core.sessions import commit_fork
from icechunk_prefect.core.spec import WriteSpec
from icechunk_prefect.core.steps import plan_write, write_eager, write_metadata, write_partition
from icechunk_prefect.errors import (
    ChunkAlignmentError,
    ConfigurationError,
    DuplicateStepsError,
    InputValidationError,
    RegionError,
    SchemaMismatchError,
)
from tests.helpers import open_repo, read_back, small_dataset


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A repository holding small_dataset(periods=20) (written without Prefect)."""
    path = str(tmp_path_factory.mktemp("bad-input") / "repo")
    ds = small_dataset(periods=20)
    spec = WriteSpec(mode="w", partition_size=10)
    fork = write_metadata(path, "main", ds, spec)
    plan = plan_write(fork, ds, spec)
    fork = write_eager(fork, ds, plan)
    child = fork.fork()
    parts = [
        write_partition(child, ds[list(p.variables)].isel(p.source), p, None)
        for p in plan.partitions
    ]
    fork.merge(*parts)
    commit_fork(path, "main", fork, message="base")
    return path


def _more(**kw) -> xr.Dataset:
    return small_dataset(periods=20, start="2024-01-21", seed=1, **kw)


def _patch(start: str, periods: int) -> xr.Dataset:
    return small_dataset(periods=periods, start=start, seed=5).drop_vars(["x", "label"])


CASES = {
    "misaligned dask chunks": (
        lambda: _more().chunk(time=7),
        {"append_dim": "time"},
        ChunkAlignmentError,
        r"dask chunks \(7, 7, 6\) along 'time'.*multiple of the Zarr chunk size 10",
    ),
    "dimension order mismatch": (
        lambda: _more().assign(a=lambda d: d.a.T),
        {"append_dim": "time"},
        SchemaMismatchError,
        r"'a' has dimensions \('x', 'time'\) but the stored array has \('time', 'x'\)",
    ),
    "other dimension size mismatch": (
        lambda: small_dataset(periods=20, start="2024-01-21", nx=4),
        {"append_dim": "time"},
        SchemaMismatchError,
        r"4 positions along 'x' but the stored array has 6",
    ),
    "dtype mismatch": (
        lambda: _more().assign(b=lambda d: d.b.astype("float32")),
        {"append_dim": "time"},
        SchemaMismatchError,
        r"'b' has dtype float32 but the stored array holds int64",
    ),
    "region out of bounds": (
        lambda: _patch("2024-01-16", 10),
        {"region": {"time": slice(15, 25)}},
        RegionError,
        r"time\[15:25\] lies outside array .* 20 positions",
    ),
    "region values not in store": (
        lambda: _patch("2025-01-01", 10),
        {"region": "auto"},
        RegionError,
        r"not in the store's 'time'",
    ),
    "append steps already present": (
        lambda: small_dataset(periods=10, start="2024-01-15"),
        {"append_dim": "time"},
        DuplicateStepsError,
        r"would duplicate 6 value\(s\) already in the store",
    ),
    "non-monotonic time": (
        lambda: _more().isel(time=[1, 0, *range(2, 20)]),
        {"append_dim": "time"},
        InputValidationError,
        r"'time' coordinate is not increasing.*sortby",
    ),
    "duplicated time": (
        lambda: _more().isel(time=[0, 0, *range(2, 20)]),
        {"append_dim": "time"},
        InputValidationError,
        r"'time' coordinate holds duplicated values",
    ),
    "empty dataset": (
        xr.Dataset,
        {"mode": "w"},
        InputValidationError,
        r"dataset is empty",
    ),
    "no time steps": (
        lambda: _more().isel(time=slice(0, 0)),
        {"append_dim": "time"},
        InputValidationError,
        r"zero-length dimensions \{'time': 0\}",
    ),
    "unknown variable in encoding": (
        _more,
        {"mode": "w", "encoding": {"t2m": {"dtype": "float32"}}},
        InputValidationError,
        r"encoding names variable\(s\) \['t2m'\].*its variables: \['a', 'b'",
    ),
    "unknown partition dimension": (
        _more,
        {"append_dim": "time", "partition_dim": "lat"},
        InputValidationError,
        r"partition_dim 'lat' is not a dimension of the dataset",
    ),
    "unknown append dimension": (
        _more,
        {"append_dim": "step"},
        InputValidationError,
        r"append_dim 'step' is not a dimension",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_refused_branch_unchanged(case, base_repo, runner):
    make, kwargs, error, message = CASES[case]
    repo = open_repo(base_repo)
    tip = repo.lookup_branch("main")
    with pytest.raises(error, match=message):
        to_icechunk.with_options(task_runner=runner)(make(), base_repo, **kwargs)
    assert open_repo(base_repo).lookup_branch("main") == tip
    assert read_back(base_repo).identical(small_dataset(periods=20).compute())


def test_missing_repository_refused_not_created(runner, tmp_path):
    path = tmp_path / "nowhere"
    with pytest.raises(ConfigurationError, match=r"No Icechunk repository at .*does not exist"):
        to_icechunk.with_options(task_runner=runner)(_more(), str(path), append_dim="time")
    assert not path.exists()


def test_folder_that_is_not_a_repository_refused(runner, tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a repository")
    run = to_icechunk.with_options(task_runner=runner)
    with pytest.raises(ConfigurationError, match=r"holds \['notes.txt'\]"):
        run(_more(), str(folder), append_dim="time")
    with pytest.raises(ConfigurationError, match=r"not an Icechunk repository and is not empty"):
        run(_more(), str(folder), mode="w")
    assert sorted(os.listdir(folder)) == ["notes.txt"]
    a_file = Path(tmp_path / "a-file")
    a_file.write_text("x")
    with pytest.raises(ConfigurationError, match=r"is a file, not a folder"):
        run(_more(), str(a_file), mode="w")


def test_in_memory_storage_refused_through_flow(runner):
    repo = icechunk.Repository.create(icechunk.in_memory_storage())
    with pytest.raises(ConfigurationError, match="In-memory storage cannot be used"):
        to_icechunk.with_options(task_runner=runner)(_more(), cast(Any, repo), mode="w")
