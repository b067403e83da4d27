"""icechunk-prefect: transactional, distributed writes of Xarray/Dask data into Icechunk
repositories, as retryable Prefect tasks on a Dask cluster.

Public API:

- flows: :func:`to_icechunk`, :func:`store_dask`, :func:`prepare_write`, :func:`finish_write`
- steps inside your own flows: :class:`FlowDatasetWriter` and the tasks in
  :mod:`icechunk_prefect.tasks`
- where things run: :class:`IcechunkDaskTaskRunner`, :class:`DaskClusterConfig`
- operations: :func:`create_dataset`, :func:`append_dataset` (scheduled),
  :func:`backfill_dataset` (UI-triggered), :func:`maintain_repository`, fed by sources
  (:class:`SyntheticSource`, :class:`NetCDFFolderSource`, :class:`ImportedSource`)
- where data lives: :class:`LocalRepository`, :class:`IcechunkRepository` (a Prefect
  Block: local, S3, GCS, Azure, credentials resolved on the workers),
  :func:`open_repository`
- what a write shows: :mod:`icechunk_prefect.observability` (progress and commit
  artifacts, the :data:`COMMIT_EVENT` event, :func:`commit_history`)
- errors: :class:`IcechunkPrefectError` and its subclasses
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it. Importing the package is cheap (nothing
# heavy runs until a name is used): Dask worker processes spawned from a script or
# the CLI re-import its main module, and every worker would pay for Prefect,
# xarray and icechunk at start-up otherwise.
_EXPORTS: dict[str, str] = {
    "COMMIT_EVENT": "observability",
    "CheckContext": "checks",
    "CheckFailedError": "errors",
    "ChunkAlignmentError": "errors",
    "ClusterUnavailableError": "errors",
    "CommitConflictError": "errors",
    "CommitRecord": "observability",
    "CommitSummary": "observability",
    "ConfigurationError": "errors",
    "DaskClusterConfig": "runtime",
    "DatasetSource": "sources",
    "DoubleWriteError": "errors",
    "DuplicateStepsError": "errors",
    "FlowDatasetWriter": "writer",
    "GapError": "errors",
    "IcechunkDaskTaskRunner": "runtime",
    "IcechunkPrefectError": "errors",
    "IcechunkRepository": "blocks",
    "ImportedSource": "sources",
    "InputValidationError": "errors",
    "LocalRepository": "repository",
    "MaintenanceIncompleteError": "errors",
    "MaintenanceReport": "operations",
    "MissingObjectsError": "errors",
    "NetCDFFolderSource": "sources",
    "NothingToCommitError": "errors",
    "OperationResult": "operations",
    "Partition": "planning",
    "RegionError": "errors",
    "RepositorySource": "repository",
    "SchemaMismatchError": "errors",
    "SourceConfig": "sources",
    "SyntheticSource": "sources",
    "WriteError": "errors",
    "WritePlan": "planning",
    "WriteResult": "writer",
    "append_dataset": "operations",
    "backfill_dataset": "operations",
    "commit_fork": "sessions",
    "commit_history": "observability",
    "commit_task": "tasks",
    "create_dataset": "operations",
    "ensure_shared_api": "runtime",
    "find_commit": "sessions",
    "finish_write": "flows",
    "maintain_repository": "operations",
    "merge_forks": "sessions",
    "merge_task": "tasks",
    "open_repository": "repository",
    "prepare_write": "flows",
    "resolve_repository": "repository",
    "run_checks": "checks",
    "store_dask": "flows",
    "summarize_commit": "observability",
    "to_icechunk": "flows",
    "validate_task": "tasks",
    "write_eager_task": "tasks",
    "write_lazy_graph_task": "tasks",
    "write_metadata_task": "tasks",
    "write_partition_task": "tasks",
    "write_partitions_task": "tasks",
    "PartitionsWritten": "tasks",
}

__all__ = [
    "COMMIT_EVENT",
    "CheckContext",
    "CheckFailedError",
    "ChunkAlignmentError",
    "ClusterUnavailableError",
    "CommitConflictError",
    "CommitRecord",
    "CommitSummary",
    "ConfigurationError",
    "DaskClusterConfig",
    "DatasetSource",
    "DoubleWriteError",
    "DuplicateStepsError",
    "FlowDatasetWriter",
    "GapError",
    "IcechunkDaskTaskRunner",
    "IcechunkPrefectError",
    "IcechunkRepository",
    "ImportedSource",
    "InputValidationError",
    "LocalRepository",
    "MaintenanceIncompleteError",
    "MaintenanceReport",
    "MissingObjectsError",
    "NetCDFFolderSource",
    "NothingToCommitError",
    "OperationResult",
    "Partition",
    "PartitionsWritten",
    "RegionError",
    "RepositorySource",
    "SchemaMismatchError",
    "SourceConfig",
    "SyntheticSource",
    "WriteError",
    "WritePlan",
    "WriteResult",
    "append_dataset",
    "backfill_dataset",
    "commit_fork",
    "commit_history",
    "commit_task",
    "create_dataset",
    "ensure_shared_api",
    "find_commit",
    "finish_write",
    "maintain_repository",
    "merge_forks",
    "merge_task",
    "open_repository",
    "prepare_write",
    "resolve_repository",
    "run_checks",
    "store_dask",
    "summarize_commit",
    "to_icechunk",
    "validate_task",
    "write_eager_task",
    "write_lazy_graph_task",
    "write_metadata_task",
    "write_partition_task",
    "write_partitions_task",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'icechunk_prefect' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"icechunk_prefect.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from icechunk_prefect.blocks import (
        IcechunkRepository,
    )
    from icechunk_prefect.checks import (
        CheckContext,
        run_checks,
    )
    from icechunk_prefect.errors import (
        CheckFailedError,
        ChunkAlignmentError,
        ClusterUnavailableError,
        CommitConflictError,
        ConfigurationError,
        DoubleWriteError,
        DuplicateStepsError,
        GapError,
        IcechunkPrefectError,
        InputValidationError,
        MaintenanceIncompleteError,
        MissingObjectsError,
        NothingToCommitError,
        RegionError,
        SchemaMismatchError,
        WriteError,
    )
    from icechunk_prefect.flows import (
        finish_write,
        prepare_write,
        store_dask,
        to_icechunk,
    )
    from icechunk_prefect.observability import (
        COMMIT_EVENT,
        CommitRecord,
        CommitSummary,
        commit_history,
        summarize_commit,
    )
    from icechunk_prefect.operations import (
        MaintenanceReport,
        OperationResult,
        append_dataset,
        backfill_dataset,
        create_dataset,
        maintain_repository,
    )
    from icechunk_prefect.planning import (
        Partition,
        WritePlan,
    )
    from icechunk_prefect.repository import (
        LocalRepository,
        RepositorySource,
        open_repository,
        resolve_repository,
    )
    from icechunk_prefect.runtime import (
        DaskClusterConfig,
        IcechunkDaskTaskRunner,
        ensure_shared_api,
    )
    from icechunk_prefect.sessions import (
        commit_fork,
        find_commit,
        merge_forks,
    )
    from icechunk_prefect.sources import (
        DatasetSource,
        ImportedSource,
        NetCDFFolderSource,
        SourceConfig,
        SyntheticSource,
    )
    from icechunk_prefect.tasks import (
        PartitionsWritten,
        commit_task,
        merge_task,
        validate_task,
        write_eager_task,
        write_lazy_graph_task,
        write_metadata_task,
        write_partition_task,
        write_partitions_task,
    )
    from icechunk_prefect.writer import (
        FlowDatasetWriter,
        WriteResult,
    )
