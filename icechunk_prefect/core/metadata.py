"""What each commit records about the run that made it: the one owner of the
commit-metadata keys.

Every key is ``icechunk_prefect.<name>``; the constants below are the only
spelling of them in the package (the writer and the flows write them, the
summaries, the history and the CLI read them).

Example:
    ```python
    from icechunk_prefect.core import metadata

    meta = metadata.commit_metadata(parameters={"mode": "w"}, extra={"owner": "me"})
    assert meta[metadata.PARAMETERS] == {"mode": "w"} and meta["owner"] == "me"
    assert metadata.PARTITIONS == "icechunk_prefect.partitions"
    ```
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from icechunk_prefect.core.planning import WritePlan

__all__ = [
    "BASE_SNAPSHOT",
    "FLOW_NAME",
    "FLOW_RUN_ID",
    "FLOW_RUN_NAME",
    "GROUP",
    "IDEMPOTENCY_KEY",
    "METADATA_PREFIX",
    "OPERATION",
    "OPERATION_FLOW_RUN_ID",
    "OPERATION_FLOW_RUN_NAME",
    "PARAMETERS",
    "PARTITIONS",
    "PARTITION_DIM",
    "REBASE",
    "REGION",
    "VARIABLES",
    "VERSIONS",
    "WINDOW",
    "commit_metadata",
    "jsonable",
    "key",
    "package_versions",
]

METADATA_PREFIX = "icechunk_prefect"
"""The prefix of every commit-metadata key this package writes."""


def key(name: str) -> str:
    """The commit-metadata key for ``name`` (``icechunk_prefect.<name>``)."""
    return f"{METADATA_PREFIX}.{name}"


IDEMPOTENCY_KEY = key("idempotency_key")
"""The run's idempotency key: a retried commit finds the commit that landed by it."""
FLOW_RUN_ID = key("flow_run_id")
FLOW_RUN_NAME = key("flow_run_name")
FLOW_NAME = key("flow_name")
PARAMETERS = key("parameters")
VERSIONS = key("versions")
PARTITION_DIM = key("partition_dim")
REGION = key("region")
VARIABLES = key("variables")
GROUP = key("group")
BASE_SNAPSHOT = key("base_snapshot")
PARTITIONS = key("partitions")
OPERATION = key("operation")
"""Operational flows: ``create``, ``append`` or ``backfill``."""
OPERATION_FLOW_RUN_ID = key("operation_flow_run_id")
OPERATION_FLOW_RUN_NAME = key("operation_flow_run_name")
REBASE = key("rebase")
"""A run that landed on a branch that moved: its rounds (partitions re-written, kept)."""
WINDOW = key("window")
"""Operational flows: the window (dates, steps) the run wrote."""

_PACKAGES = ("icechunk-prefect", "icechunk", "zarr", "xarray", "dask", "prefect", "prefect-dask")


@cache
def package_versions() -> dict[str, str]:
    """Versions of the packages a write depends on, and Python's."""
    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            out[pkg] = "not installed"
    return out


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (slices as [start, stop], unknowns as text)."""
    if isinstance(value, slice):
        return [value.start, value.stop]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json"))
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def commit_metadata(
    *,
    parameters: Mapping[str, Any],
    extra: Mapping[str, Any],
    plan: WritePlan | None = None,
    partitions: int | None = None,
    run: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Provenance for a commit: the flow run (``run``, e.g.
    :func:`icechunk_prefect.runtime.flow_run_metadata`), parameters, plan summary and
    versions."""
    meta: dict[str, Any] = {
        **(run or {}),
        PARAMETERS: jsonable(parameters),
        VERSIONS: package_versions(),
    }
    if plan is not None:
        summary = plan.describe()
        meta[PARTITION_DIM] = summary["partition_dim"]
        meta[REGION] = summary["region"]
        meta[VARIABLES] = summary["variables"]
        meta[GROUP] = summary["group"]
        meta[BASE_SNAPSHOT] = plan.base_snapshot
        partitions = summary["partitions"] if partitions is None else partitions
    meta[PARTITIONS] = partitions
    meta.update(jsonable(dict(extra)))
    return meta
