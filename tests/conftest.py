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


def _ui_server_class() -> type:
    """Prefect's test-harness server class, starting an app that also serves the UI."""
    import subprocess
    import sys

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class UIServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # As Prefect's own (ephemeral: no scheduler), with the UI: tests/prefect_ui_app.py.
            root = str(Path(__file__).resolve().parents[1])
            env = {
                **os.environ,
                **get_current_settings().to_environment_variables(exclude_unset=True),
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                "PREFECT_UI_ENABLED": "1",
                "PREFECT_UI_API_URL": f"{self.address}/api",
                "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
            }
            return subprocess.Popen(
                [
                    *(sys.executable, "-m", "uvicorn", "--factory"),
                    "tests.prefect_ui_app:create_app",
                    *("--host", "127.0.0.1", "--port", str(self.port)),
                    *("--log-level", "error", "--lifespan", "on"),
                ],
                cwd=root,
                env=env,
            )

    return UIServer


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[str]:
    """A real Prefect server (own SQLite database) for the whole test session.

    Its URL is exported as PREFECT_API_URL so that Dask worker processes started
    afterwards report to it. It also serves the Prefect UI (V1 at the server's
    root, V2 at /v2) for the browser tests: see ``prefect_ui``.
    """
    from unittest import mock

    import prefect.testing.utilities as harness
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with (
        mock.patch.object(harness, "SubprocessASGIServer", _ui_server_class()),
        prefect_test_harness(server_startup_timeout=180),
    ):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        yield url


@pytest.fixture(scope="session")
def prefect_ui(prefect_api: str) -> str:
    """The address of the session server's UI (``<address>/`` is V1, ``<address>/v2/`` V2)."""
    return prefect_api.removesuffix("/api")


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
