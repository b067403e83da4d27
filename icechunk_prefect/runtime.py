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

The local cluster a runner with no cluster settings starts (the library flows'
default) is chosen per run from the data the flow is given (:func:`local_cluster_kwargs`):
up to :data:`SMALL_WRITE_BYTES`, a cluster of threads in the flow process (started in a
fraction of a second); beyond that, one worker process per core.

A local cluster of processes starts its workers with Python's "spawn" method, which
runs the top level of the user's script again in every worker. :class:`ScriptSafeFlow`
(the library flows' class) refuses, before any flow run exists, a call that would
make that recursive (:func:`refuse_recursive_call`).
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, Self, TypeVar, cast

from prefect import Flow
from prefect.context import FlowRunContext, SettingsContext, get_settings_context
from prefect.settings import PREFECT_API_URL, Settings
from prefect_dask.task_runners import DaskTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from icechunk_prefect.core.cluster import inside_dask_worker

__all__ = [
    "SMALL_WRITE_BYTES",
    "DaskClusterConfig",
    "IcechunkDaskTaskRunner",
    "ScriptSafeFlow",
    "data_bytes",
    "ensure_shared_api",
    "flow_dask_client",
    "flow_run_metadata",
    "local_cluster_kwargs",
    "refuse_recursive_call",
]

P = ParamSpec("P")
R = TypeVar("R")

SMALL_WRITE_BYTES = 256 * 2**20
"""Data up to this many bytes (256 MiB, the default partition target) is written, by a
runner with no cluster settings, on a local cluster of threads in the flow process."""

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


def data_bytes(values: Iterable[Any]) -> int | None:
    """Bytes of the xarray objects and dask arrays among ``values`` (and in lists or
    tuples of them): what a write is given. ``None`` when there are none."""
    import dask.array as da
    import xarray as xr

    total: int | None = None
    for value in values:
        items = value if isinstance(value, list | tuple) else (value,)
        for item in items:
            if isinstance(item, xr.Dataset | xr.DataArray | da.Array):
                total = (total or 0) + int(getattr(item, "nbytes", 0))
    return total


def local_cluster_kwargs(nbytes: int | None) -> dict[str, Any]:
    """The ``distributed.LocalCluster`` arguments for a write of ``nbytes`` (``None``:
    unknown) by a runner with no cluster settings.

    Up to :data:`SMALL_WRITE_BYTES`: one worker of threads (one per core, at most 4) in
    the flow process, started in a fraction of a second, with nothing to import and no
    process to spawn. Larger or unknown: one single-threaded worker process per core (at
    most 4), so that Python code of many partitions runs in parallel.
    """
    cores = max(1, min(4, os.cpu_count() or 1))
    if nbytes is not None and nbytes <= SMALL_WRITE_BYTES:
        return {
            "n_workers": 1,
            "threads_per_worker": cores,
            "processes": False,
            "dashboard_address": None,
        }
    return {
        "n_workers": cores,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }


class IcechunkDaskTaskRunner(DaskTaskRunner):
    """prefect-dask's ``DaskTaskRunner`` whose workers report to the flow's own Prefect API.

    Arguments are those of ``DaskTaskRunner``. With no cluster settings at all (no
    ``address``, ``cluster``, ``cluster_class``, ``cluster_kwargs`` or ``adapt_kwargs``)
    each run makes a ``distributed.LocalCluster`` that fits the data the flow was given
    (:func:`local_cluster_kwargs`: threads in the flow process up to
    :data:`SMALL_WRITE_BYTES`, else one worker process per core). With ``cluster_kwargs``
    alone, a ``LocalCluster`` of worker processes with those arguments over light defaults
    (one thread per worker, one worker per core, no dashboard).

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
        settings = ("address", "cluster", "cluster_class", "cluster_kwargs", "adapt_kwargs")
        self.sized_to_data = not args and not any(kwargs.get(k) for k in settings)
        """Whether the local cluster is chosen per run from the flow's data."""
        local = not args and not any(kwargs.get(k) for k in ("address", "cluster", "cluster_class"))
        if local and not self.sized_to_data:
            defaults = local_cluster_kwargs(None)
            kwargs["cluster_kwargs"] = {**defaults, **(kwargs.get("cluster_kwargs") or {})}
        super().__init__(*args, **kwargs)
        self._api_url: str | None = None
        self._pinned_settings: tuple[Settings, Settings] | None = None

    def cluster_kwargs_for(self, values: Iterable[Any]) -> dict[str, Any] | None:
        """The arguments of the local cluster a run given ``values`` starts: ``None`` when
        it starts none (an address, a cluster object) or not a ``LocalCluster``."""
        if self.address or self._cluster is not None:
            return None
        if self.sized_to_data:
            return local_cluster_kwargs(data_bytes(values))
        import distributed

        cls = self.resolved_cluster_class or self.cluster_class
        if cls is None or (isinstance(cls, type) and issubclass(cls, distributed.LocalCluster)):
            return dict(self.cluster_kwargs)
        return None

    def starts_local_processes(self, values: Iterable[Any]) -> bool:
        """Whether a run given ``values`` starts a local cluster of worker processes
        (which re-run the top level of the ``__main__`` script: see :class:`ScriptSafeFlow`)."""
        kwargs = self.cluster_kwargs_for(values)
        return kwargs is not None and kwargs.get("processes", True) is not False

    @property
    def client(self) -> Any:
        if self._client is None and self.sized_to_data:
            ctx = FlowRunContext.get()
            values = ctx.parameters.values() if ctx is not None and ctx.parameters else ()
            kwargs = self.cluster_kwargs_for(values)
            if kwargs is not None:
                self.cluster_kwargs = kwargs
        return super().client

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


# ------------------------------------------------------------ scripts and spawned workers

_GUARD = 'if __name__ == "__main__":'


def _module_frame(module: object) -> FrameType | None:
    """The frame running ``module``'s top-level code, if it is on this thread's stack."""
    frame: FrameType | None = sys._getframe(1)
    namespace = getattr(module, "__dict__", None)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is namespace:
            return frame
        frame = frame.f_back
    return None


def _is_main_test(test: ast.expr) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def unguarded_script_line() -> tuple[str, int] | None:
    """``(script, line)`` when this call is made by the top-level code of the ``__main__``
    script outside an ``if __name__ == "__main__":`` block (a spawned worker process would
    run that line again); ``None`` otherwise (guarded, or no script: ``python -c``, a
    notebook, an interpreter prompt)."""
    main = sys.modules.get("__main__")
    # What a spawned worker imports again: the main module's file, or its module name
    # (``python -m``). An interactive session or a notebook has neither.
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if main is None or (getattr(main, "__file__", None) is None and spec_name is None):
        return None
    frame = _module_frame(main)
    if frame is None:
        return None
    path = frame.f_code.co_filename
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and _is_main_test(node.test)
            and node.body[0].lineno <= line <= (node.body[-1].end_lineno or line)
        ):
            return None
    return path, line


def _spawned_bootstrap_script() -> str | None:
    """The user's script when this process is a worker being started by multiprocessing's
    "spawn" (or "forkserver") method and is running the script's top level again (as the
    module ``__mp_main__``); ``None`` otherwise.

    The bootstrapping phase is the one multiprocessing itself refuses to start processes
    in ("An attempt has been made to start a new process before the current process has
    finished its bootstrapping phase"): it reads the same flag. Elsewhere ``__mp_main__``
    is an alias of ``__main__``, and ``multiprocessing.parent_process()`` is set only
    after that phase."""
    from multiprocessing import process

    if not getattr(process.current_process(), "_inheriting", False):
        return None
    mp_main = sys.modules.get("__mp_main__")
    frame = _module_frame(mp_main) if mp_main is not None else None
    return frame.f_code.co_filename if frame is not None else None


def refuse_recursive_call(
    name: str, runner: object, args: Iterable[Any], kwargs: Mapping[str, Any]
) -> None:
    """Refuse a flow call that would run itself again in worker processes: raise
    ``SystemExit`` with one line saying to add the ``__main__`` guard.

    Two cases, both checked before any flow run exists:

    - this process is a worker of a local cluster of processes being started, running
      the top level of the user's script again (Python's "spawn" start method);
    - this call is made by the top level of the ``__main__`` script outside
      ``if __name__ == "__main__":`` and ``runner`` would start a local cluster of
      worker processes for these arguments: each worker would call the flow again.
    """
    script = _spawned_bootstrap_script()
    if script is not None:
        raise SystemExit(
            f"error: {name}() was called while a worker process of a local Dask cluster was "
            f"starting: Python's 'spawn' start method runs the top level of {script} again in "
            f"every worker. Put the script's calls under `{_GUARD}`."
        )
    if not isinstance(runner, IcechunkDaskTaskRunner):
        return
    values = [*args, *kwargs.values()]
    if not runner.starts_local_processes(values):
        return
    found = unguarded_script_line()
    if found is not None:
        path, line = found
        raise SystemExit(
            f"error: {name}() is called by the top level of {path} (line {line}) outside "
            f"`{_GUARD}`: its local Dask cluster of worker processes would run that line again "
            "in every worker (Python's 'spawn' start method). Put the call under "
            f"`{_GUARD}` (or pass a task runner with an address)."
        )


class ScriptSafeFlow(Flow[P, R]):
    """A Prefect ``Flow`` that a script cannot run recursively through a local cluster of
    worker processes (the class of the library flows).

    Calling it checks :func:`refuse_recursive_call` first, before Prefect creates a
    flow run; ``with_options`` keeps the class. Everything else is Prefect's ``Flow``.

    Example:
        ```python
        from icechunk_prefect import to_icechunk
        from icechunk_prefect.runtime import ScriptSafeFlow

        assert isinstance(to_icechunk.with_options(name="my write"), ScriptSafeFlow)
        ```
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = {k: v for k, v in kwargs.items() if k not in ("return_state", "wait_for")}
        name = getattr(self.fn, "__name__", self.name)
        refuse_recursive_call(name, self.task_runner, args, call)
        return super().__call__(*args, **kwargs)

    def with_options(self, **options: Any) -> Self:
        new = super().with_options(**options)
        new.__class__ = type(self)  # Prefect's with_options builds a plain Flow
        return cast(Self, new)


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

    # What the Prefect UIs show for the cluster parameter: plain text (not this docstring).
    model_config = ConfigDict(
        json_schema_extra={
            "description": "Which Dask cluster the run writes on. Leave everything empty for a "
            "local cluster of worker processes; set address to use a running scheduler "
            "(tcp://host:8786), or cluster_class (an import path such as "
            "dask_jobqueue.SLURMCluster) with cluster_kwargs to start one."
        }
    )

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
