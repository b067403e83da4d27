"""The package's exception hierarchy.

Every error raised on purpose by ``icechunk_prefect`` derives from
:class:`IcechunkPrefectError`. Messages say what was wrong, what value was seen
and what to do about it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class IcechunkPrefectError(Exception):
    """Base class of every error raised by icechunk-prefect.

    ``retryable`` says whether retrying the step that raised it can help; the
    package's task retry condition reads it (most errors are final: the same input
    fails the same way).
    """

    retryable: ClassVar[bool] = False


class ConfigurationError(IcechunkPrefectError, ValueError):
    """A repository, storage or cluster setting cannot work (e.g. in-memory storage
    for a distributed run, a path that is not a repository)."""


class InputValidationError(IcechunkPrefectError, ValueError):
    """The data or parameters handed to a write are refused before anything is written."""


class ChunkAlignmentError(InputValidationError):
    """Dask chunks, partitions or a region do not line up with the Zarr chunks."""


class RegionError(InputValidationError):
    """A region lies outside the existing arrays, or cannot be written as given."""


class SchemaMismatchError(InputValidationError):
    """Dimensions, shapes or dtypes differ from the arrays already in the store."""


class DuplicateStepsError(InputValidationError):
    """An append would write coordinate values that the store already holds."""


class GapError(InputValidationError):
    """New data does not start right after the store's last step (missing steps between)."""


class WriteError(IcechunkPrefectError):
    """A write step failed in a way that retrying the same step will not fix."""


class DoubleWriteError(WriteError):
    """Two partitions of one run wrote the same chunk (Icechunk would keep the last silently)."""


class MissingObjectsError(WriteError):
    """Objects the commit would reference (chunks of reused forks) cannot be read:
    garbage collection deleted them during the run. Nothing is committed; a re-run
    writes those partitions again."""


class ClusterUnavailableError(IcechunkPrefectError):
    """The Dask cluster could not run the work in time (no workers, scheduler gone).

    Retryable: the step's retries apply (the cluster may come back)."""

    retryable: ClassVar[bool] = True


class MaintenanceIncompleteError(IcechunkPrefectError):
    """Garbage collection stopped early: objects it could not delete, phases it skipped.

    ``report`` holds the maintenance report (counts, skipped phases, first errors)."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.report))


class CommitConflictError(IcechunkPrefectError):
    """Another writer committed changes to the same chunks or arrays during this run,
    and this run cannot land on top of them (see ``docs/reliability.md``)."""


class BranchMovedError(CommitConflictError):
    """The branch moved during the run and the other commits wrote chunks this run
    wrote too (and nothing else in common). The writer re-writes the partitions
    holding those chunks on the new tip and commits again (bounded rounds); direct
    callers of the commit get this error. ``collisions`` says what collided
    (:class:`~icechunk_prefect.core.rebase.Collisions`)."""

    def __init__(self, message: str, collisions: Any = None) -> None:
        super().__init__(message)
        self.collisions = collisions

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.collisions))


class CheckFailedError(IcechunkPrefectError):
    """A pre-commit check (coverage, schema, or a user check) refused the run."""


class NothingToCommitError(IcechunkPrefectError):
    """The merged session holds no changes."""


__all__ = [
    "BranchMovedError",
    "CheckFailedError",
    "ChunkAlignmentError",
    "ClusterUnavailableError",
    "CommitConflictError",
    "ConfigurationError",
    "DoubleWriteError",
    "DuplicateStepsError",
    "GapError",
    "IcechunkPrefectError",
    "InputValidationError",
    "MaintenanceIncompleteError",
    "MissingObjectsError",
    "NothingToCommitError",
    "RegionError",
    "SchemaMismatchError",
    "WriteError",
]
