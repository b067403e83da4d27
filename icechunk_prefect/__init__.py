"""icechunk-prefect: transactional, distributed writes of Xarray/Dask data into Icechunk
repositories, as retryable Prefect tasks on a Dask cluster.

The public API (documented in docs/api.md):

- flows: :func:`to_icechunk`, :func:`store_dask`, :func:`prepare_write`, :func:`finish_write`
- steps inside your own flows: :class:`FlowDatasetWriter` (its result: :class:`WriteResult`);
  the tasks themselves are in :mod:`icechunk_prefect.tasks`
- operations: :func:`create_dataset`, :func:`append_dataset` (scheduled),
  :func:`backfill_dataset` (UI-triggered), :func:`maintain_repository`, fed by sources
  (:class:`SyntheticSource`, :class:`NetCDFFolderSource`, :class:`ImportedSource`)
- where things run: :class:`IcechunkDaskTaskRunner`, :class:`DaskClusterConfig`
- where data lives: :class:`LocalRepository`, :class:`IcechunkRepository` (a Prefect
  Block: local, S3, GCS, Azure, credentials resolved on the workers), any
  :class:`RepositorySource`, :func:`open_repository`
- your own checks before the commit: :class:`CheckContext`
- forks by hand: :func:`merge_forks`, :func:`commit_fork`
- what a write shows: the :data:`COMMIT_EVENT` event, :func:`commit_history` (more in
  :mod:`icechunk_prefect.reporting`)
- errors: :class:`IcechunkPrefectError`; its subclasses are in :mod:`icechunk_prefect.errors`

Example:
    ```python
    import icechunk_prefect

    assert "to_icechunk" in icechunk_prefect.__all__
    ```
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
    "to_icechunk": "flows",
    "store_dask": "flows",
    "prepare_write": "flows",
    "finish_write": "flows",
    "FlowDatasetWriter": "writer",
    "WriteResult": "core.planning",
    "create_dataset": "operations.flows",
    "append_dataset": "operations.flows",
    "backfill_dataset": "operations.flows",
    "maintain_repository": "operations.maintenance",
    "SyntheticSource": "operations.sources",
    "NetCDFFolderSource": "operations.sources",
    "ImportedSource": "operations.sources",
    "IcechunkDaskTaskRunner": "runtime",
    "DaskClusterConfig": "runtime",
    "IcechunkRepository": "storage.block",
    "LocalRepository": "storage.local",
    "RepositorySource": "storage.local",
    "open_repository": "storage.resolve",
    "CheckContext": "core.checks",
    "merge_forks": "core.sessions",
    "commit_fork": "core.sessions",
    "COMMIT_EVENT": "reporting.publish",
    "commit_history": "reporting.history",
    "IcechunkPrefectError": "errors",
}

__all__ = [
    "COMMIT_EVENT",
    "CheckContext",
    "DaskClusterConfig",
    "FlowDatasetWriter",
    "IcechunkDaskTaskRunner",
    "IcechunkPrefectError",
    "IcechunkRepository",
    "ImportedSource",
    "LocalRepository",
    "NetCDFFolderSource",
    "RepositorySource",
    "SyntheticSource",
    "WriteResult",
    "append_dataset",
    "backfill_dataset",
    "commit_fork",
    "commit_history",
    "create_dataset",
    "finish_write",
    "maintain_repository",
    "merge_forks",
    "open_repository",
    "prepare_write",
    "store_dask",
    "to_icechunk",
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
    from icechunk_prefect.core.checks import CheckContext
    from icechunk_prefect.core.planning import WriteResult
    from icechunk_prefect.core.sessions import commit_fork, merge_forks
    from icechunk_prefect.errors import IcechunkPrefectError
    from icechunk_prefect.flows import finish_write, prepare_write, store_dask, to_icechunk
    from icechunk_prefect.operations.flows import append_dataset, backfill_dataset, create_dataset
    from icechunk_prefect.operations.maintenance import maintain_repository
    from icechunk_prefect.operations.sources import (
        ImportedSource,
        NetCDFFolderSource,
        SyntheticSource,
    )
    from icechunk_prefect.reporting.history import commit_history
    from icechunk_prefect.reporting.publish import COMMIT_EVENT
    from icechunk_prefect.runtime import DaskClusterConfig, IcechunkDaskTaskRunner
    from icechunk_prefect.storage.block import IcechunkRepository
    from icechunk_prefect.storage.local import LocalRepository, RepositorySource
    from icechunk_prefect.storage.resolve import open_repository
    from icechunk_prefect.writer import FlowDatasetWriter
