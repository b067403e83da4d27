"""Where the flows run: the Dask task runner and the Prefect API its workers report to.

:class:`IcechunkDaskTaskRunner` is prefect-dask's ``DaskTaskRunner`` with one
addition: before any task is submitted it makes sure there is exactly one Prefect
API for the run and that every Dask worker talks to it. Without that, a flow run
with no ``PREFECT_API_URL`` configured starts an ephemeral server, and every Dask
worker process starts one more of its own, to which its task runs are reported.

Configuration for the cluster is a :class:`DaskClusterConfig` (a pydantic model,
so it renders as a form in the Prefect UI): a local cluster by default, an
existing scheduler by address, or any cluster class (dask-kubernetes,
dask-jobqueue, Coiled) by import path with its keyword arguments.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.context import SettingsContext, get_settings_context
from prefect.settings import PREFECT_API_URL, Settings
from prefect_dask.task_runners import DaskTaskRunner
from pydantic import BaseModel, Field

from icechunk_prefect.core.cluster import inside_dask_worker

__all__ = [
    "DaskClusterConfig",
    "IcechunkDaskTaskRunner",
    "ensure_shared_api",
    "flow_dask_client",
    "flow_run_metadata",
]

_STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
if (
    _STARTUP_TIMEOUT_ENV not in os.environ
    and not os.environ.get("PREFECT_API_URL")
    and not inside_dask_worker()
):
    # A flow run with no PREFECT_API_URL starts Prefect's ephemeral server; its first
    # start on a machine (database migrations) takes longer than the 20 s default, and
    # the run then fails with "Timed out while attempting to connect". Allow 180 s
    # unless the user chose a value. Not where no server can start (an API is set, or
    # on a Dask worker, where this import may happen inside a task while other tasks
    # run: the environment and Prefect's global settings are process-wide).
    from prefect.context import refresh_global_settings_context

    os.environ[_STARTUP_TIMEOUT_ENV] = "180"
    refresh_global_settings_context()


def ensure_shared_api(startup_timeout: int = 180, *, export: bool = True) -> str:
    """Return the URL of the Prefect API this process uses, starting one if needed.

    With ``PREFECT_API_URL`` set, that URL is returned. Otherwise Prefect's
    ephemeral server (the one a flow run brings up by itself) is started once for
    this process, and (with ``export``) its URL is exported as ``PREFECT_API_URL`` so
    that processes started afterwards (local Dask workers) use it instead of starting
    their own. From a thread pool, pass ``export=False`` and export the URL from the
    main thread: the environment is process-wide.
    """
    url = PREFECT_API_URL.value()
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        # A cold start (new database, migrations) takes longer than Prefect's 20 s default.
        server.start(timeout=startup_timeout)
        url = server.api_url
    if export:
        os.environ["PREFECT_API_URL"] = url
    return url


def flow_dask_client() -> Any | None:
    """The ``distributed.Client`` that dask work started in this process should use.

    In a flow run on a ``DaskTaskRunner``: the runner's client (starting its
    cluster if no task has been submitted yet). Elsewhere: distributed's default
    client, if one was made. ``None`` on a Dask worker (work there stays on the
    worker's own threads) and when there is no cluster at all.
    """
    if inside_dask_worker():
        return None
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    runner = getattr(ctx, "task_runner", None) if ctx is not None else None
    if isinstance(runner, DaskTaskRunner):
        return runner.client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


class IcechunkDaskTaskRunner(DaskTaskRunner):
    """prefect-dask's ``DaskTaskRunner`` whose workers report to the flow's own Prefect API.

    Arguments are those of ``DaskTaskRunner``. With neither ``address`` nor
    ``cluster_class``, a ``distributed.LocalCluster`` of worker processes is made
    with ``cluster_kwargs`` over light defaults (one thread per worker, one worker
    per core, no dashboard).

    Example:
        ```python
        from prefect import flow, task
        from icechunk_prefect import IcechunkDaskTaskRunner

        @task
        def double(x: int) -> int:
            return 2 * x

        @flow(task_runner=IcechunkDaskTaskRunner(cluster_kwargs={"n_workers": 1}))
        def doubles() -> list[int]:
            return [f.result() for f in double.map([1, 2])]

        assert doubles() == [2, 4]
        ```
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("address") and not kwargs.get("cluster_class") and not args:
            defaults: dict[str, Any] = {
                "n_workers": max(1, min(4, os.cpu_count() or 1)),
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
            kwargs["cluster_kwargs"] = {**defaults, **(kwargs.get("cluster_kwargs") or {})}
        super().__init__(*args, **kwargs)
        self._api_url: str | None = None
        self._pinned_settings: tuple[Settings, Settings] | None = None

    def __enter__(self) -> IcechunkDaskTaskRunner:
        # Prefect also enters a copy of the flow's task runner on the Dask worker for
        # every task (to hydrate the flow run context). There, the API is the one the
        # serialized settings name: never start a server or touch the environment.
        if not inside_dask_worker():
            self._api_url = ensure_shared_api()
        super().__enter__()
        return self

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        # The serialized settings context travels with every task to the worker:
        # pin the API URL in it so that workers of an existing cluster (which did not
        # inherit our environment) report to the same API.
        if not self._api_url:
            return super().submit(*args, **kwargs)
        context = get_settings_context()
        if context.settings.api.url == self._api_url:
            return super().submit(*args, **kwargs)
        with SettingsContext(profile=context.profile, settings=self._pinned(context.settings)):
            return super().submit(*args, **kwargs)

    def _pinned(self, settings: Settings) -> Settings:
        """``settings`` with the API URL pinned, built once per settings object:
        ``copy_with_update`` re-reads every settings source (environment, .env and
        TOML files), which cost ~0.07 s per submitted task on 2 cores."""
        cached = self._pinned_settings
        if cached is None or cached[0] is not settings:
            updated = settings.copy_with_update(updates={PREFECT_API_URL: self._api_url})
            self._pinned_settings = cached = (settings, updated)
        return cached[1]


class DaskClusterConfig(BaseModel):
    """Which Dask cluster a flow runs on.

    Leave everything empty for a local cluster of worker processes on this
    machine. Set ``address`` to use a running scheduler (``tcp://host:8786``), or
    ``cluster_class`` (an import path such as ``dask_kubernetes.operator.KubeCluster``
    or ``dask_jobqueue.SLURMCluster``) with ``cluster_kwargs`` to start one.

    Example:
        ```python
        from icechunk_prefect import DaskClusterConfig

        runner = DaskClusterConfig(n_workers=2).task_runner()
        ```
    """

    address: str | None = Field(
        default=None, description="Address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786."
    )
    cluster_class: str | None = Field(
        default=None,
        description="Import path of a Dask cluster class, e.g. dask_jobqueue.SLURMCluster.",
    )
    cluster_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the cluster class."
    )
    adapt_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Adaptive scaling, e.g. {minimum: 1, maximum: 20}."
    )
    n_workers: int | None = Field(
        default=None, ge=1, description="Local cluster only: number of worker processes."
    )
    threads_per_worker: int | None = Field(
        default=None, ge=1, description="Local cluster only: threads per worker."
    )

    def task_runner(self) -> IcechunkDaskTaskRunner:
        """Build the task runner this configuration describes."""
        if self.address:
            return IcechunkDaskTaskRunner(address=self.address)
        kwargs = dict(self.cluster_kwargs)
        if self.n_workers is not None:
            kwargs.setdefault("n_workers", self.n_workers)
        if self.threads_per_worker is not None:
            kwargs.setdefault("threads_per_worker", self.threads_per_worker)
        return IcechunkDaskTaskRunner(
            cluster_class=self.cluster_class,
            cluster_kwargs=kwargs,
            adapt_kwargs=self.adapt_kwargs or None,
        )


def flow_run_metadata() -> dict[str, Any]:
    """The current flow run as commit metadata (id, name, flow name); empty outside a run."""
    from prefect.runtime import flow_run

    from icechunk_prefect.core.metadata import FLOW_NAME, FLOW_RUN_ID, FLOW_RUN_NAME

    run_id = flow_run.id
    if run_id is None:
        return {}
    return {FLOW_RUN_ID: str(run_id), FLOW_RUN_NAME: flow_run.name, FLOW_NAME: flow_run.flow_name}
