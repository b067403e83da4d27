"""Issue 4: the flows against a real S3 endpoint (moto_server on loopback, IAM auth on)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask.array as da
import icechunk
import numpy as np
import xarray as xr
import zarr
from prefect.blocks.system import Secret

from icechunk_prefect import (
    CommitConflictError,
    IcechunkDaskTaskRunner,
    IcechunkRepository,
    store_dask,
    to_icechunk,
)
from tests.helpers import small_dataset


def _read(s3_server: Any, prefix: str) -> xr.Dataset:
    repo = icechunk.Repository.open(s3_server.storage(prefix))
    return xr.open_zarr(repo.readonly_session("main").store, consolidated=False)


def test_partitioned_flow_and_store_dask_on_s3(runner, s3_server, s3_prefix):
    key_name, secret_name = f"k-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    Secret(value=s3_server.access_key_id).save(key_name)
    Secret(value=s3_server.secret_access_key).save(secret_name)
    block = IcechunkRepository(
        **s3_server.block_fields(s3_prefix),
        access_key_id_secret=key_name,
        secret_access_key_secret=secret_name,
    )
    ds = small_dataset()
    run = to_icechunk.with_options(task_runner=runner)
    snapshot = run(ds, block, mode="w", partition_size=10)
    assert _read(s3_server, s3_prefix).identical(ds.compute())
    repo = icechunk.Repository.open(s3_server.storage(s3_prefix))
    head = next(iter(repo.ancestry(branch="main")))
    assert head.id == snapshot
    assert head.metadata["icechunk_prefect.partitions"] == 4
    assert head.metadata["icechunk_prefect.parameters"]["repo"] == block.describe()
    assert block.describe().startswith(f"s3://{s3_server.bucket}/{s3_prefix}")

    # store_dask, with the block saved and passed by name.
    name = f"s3-{uuid.uuid4().hex[:8]}"
    block.save(name)
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="extra", shape=(40, 6), chunks=(10, 6), dtype="f8")
    session.commit("create extra")
    src = da.random.random((40, 6), chunks=(20, 6))
    store_dask.with_options(task_runner=runner)(
        [src], ["extra"], f"icechunk-repository/{name}", partition_size=20
    )
    group = zarr.open_group(
        icechunk.Repository.open(s3_server.storage(s3_prefix)).readonly_session("main").store,
        mode="r",
    )
    np.testing.assert_array_equal(group["extra"][:], src.compute())


def _meet(block: np.ndarray, marker_dir: str, me: str, other: str) -> np.ndarray:
    """Signal that ``me`` is writing, then wait until ``other`` is writing too."""
    Path(marker_dir, me).touch()
    for _ in range(3000):  # a safety net against a hang, not a timing assertion
        if Path(marker_dir, other).exists():
            break
        time.sleep(0.1)
    return block


def _patch(ds: xr.Dataset, start: int, seed: int, marker_dir: str, me: str, other: str):
    patch = small_dataset(periods=10, start=f"2024-01-{start + 1:02d}", seed=seed)
    patch = patch.drop_vars(["x", "label"])
    arr = patch["a"].data
    met = arr.map_blocks(_meet, marker_dir, me, other, dtype=arr.dtype)
    out = patch.copy()
    out["a"] = (patch["a"].dims, met, patch["a"].attrs)
    out["a"].encoding = patch["a"].encoding
    return out, patch


def _two_writers(address: str, prefix: str, jobs: list[tuple[xr.Dataset, dict]]) -> list[Any]:
    def one(job: tuple[xr.Dataset, dict]) -> Any:
        obj, region = job
        run = to_icechunk.with_options(task_runner=IcechunkDaskTaskRunner(address=address))
        return run(obj, f"icechunk-repository/{prefix}", region=region, return_state=True)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, jobs))


def test_concurrent_writers_on_s3(dask_cluster, s3_server, s3_prefix, tmp_path):
    """Two flow runs write at the same time (both read the same tip before either commits)."""
    name = f"conc-{uuid.uuid4().hex[:8]}"
    IcechunkRepository(
        **s3_server.block_fields(s3_prefix),
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    ).save(name)
    base = small_dataset(periods=40)
    repo = icechunk.Repository.create(s3_server.storage(s3_prefix))
    session = repo.writable_session("main")
    base.to_zarr(session.store, mode="w", consolidated=False)
    initial = session.commit("initial")
    address = dask_cluster.scheduler_address

    # Disjoint regions: both commit (the second rebases onto the first).
    marks = tmp_path / "disjoint"
    marks.mkdir()
    a_obj, a = _patch(base, 0, seed=1, marker_dir=str(marks), me="A", other="B")
    b_obj, b = _patch(base, 10, seed=2, marker_dir=str(marks), me="B", other="A")
    states = _two_writers(
        address,
        name,
        [(a_obj, {"time": slice(0, 10)}), (b_obj, {"time": slice(10, 20)})],
    )
    assert all(s.is_completed() for s in states), states
    commits = list(icechunk.Repository.open(s3_server.storage(s3_prefix)).ancestry(branch="main"))
    assert len(commits) == 4  # root, initial, A, B
    bases = {c.metadata.get("icechunk_prefect.base_snapshot") for c in commits[:2]}
    assert bases == {initial}  # both runs started from the same tip: they overlapped
    back = _read(s3_server, s3_prefix)
    np.testing.assert_array_equal(back.a[0:10].values, a.a.values)
    np.testing.assert_array_equal(back.a[10:20].values, b.a.values)
    np.testing.assert_array_equal(back.a[20:].values, base.a[20:].values)

    # The same region: exactly one commits; the other fails with a conflict, nothing of it lands.
    marks = tmp_path / "same"
    marks.mkdir()
    c_obj, c = _patch(base, 20, seed=3, marker_dir=str(marks), me="C", other="D")
    d_obj, d = _patch(base, 20, seed=4, marker_dir=str(marks), me="D", other="C")
    region = {"time": slice(20, 30)}
    states = _two_writers(address, name, [(c_obj, region), (d_obj, region)])
    done = [s.is_completed() for s in states]
    assert sorted(done) == [False, True], states
    failed = states[done.index(False)]
    assert isinstance(failed.result(raise_on_failure=False), CommitConflictError)
    winner = (c, d)[done.index(True)]
    back = _read(s3_server, s3_prefix)
    np.testing.assert_array_equal(back.a[20:30].values, winner.a.values)
    assert (
        len(list(icechunk.Repository.open(s3_server.storage(s3_prefix)).ancestry(branch="main")))
        == 4
    )
