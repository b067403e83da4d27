"""The write sequence as steps a flow calls: :class:`FlowDatasetWriter`.

This is the Prefect counterpart of Icechunk's former "more control" writer:
``write_metadata()``, ``write_eager()``, then ``write_lazy()``, ``merge()`` and
``commit()`` (``prepare()`` and ``finish()`` are the two halves, ``run()`` the whole
write: every flow of the package runs it, ``store_dask`` through
:class:`FlowArrayWriter`). Each step is a Prefect task run (retried on its own) and keeps the
resulting ``ForkSession``; the store can be inspected between steps through
:attr:`FlowDatasetWriter.store`.

Where the steps run: every step is a task run of the flow process, and the data
is computed and written on the Dask cluster of the flow's task runner, never in
the flow process.

- The light steps (metadata, eager variables, merge, the validation gate, the
  commit) touch only metadata and chunk references: they run in the flow process.
- The lazy writes run on a small thread pool of the flow process (a
  ``ThreadPoolTaskRunner``, a few partitions in flight): each partition task hands
  its chunks to the cluster (:func:`~icechunk_prefect.core.steps.write_partition`) and
  gets back a fork holding chunk references.

A Prefect task run on a Dask worker costs 0.25-0.4 s of the worker's time on 2
cores (a new API client, settings read from disk, state round trips) and the
worker computes nothing meanwhile; in the flow process the same task run costs
a few tens of milliseconds and overlaps the cluster's work (docs/benchmarks.md).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import xarray as xr
from icechunk.session import ForkSession
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from icechunk_prefect.caching import (
    ResultStorageLike,
    partition_key,
    resolve_result_storage,
    write_scope,
)
from icechunk_prefect.core.arrays import (
    arrays_dataset,
    check_counts,
    common_group,
    region_text,
    source_bytes,
)
from icechunk_prefect.core.checks import Check, expected_schema
from icechunk_prefect.core.datasets import as_dataset, subset_variables
from icechunk_prefect.core.integrity import fork_problem, written_chunks
from icechunk_prefect.core.metadata import FLOW_RUN_ID, REBASE, commit_metadata
from icechunk_prefect.core.planning import (
    DEFAULT_PARTITION_BYTES,
    Partition,
    WritePlan,
    WriteResult,
    array_path,
)
from icechunk_prefect.core.rebase import (
    Collisions,
    OverlapPolicy,
    RebaseRound,
    branch_changes,
    collisions,
    overlapping_elements,
    rebase_summary,
    rebased_fork,
)
from icechunk_prefect.core.sessions import idempotency_key, tree_groups
from icechunk_prefect.core.spec import WriteMode, WriteSpec
from icechunk_prefect.core.steps import plan_write
from icechunk_prefect.core.validation import (
    check_input,
    creates_repository,
    resolve_mode,
)
from icechunk_prefect.errors import CommitConflictError
from icechunk_prefect.reporting.progress import log_discarded, log_plan, log_step, track_progress
from icechunk_prefect.reporting.publish import publish_commit, report_writer_commit
from icechunk_prefect.runtime import flow_dask_client, flow_run_metadata
from icechunk_prefect.storage.local import RepositorySource
from icechunk_prefect.storage.resolve import RepositoryLike, resolve_repository
from icechunk_prefect.tasks import (
    METADATA_CACHE_POLICY,
    WRITE_CACHE_POLICY,
    PartitionsWritten,
    check_reused_task,
    merge_task,
    plan_arrays_task,
    try_commit_task,
    validate_task,
    write_eager_task,
    write_lazy_graph_task,
    write_metadata_task,
    write_partitions_task,
)
from icechunk_prefect.testing import faults

__all__ = [
    "FlowArrayWriter",
    "FlowDatasetWriter",
]


@dataclass
class FlowDatasetWriter:
    """Write an xarray Dataset into an Icechunk repository as Prefect tasks.

    Use it inside a ``@flow`` running on an
    :class:`~icechunk_prefect.runtime.IcechunkDaskTaskRunner`.

    Crash safety: with ``resume`` (the default) the metadata fork and every
    partition fork are persisted in ``result_storage`` (default: see
    :func:`~icechunk_prefect.caching.default_result_storage`) under keys tied to the
    branch tip the run started from, so a new run after a failure skips what was
    already written. ``commit()`` first runs the validation gate (coverage, schema,
    ``checks``) and commits once, with an idempotency key.

    A reused fork (persisted by a failed run) is merged only when everything it
    refers to can still be read; one that cannot (garbage collection deleted its
    objects) is discarded and its partition written again in the same run, and the
    commit proves the reused chunks readable once more under the commit lock (see
    :mod:`~icechunk_prefect.core.integrity`).

    ``partitions_in_flight`` bounds the partition task runs running at once
    (default: twice the cluster's worker threads, see the module doc).
    ``partitions_per_task`` sets how many partitions one ``write partitions`` task
    run writes (default: one each while there are few, then enough that about four
    task runs share each slot; each partition is still its own Dask task, and is
    persisted on its own for resume). ``cluster_timeout``
    bounds the wait on a cluster that cannot run the lazy writes (no workers, the
    scheduler gone; see :func:`~icechunk_prefect.core.cluster.cluster_timeout`).

    Other writers may commit to the branch during the run. Where their commits
    wrote chunks this run wrote too, ``commit()`` writes the partitions holding
    them again on the new tip, keeps the others, validates and commits (at most
    ``rebase_rounds`` rounds); ``on_overlap`` says what to do when they changed
    elements of this run's own region (``"land-after"``, the default: this run's
    values win, as a later run's would; ``"refuse"``: commit nothing). A change the
    run was planned against (array metadata, e.g. another append; its in-memory
    variables) is refused. See :mod:`~icechunk_prefect.core.rebase`.

    Example:
        ```python
        import numpy as np, xarray as xr, zarr
        from prefect import flow
        from icechunk_prefect import FlowDatasetWriter, IcechunkDaskTaskRunner

        @flow(task_runner=IcechunkDaskTaskRunner(cluster_kwargs={"n_workers": 1}))
        def more_control(path: str) -> str:
            ds = xr.Dataset(
                {"t": (("time",), np.arange(8.0))}, coords={"time": np.arange(8)}
            ).chunk(time=4)
            writer = FlowDatasetWriter(ds, path, mode="w")
            writer.write_metadata()
            writer.write_eager()
            # inspect: attributes and coordinates are there, "t" holds no chunk yet
            assert zarr.open_group(writer.store, mode="r")["t"].nchunks_initialized == 0
            writer.write_lazy()
            writer.merge()
            return writer.commit("more control").snapshot_id

        print(more_control("/tmp/doc-more-control"))
        ```
    """

    dataset: xr.Dataset | xr.DataArray
    repo: RepositoryLike
    branch: str = "main"
    group: str | None = None
    mode: WriteMode | None = None
    append_dim: str | None = None
    region: Mapping[str, slice | str] | str | None = None
    encoding: Mapping[str, Any] | None = None
    safe_chunks: bool = True
    align_chunks: bool = False
    split_every: int | None = None
    partitioned: bool = True
    partition_dim: str | None = None
    partition_size: int | None = None
    target_partition_bytes: int = DEFAULT_PARTITION_BYTES
    merge_split_every: int = 256
    partitions_in_flight: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    resume: bool = True
    result_storage: ResultStorageLike | None = None
    checks: Sequence[Check] = ()
    cluster_timeout: float | None = None
    partitions_per_task: int | None = None
    on_overlap: OverlapPolicy = "land-after"
    rebase_rounds: int = 5

    spec: WriteSpec = field(init=False)
    """The write's options as one value (from the arguments above), passed to the steps."""
    fork: ForkSession | None = field(default=None, init=False, repr=False)
    plan: WritePlan | None = field(default=None, init=False)
    _ds: xr.Dataset = field(init=False, repr=False)
    _source: RepositorySource = field(init=False, repr=False)
    _lazy_forks: list[PrefectFuture[PartitionsWritten | ForkSession]] = field(
        default_factory=list, init=False
    )
    _batches: list[list[int]] = field(default_factory=list, init=False)
    _blocks: list[xr.Dataset] = field(default_factory=list, init=False, repr=False)
    _keys: list[str] | None = field(default=None, init=False, repr=False)
    _scope: str | None = field(default=None, init=False, repr=False)
    _child: ForkSession | None = field(default=None, init=False, repr=False)
    _units: list[tuple[ForkSession, Mapping[str, int] | None] | None] = field(
        default_factory=list, init=False, repr=False
    )
    _rounds: list[RebaseRound] = field(default_factory=list, init=False)
    _slots: int = field(default=1, init=False, repr=False)
    _reused_chunks: dict[str, list[tuple[int, ...]]] = field(default_factory=dict, init=False)
    _lazy_runner: ThreadPoolTaskRunner[Any] | None = field(default=None, init=False, repr=False)
    _merged: ForkSession | None = field(default=None, init=False, repr=False)
    _validated: bool = field(default=False, init=False, repr=False)
    _lazy_written: bool = field(default=False, init=False, repr=False)
    _started: float = field(default_factory=time.monotonic, init=False)

    def __post_init__(self) -> None:
        self._ds = as_dataset(self.dataset)
        self._source = resolve_repository(self.repo)
        resolve_mode(self.mode, self.append_dim, self.region)
        # The writer's option fields are the spec's, by name: the spec is built from them.
        self.spec = WriteSpec(**{f.name: getattr(self, f.name) for f in fields(WriteSpec)})

    @property
    def store(self) -> Any:
        """The Zarr store of the current fork (read it to inspect what was written so far)."""
        if self.fork is None:
            raise RuntimeError("Call write_metadata() first.")
        return self.fork.store

    def write_metadata(self) -> ForkSession:
        """Create or resize the arrays and write attributes (a task); plan the write."""
        check_input(
            self._ds,
            append_dim=self.append_dim,
            encoding=self.encoding,
            partition_dim=self.partition_dim,
        )
        concrete = resolve_mode(self.mode, self.append_dim, self.region)
        if self.resume and creates_repository(concrete, self.append_dim):
            # Create a missing repository here, so that the metadata step's cache key
            # sees the same tip (the first commit) in a first run and in its re-run.
            self._source.open_repository(create=True)
        call: dict[str, Any] = {
            "repo": self._source,
            "branch": self.branch,
            "dataset": self._ds,
            "spec": self.spec,
        }
        task = self._cached(write_metadata_task, METADATA_CACHE_POLICY)
        state = task(**call, return_state=True)
        fork: ForkSession = state.result()
        if _reused(state):
            problem = fork_problem(fork)
            if problem is None:
                self._note_reused(fork)
            else:
                log_discarded("write metadata", problem)
                fork = task.with_options(refresh_cache=True)(**call)
        self.fork = fork
        self.plan = plan_write(fork, self._ds, self.spec)
        log_plan(self.branch, self.plan)
        return fork

    def write_eager(self) -> ForkSession:
        """Write the in-memory variables (a task)."""
        plan = self._require_plan()
        names = [n for n in plan.eager if n not in plan.skip_eager]
        fork = self.fork
        assert fork is not None
        if names:
            fork = write_eager_task(fork, subset_variables(self._ds, names), plan)
            self.fork = fork
        return fork

    def write_lazy(self) -> list[PrefectFuture[PartitionsWritten | ForkSession]]:
        """Write the dask-backed variables: ``write partitions`` tasks (one partition
        each, or several when there are many, see ``partitions_per_task``), whose
        results are :class:`~icechunk_prefect.tasks.PartitionsWritten` (``.forks``
        holds the writes, one fork per partition), or one whole-graph task, whose
        result is the fork."""
        plan = self._require_plan()
        assert self.fork is not None
        if not plan.lazy:
            return []
        self._child = self.fork.fork()  # once: every partition writes into a copy of it
        self._lazy_written = True
        self._scope = (
            write_scope(self._source.describe(), self.branch, self._ds) if self.resume else None
        )
        if self.partitioned:
            self._blocks = [
                subset_variables(self._ds, p.variables).isel(p.source) for p in plan.partitions
            ]
            self._keys = (
                [
                    partition_key(self._scope, p, plan.group, b, self._child)
                    for p, b in zip(plan.partitions, self._blocks, strict=True)
                ]
                if self._scope
                else None
            )
        self._batches, self._lazy_forks = self._submit(range(len(plan.partitions) or 1))
        return self._lazy_forks

    def _submit(
        self, units: Iterable[int], *, again: bool = False
    ) -> tuple[list[list[int]], list[PrefectFuture[Any]]]:
        """Submit the lazy writes of ``units`` (partition indices; the whole graph is
        unit 0) into copies of the child fork, on the lazy runner: batches of
        partitions, and their futures. ``again``: written anew (never a cached batch, no
        persisted partition but one written on the plan's base itself: the others
        collided)."""
        plan = self._require_plan()
        runner = self._start_lazy_runner()
        common = {
            "fork": self._child,
            "cache_scope": self._scope,
            "cluster_timeout": self.cluster_timeout,
            "base_snapshot": plan.base_snapshot,
        }
        if not self.partitioned:
            task = self._cached(write_lazy_graph_task, WRITE_CACHE_POLICY)
            params = {
                **common,
                "dataset": subset_variables(self._ds, plan.lazy),
                "plan": plan,
                "split_every": self.spec.split_every,
            }
            return [[0]], [runner.submit(_again(task, again), params)]
        task = self._cached(write_partitions_task, WRITE_CACHE_POLICY)
        units = list(units)
        size = self.partitions_per_task or _default_per_task(len(units), self._slots)
        batches = [units[i : i + size] for i in range(0, len(units), size)]
        futures = []
        for batch in batches:
            parts = [plan.partitions[i] for i in batch]
            params = {
                **common,
                "datasets": [self._blocks[i] for i in batch],
                "partitions": parts,
                "group": plan.group,
                "label": _batch_label(parts),
                "partition_keys": [self._keys[i] for i in batch] if self._keys else None,
                "repo": self._source,
                "reuse_other_bases": not again,
            }
            futures.append(runner.submit(_again(task, again), params))
        return batches, futures

    def _start_lazy_runner(self) -> ThreadPoolTaskRunner[Any]:
        """The flow-process thread pool the lazy write tasks run on (see the module doc)."""
        if self._lazy_runner is None:
            self._slots = self.partitions_in_flight or _default_in_flight()
            runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=self._slots)
            self._lazy_runner = runner.__enter__()
        return self._lazy_runner

    def _stop_lazy_runner(self) -> None:
        runner, self._lazy_runner = self._lazy_runner, None
        if runner is not None:
            runner.__exit__(None, None, None)

    def merge(self) -> ForkSession:
        """Wait for the lazy writes, then tree-merge their forks into the metadata fork
        (tasks of ``merge_split_every``). A lazy write that failed (after its retries)
        raises its own error here: nothing is merged or committed."""
        assert self.fork is not None
        try:
            if self.plan is not None and self._lazy_forks:
                labels = self._labels(self._batches)
                sizes = [len(b) for b in self._batches]
                progress = track_progress(
                    self._lazy_forks, labels, what=f"write {self.branch}", sizes=sizes
                )
                if progress.failed:
                    for future in self._lazy_forks:
                        future.result()  # the first failed write raises its error
                count = len(self.plan.partitions) if self.partitioned else 1
                self._units = [None] * count  # filled by _collect
                redo = self._collect(self._batches, self._lazy_forks)
                if redo:
                    self._collect(*self._submit(redo, again=True))
                self._lazy_forks = []
            self._merged = self._merge_units()
        finally:
            self._stop_lazy_runner()
        return self._merged

    def _merge_units(self) -> ForkSession:
        """Tree-merge the lazy writes' forks (with their chunk counts) into the metadata fork."""
        assert self.fork is not None
        # (A unit whose result never came is not merged: the validation gate reports it.)
        units = [u for u in self._units if u is not None]
        level: list[Any] = [f for f, _ in units]
        counts = [c for _, c in units if c is not None]
        if len(counts) != len(level):  # the whole graph's fork comes without counts
            counts = None
        while len(level) > self.merge_split_every:
            runner = self._start_lazy_runner()
            groups = tree_groups(range(len(level)), self.merge_split_every)
            merged = [
                runner.submit(
                    merge_task,
                    {
                        "forks": [level[i] for i in g],
                        "label": f"{len(g)} forks",
                        "counts": [counts[i] for i in g] if counts is not None else None,
                    },
                )
                for g in groups
            ]
            if counts is not None:
                counts = [dict(sum((Counter(counts[i]) for i in g), Counter())) for g in groups]
            level = merged
        if not level:
            return self.fork
        return merge_task(level, self.fork, label=f"{len(units)} forks", counts=counts)

    def _collect(
        self, batches: Sequence[Sequence[int]], futures: Sequence[PrefectFuture[Any]]
    ) -> list[int]:
        """Take the lazy writes' forks (one per partition) into ``_units``; return the
        partitions to write again: those of a batch reused whole from a failed run
        (``Cached``) whose fork cannot be reused any more (garbage collected, or
        changed by a commit since it was written; see :func:`check_reused_task`)."""
        plan = self._require_plan()
        # partitions reused whole (index, fork), by the base they were written on
        cached: dict[str | None, list[tuple[int, ForkSession]]] = {}
        for batch, future in zip(batches, futures, strict=False):
            result = future.result()
            if isinstance(result, PartitionsWritten):
                units = list(zip(result.forks, result.counts, strict=True))
                fork_base = result.base_snapshot
                if not _reused(future.state):  # its reused partitions were checked by the task
                    for path, coords in result.reused_chunks.items():
                        self._reused_chunks.setdefault(path, []).extend(coords)
            else:  # the whole graph
                units, fork_base = [(result, None)], plan.base_snapshot
            for i, unit in zip(batch, units, strict=True):
                self._units[i] = unit
                if _reused(future.state):
                    cached.setdefault(fork_base, []).append((i, unit[0]))
        redo: list[int] = []
        for fork_base, reused in cached.items():
            problems = check_reused_task(
                [fork for _, fork in reused],
                label=f"{len(reused)} reused forks",
                repo=self._source,
                fork_base=fork_base,
                base_snapshot=plan.base_snapshot,
            )
            for (i, fork), problem in zip(reused, problems, strict=True):
                if problem is None:
                    self._note_reused(fork)
                else:
                    log_discarded(f"write {self._labels([[i]])[0]}", problem)
                    redo.append(i)
        return redo

    def _labels(self, batches: Sequence[Sequence[int]]) -> list[str]:
        plan = self._require_plan()
        if not self.partitioned:
            return ["lazy graph"]
        return [_batch_label([plan.partitions[i] for i in b]) for b in batches]

    def _note_reused(self, fork: ForkSession) -> None:
        """Remember the chunks of a reused fork: the commit proves them readable again."""
        for path, coords in written_chunks(fork).items():
            self._reused_chunks.setdefault(path, []).extend(coords)

    def validate(self, checks: Sequence[Check] | None = None) -> ForkSession:
        """The validation gate (a task): every planned chunk written, schema as the
        dataset's, and the user ``checks`` (default: the writer's). Raises
        :class:`~icechunk_prefect.errors.CheckFailedError`; nothing is committed.

        Chunk coverage of the lazy variables is checked for partitioned writes (whose
        partitions record every chunk, empty ones included); it is left out when the
        lazy step was skipped on purpose (metadata-only writes) or ran as one
        whole-graph task (Zarr skips chunks that hold only the fill value there)."""
        plan = self._require_plan()
        merged = self._merged if self._merged is not None else self.merge()
        covered = plan if self._lazy_written and self.partitioned else replace(plan, lazy=())
        self._merged = validate_task(
            merged,
            covered,
            self._schema(),
            list(self.checks if checks is None else checks),
        )
        self._validated = True
        assert self._merged is not None
        return self._merged

    def commit(self, message: str, metadata: Mapping[str, Any] | None = None) -> WriteResult:
        """Validate (unless :meth:`validate` ran), then commit the merged fork once (a
        task, idempotent: a retried step returns the commit that landed).

        When other commits landed on the branch meanwhile and wrote chunks this run
        wrote too, the partitions holding them are written again on the new tip (the
        others are kept), merged, validated and committed: at most ``rebase_rounds``
        rounds, with backoff (:meth:`_rebase`). What cannot land on the new tip (an
        array changed by both, or elements of this run's region changed by the other
        commits with ``on_overlap="refuse"``) raises
        :class:`~icechunk_prefect.errors.CommitConflictError`; nothing is committed."""
        if self._merged is None:
            self.merge()
        if not self._validated:
            self.validate()
        attempt = 0
        while True:
            plan = self._require_plan()
            merged = self._merged
            assert merged is not None
            meta = commit_metadata(
                run=flow_run_metadata(),
                plan=plan,
                parameters=self.parameters,
                extra={**self._rebase_metadata(), **(metadata or {})},
            )
            key = idempotency_key(meta.get(FLOW_RUN_ID), self.parameters, plan.describe(), message)
            faults.pause_before_commit()
            done = try_commit_task(
                self._source,
                self.branch,
                merged,
                message,
                metadata=meta,
                base_snapshot=plan.base_snapshot,
                key=key,
                verify_chunks=self._reused_chunks or None,
            )
            if done.snapshot_id is not None:
                break
            assert done.moved is not None
            if attempt == self.rebase_rounds:
                raise CommitConflictError(
                    f"Could not land on {self.branch!r} after {self.rebase_rounds} round(s) of "
                    "re-writing the partitions other commits also wrote: they kept committing "
                    f"to the same chunks ({done.moved.describe()}). Nothing of this run was "
                    "committed; re-run later (its partitions are reused), or make the writers "
                    "take turns (docs/reliability.md, 'Two writers on one dataset')."
                )
            if attempt:
                time.sleep(min(10.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
            attempt += 1
            self._rebase(done.moved)
        result = WriteResult(
            snapshot_id=done.snapshot_id,
            parent_snapshot_id=plan.base_snapshot,
            branch=self.branch,
            plan=plan,
            metadata=meta,
            seconds=time.monotonic() - self._started,
        )
        self._report(result, message)
        return result

    def _rebase(self, moved: Collisions) -> None:
        """One round on a branch that moved (see :mod:`~icechunk_prefect.core.rebase`):
        move this run's own changes (metadata, in-memory variables) onto the tip,
        write again there the partitions holding a chunk the other commits wrote too,
        keep the others, then merge and validate. Refuses (nothing committed) what
        no re-write can fix: an array changed by both, this run's metadata or
        in-memory variables changed, or, with ``on_overlap="refuse"``, elements of
        this run's region changed by the other commits."""
        plan = self._require_plan()
        assert self.fork is not None and self._merged is not None
        started = time.monotonic()
        repository = self._source.open_repository()
        rebased = rebased_fork(repository, self.branch, self.fork)
        # What the commit attempt read stays valid unless the branch moved again since.
        seen = {(moved.changes.base, moved.changes.tip): moved.changes}
        changes = branch_changes(
            repository, plan.base_snapshot, tip=rebased.snapshot_id, cache=seen
        )
        found = moved if changes is moved.changes else collisions(repository, changes, self._merged)
        own = collisions(repository, changes, self.fork)
        if found.conflicts or own:
            what = found if found.conflicts else own
            raise CommitConflictError(
                f"Branch {self.branch!r} moved during this run and the other commit(s) changed "
                f"what this run was planned against (array metadata or its in-memory "
                f"variables): {what.describe()}. Nothing of this run was committed; re-run to "
                "plan again on the new tip (an append then adds only the steps still missing)."
            )
        if self.on_overlap == "refuse":
            overlap = overlapping_elements(repository, changes, found.chunks, self._regions())
            if overlap:
                raise CommitConflictError(
                    f"The other commit(s) changed {sum(overlap.values())} element(s) inside this "
                    f"run's region ({overlap}; {found.describe()}), and on_overlap is 'refuse'. "
                    "Nothing of this run was committed. Pass on_overlap='land-after' to land "
                    "after them (this run's values win, as a later run would), or re-run."
                )
        collided = {path: set(coords) for path, coords in found.chunks.items()}
        hit = [
            i
            for i, unit in enumerate(self._units)
            if unit is not None
            and any(
                not collided[path].isdisjoint(map(tuple, coords))
                for path, coords in unit[0].status().updated_chunks.items()
                if path in collided
            )
        ]
        self.fork, self._child = rebased, rebased.fork()
        self.plan = replace(plan, base_snapshot=rebased.snapshot_id)
        if hit:
            self._collect(*self._submit(hit, again=True))
        try:
            self._merged = self._merge_units()
        finally:
            self._stop_lazy_runner()
        self._validated = False
        self.validate()
        self._rounds.append(
            RebaseRound(
                base=plan.base_snapshot,
                tip=rebased.snapshot_id,
                commits=len(changes.commits),
                rewritten=len(hit),
                kept=len(self._units) - len(hit),
                seconds=time.monotonic() - started,
            )
        )
        done = self._rounds[-1]
        log_step(f"commit {self.branch}", "%s (round in %.1f s)", done.describe(), done.seconds)

    def _regions(self) -> dict[str, tuple[slice, ...]]:
        """Where this run writes, by array path: one slice per axis of each lazy variable."""
        plan = self._require_plan()
        return {
            array_path(plan.group, name): tuple(
                plan.region[str(d)] for d in self._ds.variables[name].dims
            )
            for name in plan.lazy
        }

    def _rebase_metadata(self) -> dict[str, Any]:
        """The rounds this run needed, for the commit metadata (none: nothing)."""
        if not self._rounds:
            return {}
        return {REBASE: rebase_summary(self._rounds)}

    def _schema(self) -> dict[str, Any]:
        """What the validation gate expects the store to show (from the dataset)."""
        return expected_schema(self._ds, self.encoding)

    def _report(self, result: WriteResult, message: str) -> None:
        """Publish the commit (summary artifact, event, asset)."""
        report_writer_commit(self._source, result, message, self._ds)

    def prepare(self) -> ForkSession:
        """The first half of the write: :meth:`write_metadata`, then :meth:`write_eager`.
        Nothing is committed; the store can be inspected (:attr:`store`)."""
        self.write_metadata()
        return self.write_eager()

    def finish(
        self,
        message: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        write_data: bool = True,
    ) -> WriteResult:
        """The second half: :meth:`write_lazy` (unless ``write_data`` is off: a
        metadata-only write), :meth:`merge`, then :meth:`commit`."""
        if write_data:
            self.write_lazy()
        self.merge()
        return self.commit(message, metadata)

    def run(
        self,
        message: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        write_data: bool = True,
    ) -> WriteResult:
        """The whole write, every step in order (what the flows run): :meth:`prepare`,
        then :meth:`finish`. Each step logs one line; the commit publishes the summary
        artifact, the commit event and the asset."""
        self.prepare()
        return self.finish(message, metadata, write_data=write_data)

    def _cached(self, task: Any, policy: Any) -> Any:
        """``task`` with its results persisted under ``policy`` (when resuming)."""
        if not self.resume:
            return task
        return task.with_options(
            cache_policy=policy,
            result_storage=resolve_result_storage(self.result_storage),
            persist_result=True,
        )

    def _require_plan(self) -> WritePlan:
        if self.plan is None or self.fork is None:
            raise RuntimeError("Call write_metadata() first.")
        return self.plan


def _reused(state: Any) -> bool:
    """Whether a task run's result came from a failed run's persisted results."""
    return bool(state is not None and state.is_completed() and state.name == "Cached")


def _again(task: Any, again: bool) -> Any:
    """``task``, run anew (its cached result refreshed) when ``again``."""
    return task.with_options(refresh_cache=True) if again else task


def _batch_label(batch: Sequence[Partition]) -> str:
    """``time[2024-01-01..2024-01-07]`` for one partition, the span for several."""
    if len(batch) == 1:
        return batch[0].label
    return f"{batch[0].label} to {batch[-1].label} ({len(batch)} partitions)"


def _default_per_task(partitions: int, in_flight: int) -> int:
    """Partitions per ``write partitions`` task run: one each while there are few,
    so that each task run waits on about one partition; with many, about four task
    runs per slot in flight (at most 256 partitions each), so that the flow
    process's cost per Prefect task run (tens of milliseconds) is shared by many
    partitions (measured: see docs/benchmarks.md, row 3)."""
    runs = 4 * max(1, in_flight)
    return max(1, min(256, -(-partitions // runs)))


def _default_in_flight() -> int:
    """Partition tasks running at once: twice the cluster's worker threads (at least
    2, at most 64), so that each worker has its next partition queued when one
    ends (measured: with as many as the threads the workers idle between
    partitions, 1.10 x plain; with twice, 1.02 x; see docs/benchmarks.md)."""
    client = flow_dask_client()
    try:
        threads = sum(client.nthreads().values()) if client is not None else 0
    except Exception:  # pragma: no cover - a cluster that cannot be asked
        threads = 0
    return max(2, min(64, 2 * threads))


@dataclass
class FlowArrayWriter(FlowDatasetWriter):
    """:class:`FlowDatasetWriter`'s steps for plain dask arrays into existing Zarr arrays
    (what the ``store_dask`` flow runs): the same partition tasks, merge, validation
    gate (every planned chunk written), commit and resume; the first step plans
    instead of writing metadata (:func:`~icechunk_prefect.tasks.plan_arrays_task`).

    Build it with :meth:`for_arrays`. Partitions cut along axis 0 of every target
    (``partition_size`` positions); ``partitioned=False`` runs one whole-graph write
    (``icechunk.dask.store_dask`` on the cluster).

    Example:
        ```python
        import dask.array as da, icechunk, zarr
        from prefect import flow
        from icechunk_prefect import IcechunkDaskTaskRunner
        from icechunk_prefect.writer import FlowArrayWriter

        storage = icechunk.local_filesystem_storage("/tmp/doc-array-writer")
        repo = icechunk.Repository.create(storage)
        session = repo.writable_session("main")
        zarr.create_array(session.store, name="a", shape=(8, 4), chunks=(2, 4), dtype="f8")
        session.commit("create a")

        @flow(task_runner=IcechunkDaskTaskRunner(cluster_kwargs={"n_workers": 1}))
        def fill() -> str:
            writer = FlowArrayWriter.for_arrays(
                [da.ones((8, 4), chunks=(4, 4))], ["a"], "/tmp/doc-array-writer", partition_size=4
            )
            writer.write_metadata()
            writer.write_lazy()
            writer.merge()
            return writer.commit("fill a").snapshot_id

        print(fill())
        ```
    """

    targets: tuple[str, ...] = ()
    regions: Sequence[Sequence[slice]] | None = None

    @classmethod
    def for_arrays(
        cls,
        sources: Sequence[Any],
        targets: Sequence[str],
        repo: RepositoryLike,
        *,
        regions: Sequence[Sequence[slice]] | None = None,
        **kwargs: Any,
    ) -> FlowArrayWriter:
        """A writer of ``sources[i]`` into array ``targets[i]`` (at ``regions[i]``, default
        the whole array); ``kwargs`` are :class:`FlowDatasetWriter`'s (``branch``,
        ``partitioned``, ``partition_size``, ``split_every``, ``resume``, ...)."""
        check_counts(sources, targets, regions)
        return cls(
            arrays_dataset(sources, targets),
            repo,
            targets=tuple(targets),
            regions=regions,
            **kwargs,
        )

    def write_metadata(self) -> ForkSession:
        """Fork a clean session and plan the write (a task); nothing is written."""
        fork, plan = plan_arrays_task(
            self._source,
            self.branch,
            [self._ds.variables[t].data for t in self.targets],
            list(self.targets),
            self.regions,
            partitioned=self.partitioned,
            partition_size=self.partition_size,
        )
        self.fork, self.plan = fork, plan
        log_plan(self.branch, plan)
        return fork

    def _schema(self) -> dict[str, Any]:
        return {}  # existing arrays: only coverage is checked (by the plan's dimensions)

    def _report(self, result: WriteResult, message: str) -> None:
        plan = result.plan
        publish_commit(
            self._source,
            result.branch,
            result.snapshot_id,
            message=message,
            variables=list(self.targets),
            region=region_text(plan),
            partitions=len(plan.partitions) or 1,
            bytes_written=source_bytes(self._ds),
            seconds=result.seconds,
            group=common_group(self.targets),
        )
