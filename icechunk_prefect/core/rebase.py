"""Writing onto a branch that moved (plain functions, no Prefect).

A run forks the branch tip it starts from (its *base*) and commits once at the
end. Meanwhile other writers may commit to the branch: a scheduled append, a
second backfill. Icechunk records what each commit changed, chunk by chunk, so
what another writer did since the base can be compared with what this run wrote:

- :func:`branch_changes` reads what the commits after ``base`` changed (chunks,
  array and group metadata) and which commits they were;
- :func:`collisions` compares that with what a fork (or session) wrote: chunks
  written by both (*collisions*: a blind write, such as a region write or an
  append of source data, can be written again on the new tip and reach a serial
  result) and *conflicts*, which no re-write can fix: both changed an array's
  metadata (e.g. two appends resized it: the run's plan depended on the stored
  length), the other writer replaced or deleted an array this run wrote into, or
  changed its layout (chunk grid, data type, codecs);
- :func:`stale_problem` says whether a fork written on an older base (a partition
  persisted by a failed run) is still valid on a newer one: nothing it wrote was
  changed since, and its arrays keep the layout it wrote into;
- :func:`overlapping_elements` tells collisions on a chunk from collisions on data:
  how many elements inside this run's region the other commits changed;
- :func:`rebased_fork` moves a fork's own changes (metadata, in-memory variables)
  onto the new tip, so that the partitions that collided are written again there.

The writer (:mod:`icechunk_prefect.writer`) runs the rounds: re-write the
partitions holding collided chunks on a fork of the new tip, keep the others,
merge, validate, commit; see ``docs/reliability.md`` ("Two writers on one dataset").

Example:
    ```python
    import icechunk, numpy as np, zarr
    from icechunk_prefect.core.rebase import branch_changes, collisions

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage("/tmp/doc-rebase"))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(4, 2), chunks=(2, 2), dtype="f8")
    base = session.commit("create")
    ours = repo.writable_session("main").fork()
    zarr.open_array(ours.store, path="a", mode="r+")[0:2] = 1.0  # chunk (0, 0)
    theirs = repo.writable_session("main")
    zarr.open_array(theirs.store, path="a", mode="r+")[1:4] = 2.0  # chunks (0, 0) and (1, 0)
    theirs.commit("another writer")
    found = collisions(repo, branch_changes(repo, base, branch="main"), ours)
    assert found.chunks == {"/a": [(0, 0)]} and not found.conflicts
    assert found.changes.commits[0].message == "another writer"
    ```
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import zarr

from icechunk_prefect.core.metadata import FLOW_RUN_ID, FLOW_RUN_NAME, OPERATION

__all__ = [
    "BranchChanges",
    "Collisions",
    "OtherCommit",
    "OverlapPolicy",
    "RebaseRound",
    "branch_changes",
    "collisions",
    "overlapping_elements",
    "rebase_summary",
    "rebased_fork",
    "stale_problem",
]

Coords = tuple[int, ...]

OverlapPolicy = Literal["land-after", "refuse"]
"""What a run does when other commits made during it changed elements of its own
region: ``"land-after"`` writes its partitions again on the new tip and commits
(its values win, as a run started after them would), ``"refuse"`` commits nothing
and says what overlapped. Collisions on a chunk whose elements only one run wrote
are re-written either way."""


@dataclass(frozen=True)
class OtherCommit:
    """A commit made on the branch after a run's base (newest first in lists)."""

    snapshot_id: str
    message: str
    flow_run: str | None = None
    """The flow run that made it (``name (id)``), when the commit metadata says."""
    operation: str | None = None

    def describe(self) -> str:
        """``ABC123 'Append 1 step(s) ...' (flow run lucky-fox (id), append)``."""
        extra = ", ".join(x for x in (self.flow_run and f"flow run {self.flow_run}",
                                      self.operation) if x)  # fmt: skip
        return f"{self.snapshot_id} {self.message.strip()!r}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class BranchChanges:
    """What the commits after ``base`` up to ``tip`` changed."""

    base: str
    tip: str
    commits: tuple[OtherCommit, ...]
    chunks: Mapping[str, frozenset[Coords]]
    """Chunks written, by array path."""
    arrays_updated: frozenset[str] = frozenset()
    """Arrays whose metadata changed (resized, new attributes, ...)."""
    arrays_replaced: frozenset[str] = frozenset()
    """Arrays created, deleted or moved (their node ids changed)."""
    groups_deleted: frozenset[str] = frozenset()

    @property
    def moved(self) -> bool:
        return self.base != self.tip

    def describe_commits(self, limit: int = 3) -> str:
        """The other commits, newest first (at most ``limit`` named)."""
        named = "; ".join(c.describe() for c in self.commits[:limit])
        more = len(self.commits) - limit
        return named + (f"; and {more} more" if more > 0 else "")


ChangesCache = MutableMapping[tuple[str, str], BranchChanges]
"""Branch changes already read, by ``(base, tip)`` (pass one dict per task run)."""


def branch_changes(
    repository: Any,
    base: str,
    *,
    branch: str | None = None,
    tip: str | None = None,
    cache: ChangesCache | None = None,
) -> BranchChanges:
    """What changed on the branch since ``base``: up to snapshot ``tip``, or up to the
    tip of ``branch`` now. Raises what Icechunk raises when ``base`` is not an
    ancestor of the tip or cannot be read."""
    if tip is None:
        if branch is None:
            raise ValueError("branch_changes needs a branch or a tip")
        tip = repository.lookup_branch(branch)
    assert tip is not None
    if cache is not None and (base, tip) in cache:
        return cache[(base, tip)]
    if tip == base:
        changes = BranchChanges(base=base, tip=tip, commits=(), chunks={})
    else:
        diff = repository.diff(from_snapshot_id=base, to_snapshot_id=tip)
        commits: list[OtherCommit] = []
        for snap in repository.ancestry(snapshot_id=tip):
            if snap.id == base:
                break
            meta = snap.metadata or {}
            run = meta.get(FLOW_RUN_NAME)
            run_id = meta.get(FLOW_RUN_ID)
            commits.append(
                OtherCommit(
                    snapshot_id=snap.id,
                    message=snap.message,
                    flow_run=f"{run} ({run_id})" if run and run_id else (run or run_id),
                    operation=meta.get(OPERATION),
                )
            )
        moved_paths = {p for pair in diff.moved_nodes for p in pair}
        changes = BranchChanges(
            base=base,
            tip=tip,
            commits=tuple(commits),
            chunks={p: frozenset(map(tuple, cs)) for p, cs in diff.updated_chunks.items() if cs},
            arrays_updated=frozenset(diff.updated_arrays),
            arrays_replaced=frozenset(diff.new_arrays | diff.deleted_arrays | moved_paths),
            groups_deleted=frozenset(diff.deleted_groups),
        )
    if cache is not None:
        cache[(base, tip)] = changes
    return changes


@dataclass(frozen=True)
class Collisions:
    """What a run's writes and another writer's commits have in common."""

    changes: BranchChanges
    chunks: Mapping[str, list[Coords]] = field(default_factory=dict)
    """Chunks written by both (array path -> chunk coordinates): re-writable."""
    conflicts: Mapping[str, str] = field(default_factory=dict)
    """Arrays changed by both in a way no re-write can fix (path -> why)."""

    def __bool__(self) -> bool:
        return bool(self.chunks or self.conflicts)

    @property
    def total(self) -> int:
        """How many chunks collided, over all arrays."""
        return sum(len(c) for c in self.chunks.values())

    def describe(self, examples: int = 3) -> str:
        """Every array with its count of collided chunks (a few named), the
        conflicts, and the other commits."""
        parts = [
            f"{path!r}: {len(coords)} chunk(s) {[list(c) for c in coords[:examples]]}"
            + (" ..." if len(coords) > examples else "")
            for path, coords in sorted(self.chunks.items())
        ]
        parts += [f"{path!r}: {why}" for path, why in sorted(self.conflicts.items())]
        total = f"{self.total} chunk(s) in {len(self.chunks)} array(s)" if self.chunks else ""
        head = f"{total}; " if total else ""
        return (
            f"{head}{'; '.join(parts)}. The other commit(s) since {self.changes.base}: "
            f"{self.changes.describe_commits()}"
        )


def _layout(arr: zarr.Array) -> dict[str, Any]:
    """An array's metadata that decides where chunks go (not its shape or attributes)."""
    meta = arr.metadata.to_dict()
    return {k: v for k, v in meta.items() if k not in ("shape", "attributes")}


def _open(repository: Any, snapshot_id: str, path: str) -> zarr.Array | None:
    try:
        store = repository.readonly_session(snapshot_id=snapshot_id).store
        arr = zarr.open_array(store, path=path.strip("/"), mode="r")
    except Exception:  # missing, or not an array there
        return None
    return arr


def _in_grid(arr: zarr.Array, coords: Iterable[Coords]) -> bool:
    unit = arr.shards or arr.chunks
    grid = tuple(math.ceil(n / u) for n, u in zip(arr.shape, unit, strict=True))
    return all(all(0 <= c < g for c, g in zip(cs, grid, strict=True)) for cs in coords)


def collisions(
    repository: Any,
    changes: BranchChanges,
    ours: Any,
    *,
    written: Mapping[str, Iterable[Coords]] | None = None,
) -> Collisions:
    """Compare ``changes`` with what ``ours`` (a fork or session) wrote (``written``:
    its chunks by array path, when already known).

    Chunks written by both are collisions. Conflicts: both changed the metadata of
    an array, or of one this run wrote chunks into was replaced, deleted, moved or
    given another layout (chunk grid, data type, codecs), or no longer holds the
    chunks this run wrote (shrunk).
    """
    if not changes.moved:
        return Collisions(changes)
    status = ours.status()
    chunks_of = status.updated_chunks if written is None else written
    ours_chunks = {p: {tuple(c) for c in cs} for p, cs in chunks_of.items() if cs}
    ours_meta = set(status.new_arrays | status.deleted_arrays | status.updated_arrays)
    chunks: dict[str, list[Coords]] = {}
    for path, coords in ours_chunks.items():
        both = coords & changes.chunks.get(path, frozenset())
        if both:
            chunks[path] = sorted(both)
    conflicts: dict[str, str] = {}
    theirs_meta = changes.arrays_updated | changes.arrays_replaced
    for path in sorted(ours_meta & theirs_meta):
        conflicts[path] = "both changed the array's metadata (e.g. both resized it)"
    for path in sorted(ours_chunks):
        if path in conflicts:
            continue
        if path in changes.arrays_replaced or any(
            path.startswith(g.rstrip("/") + "/") for g in changes.groups_deleted
        ):
            conflicts[path] = "the other writer replaced or deleted the array this run wrote into"
        elif path in changes.arrays_updated and path not in ours_meta:
            before, after = (_open(repository, s, path) for s in (changes.base, changes.tip))
            if before is None or after is None or _layout(before) != _layout(after):
                conflicts[path] = "the other writer changed the array's layout (chunks, dtype)"
            elif not _in_grid(after, ours_chunks[path]):
                conflicts[path] = "the other writer shrank the array below this run's chunks"
    return Collisions(changes, chunks, conflicts)


def stale_problem(
    repository: Any,
    fork: Any,
    fork_base: str,
    base: str,
    *,
    cache: ChangesCache | None = None,
) -> str | None:
    """Why ``fork``, written on ``fork_base``, cannot be merged on ``base`` (a newer
    tip of the same branch); ``None`` when it can: nothing it wrote was changed in
    between and its arrays keep the layout it wrote into."""
    if fork_base == base:
        return None
    try:
        changes = branch_changes(repository, fork_base, tip=base, cache=cache)
    except Exception as exc:  # the old base is gone, or not an ancestor any more
        return f"its base {fork_base} cannot be compared with {base} ({str(exc).splitlines()[0]})"
    found = collisions(repository, changes, fork)
    if not found:
        return None
    return f"commits since it was written changed what it wrote: {found.describe()}"


def overlapping_elements(
    repository: Any,
    changes: BranchChanges,
    chunks: Mapping[str, Sequence[Coords]],
    regions: Mapping[str, Sequence[slice]],
) -> dict[str, int]:
    """How many elements inside this run's region (``regions``: array path -> one
    slice per axis) the commits of ``changes`` changed, in the collided ``chunks``
    (array path -> chunk coordinates); arrays with none are left out.

    Elements are compared by value (NaN equals NaN) between ``changes.base`` and
    ``changes.tip``: an element rewritten with the value it held is not counted.
    """
    out: dict[str, int] = {}
    for path, coords in chunks.items():
        region = regions.get(path)
        before = _open(repository, changes.base, path)
        after = _open(repository, changes.tip, path)
        if region is None or before is None or after is None:
            continue
        unit = before.shards or before.chunks
        changed = 0
        for c in coords:
            sel = []
            for i, (r, u, n) in enumerate(zip(region, unit, before.shape, strict=True)):
                lo = max(c[i] * u, r.start or 0)
                hi = min((c[i] + 1) * u, n if r.stop is None else r.stop, n)
                if hi <= lo:
                    break
                sel.append(slice(lo, hi))
            else:
                a = np.asarray(before[tuple(sel)])
                b = np.asarray(after[tuple(sel)])
                same = a == b
                if a.dtype.kind in "fc":
                    same |= np.isnan(a) & np.isnan(b)
                changed += int(np.size(same) - np.count_nonzero(same))
        if changed:
            out[path] = changed
    return out


def rebased_fork(repository: Any, branch: str, fork: Any) -> Any:
    """A fork of ``branch``'s tip now holding ``fork``'s own changes (the metadata
    and in-memory writes of a run's first steps), to write collided partitions on.

    Its ``snapshot_id`` is the tip it was made from: the run's new base.
    """
    rebased = repository.writable_session(branch).fork()
    rebased.merge(fork)
    return rebased


@dataclass(frozen=True)
class RebaseRound:
    """One round of landing on a branch that moved: from ``base`` to ``tip`` (past
    ``commits`` other commits), ``rewritten`` partitions written again, ``kept`` kept,
    in ``seconds`` (reading the other commits' changes, the re-writes, merge and
    validation; not the commit attempts)."""

    base: str
    tip: str
    commits: int
    rewritten: int
    kept: int
    seconds: float = 0.0

    def describe(self) -> str:
        """``branch moved (2 commits), 1 partition re-written on the new tip, 72 kept``."""
        return (
            f"branch moved ({self.commits} commit{'s' if self.commits != 1 else ''}), "
            f"{self.rewritten} partition{'s' if self.rewritten != 1 else ''} re-written on the "
            f"new tip, {self.kept} kept"
        )


def rebase_summary(rounds: Sequence[RebaseRound]) -> dict[str, Any]:
    """The rounds of a run as JSON, for its commit metadata and summary."""
    return {
        "rounds": len(rounds),
        "first_base": rounds[0].base,
        "commits": sum(r.commits for r in rounds),
        "rewritten": sum(r.rewritten for r in rounds),
        "kept": rounds[-1].kept,
        "seconds": round(sum(r.seconds for r in rounds), 3),
        "text": "; ".join(r.describe() for r in rounds),
    }
