"""Merging forks and committing them exactly once (plain functions, no Prefect)."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import icechunk
from icechunk.session import ForkSession

from icechunk_prefect.core.integrity import chunk_counts
from icechunk_prefect.core.metadata import IDEMPOTENCY_KEY
from icechunk_prefect.core.rebase import branch_changes, collisions
from icechunk_prefect.errors import (
    BranchMovedError,
    CommitConflictError,
    DoubleWriteError,
    MissingObjectsError,
    NothingToCommitError,
)
from icechunk_prefect.storage.local import commit_lock
from icechunk_prefect.storage.resolve import RepositoryLike, resolve_repository

__all__ = [
    "commit_fork",
    "find_commit",
    "idempotency_key",
    "merge_forks",
    "tree_groups",
]


def merge_forks(
    forks: Sequence[ForkSession],
    into: ForkSession | None = None,
    *,
    check_overlap: bool = True,
    counts: Sequence[Mapping[str, int]] | None = None,
) -> ForkSession:
    """Merge ``forks`` (into ``into``, or into the first of them) and return the result.

    With ``check_overlap`` (the default), refuse forks that wrote the same chunk:
    Icechunk's merge would keep the last one silently. The check is exact and
    costs one :func:`chunk_counts` per fork, read here unless ``counts`` (one per
    fork, in order) are given: the merged fork holds as many chunks as the forks
    together exactly when no two of them share one. Only then are the chunks
    themselves compared, to name the two forks. On an overlap ``into`` is left as
    it was.

    Example:
        ```python
        import pickle
        import icechunk, numpy as np, zarr
        from icechunk_prefect import merge_forks

        storage = icechunk.local_filesystem_storage("/tmp/doc-merge-forks")
        repo = icechunk.Repository.create(storage)
        session = repo.writable_session("main")
        zarr.create_array(session.store, name="a", shape=(4,), chunks=(1,), dtype="i8")
        session.commit("create")
        parent = repo.writable_session("main")
        fork = parent.fork()
        forks = []
        for i in range(4):  # as four workers would, each on its own copy
            child = pickle.loads(pickle.dumps(fork))
            zarr.open_array(child.store, path="a", mode="r+")[i] = i
            forks.append(child)
        parent.merge(merge_forks(forks))
        assert parent.status().updated_chunks["/a"] == [[0], [1], [2], [3]]
        ```
    """
    forks = list(forks)
    if counts is not None and len(counts) != len(forks):
        raise ValueError(f"merge_forks got {len(counts)} chunk counts for {len(forks)} forks")
    checked_into = into is None
    first: list[Mapping[str, int]] | None = None
    if into is None:
        if not forks:
            raise ValueError("merge_forks needs at least one fork")
        into, forks = forks[0], forks[1:]
        first = [counts[0]] if counts is not None else None
        counts = counts[1:] if counts is not None else None
    if not forks:
        return into
    if not check_overlap:
        into.merge(*forks)
        return into
    if counts is None:
        counts = [chunk_counts(f) for f in forks]
    expected = Counter(first[0] if first is not None else chunk_counts(into))
    for c in counts:
        expected.update(c)
    # Into a copy: on an overlap the caller's fork is left as it was.
    merged: ForkSession = pickle.loads(pickle.dumps(into))
    merged.merge(*forks)
    got = chunk_counts(merged)
    short = {p for p, n in expected.items() if got.get(p, 0) != n}
    if short:
        _raise_overlap([into, *forks] if checked_into else forks, short)
        # Only ``into`` (not checked) overlapped a fork: as before, that is allowed.
    return merged


def _raise_overlap(forks: Sequence[ForkSession], paths: set[str]) -> None:
    """Name the first two of ``forks`` that wrote one chunk of ``paths`` (if any)."""
    seen: dict[tuple[str, tuple[int, ...]], int] = {}
    for i, fork in enumerate(forks):
        for path, coords in fork.status().updated_chunks.items():
            if path not in paths:
                continue
            for c in coords:
                j = seen.setdefault((path, tuple(c)), i)
                if j != i:
                    raise DoubleWriteError(
                        f"Two partitions ({j} and {i} of this merge) wrote chunk {list(c)} of "
                        f"array {path!r}; the last would silently win. The partitions overlap: "
                        "check the plan's partition size against the chunk size."
                    )


def idempotency_key(*parts: Any) -> str:
    """A stable key from JSON-able parts (e.g. flow run id and parameters)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def find_commit(
    repo: icechunk.Repository,
    branch: str,
    key: str,
    *,
    stop_at: str | None = None,
    limit: int = 1000,
) -> str | None:
    """Snapshot id of the commit on ``branch`` whose metadata holds idempotency ``key``.

    Walks back from the tip, at most ``limit`` snapshots or down to ``stop_at``.
    """
    for i, snap in enumerate(repo.ancestry(branch=branch)):
        if (snap.metadata or {}).get(IDEMPOTENCY_KEY) == key:
            return snap.id
        if snap.id == stop_at or i >= limit:
            break
    return None


def _refuse_moved(
    repository: icechunk.Repository, base: str, tip: str, branch: str, fork: Any
) -> None:
    """Raise when the commits from ``base`` to ``tip`` and ``fork`` changed something
    in common: :class:`BranchMovedError` for chunks only (re-writable on the new
    tip), :class:`CommitConflictError` for anything else."""
    found = collisions(repository, branch_changes(repository, base, tip=tip), fork)
    if not found:
        return
    what = (
        f"Branch {branch!r} moved from {base} to {tip} during this run, and the other "
        f"commit(s) changed what this run wrote: {found.describe()}. Nothing of this run was "
        "committed."
    )
    if found.conflicts:
        raise CommitConflictError(
            f"{what} These changes cannot be merged (this run was planned against what they "
            "changed): re-run to plan again on the new tip (an append then adds only the "
            "steps still missing)."
        )
    raise BranchMovedError(
        f"{what} The writer re-writes the partitions holding those chunks on the new tip; "
        "a re-run does too, reusing the partitions nobody else touched.",
        found,
    )


def commit_fork(
    repo: RepositoryLike,
    branch: str,
    fork: ForkSession,
    *,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    base_snapshot: str | None = None,
    key: str | None = None,
    rebase_tries: int = 5,
    verify_chunks: Mapping[str, Sequence[tuple[int, ...]]] | None = None,
    on_committed: Callable[[str], None] | None = None,
) -> str:
    """Commit the merged ``fork`` to ``branch`` once, and return the snapshot id.

    - With an idempotency ``key``, a commit already on the branch that carries the
      key is returned instead of committing again (a retried commit step whose
      first try landed).
    - If the branch moved since ``base_snapshot``, the changes on the branch are
      compared with the fork's (:func:`~icechunk_prefect.core.rebase.collisions`):
      chunks written by both raise :class:`~icechunk_prefect.errors.BranchMovedError`
      (the writer then re-writes them on the new tip), anything else changed by both
      :class:`~icechunk_prefect.errors.CommitConflictError`, each naming the count of
      chunks per array and the other commits; disjoint changes are committed on top
      of the new tip.
    - Commits race with conflict detection and rebase, ``rebase_tries`` times,
      with jittered backoff between attempts.
    - On local filesystem repositories the commit holds a cross-process lock
      (maintenance takes it too).
    - ``verify_chunks`` (array path -> chunk coordinates; the chunks of forks
      reused from a failed run) are read back through the session about to be
      committed, under that lock: if garbage collection deleted any,
      :class:`~icechunk_prefect.errors.MissingObjectsError` is raised and nothing
      is committed (a re-run writes those partitions again).
    """
    source = resolve_repository(repo)
    meta = dict(metadata or {})
    if key:
        meta[IDEMPOTENCY_KEY] = key
    with commit_lock(source):
        repository = source.open_repository()
        if key:
            found = find_commit(repository, branch, key, stop_at=base_snapshot)
            if found:
                return found
        last_error: Exception | None = None
        for attempt in range(max(1, rebase_tries)):
            session = repository.writable_session(branch)
            if base_snapshot and session.snapshot_id != base_snapshot:
                _refuse_moved(repository, base_snapshot, session.snapshot_id, branch, fork)
            session.merge(fork)
            if verify_chunks and attempt == 0:
                _require_readable(session, branch, verify_chunks)
            if not session.has_uncommitted_changes:
                raise NothingToCommitError(
                    f"The merged session for branch {branch!r} holds no changes; nothing to commit."
                )
            try:
                sid = session.commit(
                    message,
                    metadata=meta,
                    rebase_with=icechunk.ConflictDetector(),
                    rebase_tries=1,
                )
            except icechunk.RebaseFailedError as exc:
                # Another writer committed between the session's opening and this commit.
                if base_snapshot:
                    tip = repository.lookup_branch(branch)
                    _refuse_moved(repository, base_snapshot, tip, branch, fork)
                raise CommitConflictError(
                    f"Another writer committed to {branch!r} changes that conflict with this "
                    f"run's ({str(exc).splitlines()[0]}). Nothing of this run was committed. "
                    "Re-run to write on top of the new tip."
                ) from exc
            except icechunk.ConflictError as exc:
                last_error = exc
                if attempt + 1 < rebase_tries:
                    time.sleep(min(10.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.5))
                continue
            if on_committed is not None:
                on_committed(sid)
            return sid
        raise CommitConflictError(
            f"Could not commit to {branch!r} after {rebase_tries} tries: other writers kept "
            f"committing ({last_error}). Nothing of this run was committed; re-run later."
        )


def _require_readable(
    session: icechunk.Session, branch: str, chunks: Mapping[str, Sequence[tuple[int, ...]]]
) -> None:
    from icechunk_prefect.core.integrity import unreadable_chunks

    bad = unreadable_chunks(session, chunks)
    if bad:
        total = sum(len(c) for c in chunks.values())
        raise MissingObjectsError(
            f"{len(bad)} of the {total} chunk(s) this run reused from a failed run cannot be "
            f"read (e.g. {bad[0]}): garbage collection deleted them during the run. Nothing "
            f"was committed to {branch!r}; run again: the partitions whose objects are gone "
            "are written again."
        )


def tree_groups(items: Sequence[Any], split_every: int) -> list[list[Any]]:
    """Split ``items`` into consecutive groups of at most ``split_every``."""
    return [list(items[i : i + split_every]) for i in range(0, len(items), split_every)]
