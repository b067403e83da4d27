"""From what a user passes (a path, a block name, a source) to a repository source."""

from __future__ import annotations

import os
from pathlib import Path

import icechunk

from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.storage.local import LocalRepository, RepositorySource

__all__ = [
    "BLOCK_REFERENCE_PREFIX",
    "RepositoryLike",
    "load_repository_block",
    "open_repository",
    "resolve_repository",
]

RepositoryLike = str | os.PathLike[str] | RepositorySource

BLOCK_REFERENCE_PREFIX = "icechunk-repository/"


def resolve_repository(repo: RepositoryLike | icechunk.Repository) -> RepositorySource:
    """Turn what a user passed into a :class:`RepositorySource`.

    A path becomes a :class:`LocalRepository`. A string
    ``"icechunk-repository/<name>"`` (that is not an existing local folder) loads
    the saved :class:`~icechunk_prefect.storage.block.IcechunkRepository` block of that
    name from the Prefect API. Any ``RepositorySource`` (such as an
    ``IcechunkRepository`` block) is used as it is. A live ``icechunk.Repository``
    is accepted only for local filesystem storage (its path is read back):
    anything else would carry storage credentials inside every pickled task result.

    Example:
        ```python
        from icechunk_prefect.storage.resolve import resolve_repository

        print(resolve_repository("/tmp/doc-resolve").describe())  # file:///tmp/doc-resolve
        ```
    """
    if isinstance(repo, RepositorySource):
        return repo
    if (
        isinstance(repo, str)
        and repo.startswith(BLOCK_REFERENCE_PREFIX)
        and not Path(repo).exists()
    ):
        return load_repository_block(repo.removeprefix(BLOCK_REFERENCE_PREFIX))
    if isinstance(repo, str | os.PathLike):
        return LocalRepository(os.fspath(repo))
    if isinstance(repo, icechunk.Repository):
        text = repr(repo.storage)
        if "in-memory" in text:
            raise ConfigurationError(
                "In-memory storage cannot be used for a distributed run: each Dask worker "
                "process would see an empty, different repository (seen: in-memory storage). "
                "Use a local path or object storage (IcechunkRepository block)."
            )
        for line in text.splitlines():
            if line.strip().startswith("path:"):
                return LocalRepository(line.split("path:", 1)[1].strip())
        raise ConfigurationError(
            f"Cannot pass a live icechunk.Repository on {text.splitlines()[1:2]} storage to a "
            "flow: its credentials would travel in every task result. Describe it with an "
            "icechunk_prefect.IcechunkRepository block instead."
        )
    raise ConfigurationError(
        f"Expected a repository path, a RepositorySource or an IcechunkRepository block; "
        f"got {type(repo).__name__}."
    )


def load_repository_block(name: str) -> RepositorySource:
    """Load the saved ``IcechunkRepository`` block ``name`` from the Prefect API."""
    from icechunk_prefect.storage.block import IcechunkRepository

    try:
        return IcechunkRepository.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        raise ConfigurationError(
            f"No saved IcechunkRepository block named {name!r} on the Prefect API ({exc}). "
            "Save one first (IcechunkRepository(...).save(name)), or check the name with "
            "`prefect block ls`."
        ) from exc


def open_repository(repo: RepositoryLike, *, create: bool = False) -> icechunk.Repository:
    """Open the repository described by ``repo`` (see :func:`resolve_repository`)."""
    return resolve_repository(repo).open_repository(create=create)
