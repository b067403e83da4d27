"""A branch's commits with the run metadata each carries (``icechunk-prefect history``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from icechunk_prefect.core.metadata import IDEMPOTENCY_KEY, METADATA_PREFIX
from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.storage.resolve import RepositoryLike, resolve_repository

if TYPE_CHECKING:
    pass

__all__ = [
    "CommitRecord",
    "commit_history",
]


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
        from icechunk_prefect.reporting.history import commit_history

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
