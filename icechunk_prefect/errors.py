"""The package's exception hierarchy.

Every error raised on purpose by ``icechunk_prefect`` derives from
:class:`IcechunkPrefectError`. Messages say what was wrong, what value was seen
and what to do about it.
"""

from __future__ import annotations


class IcechunkPrefectError(Exception):
    """Base class of every error raised by icechunk-prefect."""


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


class CommitConflictError(IcechunkPrefectError):
    """Another writer committed changes to the same chunks or arrays during this run."""


class CheckFailedError(IcechunkPrefectError):
    """A pre-commit check (coverage, schema, or a user check) refused the run."""


class NothingToCommitError(IcechunkPrefectError):
    """The merged session holds no changes."""


__all__ = [
    "CheckFailedError",
    "ChunkAlignmentError",
    "CommitConflictError",
    "ConfigurationError",
    "DoubleWriteError",
    "DuplicateStepsError",
    "GapError",
    "IcechunkPrefectError",
    "InputValidationError",
    "NothingToCommitError",
    "RegionError",
    "SchemaMismatchError",
    "WriteError",
]
