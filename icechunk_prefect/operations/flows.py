"""The operational flows: create a dataset, append new steps, backfill a date range.

Each flow checks and plans in its own process (nothing written), then runs the
write as a subflow, :func:`write_window`, on the Dask cluster its ``cluster``
parameter describes, through the core writer
(:class:`~icechunk_prefect.writer.FlowDatasetWriter`): one commit per run, or
none. Parameters are typed so that the Prefect UI renders a form (date pickers,
drop-downs, descriptions) and the server validates deployment runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import xarray as xr
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from icechunk_prefect.core import metadata
from icechunk_prefect.core.datasets import as_dataset, bytes_per_step
from icechunk_prefect.core.rebase import OverlapPolicy
from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.operations.plans import (
    GapPolicy,
    check_dates,
    prepare_append,
    prepare_backfill,
)
from icechunk_prefect.operations.sources import SourceConfig, SyntheticSource, as_source
from icechunk_prefect.operations.turns import dataset_turn
from icechunk_prefect.operations.windows import WindowPlan, plan_partitions, read_extent
from icechunk_prefect.runtime import DaskClusterConfig
from icechunk_prefect.serialization import register_parameter_encoders
from icechunk_prefect.storage.resolve import resolve_repository
from icechunk_prefect.writer import FlowDatasetWriter

__all__ = [
    "OperationResult",
    "append_dataset",
    "backfill_dataset",
    "create_dataset",
    "write_window",
]

register_parameter_encoders()

_DEFAULT_SOURCE = SyntheticSource()
_LOCAL_CLUSTER = DaskClusterConfig()


class OperationResult(BaseModel):
    """What an operational flow did."""

    operation: str = Field(description="create, append or backfill.")
    committed: bool = Field(description="Whether a commit was made.")
    snapshot_id: str | None = Field(default=None, description="The new snapshot, if any.")
    summary: str = Field(description="One line saying what happened.")
    plan: dict[str, Any] = Field(default_factory=dict, description="The plan that was executed.")


@flow(name="icechunk-write-window", validate_parameters=False, log_prints=True)
def write_window(
    dataset: xr.Dataset,
    repository: str,
    *,
    message: str,
    branch: str = "main",
    group: str | None = None,
    mode: str | None = None,
    append_dim: str | None = None,
    region: Mapping[str, slice] | None = None,
    partition_size: int | None = None,
    align_chunks: bool = False,
    write_data: bool = True,
    parameters: Mapping[str, Any] | None = None,
    commit_metadata: Mapping[str, Any] | None = None,
    on_overlap: OverlapPolicy = "land-after",
) -> str:
    """Write a prepared dataset with the core steps (metadata, eager, lazy, merge, commit).

    Run by the operational flows as a subflow on their cluster's task runner;
    ``write_data=False`` writes metadata and coordinates only (arrays keep their
    fill value). ``align_chunks`` as in ``to_icechunk`` (the backfill sets it: its
    dataset is rechunked onto the store's grid, and a region starting or ending
    inside a chunk is written by one task). ``on_overlap``: see
    :class:`~icechunk_prefect.writer.FlowDatasetWriter`. Returns the snapshot id.

    Example:
        ```python
        import numpy as np, xarray as xr
        from icechunk_prefect import DaskClusterConfig
        from icechunk_prefect.operations import write_window

        ds = xr.Dataset({"v": ("time", np.arange(8.0))}, coords={"time": np.arange(8)})
        run = write_window.with_options(task_runner=DaskClusterConfig(n_workers=1).task_runner())
        snapshot = run(ds.chunk(time=4), "/tmp/doc-write-window", message="init", mode="w")
        ```
    """
    writer = FlowDatasetWriter(
        dataset,
        repository,
        branch=branch,
        group=group,
        mode=mode,  # type: ignore[arg-type]
        append_dim=append_dim,
        region=region,
        partition_size=partition_size,
        align_chunks=align_chunks,
        parameters=dict(parameters or {}),
        on_overlap=on_overlap,
    )
    result = writer.run(message, commit_metadata, write_data=write_data)
    get_run_logger().info(
        "committed %s on %s: %d partition(s), region %s",
        result.snapshot_id,
        branch,
        len(result.plan.partitions),
        metadata.jsonable(result.plan.region),
    )
    return result.snapshot_id


def _operation_metadata(operation: str) -> dict[str, Any]:
    return {
        metadata.OPERATION: operation,
        metadata.OPERATION_FLOW_RUN_ID: str(flow_run.id) if flow_run.id else None,
        metadata.OPERATION_FLOW_RUN_NAME: flow_run.name,
    }


def _report(plan: WindowPlan, title: str) -> None:
    rows = plan.rows() or [{"partition": "-", "positions": "-", "steps": 0, "variables": "-"}]
    create_table_artifact(
        table=rows,
        key=f"icechunk-{plan.operation}-plan",
        description=f"{title}. {' '.join(plan.notes)} Store: {plan.extent}.",
    )


def _run_write(cluster: DaskClusterConfig, name: str, **kwargs: Any) -> str:
    run = write_window.with_options(
        task_runner=cluster.task_runner(),  # type: ignore[arg-type]
        flow_run_name=name,
    )
    return str(run(**kwargs))


@flow(name="icechunk-create", log_prints=True)
def create_dataset(
    repository: str,
    source: SourceConfig = _DEFAULT_SOURCE,
    branch: str = "main",
    group: str | None = None,
    overwrite: bool = False,
    fill: bool = False,
    partition_size: int | None = Field(default=None, ge=1),
    message: str | None = None,
    cluster: DaskClusterConfig = _LOCAL_CLUSTER,
    take_turns: bool = False,
) -> OperationResult:
    """Create a dataset from the source's template over its full extent.

    Arrays are created with their fill value; with ``fill`` the data is written
    too. An existing dataset (a group holding arrays) is refused unless
    ``overwrite`` is set.

    Args:
        repository: Path of the Icechunk repository (created if missing).
        source: Where the template (and data) come from.
        branch: Branch to commit to.
        group: Group of the dataset in the repository (default: the root).
        overwrite: Replace an existing dataset in that group.
        fill: Also write the source's data (otherwise arrays hold fill values only).
        partition_size: Time steps per write task (a multiple of the chunk size).
        message: Commit message.
        cluster: Dask cluster to write on (default: a local cluster).
        take_turns: Wait for the other runs of this dataset that also take turns
            (a Prefect global concurrency limit of one slot per dataset, held from
            planning to commit) instead of writing alongside them.

    Example:
        ```python
        from icechunk_prefect.operations import create_dataset
        from icechunk_prefect.operations.sources import SyntheticSource

        source = SyntheticSource(periods=20, nlat=4, nlon=8, time_chunk=5)
        result = create_dataset("/tmp/doc-ops-create", source, overwrite=True)
        print(result.summary)
        ```
    """
    repo = resolve_repository(repository)
    repo.open_repository(create=True)
    with dataset_turn(repo, branch, group, enabled=take_turns):
        existing = read_extent(repo, branch, group) if not overwrite else None
        if existing is not None:
            raise ConfigurationError(
                f"A dataset already exists in {repo.describe()} (branch {branch!r}, group "
                f"{group or '/'!r}; {existing.describe()}). Pass overwrite=True to replace it, or "
                "use the append / backfill flows to update it."
            )
        src = as_source(source)
        template = _chunked_as_encoded(as_dataset(src.template()))
        units = {
            str(n): int(v.encoding["chunks"][v.dims.index("time")])
            for n, v in template.data_vars.items()
            if "time" in v.dims and v.encoding.get("chunks")
        }
        n = template.sizes.get("time", 0)
        size, parts = plan_partitions(
            0,
            n,
            units,
            partition_size=partition_size,
            bytes_per_step=bytes_per_step(template, list(units), "time"),
        )
        params = {
            "operation": "create",
            "repository": repo.describe(),
            "source": _source_json(source),
            "branch": branch,
            "group": group,
            "overwrite": overwrite,
            "fill": fill,
            "partition_size": size,
        }
        sid = _run_write(
            cluster,
            "create",
            dataset=template,
            repository=repository,
            message=message or f"Create dataset ({n} time steps{', with data' if fill else ''})",
            branch=branch,
            group=group,
            mode="w" if overwrite else "w-",
            partition_size=size,
            write_data=fill,
            parameters=params,
            commit_metadata=_operation_metadata("create"),
        )
        written = f"with data in {len(parts)} partition(s)" if fill else "holding fill values only"
        summary = (
            f"Created {sorted(map(str, template.data_vars))} over {n} time steps, {written}: "
            f"snapshot {sid}."
        )
        get_run_logger().info(summary)
        return OperationResult(
            operation="create", committed=True, snapshot_id=sid, summary=summary, plan=params
        )


def _chunked_as_encoded(ds: xr.Dataset) -> xr.Dataset:
    """Rechunk dask-backed variables to their Zarr ``encoding['chunks']``."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        chunks = var.encoding.get("chunks")
        if var.chunks is not None and chunks:
            out[name] = var.chunk(dict(zip(var.dims, chunks, strict=True)))
            out[name].encoding = var.encoding
    return out


def _source_json(source: Any) -> Any:
    if isinstance(source, BaseModel):
        return source.model_dump(mode="json")
    return type(source).__name__


@flow(name="icechunk-append", log_prints=True)
def append_dataset(
    repository: str,
    source: SourceConfig = _DEFAULT_SOURCE,
    start: date | None = None,
    end: date | None = None,
    on_gap: GapPolicy = "error",
    branch: str = "main",
    group: str | None = None,
    partition_size: int | None = Field(default=None, ge=1),
    dry_run: bool = False,
    cluster: DaskClusterConfig = _LOCAL_CLUSTER,
    take_turns: bool = False,
) -> OperationResult:
    """Append the source's time steps that the store does not hold yet (scheduled).

    Steps up to the store's last one are skipped, never duplicated: running again
    over the same window commits nothing and says so. A gap between the store's
    end and the new data is refused, or filled with missing values
    (``on_gap="fill"``).

    Args:
        repository: Path of the Icechunk repository.
        source: Where the new data comes from.
        start: First day to look at (default: the day of the store's last step).
        end: Last day to append, included (default: the source's last day).
        on_gap: What to do when the new data does not follow the store's last step:
            error, or fill the missing steps with missing values.
        branch: Branch to commit to.
        group: Group of the dataset in the repository (default: the root).
        partition_size: Time steps per write task (a multiple of the chunk size;
            default: about 256 MB per task).
        dry_run: Plan and report the partitions without writing.
        cluster: Dask cluster to write on (default: a local cluster).
        take_turns: Wait for the other runs of this dataset that also take turns
            (a Prefect global concurrency limit of one slot per dataset, held from
            planning to commit) instead of writing alongside them.

    Example:
        ```python
        from datetime import date
        from icechunk_prefect.operations import append_dataset, create_dataset
        from icechunk_prefect.operations.sources import SyntheticSource

        source = SyntheticSource(start=date(2024, 1, 1), periods=20, nlat=4, nlon=8, time_chunk=5)
        create_dataset("/tmp/doc-ops-append", source, overwrite=True, fill=True)
        longer = source.model_copy(update={"periods": 30})
        print(append_dataset("/tmp/doc-ops-append", longer).summary)
        ```
    """
    logger = get_run_logger()
    check_dates(start, end)
    repo = resolve_repository(repository)
    with dataset_turn(repo, branch, group, enabled=take_turns and not dry_run):
        plan, ds = prepare_append(
            repo,
            as_source(source),
            branch=branch,
            group=group,
            start=start,
            end=end,
            on_gap=on_gap,
            partition_size=partition_size,
        )
        params = {
            "operation": "append",
            "repository": repo.describe(),
            "source": _source_json(source),
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "on_gap": on_gap,
            "branch": branch,
            "group": group,
            "partition_size": plan.partition_size,
        }
        if ds is None:
            summary = " ".join(plan.notes) + " No commit made."
            logger.info(summary)
            _report(plan, "Append: nothing to write")
            return OperationResult(
                operation="append", committed=False, summary=summary, plan=plan.describe()
            )
        what = (
            f"{plan.steps} step(s) {plan.first} .. {plan.last} at positions "
            f"[{plan.start}:{plan.stop}) in {len(plan.partitions)} partition(s)"
        )
        _report(plan, f"Append {what}{' (dry run)' if dry_run else ''}")
        if dry_run:
            summary = f"Dry run: would append {what}. {' '.join(plan.notes)}".strip()
            logger.info(summary)
            return OperationResult(
                operation="append", committed=False, summary=summary, plan=plan.describe()
            )
        sid = _run_write(
            cluster,
            f"append {plan.first[:10]}..{plan.last[:10]}",
            dataset=ds,
            repository=repository,
            message=f"Append {plan.steps} step(s): {plan.first} .. {plan.last}",
            branch=branch,
            group=group,
            append_dim=plan.dim,
            partition_size=plan.partition_size,
            parameters=params,
            commit_metadata={
                **_operation_metadata("append"),
                metadata.WINDOW: plan.describe(),
            },
        )
        summary = f"Appended {what}: snapshot {sid}. {' '.join(plan.notes)}".strip()
        logger.info(summary)
        return OperationResult(
            operation="append",
            committed=True,
            snapshot_id=sid,
            summary=summary,
            plan=plan.describe(),
        )


@flow(name="icechunk-backfill", log_prints=True)
def backfill_dataset(
    repository: str,
    start: date,
    end: date,
    source: SourceConfig = _DEFAULT_SOURCE,
    variables: list[str] | None = None,
    branch: str = "main",
    group: str | None = None,
    partition_size: int | None = Field(default=None, ge=1),
    dry_run: bool = False,
    cluster: DaskClusterConfig = _LOCAL_CLUSTER,
    on_overlap: OverlapPolicy = "land-after",
    take_turns: bool = False,
) -> OperationResult:
    """Rewrite the days ``start`` .. ``end`` of an existing dataset from the source (region writes).

    A range outside the stored extent, an unknown variable or a partition size
    that splits chunks is refused before anything is written. ``dry_run`` plans
    and reports the partitions (a table artifact) without writing.

    Args:
        repository: Path of the Icechunk repository.
        start: First day to rewrite.
        end: Last day to rewrite (included).
        source: Where the data comes from.
        variables: Variables to rewrite (default: all variables along time).
        branch: Branch to commit to.
        group: Group of the dataset in the repository (default: the root).
        partition_size: Time steps per write task (a multiple of the chunk size;
            default: about 256 MB per task).
        dry_run: Plan and report the partitions without writing.
        cluster: Dask cluster to write on (default: a local cluster).
        on_overlap: When other runs committed to the same days during this one
            (another backfill): land-after writes the partitions they touched again on
            the new tip and commits (this run's values win, as a later run's would);
            refuse commits nothing and says what overlapped. Chunks shared without
            sharing days (an append into the last chunk) are written again either way.
        take_turns: Wait for the other runs of this dataset that also take turns
            (a Prefect global concurrency limit of one slot per dataset, held from
            planning to commit) instead of writing alongside them.

    Example:
        ```python
        from datetime import date
        from icechunk_prefect.operations import backfill_dataset, create_dataset
        from icechunk_prefect.operations.sources import SyntheticSource

        source = SyntheticSource(start=date(2024, 1, 1), periods=20, nlat=4, nlon=8, time_chunk=5)
        create_dataset("/tmp/doc-ops-backfill", source, overwrite=True)
        result = backfill_dataset(
            "/tmp/doc-ops-backfill", date(2024, 1, 6), date(2024, 1, 15), source, variables=["t2m"]
        )
        print(result.summary)
        ```
    """
    logger = get_run_logger()
    check_dates(start, end)
    repo = resolve_repository(repository)
    with dataset_turn(repo, branch, group, enabled=take_turns and not dry_run):
        plan, ds = prepare_backfill(
            repo,
            as_source(source),
            start=start,
            end=end,
            variables=variables,
            branch=branch,
            group=group,
            partition_size=partition_size,
        )
        what = (
            f"{', '.join(plan.variables)} over {plan.first} .. {plan.last} (positions "
            f"[{plan.start}:{plan.stop}), {len(plan.partitions)} partition(s))"
        )
        _report(plan, f"Backfill {what}{' (dry run)' if dry_run else ''}")
        if dry_run:
            summary = f"Dry run: would rewrite {what}. Nothing written."
            logger.info(summary)
            return OperationResult(
                operation="backfill", committed=False, summary=summary, plan=plan.describe()
            )
        params = {
            "operation": "backfill",
            "repository": repo.describe(),
            "source": _source_json(source),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "variables": list(plan.variables),
            "on_overlap": on_overlap,
            "branch": branch,
            "group": group,
            "partition_size": plan.partition_size,
        }
        sid = _run_write(
            cluster,
            f"backfill {start.isoformat()}..{end.isoformat()}",
            dataset=ds,
            repository=repository,
            message=(
                f"Backfill {', '.join(plan.variables)}: {start.isoformat()} .. {end.isoformat()}"
            ),
            branch=branch,
            group=group,
            region={plan.dim: slice(plan.start, plan.stop)},
            partition_size=plan.partition_size,
            # align_to_store put the dask chunks on the store's grid; the range may start or
            # end inside a chunk (mode 'r+' refuses that unless chunks are aligned by request).
            align_chunks=True,
            on_overlap=on_overlap,
            parameters=params,
            commit_metadata={
                **_operation_metadata("backfill"),
                metadata.WINDOW: plan.describe(),
            },
        )
        summary = f"Rewrote {what}: snapshot {sid}."
        logger.info(summary)
        return OperationResult(
            operation="backfill",
            committed=True,
            snapshot_id=sid,
            summary=summary,
            plan=plan.describe(),
        )
