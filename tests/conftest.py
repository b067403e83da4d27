"""Shared fixtures: one real Prefect API server and one Dask LocalCluster for the whole run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.conftest_s3"]

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[str]:
    """A real Prefect server (own SQLite database) for the whole test session.

    Its URL is exported as PREFECT_API_URL so that Dask worker processes started
    afterwards report to it.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        yield url


@pytest.fixture(scope="session")
def dask_cluster(prefect_api: str) -> Iterator[object]:
    """A LocalCluster of two single-threaded worker processes, shared by the tests."""
    from distributed import LocalCluster

    options: dict[str, Any] = {"dashboard_address": None}  # None: no dashboard
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, **options) as cluster:
        yield cluster


@pytest.fixture
def runner(dask_cluster: object):  # type: ignore[no-untyped-def]
    """A task runner on the shared cluster."""
    from icechunk_prefect import IcechunkDaskTaskRunner

    return IcechunkDaskTaskRunner(address=dask_cluster.scheduler_address)  # type: ignore[attr-defined]


@pytest.fixture
def repo_path(tmp_path: Path) -> str:
    """A fresh local repository path (not yet created)."""
    return str(tmp_path / "repo")
