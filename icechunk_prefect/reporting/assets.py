"""Each commit as a Prefect *asset materialization* of the dataset.

:func:`asset_key` names the asset (repository, branch and group);
:func:`materialize_commit` records the snapshot id and what was written as its
metadata; every later commit (append, backfill) materializes the same asset again.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from prefect.assets import Asset, AssetProperties
from prefect.assets.core import MAX_ASSET_DESCRIPTION_LENGTH
from prefect.types.names import MAX_ASSET_KEY_LENGTH, RESTRICTED_ASSET_CHARACTERS

from icechunk_prefect.core.metadata import jsonable
from icechunk_prefect.reporting.progress import in_flow_run
from icechunk_prefect.reporting.summary import CommitSummary, group_path

if TYPE_CHECKING:
    pass

__all__ = [
    "ASSET_MATERIALIZED_BY",
    "asset_key",
    "materialize_commit",
]


ASSET_MATERIALIZED_BY = "icechunk-prefect"
"""The tool named as the materializer of the assets (``prefect.asset.materialized-by``)."""

_KEY_SAFE = re.compile("[" + re.escape("".join(RESTRICTED_ASSET_CHARACTERS)) + "]")
_DESCRIBED = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*?)"
    r"(?: \(endpoint (?P<endpoint>[^)]*)\))?$"
)


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
        from icechunk_prefect.reporting.assets import asset_key

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
    group_part = group_path(group)
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
    metadata = jsonable(_asset_metadata(summary))
    if in_flow_run():
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
