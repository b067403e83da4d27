"""The operational flows: create a dataset, append new steps, backfill a date range.

Each flow checks and plans in its own process (nothing written), then writes in
the same flow run, through the core writer
(:class:`~icechunk_prefect.writer.FlowDatasetWriter`), with the data computed on
the Dask cluster its ``cluster`` parameter describes (:func:`write_on_cluster`):
one commit per run, or none. The run a user triggers therefore holds everything:
the plan, progress and commit artifacts and the write's task runs.

Parameters are typed so that the Prefect UIs render a form (date pickers,
drop-downs, a block picker per source kind, descriptions in plain text) and the
server validates deployment runs; a date range whose last day is before its first
day is refused when the parameters are validated. The append and backfill flows
read from the source recorded with the dataset unless given one
(:mod:`~icechunk_prefect.operations.dataset_source`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any

import xarray as xr
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import AfterValidator, BaseModel, Field, ValidationInfo

from icechunk_prefect.core import metadata
from icechunk_prefect.core.datasets import as_dataset, bytes_per_step
from icechunk_prefect.core.rebase import OverlapPolicy
from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.operations.dataset_source import (
    ChosenSource,
    choose_source,
    config_of,
    record_source,
    recorded_source,
)
from icechunk_prefect.operations.plans import GapPolicy, prepare_append, prepare_backfill
from icechunk_prefect.operations.refusals import log_refusals_in_one_line
from icechunk_prefect.operations.sources import (
    OptionalSourceParameter,
    SourceParameter,
    as_source,
    describe_source,
)
from icechunk_prefect.operations.turns import dataset_turn
from icechunk_prefect.operations.windows import WindowPlan, plan_partitions, read_extent
from icechunk_prefect.runtime import DaskClusterConfig
from icechunk_prefect.serialization import register_parameter_encoders
from icechunk_prefect.storage.resolve import resolve_repository
from icechunk_prefect.writer import FlowDatasetWriter

__all__ = [
    "LastDay",
    "OperationResult",
    "append_dataset",
    "backfill_dataset",
    "create_dataset",
    "write_on_cluster",
]

register_parameter_encoders()
log_refusals_in_one_line()

_LOCAL_CLUSTER = DaskClusterConfig()


def _not_before_first_day(value: date | None, info: ValidationInfo) -> date | None:
    first = info.data.get("first_day")
    if value is not None and isinstance(first, date) and value < first:
        raise ValueError(
            f"last_day ({value.isoformat()}) is before first_day ({first.isoformat()}); give a "
            "last day on or after the first day (both days are included)"
        )
    return value


LastDay = Annotated[date, AfterValidator(_not_before_first_day)]
"""A flow parameter ``last_day``, refused when the parameters are validated if it is
before the flow's ``first_day`` parameter (declared before it)."""


class OperationResult(BaseModel):
    """What an operational flow did."""

    operation: str = Field(description="create, append or backfill.")
    committed: bool = Field(description="Whether a commit was made.")
    snapshot_id: str | None = Field(default=None, description="The new snapshot, if any.")
    summary: str = Field(description="One line saying what happened.")
    plan: dict[str, Any] = Field(default_factory=dict, description="The plan that was executed.")


@contextmanager
def write_on_cluster(cluster: DaskClusterConfig) -> Iterator[Any]:
    """Make the cluster ``cluster`` describes the Dask client of the writes started inside.

    The operational flows write in their own flow run (so its task runs and artifacts
    are on the run a user triggered): the core writer's tasks run in the flow
    process and compute the data on this cluster (started here for a local or
    cluster-class configuration, and closed on exit). Yields the client.

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect import DaskClusterConfig, FlowDatasetWriter
        from icechunk_prefect.operations.flows import write_on_cluster

        @flow
        def write_here(path: str) -> str:
            ds = xr.Dataset({"v": ("time", np.arange(8.0))}, coords={"time": np.arange(8)})
            with write_on_cluster(DaskClusterConfig(n_workers=1)):
                return FlowDatasetWriter(ds.chunk(time=4), path, mode="w").run("init").snapshot_id

        print(write_here("/tmp/doc-write-on-cluster"))
        ```
    """
    with cluster.task_runner() as runner:
        client = runner.client
        with client.as_current():
            yield client


def _write(
    cluster: DaskClusterConfig,
    dataset: xr.Dataset,
    repository: str,
    *,
    message: str,
    commit_metadata: Mapping[str, Any],
    write_data: bool = True,
    **options: Any,
) -> str:
    """One write in this flow run on ``cluster``; returns the snapshot id."""
    with write_on_cluster(cluster):
        writer = FlowDatasetWriter(dataset, repository, **options)
        result = writer.run(message, commit_metadata, write_data=write_data)
    get_run_logger().info(
        "committed %s on %s: %d partition(s), region %s",
        result.snapshot_id,
        result.branch,
        len(result.plan.partitions),
        metadata.jsonable(result.plan.region),
    )
    return result.snapshot_id


def _operation_metadata(operation: str, chosen: ChosenSource | None = None) -> dict[str, Any]:
    meta = {
        metadata.OPERATION: operation,
        metadata.OPERATION_FLOW_RUN_ID: str(flow_run.id) if flow_run.id else None,
        metadata.OPERATION_FLOW_RUN_NAME: flow_run.name,
    }
    if chosen is not None:
        meta.update({metadata.key(k): v for k, v in chosen.parameters().items()})
    return meta


def _report(plan: WindowPlan, title: str, chosen: ChosenSource) -> None:
    rows = plan.rows() or [{"partition": "-", "positions": "-", "steps": 0, "variables": "-"}]
    notes = " ".join(plan.notes)
    create_table_artifact(
        table=rows,
        key=f"icechunk-{plan.operation}-plan",
        description=(
            f"{title}. {notes + ' ' if notes else ''}Source: {chosen.describe()}. "
            f"Store: {plan.extent}."
        ),
    )


@flow(name="icechunk-create", log_prints=True)
def create_dataset(
    repository: str,
    source: SourceParameter,
    branch: str = "main",
    group: str | None = None,
    overwrite: bool = False,
    fill: bool = False,
    partition_size: int | None = Field(default=None, ge=1),
    message: str | None = None,
    cluster: DaskClusterConfig = _LOCAL_CLUSTER,
    take_turns: bool = False,
) -> OperationResult:
    """Create a dataset from a source's template over its full extent, and record the source.

    Arrays are created with their fill value; with fill the data is written too.
    An existing dataset (a group holding arrays) is refused unless overwrite is
    set. The source is recorded with the dataset (its group attribute
    icechunk_prefect.source): the append and backfill flows read from it when they
    are given no source.

    Args:
        repository: Path of the Icechunk repository (created if missing).
        source: Where the template and the data come from: a saved source block of one of
            the kinds (synthetic, netCDF folder, imported), or JSON naming its kind.
        branch: Branch to commit to.
        group: Group of the dataset in the repository (default: the root).
        overwrite: Replace an existing dataset in that group.
        fill: Also write the source's data (otherwise arrays hold fill values only).
        partition_size: Time steps per write task (a multiple of the chunk size).
        message: Commit message.
        cluster: Dask cluster to write on (default: a local cluster).
        take_turns: Wait for the other runs of this dataset that also take turns (a
            Prefect global concurrency limit of one slot per dataset, held from planning
            to commit) instead of writing alongside them.

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
        config = config_of(source)
        template = _chunked_as_encoded(as_dataset(as_source(source).template()))
        template = record_source(template, config)
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
            "source": config or describe_source(source),
            "branch": branch,
            "group": group,
            "overwrite": overwrite,
            "fill": fill,
            "partition_size": size,
        }
        get_run_logger().info("Source: %s", describe_source(source))
        sid = _write(
            cluster,
            template,
            repository,
            message=message or f"Create dataset ({n} time steps{', with data' if fill else ''})",
            branch=branch,
            group=group,
            mode="w" if overwrite else "w-",
            partition_size=size,
            write_data=fill,
            parameters=params,
            commit_metadata={
                **_operation_metadata("create"),
                metadata.key("source"): params["source"],
                metadata.key("source_origin"): "parameter",
            },
        )
        written = f"with data in {len(parts)} partition(s)" if fill else "holding fill values only"
        recorded = "" if config is not None else " (no source recorded: give one to later runs)"
        summary = (
            f"Created {sorted(map(str, template.data_vars))} over {n} time steps, {written}: "
            f"snapshot {sid}.{recorded}"
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


@flow(name="icechunk-append", log_prints=True)
def append_dataset(
    repository: str,
    source: OptionalSourceParameter = None,
    first_day: date | None = None,
    last_day: Annotated[date | None, AfterValidator(_not_before_first_day)] = None,
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
    end and the new data is refused, or filled with missing values (on_gap fill).

    Args:
        repository: Path of the Icechunk repository.
        source: Where the new data comes from. Leave empty for the source recorded with
            the dataset when it was created; pick a saved source block to read another
            one in this run only.
        first_day: First day to look at (default: the day of the store's last step).
        last_day: Last day to append, included (default: the source's last day).
        on_gap: What to do when the new data does not follow the store's last step:
            error, or fill the missing steps with missing values.
        branch: Branch to commit to.
        group: Group of the dataset in the repository (default: the root).
        partition_size: Time steps per write task (a multiple of the chunk size;
            default: about 256 MB per task).
        dry_run: Plan and report the partitions without writing.
        cluster: Dask cluster to write on (default: a local cluster).
        take_turns: Wait for the other runs of this dataset that also take turns (a
            Prefect global concurrency limit of one slot per dataset, held from planning
            to commit) instead of writing alongside them.

    Example:
        ```python
        from datetime import date
        from icechunk_prefect.operations import append_dataset, create_dataset
        from icechunk_prefect.operations.sources import SyntheticSource

        source = SyntheticSource(
            data_start=date(2024, 1, 1), periods=20, nlat=4, nlon=8, time_chunk=5
        )
        create_dataset("/tmp/doc-ops-append", source, overwrite=True, fill=True)
        longer = source.model_copy(update={"periods": 30})
        print(append_dataset("/tmp/doc-ops-append", longer).summary)
        ```
    """
    logger = get_run_logger()
    repo = resolve_repository(repository)
    chosen = choose_source(source, repo, branch, group)
    logger.info("Source: %s", chosen.describe())
    with dataset_turn(repo, branch, group, enabled=take_turns and not dry_run):
        plan, ds = prepare_append(
            repo,
            chosen.source,
            branch=branch,
            group=group,
            start=first_day,
            end=last_day,
            on_gap=on_gap,
            partition_size=partition_size,
        )
        params = {
            "operation": "append",
            "repository": repo.describe(),
            **chosen.parameters(),
            "first_day": first_day.isoformat() if first_day else None,
            "last_day": last_day.isoformat() if last_day else None,
            "on_gap": on_gap,
            "branch": branch,
            "group": group,
            "partition_size": plan.partition_size,
        }
        described = {**plan.describe(), **chosen.parameters()}
        if ds is None:
            summary = " ".join(plan.notes) + " No commit made."
            logger.info(summary)
            _report(plan, "Append: nothing to write", chosen)
            return OperationResult(
                operation="append", committed=False, summary=summary, plan=described
            )
        what = (
            f"{plan.steps} step(s) {plan.first} .. {plan.last} at positions "
            f"[{plan.start}:{plan.stop}) in {len(plan.partitions)} partition(s)"
        )
        _report(plan, f"Append {what}{' (dry run)' if dry_run else ''}", chosen)
        if dry_run:
            summary = f"Dry run: would append {what}. {' '.join(plan.notes)}".strip()
            logger.info(summary)
            return OperationResult(
                operation="append", committed=False, summary=summary, plan=described
            )
        # An append replaces the group's attributes with the new data's: keep the record.
        recorded = chosen.config if chosen.origin == "dataset" else None
        ds = record_source(ds, recorded or recorded_source(repo, branch, group))
        sid = _write(
            cluster,
            ds,
            repository,
            message=f"Append {plan.steps} step(s): {plan.first} .. {plan.last}",
            branch=branch,
            group=group,
            append_dim=plan.dim,
            partition_size=plan.partition_size,
            parameters=params,
            commit_metadata={
                **_operation_metadata("append", chosen),
                metadata.WINDOW: plan.describe(),
            },
        )
        summary = f"Appended {what}: snapshot {sid}. {' '.join(plan.notes)}".strip()
        logger.info(summary)
        return OperationResult(
            operation="append", committed=True, snapshot_id=sid, summary=summary, plan=described
        )


@flow(name="icechunk-backfill", log_prints=True)
def backfill_dataset(
    repository: str,
    first_day: date,
    last_day: LastDay,
    source: OptionalSourceParameter = None,
    variables: list[str] | None = None,
    branch: str = "main",
    group: str | None = None,
    partition_size: int | None = Field(default=None, ge=1),
    dry_run: bool = False,
    cluster: DaskClusterConfig = _LOCAL_CLUSTER,
    on_overlap: OverlapPolicy = "land-after",
    take_turns: bool = False,
) -> OperationResult:
    """Rewrite the days first_day .. last_day of an existing dataset (region writes).

    A range outside the stored extent, an unknown variable or a partition size
    that splits chunks is refused before anything is written. A dry run plans
    and reports the partitions (a table artifact naming the source) without writing.

    Args:
        repository: Path of the Icechunk repository.
        first_day: First day to rewrite.
        last_day: Last day to rewrite (included); not before first_day.
        source: Where the data comes from. Leave empty for the source recorded with the
            dataset when it was created; pick a saved source block to read another one
            in this run only.
        variables: Variables to rewrite (default: all variables along time).
        branch: Branch to commit to.
        group: Group of the dataset in the repository (default: the root).
        partition_size: Time steps per write task (a multiple of the chunk size;
            default: about 256 MB per task).
        dry_run: Plan and report the partitions without writing.
        cluster: Dask cluster to write on (default: a local cluster).
        on_overlap: When other runs committed to the same days during this one (another
            backfill): land-after writes the partitions they touched again on the new tip
            and commits (this run's values win, as a later run's would); refuse commits
            nothing and says what overlapped. Chunks shared without sharing days (an
            append into the last chunk) are written again either way.
        take_turns: Wait for the other runs of this dataset that also take turns (a
            Prefect global concurrency limit of one slot per dataset, held from planning
            to commit) instead of writing alongside them.

    Example:
        ```python
        from datetime import date
        from icechunk_prefect.operations import backfill_dataset, create_dataset
        from icechunk_prefect.operations.sources import SyntheticSource

        source = SyntheticSource(
            data_start=date(2024, 1, 1), periods=20, nlat=4, nlon=8, time_chunk=5
        )
        create_dataset("/tmp/doc-ops-backfill", source, overwrite=True)
        result = backfill_dataset(
            "/tmp/doc-ops-backfill", date(2024, 1, 6), date(2024, 1, 15), variables=["t2m"]
        )
        print(result.summary)
        ```
    """
    logger = get_run_logger()
    repo = resolve_repository(repository)
    chosen = choose_source(source, repo, branch, group)
    logger.info("Source: %s", chosen.describe())
    with dataset_turn(repo, branch, group, enabled=take_turns and not dry_run):
        plan, ds = prepare_backfill(
            repo,
            chosen.source,
            start=first_day,
            end=last_day,
            variables=variables,
            branch=branch,
            group=group,
            partition_size=partition_size,
        )
        what = (
            f"{', '.join(plan.variables)} over {plan.first} .. {plan.last} (positions "
            f"[{plan.start}:{plan.stop}), {len(plan.partitions)} partition(s))"
        )
        _report(plan, f"Backfill {what}{' (dry run)' if dry_run else ''}", chosen)
        described = {**plan.describe(), **chosen.parameters()}
        if dry_run:
            summary = f"Dry run: would rewrite {what}. Nothing written."
            logger.info(summary)
            return OperationResult(
                operation="backfill", committed=False, summary=summary, plan=described
            )
        params = {
            "operation": "backfill",
            "repository": repo.describe(),
            **chosen.parameters(),
            "first_day": first_day.isoformat(),
            "last_day": last_day.isoformat(),
            "variables": list(plan.variables),
            "on_overlap": on_overlap,
            "branch": branch,
            "group": group,
            "partition_size": plan.partition_size,
        }
        sid = _write(
            cluster,
            ds,
            repository,
            message=(
                f"Backfill {', '.join(plan.variables)}: {first_day.isoformat()} .. "
                f"{last_day.isoformat()}"
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
                **_operation_metadata("backfill", chosen),
                metadata.WINDOW: plan.describe(),
            },
        )
        summary = f"Rewrote {what}: snapshot {sid}."
        logger.info(summary)
        return OperationResult(
            operation="backfill", committed=True, snapshot_id=sid, summary=summary, plan=described
        )
