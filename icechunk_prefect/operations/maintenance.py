"""Repository maintenance: expire old snapshots, garbage-collect what failed runs left behind.

A failed or interrupted write leaves chunks, manifests and anonymous snapshots
in storage that no branch or tag points to. :func:`maintain_repository` expires
snapshots older than a cut-off (history before it is dropped; branch and tag tips
are kept) and then deletes unreachable objects older than a grace period (so that
objects of writes still in progress survive). ``dry_run`` reports what would go.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import icechunk
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from icechunk_prefect.errors import MaintenanceIncompleteError
from icechunk_prefect.storage.local import RepositorySource, commit_lock
from icechunk_prefect.storage.resolve import resolve_repository

__all__ = ["MaintenanceReport", "maintain_repository", "run_maintenance"]


class MaintenanceReport(BaseModel):
    """What maintenance removed (or, in a dry run, would remove)."""

    dry_run: bool
    expire_before: dt.datetime
    delete_unreferenced_before: dt.datetime
    expired_snapshots: list[str] = Field(default_factory=list)
    chunks_deleted: int = 0
    manifests_deleted: int = 0
    snapshots_deleted: int = 0
    attributes_deleted: int = 0
    transaction_logs_deleted: int = 0
    bytes_deleted: int = 0
    objects_failed_to_delete: int = 0
    skipped_phases: list[str] = Field(default_factory=list)
    delete_errors: list[str] = Field(default_factory=list)
    summary: str = ""

    @property
    def complete(self) -> bool:
        """Whether garbage collection ran every phase and deleted all it meant to."""
        return not self.skipped_phases and not self.objects_failed_to_delete


def _expirable(repo: icechunk.Repository, older_than: dt.datetime) -> list[str]:
    """Snapshots ``expire_snapshots`` would drop: old ones not at a ref tip nor the root."""
    keep: set[str] = set()
    candidates: dict[str, None] = {}
    refs = [("branch", b) for b in sorted(repo.list_branches())]
    refs += [("tag", t) for t in sorted(repo.list_tags())]
    for kind, name in refs:
        history = list(repo.ancestry(branch=name) if kind == "branch" else repo.ancestry(tag=name))
        if not history:
            continue
        keep.add(history[0].id)
        keep.add(history[-1].id)  # the repository's first snapshot is never expired
        for snap in history[1:-1]:
            if snap.written_at < older_than:
                candidates[snap.id] = None
    return [s for s in candidates if s not in keep]


def run_maintenance(
    source: RepositorySource,
    *,
    expire_older_than: dt.timedelta,
    keep_unreferenced_for: dt.timedelta,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> MaintenanceReport:
    """Expire snapshots older than ``now - expire_older_than`` and garbage-collect (plain function).

    With ``dry_run``, nothing is changed: the snapshots listed are those that would
    expire, and the counts are what garbage collection would delete *before* the
    expiry (objects only reachable from expired snapshots are counted after a real
    run).
    """
    now = now or dt.datetime.now(dt.UTC)
    expire_before = now - expire_older_than
    gc_before = now - keep_unreferenced_for
    with commit_lock(source):
        repo = source.open_repository()
        if dry_run:
            expired = _expirable(repo, expire_before)
        else:
            expired = sorted(repo.expire_snapshots(expire_before))
        gc = repo.garbage_collect(gc_before, dry_run=dry_run)
    counts: dict[str, Any] = {
        name: getattr(gc, name, 0)
        for name in (
            "chunks_deleted",
            "manifests_deleted",
            "snapshots_deleted",
            "attributes_deleted",
            "transaction_logs_deleted",
            "bytes_deleted",
        )
    }
    skipped = [str(p) for p in getattr(gc, "skipped_phases", None) or []]
    failed = int(getattr(gc, "objects_failed_to_delete", 0) or 0)
    errors = [str(e) for e in getattr(gc, "delete_errors", None) or []]
    verb = "would" if dry_run else "did"
    summary = (
        f"Maintenance of {source.describe()} ({'dry run' if dry_run else 'applied'}): "
        f"{len(expired)} snapshot(s) older than {expire_before:%Y-%m-%d %H:%M} {verb} expire; "
        f"garbage collection {verb} delete {counts['chunks_deleted']} chunk(s), "
        f"{counts['manifests_deleted']} manifest(s), {counts['snapshots_deleted']} snapshot(s) "
        f"({counts['bytes_deleted']} bytes) unreferenced since before {gc_before:%Y-%m-%d %H:%M}."
    )
    if skipped or failed:
        summary += (
            f" INCOMPLETE: {failed} object(s) could not be deleted"
            + (f", phases skipped: {', '.join(skipped)}" if skipped else "")
            + (f" (first error: {errors[0]})" if errors else "")
            + "; they remain garbage for the next run."
        )
    return MaintenanceReport(
        dry_run=dry_run,
        expire_before=expire_before,
        delete_unreferenced_before=gc_before,
        expired_snapshots=expired,
        objects_failed_to_delete=failed,
        skipped_phases=skipped,
        delete_errors=errors,
        summary=summary,
        **counts,
    )


@flow(name="icechunk-maintenance", log_prints=True)
def maintain_repository(
    repository: str,
    expire_older_than_days: float = Field(default=30.0, ge=0),
    keep_unreferenced_hours: float = Field(default=24.0, ge=0),
    dry_run: bool = False,
) -> MaintenanceReport:
    """Expire old snapshots and garbage-collect objects left by failed runs (scheduled).

    Runs in the flow's own process (no Dask cluster: Icechunk's maintenance is
    one call each). Branch and tag tips are never expired.

    Args:
        repository: Path of the Icechunk repository.
        expire_older_than_days: Drop history older than this many days (tips are kept).
        keep_unreferenced_hours: Never delete unreferenced objects younger than this
            (they may belong to writes in progress).
        dry_run: Report what would be expired and deleted, change nothing.

    Garbage collection that stops early (objects it could not delete, phases it
    skipped) is not a success: the summary artifact says INCOMPLETE and the run
    fails with :class:`~icechunk_prefect.errors.MaintenanceIncompleteError` (its
    ``report`` holds the counts).

    Example:
        ```python
        import icechunk
        from icechunk_prefect.operations import maintain_repository

        icechunk.Repository.open_or_create(icechunk.local_filesystem_storage("/tmp/doc-ops-gc"))
        report = maintain_repository("/tmp/doc-ops-gc", dry_run=True)
        print(report.summary)
        ```
    """
    report = run_maintenance(
        resolve_repository(repository),
        expire_older_than=dt.timedelta(days=expire_older_than_days),
        keep_unreferenced_for=dt.timedelta(hours=keep_unreferenced_hours),
        dry_run=dry_run,
    )
    status = "complete" if report.complete else "INCOMPLETE (garbage collection stopped early)"
    create_table_artifact(
        table=[
            {"what": k, "count": v}
            for k, v in report.model_dump().items()
            if k.endswith("_deleted") and not isinstance(v, list)
        ]
        + [
            {"what": "expired_snapshots", "count": len(report.expired_snapshots)},
            {"what": "objects_failed_to_delete", "count": report.objects_failed_to_delete},
            {"what": "skipped_phases", "count": ", ".join(report.skipped_phases) or "none"},
            {"what": "status", "count": status},
        ],
        key="icechunk-maintenance",
        description=report.summary,
    )
    logger = get_run_logger()
    if not report.complete:
        logger.error(report.summary)
        raise MaintenanceIncompleteError(report.summary, report=report)
    logger.info(report.summary)
    return report
