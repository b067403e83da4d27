"""What each commit records about the run that made it (commit metadata)."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from icechunk_prefect.planning import WritePlan
from icechunk_prefect.sessions import METADATA_PREFIX

__all__ = ["commit_metadata", "jsonable", "key", "package_versions"]

_PACKAGES = ("icechunk-prefect", "icechunk", "zarr", "xarray", "dask", "prefect", "prefect-dask")


def key(name: str) -> str:
    """The commit-metadata key for ``name`` (``icechunk_prefect.<name>``)."""
    return f"{METADATA_PREFIX}.{name}"


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


def _flow_run() -> dict[str, Any]:
    try:
        from prefect.runtime import flow_run
    except ImportError:  # pragma: no cover
        return {}
    run_id = flow_run.id
    if run_id is None:
        return {}
    return {
        key("flow_run_id"): str(run_id),
        key("flow_run_name"): flow_run.name,
        key("flow_name"): flow_run.flow_name,
    }


def commit_metadata(
    *,
    parameters: Mapping[str, Any],
    extra: Mapping[str, Any],
    plan: WritePlan | None = None,
    partitions: int | None = None,
) -> dict[str, Any]:
    """Provenance for a commit: flow run, parameters, plan summary and versions."""
    meta: dict[str, Any] = {
        **_flow_run(),
        key("parameters"): jsonable(parameters),
        key("versions"): package_versions(),
    }
    if plan is not None:
        summary = plan.describe()
        meta[key("partition_dim")] = summary["partition_dim"]
        meta[key("region")] = summary["region"]
        meta[key("variables")] = summary["variables"]
        meta[key("group")] = summary["group"]
        meta[key("base_snapshot")] = plan.base_snapshot
        partitions = summary["partitions"] if partitions is None else partitions
    meta[key("partitions")] = partitions
    meta.update(jsonable(dict(extra)))
    return meta
