"""Issue 4: the flows against a real S3 endpoint (moto_server on loopback, IAM auth on)."""

from __future__ import annotations

import uuid
from typing import Any

import dask.array as da
import icechunk
import numpy as np
import xarray as xr
import zarr
from prefect.blocks.system import Secret

from icechunk_prefect import (
    FlowDatasetWriter,
    IcechunkRepository,
    finish_write,
    prepare_write,
    store_dask,
    to_icechunk,
)
from icechunk_prefect.errors import CommitConflictError
from tests.helpers import array_in, small_dataset


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
    np.testing.assert_array_equal(array_in(group, "extra")[:], src.compute())


def _patch(start: int, seed: int) -> xr.Dataset:
    patch = small_dataset(periods=10, start=f"2024-01-{start + 1:02d}", seed=seed)
    return patch.drop_vars(["x", "label"])


def _interleaved(
    runner: Any, repo: str, jobs: list[tuple[xr.Dataset, dict]], **options: Any
) -> list[Any]:
    """Concurrent writers, interleaved deterministically: every run reads the branch tip
    (metadata step) before any of them commits, then they commit one after the other."""
    prepare = prepare_write.with_options(task_runner=runner)
    finish = finish_write.with_options(task_runner=runner)
    writers = [
        prepare(FlowDatasetWriter(obj, repo, region=region, partition_size=10, **options))
        for obj, region in jobs
    ]
    return [finish(w, f"writer {i}", return_state=True) for i, w in enumerate(writers)]


def test_concurrent_writers_on_s3(runner, s3_server, s3_prefix):
    """Two writers build on the same tip: disjoint regions both land; on one region the
    second lands after the first (its values win), or, with on_overlap="refuse", fails
    with a conflict and nothing of it lands."""
    name = s3_server.save_block(s3_prefix, "conc")
    ref = f"icechunk-repository/{name}"
    base = small_dataset(periods=40)
    repo = icechunk.Repository.create(s3_server.storage(s3_prefix))
    session = repo.writable_session("main")
    base.to_zarr(session.store, mode="w", consolidated=False)
    initial = session.commit("initial")

    # Disjoint regions: both commit (the second rebases onto the first).
    a, b = _patch(0, seed=1), _patch(10, seed=2)
    states = _interleaved(runner, ref, [(a, {"time": slice(0, 10)}), (b, {"time": slice(10, 20)})])
    assert all(s.is_completed() for s in states), states
    commits = list(icechunk.Repository.open(s3_server.storage(s3_prefix)).ancestry(branch="main"))
    assert len(commits) == 4  # root, initial, A, B
    bases = {c.metadata.get("icechunk_prefect.base_snapshot") for c in commits[:2]}
    assert bases == {initial}  # both runs started from the same tip
    back = _read(s3_server, s3_prefix)
    np.testing.assert_array_equal(back.a[0:10].values, a.a.values)
    np.testing.assert_array_equal(back.a[10:20].values, b.a.values)
    np.testing.assert_array_equal(back.a[20:].values, base.a[20:].values)

    # The same region: the first commits; the second is written again on the new tip and
    # lands after it, as a run started after the first would.
    c, d = _patch(20, seed=3), _patch(20, seed=4)
    region = {"time": slice(20, 30)}
    states = _interleaved(runner, ref, [(c, region), (d, region)])
    assert all(s.is_completed() for s in states), states
    back = _read(s3_server, s3_prefix)
    np.testing.assert_array_equal(back.a[20:30].values, d.a.values)
    repo = icechunk.Repository.open(s3_server.storage(s3_prefix))
    commits = list(repo.ancestry(branch="main"))
    assert len(commits) == 6
    assert commits[0].parent_id == commits[1].id == states[0].result()
    assert commits[0].metadata["icechunk_prefect.rebase"]["rewritten"] == 1

    # The same region with on_overlap="refuse": the second fails, nothing of it lands.
    e, f = _patch(30, seed=5), _patch(30, seed=6)
    region = {"time": slice(30, 40)}
    states = _interleaved(runner, ref, [(e, region), (f, region)], on_overlap="refuse")
    assert states[0].is_completed()
    assert states[1].is_failed()
    assert isinstance(states[1].result(raise_on_failure=False), CommitConflictError)
    back = _read(s3_server, s3_prefix)
    np.testing.assert_array_equal(back.a[30:40].values, e.a.values)
    assert len(list(repo.ancestry(branch="main"))) == 7


def test_resume_on_s3(runner, s3_server, s3_prefix, tmp_path, monkeypatch):
    """A run on S3 that fails in one partition, re-run: only that partition is computed
    again, one commit lands, and the persisted forks carry no secret."""
    from icechunk_prefect.caching import RESULT_STORAGE_ENV
    from tests.fault_helpers import computations, instrument

    results = tmp_path / "results"
    monkeypatch.setenv(RESULT_STORAGE_ENV, str(results))
    name = s3_server.save_block(s3_prefix, "resume")
    marks = tmp_path / "marks"
    ds = instrument(small_dataset(), "a", marks)
    (marks / "poison-3_0").touch()
    run = to_icechunk.with_options(task_runner=runner)
    ref = f"icechunk-repository/{name}"
    assert run(ds, ref, mode="w", partition_size=10, return_state=True).is_failed()
    repo = icechunk.Repository.open(s3_server.storage(s3_prefix))
    assert len(list(repo.ancestry(branch="main"))) == 1  # nothing committed

    (marks / "poison-3_0").unlink()
    state = run(ds, ref, mode="w", partition_size=10, return_state=True)
    assert state.is_completed()
    blocks = ["0_0", "1_0", "2_0", "3_0"]
    assert [computations(marks, b) for b in blocks] == [1, 1, 1, 2]
    assert _read(s3_server, s3_prefix).identical(small_dataset().compute())
    assert len(list(repo.ancestry(branch="main"))) == 2
    persisted = [p.read_bytes() for p in results.rglob("*") if p.is_file()]
    assert len(persisted) >= 4
    for secret in (s3_server.access_key_id, s3_server.secret_access_key):
        assert not any(secret.encode() in blob for blob in persisted)
