"""Local filesystem repositories, and what every repository source is.

Tasks never receive a live :class:`icechunk.Repository` from the user: they
receive a *repository source* (:class:`RepositorySource`), a small picklable object
that opens the repository on the machine that runs the task and carries no secret.
:class:`LocalRepository` is the embedded default; the
:class:`~icechunk_prefect.storage.block.IcechunkRepository` block is the source for
object storage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import icechunk

from icechunk_prefect.errors import ConfigurationError

__all__ = [
    "INITIAL_SNAPSHOT_ID",
    "LocalRepository",
    "RepositorySource",
    "commit_lock",
    "interrupted_create",
]

if "ICECHUNK_LOG" not in os.environ:
    # The local-filesystem "not safe for concurrent commits" warning is handled by
    # commit_lock below; keep other warnings. (Every module that opens a repository
    # imports this one.)
    icechunk.set_logs_filter("icechunk_arrow_object_store=error,icechunk_storage=error,warn")


@runtime_checkable
class RepositorySource(Protocol):
    """Anything that can open an Icechunk repository where a task runs."""

    def open_repository(self, *, create: bool = False) -> icechunk.Repository:
        """Open (or, with ``create=True``, create if missing) the repository."""
        ...

    def describe(self) -> str:
        """A short description without secrets, for logs and commit metadata."""
        ...

    def local_lock_path(self) -> str | None:
        """A file path to serialize commits on, for storages without conditional writes."""
        ...


@dataclass(frozen=True)
class LocalRepository:
    """A repository on the local filesystem (the embedded default).

    Example:
        ```python
        from icechunk_prefect import LocalRepository

        repo = LocalRepository("/tmp/my-repo").open_repository(create=True)
        ```
    """

    path: str

    def _storage(self) -> icechunk.Storage:
        return icechunk.local_filesystem_storage(str(Path(self.path).expanduser().absolute()))

    def open_repository(
        self, *, create: bool = False, config: icechunk.RepositoryConfig | None = None
    ) -> icechunk.Repository:
        """Open the repository; with ``create``, create it if missing, completing a
        creation that was interrupted (see :func:`interrupted_create`)."""
        p = Path(self.path).expanduser()
        if p.exists() and not p.is_dir():
            raise ConfigurationError(
                f"Repository path {self.path!r} is a file, not a folder. Give the folder of an "
                "Icechunk repository (or a new folder to create one in)."
            )
        storage = self._storage()
        if icechunk.Repository.exists(storage):
            return icechunk.Repository.open(storage, config=config)
        if create:
            p.mkdir(parents=True, exist_ok=True)
            with _create_lock(p):  # one creator at a time, and none while one cleans up
                if icechunk.Repository.exists(storage):
                    return icechunk.Repository.open(storage, config=config)
                if interrupted_create(p):
                    _log(
                        f"{self.path!r} holds only what an interrupted repository creation "
                        f"leaves ({_listing(p)}); removing it and creating the repository."
                    )
                elif any(x.name != _LOCK_NAME for x in p.iterdir()):
                    raise ConfigurationError(
                        f"{self.path!r} is not an Icechunk repository and is not empty (it "
                        f"holds {sorted(x.name for x in p.iterdir())[:5]}): a repository can "
                        "only be created in an empty folder. Check the path."
                    )
                # Icechunk creates only in an empty folder: no commit lock can be held on a
                # folder that is no repository yet, so a leftover lock file goes too.
                _clear_folder(p)
                return icechunk.Repository.create(storage, config=config)
        seen = (
            "the path does not exist"
            if not p.exists()
            else f"the folder holds {sorted(x.name for x in p.iterdir())[:5]}"
        )
        raise ConfigurationError(
            f"No Icechunk repository at {self.path!r} ({seen}). "
            "Create it first (e.g. the 'create' flow, or pass create=True / mode='w')."
        )

    def describe(self) -> str:
        return f"file://{Path(self.path).expanduser().absolute()}"

    def local_lock_path(self) -> str | None:
        return str(Path(self.path).expanduser().absolute() / _LOCK_NAME)


_LOCK_NAME = ".icechunk-prefect.commit.lock"
INITIAL_SNAPSHOT_ID = "1CECHNKREP0F1RSTCMT0"
"""The id Icechunk gives the first snapshot of every repository."""
_CREATE_FOLDERS = ("snapshots", "transactions")


def interrupted_create(folder: Path) -> bool:
    """Whether ``folder`` holds only what an interrupted ``Repository.create`` leaves.

    Icechunk creates a local repository by writing the initial snapshot
    (``snapshots/1CECHNKREP0F1RSTCMT0``, through a temporary ``...#N`` file), its
    transaction log, then the ``repo`` file that makes it a repository. A process
    killed before the last step leaves some of the first ones: those, and nothing
    else (no ``repo`` file, no other snapshot, no chunk), mark an interrupted create.
    """
    entries = [x for x in folder.iterdir() if x.name != _LOCK_NAME]
    if not entries:
        return False
    for entry in entries:
        if entry.name.startswith("repo#") and entry.is_file():
            continue  # the repo file's temporary, never renamed
        if entry.name not in _CREATE_FOLDERS or not entry.is_dir():
            return False
        if any(
            not (f.is_file() and f.name.startswith(INITIAL_SNAPSHOT_ID)) for f in entry.iterdir()
        ):
            return False
    return True


def _clear_folder(folder: Path) -> None:
    import shutil

    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextlib.contextmanager
def _create_lock(folder: Path) -> Iterator[None]:
    """A lock beside ``folder`` (Icechunk needs the folder itself empty to create in it)."""
    from filelock import FileLock

    with FileLock(str(folder.parent / f".{folder.name}.icechunk-prefect.create.lock")):
        yield


def _listing(folder: Path) -> str:
    names = sorted(str(x.relative_to(folder)) for x in folder.rglob("*") if x.name != _LOCK_NAME)
    return ", ".join(names[:6])


def _log(message: str) -> None:
    """A warning in the run's log (the package logger outside a run)."""
    import logging

    try:
        from prefect import get_run_logger

        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
    except Exception:
        logger = logging.getLogger("icechunk_prefect")
    logger.warning(message)


@contextlib.contextmanager
def commit_lock(source: RepositorySource, timeout: float = 600.0) -> Iterator[None]:
    """Serialize commits across processes where the storage cannot.

    Icechunk's local filesystem storage has no conditional writes: concurrent
    commits from several processes are silently lost. For such repositories this
    holds an OS file lock for the duration of the commit; for object stores it does
    nothing (they honour conditional writes).
    """
    path = source.local_lock_path()
    if path is None:
        yield
        return
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, timeout=timeout):
        yield
