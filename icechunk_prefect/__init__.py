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

import os as _os

import icechunk as _icechunk

if "ICECHUNK_LOG" not in _os.environ:
    # The local-filesystem "not safe for concurrent commits" warning is handled by
    # icechunk_prefect.repository.commit_lock; keep other warnings.
    _icechunk.set_logs_filter("icechunk_arrow_object_store=error,icechunk_storage=error,warn")

from icechunk_prefect.blocks import IcechunkRepository
from icechunk_prefect.checks import CheckContext, run_checks
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
from icechunk_prefect.flows import finish_write, prepare_write, store_dask, to_icechunk
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
from icechunk_prefect.planning import Partition, WritePlan
from icechunk_prefect.repository import (
    LocalRepository,
    RepositorySource,
    open_repository,
    resolve_repository,
)
from icechunk_prefect.runtime import DaskClusterConfig, IcechunkDaskTaskRunner, ensure_shared_api
from icechunk_prefect.sessions import commit_fork, find_commit, merge_forks
from icechunk_prefect.sources import (
    DatasetSource,
    ImportedSource,
    NetCDFFolderSource,
    SourceConfig,
    SyntheticSource,
)
from icechunk_prefect.tasks import (
    commit_task,
    merge_task,
    validate_task,
    write_eager_task,
    write_lazy_graph_task,
    write_metadata_task,
    write_partition_task,
)
from icechunk_prefect.writer import FlowDatasetWriter, WriteResult

__version__ = "0.1.0"

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
]
