"""Prefect tasks: thin, retryable wrappers over the plain steps of :mod:`icechunk_prefect.core`.

Every task takes and returns picklable values (a ``ForkSession``, a plan, a
snapshot id), so it can run on any Dask worker. The package's own
errors are not retried unless their class says so (``retryable``): the same
input would fail the same way. :class:`~icechunk_prefect.writer.FlowDatasetWriter`
chains them (with resume and progress); by hand, the sequence is:

Example:
    ```python
    import numpy as np, xarray as xr
    from prefect import flow
    from icechunk_prefect.core.checks import expected_schema
    from icechunk_prefect.core.datasets import subset_variables
    from icechunk_prefect.core.spec import WriteSpec
    from icechunk_prefect.core.steps import plan_write
    from icechunk_prefect.tasks import (
        commit_task, merge_task, validate_task, write_eager_task, write_metadata_task,
        write_partitions_task,
    )

    @flow
    def by_hand(path: str) -> str:
        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)
        fork = write_metadata_task(path, "main", ds, spec)
        plan = plan_write(fork, ds, spec)
        fork = write_eager_task(fork, subset_variables(ds, plan.eager), plan)
        blocks = [subset_variables(ds, p.variables).isel(p.source) for p in plan.partitions]
        done = write_partitions_task(fork.fork(), blocks, plan.partitions)
        merged = validate_task(merge_task([done.fork], fork), plan, expected_schema(ds))
        return commit_task(path, "main", merged, "by hand", base_snapshot=plan.base_snapshot)

    print(by_hand("/tmp/doc-tasks"))
    ```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import xarray as xr
from icechunk.session import ForkSession
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff

from icechunk_prefect.caching import MetadataCachePolicy, WriteCachePolicy
from icechunk_prefect.core import checks as checks_mod
from icechunk_prefect.core import integrity, sessions, steps
from icechunk_prefect.core.planning import Partition, WritePlan
from icechunk_prefect.core.rebase import Collisions
from icechunk_prefect.core.spec import WriteSpec
from icechunk_prefect.errors import BranchMovedError, IcechunkPrefectError
from icechunk_prefect.runtime import flow_dask_client
from icechunk_prefect.storage.resolve import RepositoryLike
from icechunk_prefect.testing import faults

__all__ = [
    "DEFAULT_RETRIES",
    "METADATA_CACHE_POLICY",
    "WRITE_CACHE_POLICY",
    "CommitAttempt",
    "PartitionsWritten",
    "check_reused_task",
    "commit_task",
    "merge_task",
    "try_commit_task",
    "validate_task",
    "write_eager_task",
    "write_lazy_graph_task",
    "write_metadata_task",
    "write_partition_task",
    "write_partitions_task",
]

DEFAULT_RETRIES = 3


def retry_unless_final(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry condition: retry any failure except the package's final errors (those
    whose class says ``retryable = False``, see :mod:`icechunk_prefect.errors`)."""
    try:
        state.result(raise_on_failure=True)
    except IcechunkPrefectError as exc:
        return exc.retryable
    except Exception:
        return True
    return True


METADATA_CACHE_POLICY = MetadataCachePolicy()
"""Cache policy that makes the metadata step resumable (see :mod:`icechunk_prefect.caching`)."""
WRITE_CACHE_POLICY = WriteCachePolicy()
"""Cache policy that makes the lazy write steps resumable (needs a ``cache_scope``)."""

_RETRY: dict[str, Any] = {
    "retries": DEFAULT_RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_unless_final,
    "cache_policy": NO_CACHE,
}


@task(name="write metadata", task_run_name="write metadata {branch}", **_RETRY)
def write_metadata_task(
    repo: RepositoryLike,
    branch: str,
    dataset: xr.Dataset,
    spec: WriteSpec | None = None,
) -> ForkSession:
    """Create or resize arrays and write attributes in a fork of a clean session (see
    :func:`icechunk_prefect.core.steps.write_metadata`; the write's options: ``spec``).

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.tasks import write_metadata_task

        @flow
        def init() -> str:
            ds = xr.Dataset({"t": ("x", np.arange(4.0))}).chunk(x=2)
            fork = write_metadata_task("/tmp/doc-task-repo", "main", ds, WriteSpec(mode="w"))
            return fork.snapshot_id

        print(init())  # the snapshot the fork started from
        ```
    """
    return steps.write_metadata(repo, branch, dataset, spec)


@task(name="plan arrays", task_run_name="plan arrays {branch}", **_RETRY)
def plan_arrays_task(
    repo: RepositoryLike,
    branch: str,
    sources: Sequence[Any],
    targets: Sequence[str],
    regions: Sequence[Sequence[slice]] | None = None,
    partitioned: bool = True,
    partition_size: int | None = None,
) -> tuple[ForkSession, WritePlan]:
    """``store_dask``'s first step: fork a clean session of ``branch`` and plan the
    write of ``sources`` into its existing arrays ``targets`` (see
    :func:`icechunk_prefect.core.arrays.plan_arrays`); nothing is written.

    Example:
        ```python
        import dask.array as da, icechunk, zarr
        from prefect import flow
        from icechunk_prefect.tasks import plan_arrays_task

        storage = icechunk.local_filesystem_storage("/tmp/doc-plan-arrays")
        repo = icechunk.Repository.create(storage)
        session = repo.writable_session("main")
        zarr.create_array(session.store, name="a", shape=(8,), chunks=(2,), dtype="f8")
        session.commit("create a")

        @flow
        def plan() -> int:
            fork, plan = plan_arrays_task(
                "/tmp/doc-plan-arrays", "main", [da.ones(8, chunks=4)], ["a"], partition_size=4
            )
            return len(plan.partitions)

        assert plan() == 2
        ```
    """
    from icechunk_prefect.core.arrays import plan_arrays
    from icechunk_prefect.storage.resolve import resolve_repository

    fork = resolve_repository(repo).open_repository().writable_session(branch).fork()
    plan = plan_arrays(
        fork,
        sources,
        targets,
        regions,
        partitioned=partitioned,
        partition_size=partition_size,
        branch=branch,
    )
    return fork, plan


@task(name="write eager", task_run_name="write eager variables", **_RETRY)
def write_eager_task(fork: ForkSession, dataset: xr.Dataset, plan: WritePlan) -> ForkSession:
    """Write the in-memory variables (coordinates) into the metadata fork.

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import write_eager_task, write_metadata_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        @flow
        def eager() -> None:
            fork = write_metadata_task("/tmp/doc-eager-task", "main", ds, spec)
            plan = plan_write(fork, ds, spec)
            fork = write_eager_task(fork, ds.drop_vars("t"), plan)
            assert fork.status().updated_chunks["/x"]  # the coordinate's chunks

        eager()
        ```
    """
    return steps.write_eager(fork, dataset, plan)


@task(name="write partition", task_run_name="write {partition.label}", **_RETRY)
def write_partition_task(
    fork: ForkSession,
    dataset: xr.Dataset,
    partition: Partition,
    group: str | None = None,
    cache_scope: str | None = None,
    cluster_timeout: float | None = None,
    base_snapshot: str | None = None,
) -> ForkSession:
    """Write one partition's block into a copy of the child fork; return that copy.

    ``cache_scope`` (see :func:`icechunk_prefect.caching.write_scope`) and
    ``base_snapshot`` (the commit the fork builds on) are only read by
    :data:`WRITE_CACHE_POLICY`: with them, a re-run on the same base skips partitions
    already written.
    ``cluster_timeout`` bounds the wait on a cluster that cannot run the partition
    (:class:`~icechunk_prefect.errors.ClusterUnavailableError`, retried).

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import write_metadata_task, write_partition_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        @flow
        def one_partition() -> list[list[int]]:
            fork = write_metadata_task("/tmp/doc-partition-task", "main", ds, spec)
            plan = plan_write(fork, ds, spec)
            first = plan.partitions[0]
            written = write_partition_task(fork.fork(), ds[["t"]].isel(first.source), first)
            return written.status().updated_chunks["/t"]

        assert one_partition() == [[0]]  # chunk 0 of "t": the first partition
        ```
    """
    return steps.write_partition(
        fork, dataset, partition, group, client=flow_dask_client(), cluster_timeout=cluster_timeout
    )


@dataclass(frozen=True)
class PartitionsWritten:
    """What one ``write partitions`` task run did: ``forks`` holds each partition's
    fork (in order, with its chunk ``counts`` for the merge), all valid on
    ``base_snapshot``; ``written``/``reused`` count the partitions written now and
    those taken from a failed run's persisted forks, and ``reused_chunks`` lists
    the chunks of the latter (the commit proves them readable again)."""

    forks: tuple[ForkSession, ...]
    counts: tuple[Mapping[str, int], ...]
    base_snapshot: str | None
    written: int
    reused: int
    reused_chunks: Mapping[str, list[tuple[int, ...]]] = field(default_factory=dict)

    @property
    def fork(self) -> ForkSession:
        """The partitions' writes merged into one fork."""
        return sessions.merge_forks(self.forks, counts=self.counts)


@task(name="write partitions", task_run_name="write {label}", **_RETRY)
def write_partitions_task(
    fork: ForkSession,
    datasets: Sequence[xr.Dataset],
    partitions: Sequence[Partition],
    group: str | None = None,
    cache_scope: str | None = None,
    cluster_timeout: float | None = None,
    label: str = "",
    partition_keys: Sequence[str] | None = None,
    repo: RepositoryLike | None = None,
    base_snapshot: str | None = None,
    reuse_other_bases: bool = True,
) -> PartitionsWritten:
    """Write several partitions (``datasets[i]`` is the block of ``partitions[i]``),
    each a Dask task of its own, in one task run; return their forks.

    One task run for many small partitions keeps the flow process's cost per
    partition low (a Prefect task run costs tens of milliseconds of it), while
    resume and retries stay per partition: with ``cache_scope`` (see
    :func:`icechunk_prefect.caching.write_scope`) each partition's fork is persisted
    in the task's result storage as soon as it is written, under
    :func:`~icechunk_prefect.caching.partition_key`, with ``base_snapshot`` (the
    commit ``fork`` builds on; default its own snapshot), and a retry or a re-run
    takes the forks found there and writes only the others. A found fork is taken
    when it can still be read (:func:`~icechunk_prefect.core.integrity.fork_problem`)
    and, written on another base of the branch of ``repo``, when nothing it wrote
    was changed since (:func:`~icechunk_prefect.core.rebase.stale_problem`).
    With ``reuse_other_bases=False`` (a writer re-writing, on a branch that moved, the
    partitions whose chunks collided) only forks written on ``base_snapshot`` itself
    are taken: the others are known to be stale. The whole batch is also cached under
    :data:`WRITE_CACHE_POLICY` (then its task run shows as ``Cached``).
    ``partition_keys`` (optional) are those keys, computed once by the caller.

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import write_metadata_task, write_partitions_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        @flow
        def all_partitions() -> int:
            fork = write_metadata_task("/tmp/doc-partitions-task", "main", ds, spec)
            plan = plan_write(fork, ds, spec)
            blocks = [ds[["t"]].isel(p.source) for p in plan.partitions]
            done = write_partitions_task(fork.fork(), blocks, plan.partitions, label="all")
            return done.written  # done.forks: one fork per partition

        assert all_partitions() == 2
        ```
    """
    from prefect.results import get_result_store

    from icechunk_prefect.caching import PersistedFork, partition_key
    from icechunk_prefect.core.rebase import ChangesCache, stale_problem
    from icechunk_prefect.reporting.progress import log_discarded, log_step
    from icechunk_prefect.storage.resolve import open_repository

    n = len(partitions)
    base = base_snapshot or fork.snapshot_id
    store = get_result_store() if cache_scope else None
    keys: list[str | None] = [None] * n
    forks: list[ForkSession | None] = [None] * n
    counts: list[dict[str, int]] = [{} for _ in range(n)]  # chunks per array, for the merge
    reused_chunks: dict[str, list[tuple[int, ...]]] = {}
    if store is not None and cache_scope:
        repository: Any = None
        changes: ChangesCache = {}
        for i, (p, ds) in enumerate(zip(partitions, datasets, strict=True)):
            key = keys[i] = (
                partition_keys[i]
                if partition_keys
                else partition_key(cache_scope, p, group, ds, fork)
            )
            found = _persisted_fork(store, key)
            if found is None or (found.base != base and not reuse_other_bases):
                continue
            problem = integrity.fork_problem(found.fork)
            if problem is None and found.base != base:
                if repo is None:
                    problem = f"it was written on {found.base}, this run builds on {base}"
                else:
                    repository = repository or open_repository(repo)
                    problem = stale_problem(repository, found.fork, found.base, base, cache=changes)
            if problem is not None:
                log_discarded(f"write {p.label}", problem)
                continue
            forks[i] = found.fork
            for path, coords in integrity.written_chunks(found.fork).items():
                reused_chunks.setdefault(path, []).extend(coords)
                counts[i][path] = len(coords)
    todo = [i for i in range(n) if forks[i] is None]

    def persist(j: int, written: ForkSession) -> None:
        i = todo[j]
        forks[i] = written
        key = keys[i]
        if store is not None and key is not None:
            store.write(PersistedFork(written, base), key=key)

    new_counts: list[dict[str, int]] = []
    steps.write_partitions(
        fork,
        [datasets[i] for i in todo],
        [partitions[i] for i in todo],
        group,
        on_written=persist,
        client=flow_dask_client(),
        cluster_timeout=cluster_timeout,
        counts=new_counts,
    )
    for i, c in zip(todo, new_counts, strict=True):
        counts[i] = c
    if len(todo) < n:
        log_step(
            f"write {label or n}",
            "%d of %d partitions reused from a failed run",
            n - len(todo),
            n,
        )
    assert all(f is not None for f in forks)
    return PartitionsWritten(
        forks=tuple(f for f in forks if f is not None),
        counts=tuple(counts),
        base_snapshot=base,
        written=len(todo),
        reused=n - len(todo),
        reused_chunks=reused_chunks,
    )


def _persisted_fork(store: Any, key: str) -> Any:
    """The :class:`~icechunk_prefect.caching.PersistedFork` under ``key``, or ``None``
    (none, or unreadable)."""
    from icechunk_prefect.caching import PersistedFork

    try:
        if not store.exists(key):
            return None
        value = store.read(key).result
    except Exception:  # a partial or foreign record: write the partition again
        return None
    return value if isinstance(value, PersistedFork) else None


@task(name="write lazy (whole graph)", task_run_name="write lazy graph", **_RETRY)
def write_lazy_graph_task(
    fork: ForkSession,
    dataset: xr.Dataset,
    plan: WritePlan,
    split_every: int | None = None,
    cache_scope: str | None = None,
    cluster_timeout: float | None = None,
    base_snapshot: str | None = None,
) -> ForkSession:
    """Run the whole dask graph of the lazy variables on the flow's cluster.

    ``cache_scope`` and ``base_snapshot`` (the commit the fork builds on) are only read
    by :data:`WRITE_CACHE_POLICY` (resume: a re-run on the same base skips the write).

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import write_lazy_graph_task, write_metadata_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        @flow
        def whole_graph() -> list[list[int]]:
            fork = write_metadata_task("/tmp/doc-graph-task", "main", ds, spec)
            plan = plan_write(fork, ds, spec)
            written = write_lazy_graph_task(fork.fork(), ds[["t"]], plan)
            return sorted(written.status().updated_chunks["/t"])

        assert whole_graph() == [[0], [1]]
        ```
    """
    return steps.write_lazy_graph(
        fork,
        dataset,
        plan,
        split_every=split_every,
        client=flow_dask_client(),
        cluster_timeout=cluster_timeout,
    )


@task(name="merge", task_run_name="merge {label}", **_RETRY)
def merge_task(
    forks: Sequence[ForkSession],
    into: ForkSession | None = None,
    label: str = "",
    counts: Sequence[Mapping[str, int]] | None = None,
) -> ForkSession:
    """Merge ``forks`` into ``into`` (refusing two forks that wrote one chunk; ``counts``:
    their chunk counts, when known, see :func:`~icechunk_prefect.core.sessions.merge_forks`).

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import merge_task, write_metadata_task, write_partition_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        @flow
        def merged_partitions() -> int:
            fork = write_metadata_task("/tmp/doc-merge-task", "main", ds, spec)
            plan = plan_write(fork, ds, spec)
            forks = [
                write_partition_task(fork.fork(), ds[["t"]].isel(p.source), p)
                for p in plan.partitions
            ]
            merged = merge_task(forks, fork, label="2 forks")
            return len(merged.status().updated_chunks["/t"])

        assert merged_partitions() == 2
        ```
    """
    return sessions.merge_forks(list(forks), into, counts=counts)


@task(name="commit", task_run_name="commit {branch}", **_RETRY)
def commit_task(
    repo: RepositoryLike,
    branch: str,
    fork: ForkSession,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    base_snapshot: str | None = None,
    key: str | None = None,
    verify_chunks: Mapping[str, Sequence[tuple[int, ...]]] | None = None,
) -> str:
    """Commit the merged fork once (idempotent by ``key``); return the snapshot id.

    ``verify_chunks`` (the chunks of forks reused from a failed run) are proved
    readable under the commit lock just before the commit (see
    :func:`icechunk_prefect.core.sessions.commit_fork`).

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import commit_task, write_metadata_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        @flow
        def metadata_only(path: str) -> str:
            fork = write_metadata_task(path, "main", ds, spec)
            plan = plan_write(fork, ds, spec)
            return commit_task(path, "main", fork, "arrays only", base_snapshot=plan.base_snapshot)

        snapshot = metadata_only("/tmp/doc-commit-task")
        assert metadata_only("/tmp/doc-commit-task") != snapshot  # a new run, a new commit
        ```
    """
    return sessions.commit_fork(
        repo,
        branch,
        fork,
        message=message,
        metadata=metadata,
        base_snapshot=base_snapshot,
        key=key,
        verify_chunks=verify_chunks,
        on_committed=faults.fail_after_commit,
    )


@dataclass(frozen=True)
class CommitAttempt:
    """What a commit attempt did: ``snapshot_id`` when it landed, else ``moved``: the
    chunks that the commits made since the run's base wrote too
    (:class:`~icechunk_prefect.core.rebase.Collisions`), to be written again on the
    new tip."""

    snapshot_id: str | None = None
    moved: Collisions | None = None


@task(name="commit", task_run_name="commit {branch}", **_RETRY)
def try_commit_task(
    repo: RepositoryLike,
    branch: str,
    fork: ForkSession,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    base_snapshot: str | None = None,
    key: str | None = None,
    verify_chunks: Mapping[str, Sequence[tuple[int, ...]]] | None = None,
) -> CommitAttempt:
    """:func:`commit_task`, except that a branch that moved with chunk collisions only
    is a result (``moved``), not a failure: the writer then re-writes the partitions
    holding them on the new tip (see :mod:`icechunk_prefect.core.rebase`).

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import try_commit_task, write_metadata_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        @flow
        def attempt(path: str) -> str | None:
            fork = write_metadata_task(path, "main", ds, spec)
            plan = plan_write(fork, ds, spec)
            done = try_commit_task(path, "main", fork, "arrays", base_snapshot=plan.base_snapshot)
            return done.snapshot_id  # None, with done.moved set, had the branch moved

        assert attempt("/tmp/doc-try-commit-task") is not None
        ```
    """
    try:
        sid = commit_task.fn(
            repo, branch, fork, message, metadata, base_snapshot, key, verify_chunks
        )
    except BranchMovedError as moved:
        return CommitAttempt(moved=moved.collisions)
    return CommitAttempt(snapshot_id=sid)


@task(name="validate", task_run_name="validate before commit", **_RETRY)
def validate_task(
    fork: ForkSession,
    plan: WritePlan,
    schema: Mapping[str, checks_mod.VariableSchema] | None = None,
    checks: Sequence[checks_mod.Check] = (),
) -> ForkSession:
    """The validation gate: coverage, schema and user checks on the merged fork.

    Raises :class:`~icechunk_prefect.errors.CheckFailedError` (not retried) with a
    report of every problem; returns the fork unchanged when all checks pass.

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import validate_task, write_metadata_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        from icechunk_prefect.errors import CheckFailedError

        @flow
        def gate() -> str:
            fork = write_metadata_task("/tmp/doc-validate-task", "main", ds, spec)
            plan = plan_write(fork, ds, spec)
            try:
                validate_task(fork, plan)  # nothing of "t" was written yet
            except CheckFailedError as exc:
                return str(exc)
            return "passed"

        assert "t" in gate()
        ```
    """
    checks_mod.run_checks(fork, plan, schema, checks)
    return fork


@task(name="check reused forks", task_run_name="check {label}", **_RETRY)
def check_reused_task(
    forks: Sequence[ForkSession],
    label: str = "",
    repo: RepositoryLike | None = None,
    fork_base: str | None = None,
    base_snapshot: str | None = None,
) -> list[str | None]:
    """For each fork reused from a failed run: why it cannot be reused, or ``None``.

    A reused fork is merged only when its base snapshot and every chunk it wrote can
    still be read (see :mod:`icechunk_prefect.core.integrity`) and, written on
    ``fork_base`` while this run builds on another ``base_snapshot`` of ``repo``'s
    branch, when nothing it wrote was changed in between
    (:func:`~icechunk_prefect.core.rebase.stale_problem`).

    Example:
        ```python
        import numpy as np, xarray as xr
        from prefect import flow
        from icechunk_prefect.core.spec import WriteSpec
        from icechunk_prefect.core.steps import plan_write
        from icechunk_prefect.tasks import check_reused_task, write_metadata_task

        ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
        spec = WriteSpec(mode="w", partition_size=4)

        @flow
        def reusable() -> list[str | None]:
            fork = write_metadata_task("/tmp/doc-check-task", "main", ds, spec)
            return check_reused_task([fork], label="1 fork")

        assert reusable() == [None]  # its snapshot and chunks can all be read
        ```
    """
    from icechunk_prefect.core.rebase import ChangesCache, stale_problem
    from icechunk_prefect.storage.resolve import open_repository

    problems = [integrity.fork_problem(f) for f in forks]
    if repo is None or not fork_base or not base_snapshot or fork_base == base_snapshot:
        return problems
    repository = open_repository(repo)
    cache: ChangesCache = {}
    return [
        p or stale_problem(repository, f, fork_base, base_snapshot, cache=cache)
        for p, f in zip(problems, forks, strict=True)
    ]
