"""What a commit wrote: :class:`CommitSummary` (:func:`summarize_commit`) and its markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import xarray as xr

from icechunk_prefect.core import metadata
from icechunk_prefect.core.planning import WritePlan
from icechunk_prefect.reporting.progress import format_bytes
from icechunk_prefect.storage.resolve import RepositoryLike, resolve_repository

if TYPE_CHECKING:
    pass

__all__ = [
    "CommitSummary",
    "group_path",
    "summarize_commit",
    "written_bytes",
]


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
    rebase: str | None = None
    """How the run landed on a branch that moved meanwhile (``None``: it did not move),
    e.g. ``branch moved (2 commits), 1 partition re-written on the new tip, 72 kept``."""

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
            + (f"; {self.rebase}" if self.rebase else "")
        )


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
        from icechunk_prefect.reporting.summary import summarize_commit

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
        flow_run_id=meta.get(metadata.FLOW_RUN_ID),
        flow_run_name=meta.get(metadata.FLOW_RUN_NAME),
        group=group_path(group) or None,
        rebase=(meta.get(metadata.REBASE) or {}).get("text"),
    )


def written_bytes(dataset: xr.Dataset, plan: WritePlan) -> int:
    """Uncompressed bytes a plan writes: its lazy variables and the eager ones not skipped."""
    names = [*plan.lazy, *(n for n in plan.eager if n not in plan.skip_eager)]
    return int(sum(dataset.variables[n].nbytes for n in names if dataset.variables[n].ndim))


def group_path(group: str | None) -> str:
    """``None``, ``""``, ``"/"`` -> ``""``; ``"/ocean/surface/"`` -> ``"ocean/surface"``."""
    return "/".join(p for p in (group or "").split("/") if p)
