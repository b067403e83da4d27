"""Issue 4: secrets never travel.

A run writes through S3 (moto, IAM auth on: only the real key pair is accepted)
with credentials held as secrets in a saved IcechunkRepository block, with task
results persisted. Then everything the run left behind is scanned for the
secret values: persisted result files, the run's Prefect logs, flow and task run
parameters read back from the API, the Dask worker and scheduler logs, and the
objects in the bucket. A positive control shows the scan finds a secret that
Prefect persisted the usual way (a fork opened with static keys).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import icechunk
import xarray as xr
from prefect.settings import (
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_RESULTS_PERSIST_BY_DEFAULT,
    temporary_settings,
)

from icechunk_prefect import IcechunkRepository, to_icechunk
from tests.helpers import small_dataset

_B64 = re.compile(rb"[A-Za-z0-9+/_-]{24,}={0,2}")


def _views(blob: bytes) -> Iterator[bytes]:
    """The bytes, and base64 inside them decoded (Prefect stores pickles as base64 in JSON)."""
    yield blob
    try:
        record = json.loads(blob)
    except ValueError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("result"), str):
        yield base64.b64decode(record["result"])
    flat = blob.replace(b"\\n", b"").replace(b"\n", b"")
    for match in _B64.finditer(flat):
        text = match.group()
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                yield decode(text + b"=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                continue


def _leaks(secrets: Iterable[str], where: dict[str, bytes]) -> list[tuple[str, str]]:
    found = []
    for label, blob in where.items():
        for view in _views(blob):
            for secret in secrets:
                if secret.encode() in view:
                    found.append((label, secret[:4] + "..."))
    return found


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _set_prefect_log_level(level: str) -> str:
    logger = logging.getLogger("prefect")
    old = logging.getLevelName(logger.level)
    logger.setLevel(level)
    return old


def _flush_logs() -> None:
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()


async def _api_records(flow_run_ids: list[Any]) -> dict[str, bytes]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import TaskRunSort

    out: dict[str, bytes] = {}
    async with get_client() as client:
        for run_id in flow_run_ids:
            flow_run = await client.read_flow_run(run_id)
            out[f"flow run {run_id} parameters"] = flow_run.model_dump_json().encode()
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=200,
            )
            for tr in task_runs:
                out[f"task run {tr.name}"] = tr.model_dump_json().encode()
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                limit=200,
                offset=0,
            )
            out[f"logs of {run_id}"] = "\n".join(log.message for log in logs).encode()
    return out


def _persist_task_results(monkeypatch) -> None:
    """Make the write steps persist their results (the ForkSessions) as resume will (issue 7).

    Until then the tasks use NO_CACHE, under which Prefect persists nothing; the
    flows pick up these variants because they are looked up in ``writer`` at call time.
    """
    from prefect.cache_policies import DEFAULT, NO_CACHE

    from icechunk_prefect import writer

    for name in (
        "write_metadata_task",
        "write_eager_task",
        "write_partitions_task",
        "merge_task",
        "try_commit_task",
    ):
        task = getattr(writer, name)
        if task.cache_policy is NO_CACHE:
            monkeypatch.setattr(writer, name, task.with_options(cache_policy=DEFAULT))


def test_secrets_never_travel(runner, dask_cluster, s3_server, s3_prefix, tmp_path, monkeypatch):
    from distributed import Client

    _persist_task_results(monkeypatch)

    secrets = [s3_server.secret_access_key, s3_server.access_key_id]
    # The workers can only get the keys from the Prefect API: none is in the environment.
    creds = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    assert not [k for k in creds if k in os.environ]

    name = s3_server.save_block(s3_prefix, "secret-scan")
    block = cast(IcechunkRepository, IcechunkRepository.load(name))  # holds the secrets here
    assert block.secret_access_key is not None
    assert block.secret_access_key.get_secret_value() == s3_server.secret_access_key

    results = tmp_path / "results"
    run = to_icechunk.with_options(task_runner=runner)
    first, more = small_dataset(periods=20), small_dataset(periods=20, start="2024-01-21", seed=1)
    with Client(dask_cluster.scheduler_address) as client:
        old_levels = cast(dict[str, int], client.run(_set_prefect_log_level, "DEBUG"))
        old_here = _set_prefect_log_level("DEBUG")
        try:
            with temporary_settings(
                updates={
                    PREFECT_RESULTS_PERSIST_BY_DEFAULT: True,
                    PREFECT_LOCAL_STORAGE_PATH: results,
                }
            ):
                s1 = run(first, block, mode="w", partition_size=10, return_state=True)
                s2 = run(
                    more,
                    f"icechunk-repository/{name}",
                    append_dim="time",
                    partition_size=10,
                    return_state=True,
                )
            _flush_logs()
            client.run(_flush_logs)
        finally:
            for addr, level in old_levels.items():
                client.run(_set_prefect_log_level, level, workers=[addr])
            _set_prefect_log_level(old_here)
        worker_logs = cast(dict[str, list[tuple[str, str]]], client.get_worker_logs())
        scheduler_logs = cast(list[tuple[str, str]], client.get_scheduler_logs())
    assert s1.is_completed() and s2.is_completed()

    # The data landed (through the credentials the workers read from the API).
    repo = icechunk.Repository.open(s3_server.storage(s3_prefix))
    back = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
    assert back.identical(xr.concat([first, more], dim="time").compute())

    # Gather everything the runs left behind.
    left: dict[str, bytes] = {}
    persisted = _files(results)
    left.update(persisted)
    api = asyncio.run(_api_records([s1.state_details.flow_run_id, s2.state_details.flow_run_id]))
    left.update(api)
    for addr, lines in worker_logs.items():
        left[f"worker log {addr}"] = "\n".join(f"{lvl} {msg}" for lvl, msg in lines).encode()
    left["scheduler log"] = "\n".join(f"{lvl} {msg}" for lvl, msg in scheduler_logs).encode()
    left.update({f"s3 object {k}": v for k, v in s3_server.objects(s3_prefix).items()})

    # What was gathered is real: forks were persisted, with the storage in them; the
    # block parameter was stored; logs were sent; the repository has objects.
    forks = [b for b in persisted.values() if any(b"ForkSession" in v for v in _views(b))]
    assert len(forks) >= 6, sorted(persisted)  # metadata, 2 partitions, merge x 2 runs
    assert any(s3_server.endpoint_url.encode() in v for b in forks for v in _views(b))
    params = api[f"flow run {s1.state_details.flow_run_id} parameters"]
    assert s3_prefix.encode() in params and b'"secret_access_key"' in params
    assert (
        f"icechunk-repository/{name}".encode()
        in api[f"flow run {s2.state_details.flow_run_id} parameters"]
    )
    assert any(b"committed" in v for k, v in api.items() if k.startswith("logs of"))
    assert any(left[k] for k in left if k.startswith("worker log"))
    assert any(k.startswith("s3 object") for k in left)

    assert _leaks(secrets, left) == []


def test_scan_finds_a_secret_persisted_the_usual_way(s3_server, s3_prefix, tmp_path):
    """Positive control: a fork opened with static keys, persisted by Prefect, is caught."""
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore

    repo = icechunk.Repository.create(s3_server.storage(s3_prefix))
    fork = repo.writable_session("main").fork()
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path / "control")))
    store.persist_result_record(store.create_result_record(fork, key="control-fork"))
    files = _files(tmp_path / "control")
    assert files
    assert s3_server.secret_access_key.encode() not in b"".join(files.values())  # base64'd
    assert _leaks([s3_server.secret_access_key], files) != []
