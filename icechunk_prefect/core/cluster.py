"""Waiting on a Dask cluster that may not be able to run a write (plain ``distributed``).

A write that hands work to a cluster with no workers, or whose scheduler is gone,
would wait forever: :func:`cluster_watchdog` bounds that wait by
:func:`cluster_timeout` and raises
:class:`~icechunk_prefect.errors.ClusterUnavailableError` (retryable).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from icechunk_prefect.errors import ClusterUnavailableError

__all__ = [
    "CLUSTER_TIMEOUT_ENV",
    "DEFAULT_CLUSTER_TIMEOUT",
    "cluster_problem",
    "cluster_timeout",
    "cluster_watchdog",
    "inside_dask_worker",
]

CLUSTER_TIMEOUT_ENV = "ICECHUNK_PREFECT_CLUSTER_TIMEOUT"
"""Environment variable: seconds a write waits on a cluster that cannot run it."""
DEFAULT_CLUSTER_TIMEOUT = 300.0
"""Default for :func:`cluster_timeout` (5 minutes: room for an autoscaler to add workers)."""


def inside_dask_worker() -> bool:
    """Whether this code runs in a Dask worker's task."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def cluster_timeout(value: float | None = None) -> float:
    """Seconds a write waits while the cluster cannot run work: ``value``, else
    ``$ICECHUNK_PREFECT_CLUSTER_TIMEOUT``, else :data:`DEFAULT_CLUSTER_TIMEOUT`."""
    if value is not None:
        return float(value)
    env = os.environ.get(CLUSTER_TIMEOUT_ENV)
    return float(env) if env else DEFAULT_CLUSTER_TIMEOUT


def cluster_problem(client: Any) -> str | None:
    """Why ``client``'s cluster cannot run work now (``None``: it has workers)."""
    status = str(getattr(client, "status", "running"))
    if status != "running":
        return f"the Dask client is {status!r} (the scheduler is gone or unreachable)"
    try:
        workers = client.nthreads(callback_timeout=10)
    except Exception as exc:
        return f"the scheduler does not answer ({type(exc).__name__}: {exc})"
    if not workers:
        return "the cluster has no workers"
    return None


class _Watch:
    """What :func:`cluster_watchdog` found: ``problem`` once the bound was exceeded."""

    def __init__(self, what: str, limit: float) -> None:
        self.what, self.limit = what, limit
        self.problem: str | None = None

    def check(self) -> None:
        """Raise :class:`~icechunk_prefect.errors.ClusterUnavailableError` if it fired."""
        if self.problem is not None:
            raise _unavailable(self.what, self.limit, self.problem)


@contextlib.contextmanager
def cluster_watchdog(
    client: Any, *, what: str, timeout: float | None = None, futures: Sequence[Any] | None = None
) -> Iterator[_Watch]:
    """Bound a wait on ``client``'s cluster: when it cannot run work (no workers, the
    scheduler gone) for ``timeout`` seconds (see :func:`cluster_timeout`), cancel
    ``futures`` (default: every future of the client) and raise
    :class:`~icechunk_prefect.errors.ClusterUnavailableError` from the wait (call
    the yielded object's ``check`` while waiting, e.g. between short timeouts).

    Work that runs long on a healthy cluster is never cut short: only the time
    during which the cluster cannot run anything counts.
    """
    watch = _Watch(what, cluster_timeout(timeout))
    poll = max(0.05, min(1.0, watch.limit / 5))
    stop = threading.Event()

    def run() -> None:
        stalled_since: float | None = None
        while not stop.wait(poll):
            problem = cluster_problem(client)
            if problem is None:
                stalled_since = None
                continue
            now = time.monotonic()
            stalled_since = now if stalled_since is None else stalled_since
            if now - stalled_since >= watch.limit:
                watch.problem = problem
                _cancel(client, futures)
                return

    thread = threading.Thread(target=run, name=f"watchdog {what}", daemon=True)
    thread.start()
    try:
        yield watch
    except Exception as exc:
        if watch.problem is not None:
            raise _unavailable(what, watch.limit, watch.problem) from exc
        raise
    finally:
        stop.set()
        thread.join()


def _unavailable(what: str, limit: float, problem: str) -> ClusterUnavailableError:
    return ClusterUnavailableError(
        f"{what} could not run on the Dask cluster for {limit:.0f} s: {problem}. Nothing was "
        f"committed; the step is retried. Check the cluster (workers alive, scheduler "
        f"reachable), or allow longer with cluster_timeout / ${CLUSTER_TIMEOUT_ENV}."
    )


def _cancel(client: Any, futures: Sequence[Any] | None) -> None:
    from distributed import Future

    with contextlib.suppress(Exception):
        targets = (
            list(futures)
            if futures is not None
            else [Future(k, client) for k in list(client.futures)]
        )
        client.cancel(targets, force=True)
