"""What a write shows while it runs.

- :func:`log_step`: one line per step through Prefect's run logger (the flow or
  task run's logs in the UI), or the package logger outside a run.
- :class:`ProgressTracker` / :func:`track_progress`: a Prefect *progress
  artifact* updated as partition tasks finish (for long backfills), plus local
  listeners (the CLI's progress bar, see :func:`progress_listener`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from icechunk_prefect.core.planning import WritePlan

if TYPE_CHECKING:
    pass

__all__ = [
    "ProgressListener",
    "ProgressTracker",
    "format_bytes",
    "in_flow_run",
    "in_run",
    "log_discarded",
    "log_plan",
    "log_step",
    "progress_listener",
    "region_text",
    "slug",
    "track_progress",
]


logger = logging.getLogger("icechunk_prefect")


def log_discarded(step: str, problem: str) -> None:
    """Log that a fork an earlier run with the same parameters persisted (a failed run,
    or one that committed since) cannot be reused (``problem``)."""
    log_step(
        step,
        "the fork an earlier run with these parameters persisted cannot be reused (%s); "
        "writing it again",
        problem,
    )


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task run, else this module's logger."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return logger
    from prefect import get_run_logger

    return get_run_logger()


def in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def log_step(step: str, detail: str, *args: Any) -> None:
    """Log one line ``"<step>: <detail>"`` through Prefect's run logger (INFO).

    Example:
        ```python
        from icechunk_prefect.reporting.progress import log_step

        log_step("merge", "merged %d forks", 12)  # outside a run: the 'icechunk_prefect' logger
        ```
    """
    _run_logger().info(f"{step}: {detail}", *args)


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:60] or "x"


# ------------------------------------------------------------------ progress

ProgressListener = Callable[[int, int, str], None]
"""Called as ``listener(done, total, label)`` when a partition finishes (``done=0`` at start)."""

_listeners: list[ProgressListener] = []
_listeners_lock = threading.Lock()


@contextlib.contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[ProgressListener]:
    """Call ``listener(done, total, label)`` as partitions finish, in this process.

    The flow process tracks progress, so this sees the partitions of flows run in
    this process (``icechunk-prefect demo`` drives its progress bar with it).

    Example:
        ```python
        from icechunk_prefect.reporting.progress import progress_listener

        seen = []
        with progress_listener(lambda done, total, label: seen.append((done, total))):
            pass  # run a flow here, e.g. to_icechunk(ds, "/tmp/repo", mode="w")
        ```
    """
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield listener
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


@dataclass
class ProgressTracker:
    """Progress of ``total`` partitions: a Prefect progress artifact plus local listeners.

    Inside a flow or task run, :meth:`start` creates a progress artifact (under
    ``key``, so the Artifacts page lists every run's progress) and :meth:`advance`
    updates it in place; outside a run only the listeners are called.
    ``history`` holds every percentage reached, in order. The artifact is updated
    at most once per ``publish_every`` seconds, and always at the last partition
    (each update is an API call: with thousands of small partitions, updating on
    every one cost the flow process more than the partitions themselves).

    Example:
        ```python
        from icechunk_prefect.reporting.progress import ProgressTracker

        tracker = ProgressTracker(total=4, what="write main")
        tracker.start()
        for label in ["a", "b", "c", "d"]:
            tracker.advance(label)
        assert tracker.history == [0.0, 25.0, 50.0, 75.0, 100.0]
        ```
    """

    total: int
    what: str = "write"
    key: str | None = "icechunk-write-progress"
    done: int = 0
    failed: int = 0
    artifact_id: UUID | None = None
    history: list[float] = field(default_factory=list)
    publish_every: float = 1.0
    _published: float = field(default=0.0, repr=False)

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def _description(self, label: str = "") -> str:
        text = f"{self.what}: {self.done}/{self.total} partitions written"
        if self.failed:
            text += f", {self.failed} failed"
        return text + (f" (last: {label})" if label else "")

    def start(self) -> None:
        """Publish 0% (creates the artifact inside a run)."""
        self.history.append(self.percent)
        if in_run():
            from prefect.artifacts import create_progress_artifact

            try:
                created = create_progress_artifact(
                    self.percent, key=self.key, description=self._description()
                )
                self.artifact_id = cast(UUID, created)
                self._published = time.monotonic()
            except Exception as exc:  # observability must never break a write
                logger.warning("could not create the progress artifact: %s", exc)
        self._notify("")

    def advance(self, label: str, ok: bool = True, count: int = 1) -> None:
        """``count`` partitions finished (``ok=False``: they failed); publish the new
        percentage."""
        if ok:
            self.done += count
        else:
            self.failed += count
        self.history.append(self.percent)
        now = time.monotonic()
        last = self.done + self.failed >= self.total
        due = last or now - self._published >= self.publish_every
        if self.artifact_id is not None and due:
            from prefect.artifacts import update_progress_artifact

            self._published = now
            try:
                update_progress_artifact(
                    self.artifact_id, self.percent, description=self._description(label)
                )
            except Exception as exc:
                logger.warning("could not update the progress artifact: %s", exc)
        self._notify(label)

    def _notify(self, label: str) -> None:
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            try:
                listener(self.done, self.total, label)
            except Exception as exc:  # pragma: no cover - a broken listener
                logger.warning("progress listener %r failed: %s", listener, exc)


def track_progress(
    futures: Sequence[Any],
    labels: Sequence[str],
    *,
    what: str = "write",
    sizes: Sequence[int] | None = None,
) -> ProgressTracker:
    """Wait for ``futures`` (Prefect futures of partition tasks), reporting each as it finishes.

    ``sizes[i]`` is the number of partitions future ``i`` writes (default: one
    each). Updates the progress artifact and logs one line per finished task
    (``write time[2024-01-01..2024-01-07]: done (3/12)``, counting partitions).
    Failed tasks are counted and logged, not raised: the step consuming the
    futures fails as it would have. Returns the tracker.
    """
    from prefect.futures import as_completed

    weights = list(sizes) if sizes is not None else [1] * len(futures)
    tracker = ProgressTracker(total=sum(weights), what=what)
    tracker.start()
    if not futures:
        return tracker
    names = {id(f): labels[i] if i < len(labels) else f"#{i}" for i, f in enumerate(futures)}
    weight = {id(f): weights[i] for i, f in enumerate(futures)}
    for fut in as_completed(list(futures)):
        label = names.get(id(fut), "?")
        fut.wait()  # a Dask future is done before its Prefect state is final: fetch it
        state = fut.state
        ok = state.is_completed()
        tracker.advance(label, ok=ok, count=weight.get(id(fut), 1))
        if ok:
            log_step(f"write {label}", "done (%d/%d)", tracker.done, tracker.total)
        else:
            log_step(f"write {label}", "%s (%d failed so far)", state.name, tracker.failed)
    return tracker


# ------------------------------------------------------------------ commits


def region_text(region: Mapping[str, Any]) -> str:
    parts = []
    for dim, sl in region.items():
        if isinstance(sl, slice):
            parts.append(f"{dim}[{sl.start}:{sl.stop}]")
        elif isinstance(sl, list | tuple) and len(sl) == 2:
            parts.append(f"{dim}[{sl[0]}:{sl[1]}]")
        else:
            parts.append(f"{dim}: {sl}")
    return ", ".join(parts) or "-"


def log_plan(branch: str, plan: WritePlan) -> None:
    """One line after the metadata step: base snapshot, variables, region, partitions."""
    lazy = ", ".join(plan.lazy) or "none"
    log_step(
        f"write metadata {branch}",
        "base snapshot %s; region %s; lazy variables [%s] in %d partition(s) along %s; "
        "%d in-memory variable(s)",
        plan.base_snapshot,
        region_text(plan.region),
        lazy,
        len(plan.partitions),
        plan.partition_dim,
        len([n for n in plan.eager if n not in plan.skip_eager]),
    )


def in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None
