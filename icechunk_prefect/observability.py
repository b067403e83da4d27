"""What a write shows while it runs and after it commits.

- :func:`log_step`: one line per step through Prefect's run logger (the flow or
  task run's logs in the UI), or this module's logger outside a run.
- :class:`ProgressTracker` / :func:`track_progress`: a Prefect *progress
  artifact* updated as partition tasks finish (for long backfills), plus local
  listeners (the CLI's progress bar, see :func:`progress_listener`).
- :func:`summarize_commit` / :func:`report_commit`: after a commit, a markdown
  artifact summarizing it (repository, branch, snapshot and parent, message,
  variables, region, partitions, chunks and bytes written, duration), a one-line
  log and a Prefect event (:data:`COMMIT_EVENT`) whose resource is the
  repository's branch, so that automations can trigger downstream flows.
- :func:`materialize_commit`: the same commit as a Prefect *asset materialization*
  of the dataset (:func:`asset_key`: repository, branch and group), carrying the
  snapshot id and what was written as metadata; every later commit (append,
  backfill) materializes the same asset again.
- :func:`commit_history`: a branch's commits with the run metadata each carries
  (what ``icechunk-prefect history`` prints).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import xarray as xr
from prefect.assets import Asset, AssetProperties
from prefect.assets.core import MAX_ASSET_DESCRIPTION_LENGTH
from prefect.types.names import MAX_ASSET_KEY_LENGTH, RESTRICTED_ASSET_CHARACTERS

from icechunk_prefect import provenance
from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.planning import WritePlan
from icechunk_prefect.repository import RepositoryLike, resolve_repository
from icechunk_prefect.sessions import IDEMPOTENCY_KEY, METADATA_PREFIX

if TYPE_CHECKING:
    from icechunk_prefect.writer import WriteResult

__all__ = [
    "ASSET_MATERIALIZED_BY",
    "COMMIT_EVENT",
    "CommitRecord",
    "CommitSummary",
    "ProgressTracker",
    "asset_key",
    "commit_history",
    "commit_resource_id",
    "emit_commit_event",
    "format_bytes",
    "log_discarded",
    "log_plan",
    "log_step",
    "materialize_commit",
    "progress_listener",
    "publish_commit",
    "report_commit",
    "report_writer_commit",
    "summarize_commit",
    "summary_markdown",
    "track_progress",
    "written_bytes",
]

COMMIT_EVENT = "icechunk.commit"
"""Name of the Prefect event emitted after every commit made by this package."""

_log = logging.getLogger("icechunk_prefect")


def log_discarded(step: str, problem: str) -> None:
    """Log that a fork a failed run persisted cannot be reused (``problem``)."""
    log_step(
        step,
        "the fork a failed run left cannot be reused (%s, e.g. garbage collection ran "
        "since); writing it again",
        problem,
    )


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task run, else this module's logger."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return _log
    from prefect import get_run_logger

    return get_run_logger()


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def log_step(step: str, detail: str, *args: Any) -> None:
    """Log one line ``"<step>: <detail>"`` through Prefect's run logger (INFO).

    Example:
        ```python
        from icechunk_prefect.observability import log_step

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


def _slug(text: str) -> str:
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
        from icechunk_prefect.observability import progress_listener

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
        from icechunk_prefect.observability import ProgressTracker

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
        if _in_run():
            from prefect.artifacts import create_progress_artifact

            try:
                created = create_progress_artifact(
                    self.percent, key=self.key, description=self._description()
                )
                self.artifact_id = cast(UUID, created)
                self._published = time.monotonic()
            except Exception as exc:  # observability must never break a write
                _log.warning("could not create the progress artifact: %s", exc)
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
                _log.warning("could not update the progress artifact: %s", exc)
        self._notify(label)

    def _notify(self, label: str) -> None:
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            try:
                listener(self.done, self.total, label)
            except Exception as exc:  # pragma: no cover - a broken listener
                _log.warning("progress listener %r failed: %s", listener, exc)


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


@dataclass(frozen=True)
class CommitSummary:
    """What one commit did, as shown in the commit artifact and the commit event."""

    repository: str
    branch: str
    snapshot_id: str
    parent_snapshot_id: str | None
    message: str
    variables: list[str]
    region: dict[str, Any]
    partitions: int | None
    chunks_written: int
    arrays_written: int
    bytes_written: int | None
    seconds: float
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the event payload)."""
        return asdict(self)

    def line(self) -> str:
        """One-line form, for logs."""
        size = format_bytes(self.bytes_written) if self.bytes_written is not None else "?"
        return (
            f"committed {self.snapshot_id} on {self.branch} (parent {self.parent_snapshot_id}): "
            f"{self.chunks_written} chunks in {self.arrays_written} arrays, {size}, "
            f"{self.partitions} partitions, variables {self.variables}, in {self.seconds:.1f}s"
        )


def _region_text(region: Mapping[str, Any]) -> str:
    parts = []
    for dim, sl in region.items():
        if isinstance(sl, slice):
            parts.append(f"{dim}[{sl.start}:{sl.stop}]")
        elif isinstance(sl, list | tuple) and len(sl) == 2:
            parts.append(f"{dim}[{sl[0]}:{sl[1]}]")
        else:
            parts.append(f"{dim}: {sl}")
    return ", ".join(parts) or "-"


def _jsonable_region(region: Mapping[str, Any]) -> dict[str, Any]:
    return {str(d): [s.start, s.stop] if isinstance(s, slice) else s for d, s in region.items()}


def summarize_commit(
    repo: RepositoryLike,
    branch: str,
    snapshot_id: str,
    *,
    message: str | None = None,
    variables: Sequence[str] = (),
    region: Mapping[str, Any] | None = None,
    partitions: int | None = None,
    bytes_written: int | None = None,
    seconds: float = 0.0,
    group: str | None = None,
) -> CommitSummary:
    """Read back what commit ``snapshot_id`` changed (its diff to its parent) and summarize it.

    ``bytes_written`` is the uncompressed size of the data the run wrote (the
    caller knows it; the repository does not record it). ``group`` is the group
    of the dataset written (``None``: the root group).

    Example:
        ```python
        import icechunk, zarr
        from icechunk_prefect.observability import summarize_commit

        repo = icechunk.Repository.open_or_create(icechunk.local_filesystem_storage("/tmp/doc-sum"))
        s = repo.writable_session("main")
        a = zarr.create_array(s.store, name="a", shape=(4,), chunks=(2,), dtype="f8",
                              overwrite=True)
        a[:] = 1.0
        sid = s.commit("ones")
        print(summarize_commit("/tmp/doc-sum", "main", sid).line())
        ```
    """
    source = resolve_repository(repo)
    repository = source.open_repository()
    ancestry = repository.ancestry(snapshot_id=snapshot_id)
    info = next(ancestry)
    parent = next(ancestry, None)
    chunks = 0
    arrays = 0
    if parent is not None:
        diff = repository.diff(from_snapshot_id=parent.id, to_snapshot_id=snapshot_id)
        chunks = sum(len(c) for c in diff.updated_chunks.values())
        arrays = len(set(diff.updated_chunks) | diff.new_arrays | diff.updated_arrays)
    meta = info.metadata or {}
    return CommitSummary(
        repository=source.describe(),
        branch=branch,
        snapshot_id=snapshot_id,
        parent_snapshot_id=parent.id if parent is not None else None,
        message=message if message is not None else info.message,
        variables=sorted(map(str, variables)),
        region=_jsonable_region(region or {}),
        partitions=partitions,
        chunks_written=chunks,
        arrays_written=arrays,
        bytes_written=bytes_written,
        seconds=round(float(seconds), 3),
        flow_run_id=meta.get(f"{METADATA_PREFIX}.flow_run_id"),
        flow_run_name=meta.get(f"{METADATA_PREFIX}.flow_run_name"),
        group=_group_path(group) or None,
    )


def summary_markdown(summary: CommitSummary) -> str:
    """The commit artifact's markdown: a two-column table."""
    size = (
        f"{format_bytes(summary.bytes_written)} ({summary.bytes_written:,} bytes, uncompressed)"
        if summary.bytes_written is not None
        else "-"
    )
    run = f"{summary.flow_run_name} (`{summary.flow_run_id}`)" if summary.flow_run_id else "-"
    rows = [
        ("repository", f"`{summary.repository}`"),
        ("branch", f"`{summary.branch}`"),
        ("group", f"`/{summary.group or ''}`"),
        ("snapshot", f"`{summary.snapshot_id}`"),
        ("parent", f"`{summary.parent_snapshot_id}`"),
        ("message", summary.message.replace("|", "\\|").replace("\n", " ")),
        ("variables", ", ".join(summary.variables) or "-"),
        ("region", _region_text(summary.region)),
        ("partitions", str(summary.partitions if summary.partitions is not None else "-")),
        ("chunks written", f"{summary.chunks_written:,} in {summary.arrays_written} arrays"),
        ("bytes written", size),
        ("duration", f"{summary.seconds:.1f} s"),
        ("flow run", run),
        ("asset", f"`{asset_key(summary.repository, summary.branch, summary.group)}`"),
    ]
    lines = [f"### Icechunk commit `{summary.snapshot_id}`", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def commit_resource_id(repository: str, branch: str) -> str:
    """The Prefect resource id of a repository's branch: ``icechunk.repository.<repo>.branch.<b>``.

    ``repository`` is the source's ``describe()`` (e.g. ``file:///data/repo``,
    ``s3://bucket/prefix``).
    """
    return f"icechunk.repository.{repository}.branch.{branch}"


def emit_commit_event(summary: CommitSummary) -> Any:
    """Emit :data:`COMMIT_EVENT` for ``summary``; returns the event (None if events are off).

    Resource: ``icechunk.repository.<repository>.branch.<branch>`` with labels
    ``icechunk.repository`` and ``icechunk.branch``; payload: the summary
    (``snapshot_id``, ``parent_snapshot_id``, ``message``, ...). Inside a run,
    Prefect relates the event to the flow (and task) run.
    """
    from prefect.events import emit_event

    return emit_event(
        event=COMMIT_EVENT,
        resource={
            "prefect.resource.id": commit_resource_id(summary.repository, summary.branch),
            "prefect.resource.name": f"{summary.repository}@{summary.branch}",
            "icechunk.repository": summary.repository,
            "icechunk.branch": summary.branch,
        },
        payload=summary.to_dict(),
    )


# ------------------------------------------------------------------ assets

ASSET_MATERIALIZED_BY = "icechunk-prefect"
"""The tool named as the materializer of the assets (``prefect.asset.materialized-by``)."""

_KEY_SAFE = re.compile("[" + re.escape("".join(RESTRICTED_ASSET_CHARACTERS)) + "]")
_DESCRIBED = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*?)"
    r"(?: \(endpoint (?P<endpoint>[^)]*)\))?$"
)


def _group_path(group: str | None) -> str:
    """``None``, ``""``, ``"/"`` -> ``""``; ``"/ocean/surface/"`` -> ``"ocean/surface"``."""
    return "/".join(p for p in (group or "").split("/") if p)


def asset_key(repository: str, branch: str, group: str | None = None) -> str:
    """The Prefect asset key of a dataset: ``icechunk://<storage>/<location>@<branch>[/<group>]``.

    ``repository`` is the source's ``describe()`` (it holds no secret):
    ``file:///data/climate.icechunk`` on branch ``main``, root group, gives
    ``icechunk://file/data/climate.icechunk@main``; ``s3://bucket/prefix`` with an
    endpoint ``http://minio:9000`` and group ``ocean`` gives
    ``icechunk://s3+minio:9000/bucket/prefix@main/ocean``. Characters Prefect
    refuses in asset keys (spaces, ``%``, ``#``, ...) become ``_``; a key longer than
    Prefect's limit keeps its start and ends with a hash of the whole.

    Example:
        ```python
        from icechunk_prefect.observability import asset_key

        assert asset_key("file:///data/climate.icechunk", "main") == (
            "icechunk://file/data/climate.icechunk@main"
        )
        ```
    """
    import hashlib
    from urllib.parse import urlsplit

    found = _DESCRIBED.match(repository)
    if found:
        storage = found["scheme"].lower()
        location = found["rest"].strip("/")
        if found["endpoint"]:
            host = urlsplit(found["endpoint"].strip()).netloc.rpartition("@")[2]
            storage += f"+{host.lower()}" if host else ""
    else:  # a RepositorySource describing itself some other way
        storage, location = "repo", repository.strip("/")
    group_part = _group_path(group)
    key = f"icechunk://{storage}/{location}@{branch}" + (f"/{group_part}" if group_part else "")
    key = _KEY_SAFE.sub("_", key)
    if len(key) > MAX_ASSET_KEY_LENGTH:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        key = key[: MAX_ASSET_KEY_LENGTH - len(digest) - 1] + "~" + digest
    return key


def _asset(summary: CommitSummary) -> Asset:
    key = asset_key(summary.repository, summary.branch, summary.group)
    where = summary.repository.rstrip("/").rsplit("/", 1)[-1] or summary.repository
    group = f"/{summary.group or ''}"
    return Asset(
        key=key,
        properties=AssetProperties(
            name=f"{where}@{summary.branch}" + (group if summary.group else ""),
            description=(
                f"Icechunk dataset: group {group} on branch {summary.branch} of "
                f"{summary.repository}, written by icechunk-prefect."
            )[:MAX_ASSET_DESCRIPTION_LENGTH],
        ),
    )


def _asset_metadata(summary: CommitSummary) -> dict[str, Any]:
    return {
        "snapshot_id": summary.snapshot_id,
        "parent_snapshot_id": summary.parent_snapshot_id,
        "repository": summary.repository,
        "branch": summary.branch,
        "group": f"/{summary.group or ''}",
        "message": summary.message,
        "variables": summary.variables,
        "region": summary.region,
        "partitions": summary.partitions,
        "chunks_written": summary.chunks_written,
        "arrays_written": summary.arrays_written,
        "bytes_written": summary.bytes_written,
        "seconds": summary.seconds,
        "flow_run_id": summary.flow_run_id,
        "flow_run_name": summary.flow_run_name,
    }


def _record_materialization(key: str, metadata: dict[str, Any], label: str) -> str:
    from prefect.assets import add_asset_metadata

    add_asset_metadata(key, metadata)
    return key


def materialize_commit(summary: CommitSummary) -> str:
    """Record the commit as a materialization of the dataset's Prefect asset; return its key.

    Inside a flow run: a ``materialize <branch>`` task run (``prefect.assets.materialize``,
    never cached, so a resumed run whose writes were cached still records it) emits
    ``prefect.asset.materialization.succeeded`` for :func:`asset_key`, related to the
    task run, the flow run and the deployment, with the snapshot id, parent, variables,
    region, partitions, chunks and bytes written as metadata (the event payload).
    Outside a run the same event is emitted directly. Every commit to the same
    repository, branch and group materializes the same asset again.
    """
    asset = _asset(summary)
    metadata = provenance.jsonable(_asset_metadata(summary))
    if _in_flow_run():
        from prefect.assets import materialize
        from prefect.cache_policies import NO_CACHE

        task = materialize(
            asset,
            by=ASSET_MATERIALIZED_BY,
            name="materialize",
            task_run_name="materialize {label}",
            cache_policy=NO_CACHE,
            persist_result=False,
        )(_record_materialization)
        label = f"{summary.branch}" + (f"/{summary.group}" if summary.group else "")
        task(asset.key, metadata, label)
    else:
        from prefect.context import AssetContext
        from prefect.events import emit_event

        emit_event(
            event="prefect.asset.materialization.succeeded",
            resource=AssetContext.asset_as_resource(asset),
            related=[AssetContext.related_materialized_by(ASSET_MATERIALIZED_BY)],
            payload=metadata,
        )
    return asset.key


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def report_commit(summary: CommitSummary, *, artifact_key: str | None = None) -> UUID | None:
    """Publish a commit: one log line, the summary artifact (inside a run), the commit event
    and the dataset's asset materialization (:func:`materialize_commit`).

    The artifact's key defaults to ``icechunk-commit-<branch>``. Returns the
    artifact id (None outside a run). Failures to publish are logged, never raised:
    the commit has already happened.
    """
    log_step(f"commit {summary.branch}", summary.line())
    artifact_id: UUID | None = None
    if _in_run():
        from prefect.artifacts import create_markdown_artifact

        try:
            artifact_id = cast(
                UUID,
                create_markdown_artifact(
                    summary_markdown(summary),
                    key=artifact_key or f"icechunk-commit-{_slug(summary.branch)}",
                    description=f"Commit {summary.snapshot_id} on {summary.branch}",
                ),
            )
        except Exception as exc:
            _log.warning("could not create the commit artifact: %s", exc)
    try:
        emit_commit_event(summary)
    except Exception as exc:
        _log.warning("could not emit the commit event: %s", exc)
    try:
        materialize_commit(summary)
    except Exception as exc:
        _log.warning("could not record the asset materialization: %s", exc)
    return artifact_id


def log_plan(branch: str, plan: WritePlan) -> None:
    """One line after the metadata step: base snapshot, variables, region, partitions."""
    lazy = ", ".join(plan.lazy) or "none"
    log_step(
        f"write metadata {branch}",
        "base snapshot %s; region %s; lazy variables [%s] in %d partition(s) along %s; "
        "%d in-memory variable(s)",
        plan.base_snapshot,
        _region_text(plan.region),
        lazy,
        len(plan.partitions),
        plan.partition_dim,
        len([n for n in plan.eager if n not in plan.skip_eager]),
    )


def written_bytes(dataset: xr.Dataset, plan: WritePlan) -> int:
    """Uncompressed bytes a plan writes: its lazy variables and the eager ones not skipped."""
    names = [*plan.lazy, *(n for n in plan.eager if n not in plan.skip_eager)]
    return int(sum(dataset.variables[n].nbytes for n in names if dataset.variables[n].ndim))


def publish_commit(
    repo: RepositoryLike, branch: str, snapshot_id: str, **summary: Any
) -> CommitSummary | None:
    """:func:`summarize_commit` then :func:`report_commit`; never raises (the commit happened).

    ``summary`` holds the keyword arguments of :func:`summarize_commit`.
    """
    try:
        result = summarize_commit(repo, branch, snapshot_id, **summary)
    except Exception as exc:
        _log.warning("could not summarize commit %s: %s", snapshot_id, exc)
        return None
    report_commit(result)
    return result


def report_writer_commit(
    source: RepositoryLike, result: WriteResult, message: str, dataset: xr.Dataset
) -> CommitSummary | None:
    """Summarize and publish the commit a :class:`~icechunk_prefect.FlowDatasetWriter` made."""
    return publish_commit(
        source,
        result.branch,
        result.snapshot_id,
        message=message,
        variables=[*result.plan.lazy, *result.plan.eager],
        region=result.plan.region,
        partitions=len(result.plan.partitions),
        bytes_written=written_bytes(dataset, result.plan),
        seconds=result.seconds,
        group=result.plan.group,
    )


# ------------------------------------------------------------------ history


@dataclass(frozen=True)
class CommitRecord:
    """One commit of a branch, with the run metadata it carries (if written by this package)."""

    snapshot_id: str
    written_at: datetime
    message: str
    flow_run_id: str | None
    flow_run_name: str | None
    flow_name: str | None
    parameters: Mapping[str, Any] | None
    partitions: int | None
    variables: list[str] | None
    region: Mapping[str, Any] | None
    metadata: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["written_at"] = self.written_at.isoformat()
        return json.loads(json.dumps(out, default=str))


def commit_history(
    repo: RepositoryLike, branch: str = "main", limit: int | None = 20
) -> list[CommitRecord]:
    """The newest ``limit`` commits of ``branch`` (all with ``None``), newest first.

    Example:
        ```python
        import icechunk
        from icechunk_prefect.observability import commit_history

        icechunk.Repository.open_or_create(icechunk.local_filesystem_storage("/tmp/doc-hist"))
        for rec in commit_history("/tmp/doc-hist", "main"):
            print(rec.snapshot_id, rec.message, rec.flow_run_name, rec.partitions)
        ```
    """
    source = resolve_repository(repo)
    repository = source.open_repository()
    if branch not in repository.list_branches():
        raise ConfigurationError(
            f"Branch {branch!r} does not exist in {source.describe()} (branches: "
            f"{sorted(repository.list_branches())}); pass one of them."
        )
    out: list[CommitRecord] = []
    prefix = f"{METADATA_PREFIX}."
    for info in repository.ancestry(branch=branch):
        if limit is not None and len(out) >= limit:
            break
        meta = dict(info.metadata or {})

        def get(name: str, meta: dict[str, Any] = meta) -> Any:
            return meta.get(prefix + name)

        out.append(
            CommitRecord(
                snapshot_id=info.id,
                written_at=info.written_at,
                message=info.message,
                flow_run_id=get("flow_run_id"),
                flow_run_name=get("flow_run_name"),
                flow_name=get("flow_name"),
                parameters=get("parameters"),
                partitions=get("partitions"),
                variables=get("variables"),
                region=get("region"),
                metadata={k: v for k, v in meta.items() if k != IDEMPOTENCY_KEY},
            )
        )
    return out
