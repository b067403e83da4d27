"""After a commit: one log line, the summary artifact, the commit event and the asset.

:func:`report_commit` publishes a :class:`~icechunk_prefect.reporting.summary.CommitSummary`;
the Prefect event (:data:`COMMIT_EVENT`) has the repository's branch as its
resource, so that automations can trigger downstream flows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import xarray as xr

from icechunk_prefect.reporting.assets import asset_key, materialize_commit
from icechunk_prefect.reporting.progress import (
    format_bytes,
    in_run,
    log_step,
    logger,
    region_text,
    slug,
)
from icechunk_prefect.reporting.summary import CommitSummary, summarize_commit, written_bytes
from icechunk_prefect.storage.resolve import RepositoryLike

if TYPE_CHECKING:
    from icechunk_prefect.core.planning import WriteResult

__all__ = [
    "COMMIT_EVENT",
    "commit_resource_id",
    "emit_commit_event",
    "publish_commit",
    "report_commit",
    "report_writer_commit",
    "summary_markdown",
]


COMMIT_EVENT = "icechunk.commit"
"""Name of the Prefect event emitted after every commit made by this package."""


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


def report_commit(summary: CommitSummary, *, artifact_key: str | None = None) -> UUID | None:
    """Publish a commit: one log line, the summary artifact (inside a run), the commit event
    and the dataset's asset materialization (:func:`materialize_commit`).

    The artifact's key defaults to ``icechunk-commit-<branch>``. Returns the
    artifact id (None outside a run). Failures to publish are logged, never raised:
    the commit has already happened.
    """
    log_step(f"commit {summary.branch}", summary.line())
    artifact_id: UUID | None = None
    if in_run():
        from prefect.artifacts import create_markdown_artifact

        try:
            artifact_id = cast(
                UUID,
                create_markdown_artifact(
                    summary_markdown(summary),
                    key=artifact_key or f"icechunk-commit-{slug(summary.branch)}",
                    description=f"Commit {summary.snapshot_id} on {summary.branch}",
                ),
            )
        except Exception as exc:
            logger.warning("could not create the commit artifact: %s", exc)
    try:
        emit_commit_event(summary)
    except Exception as exc:
        logger.warning("could not emit the commit event: %s", exc)
    try:
        materialize_commit(summary)
    except Exception as exc:
        logger.warning("could not record the asset materialization: %s", exc)
    return artifact_id


def publish_commit(
    repo: RepositoryLike, branch: str, snapshot_id: str, **summary: Any
) -> CommitSummary | None:
    """:func:`summarize_commit` then :func:`report_commit`; never raises (the commit happened).

    ``summary`` holds the keyword arguments of :func:`summarize_commit`.
    """
    try:
        result = summarize_commit(repo, branch, snapshot_id, **summary)
    except Exception as exc:
        logger.warning("could not summarize commit %s: %s", snapshot_id, exc)
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
        ("region", region_text(summary.region)),
        ("partitions", str(summary.partitions if summary.partitions is not None else "-")),
        ("chunks written", f"{summary.chunks_written:,} in {summary.arrays_written} arrays"),
        ("bytes written", size),
        ("duration", f"{summary.seconds:.1f} s"),
        ("landing", summary.rebase or "on the tip the run started from"),
        ("flow run", run),
        ("asset", f"`{asset_key(summary.repository, summary.branch, summary.group)}`"),
    ]
    lines = [f"### Icechunk commit `{summary.snapshot_id}`", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"
