"""Cache keys that let a new run of a failed write skip the steps it already did (resume).

A write persists two kinds of task results in a result storage shared by the
flow process and the Dask workers:

- the **metadata fork** (arrays created or resized), keyed on the repository,
  the branch, the branch's *tip* when the step runs (its id and the time it was
  written, see :func:`snapshot_identity`), a fingerprint of the whole
  dataset (schema and data tokens), the write's parameters and the code;
- each **partition fork**, persisted as a :class:`PersistedFork` (the fork and
  the commit it was written on, its *base*) and keyed on a *scope* computed by the
  writer (repository, branch and the dataset's schema), the partition's target
  region, a fingerprint of the partition's source block (``dask.base.tokenize``),
  the Icechunk node ids of the arrays it writes, and the code.

The partition key holds no branch tip: a re-run after other commits (an append
landed meanwhile) finds the partitions its failed run wrote, and reuses each one
whose chunks nobody changed since its base and whose arrays keep the layout it
wrote into (:func:`~icechunk_prefect.core.rebase.stale_problem`: the diff the
commit reads too); the others are written again. Forks are reused only when they
can still be read, too (:func:`~icechunk_prefect.core.integrity.fork_problem`:
garbage collection).

Why the node ids: a partition fork refers to arrays by node id. Arrays created
again (a re-run of a ``mode="w"`` write on another tip, a repository deleted and
created again at the same place) get new, random node ids, so a partition fork
written into the old arrays is never merged into the new ones: its key differs.

A key that cannot be computed (no repository yet, a dataset dask cannot
tokenize deterministically) means "do not cache", never "reuse".
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import xarray as xr
from dask.base import tokenize
from icechunk.session import ForkSession
from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.filesystems import WritableFileSystem
from prefect.utilities.hashing import hash_objects

from icechunk_prefect.core.planning import Partition, array_path
from icechunk_prefect.core.spec import WriteSpec
from icechunk_prefect.storage.resolve import resolve_repository

__all__ = [
    "RESULT_STORAGE_ENV",
    "MetadataCachePolicy",
    "PersistedFork",
    "ResultStorageLike",
    "WriteCachePolicy",
    "default_result_storage",
    "node_ids",
    "partition_key",
    "resolve_result_storage",
    "schema_fingerprint",
    "snapshot_identity",
    "write_scope",
]

RESULT_STORAGE_ENV = "ICECHUNK_PREFECT_RESULT_STORAGE"
"""Environment variable naming the folder for persisted forks (overrides the default)."""

ResultStorageLike = str | os.PathLike[str] | WritableFileSystem


def default_result_storage() -> Path:
    """Folder for persisted forks: ``$ICECHUNK_PREFECT_RESULT_STORAGE``, else
    ``PREFECT_LOCAL_STORAGE_PATH/icechunk-prefect``.

    Every process of a run (flow and Dask workers) must see the same folder: on a
    multi-machine cluster pass a shared ``result_storage`` (e.g. an S3 bucket block).
    """
    env = os.environ.get(RESULT_STORAGE_ENV)
    if env:
        return Path(env).expanduser()
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    return Path(PREFECT_LOCAL_STORAGE_PATH.value()).expanduser() / "icechunk-prefect"


def resolve_result_storage(storage: ResultStorageLike | None) -> WritableFileSystem | Path:
    """What Prefect's ``result_storage`` takes for ``storage``: a folder (a ``str`` or
    path is always a local folder; default: :func:`default_result_storage`), or a
    saved filesystem block (e.g. an S3 bucket) as it is."""
    if isinstance(storage, WritableFileSystem):
        return storage
    path = default_result_storage() if storage is None else Path(os.fspath(storage))
    return path.expanduser().absolute()


def node_ids(fork: ForkSession, group: str | None, names: Iterable[str]) -> dict[str, str]:
    """Icechunk node ids of the arrays ``names`` as the fork sees them."""
    return {n: fork.get_node_id(array_path(group, n)) for n in sorted(names)}


def schema_fingerprint(ds: xr.Dataset) -> str:
    """A token of what the dataset's arrays look like (no data values)."""
    desc = {
        str(n): (
            tuple(map(str, v.dims)),
            str(v.dtype),
            tuple(v.shape),
            sorted((str(k), repr(x)) for k, x in v.attrs.items()),
            sorted((str(k), repr(x)) for k, x in v.encoding.items() if k != "source"),
        )
        for n, v in ds.variables.items()
    }
    return tokenize(desc, sorted((str(k), repr(x)) for k, x in ds.attrs.items()))


def snapshot_identity(repository: Any, snapshot_id: str) -> str:
    """``snapshot_id`` with the time it was written, for cache keys.

    Snapshot ids are random, except the first one: Icechunk gives the initial
    snapshot of every repository the same id (``1CECHNKREP0F1RSTCMT0``). With the
    time added, a repository deleted and created again at the same place never
    matches the forks that a run wrote into the old one (their chunks are gone).
    """
    info = repository.lookup_snapshot(snapshot_id)
    return f"{snapshot_id}@{info.written_at.isoformat()}"


def write_scope(repo_description: str, branch: str, ds: xr.Dataset) -> str:
    """The part of every partition key shared by one write: where and what (not
    from which tip: see the module doc)."""
    return tokenize("icechunk-prefect-scope-2", repo_description, branch, schema_fingerprint(ds))


@dataclass(frozen=True)
class PersistedFork:
    """A partition's fork as persisted for resume, with ``base``: the commit (branch
    tip) it was written on, which a later run compares with its own tip."""

    fork: ForkSession
    base: str


@cache
@cache
def _code_token(*funcs: Callable[..., Any]) -> str:
    """A token of the code that writes (once per process: reading source is slow)."""
    from importlib.metadata import version

    sources = []
    for f in funcs:
        try:
            sources.append(inspect.getsource(f))
        except (OSError, TypeError):  # pragma: no cover - no source available
            sources.append(f.__qualname__)
    return tokenize(sources, version("icechunk"), version("zarr"), version("xarray"))


def _task_source(task_ctx: TaskRunContext, inputs: Mapping[str, Any], flow_parameters: Any) -> str:
    return TASK_SOURCE.compute_key(task_ctx, dict(inputs), flow_parameters) or ""


@dataclass
class MetadataCachePolicy(CachePolicy):
    """Cache key for the metadata step: repository, branch, its tip now, dataset, arguments.

    The tip is read from the repository when the key is computed (on the worker
    that runs the step); without a repository or branch there is no key (no caching).
    """

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        from icechunk_prefect.core import steps

        try:
            source = resolve_repository(inputs["repo"])
            repository = source.open_repository()
            tip = snapshot_identity(repository, repository.lookup_branch(inputs["branch"]))
        except Exception:
            return None  # nothing to resume from
        ds = inputs["dataset"]
        spec: WriteSpec = inputs.get("spec") or WriteSpec()
        args = {k: repr(getattr(spec, k)) for k in ("group", "mode", "append_dim", "region")}
        return hash_objects(
            "metadata",
            source.describe(),
            inputs["branch"],
            tip,
            tokenize(ds),
            schema_fingerprint(ds),
            args,
            tokenize(spec.encoding),
            _task_source(task_ctx, inputs, flow_parameters),
            _code_token(steps.write_metadata),
            raise_on_failure=True,
        )


def partition_key(
    scope: str, partition: Partition, group: str | None, dataset: xr.Dataset, fork: ForkSession
) -> str:
    """The key under which one partition's fork is persisted (see the module doc):
    the write's scope, the partition's target region, its source block's token, the
    node ids of the arrays it writes, and the code that writes it."""
    from icechunk_prefect.core import steps

    key = hash_objects(
        "partition",
        scope,
        partition.key,
        group,
        tokenize(dataset),
        node_ids(fork, group, partition.variables),
        _code_token(steps.write_partition, steps.write_partitions),
        raise_on_failure=True,
    )
    assert key is not None
    return f"icechunk-prefect-partition-{key}"


@dataclass
class WriteCachePolicy(CachePolicy):
    """Cache key for a lazy write (a batch of partitions, one partition, or the whole graph).

    Needs the ``cache_scope`` input (see :func:`write_scope`); without it there is no
    key. The key also holds the partition's region, the source block's dask token
    and the node ids of the arrays written, so a fork is reused only into the same
    arrays with the same data. A batch's key holds no tip (its result records the
    base its forks were written on; the writer checks them against its own); a
    lone partition's or the whole graph's holds the ``base_snapshot`` input.
    """

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        from icechunk_prefect.core import steps

        scope = inputs.get("cache_scope")
        if not scope:
            return None
        fork: ForkSession = inputs["fork"]
        if "partitions" in inputs:  # a batch: the keys of its partitions
            keys = inputs.get("partition_keys") or [
                partition_key(scope, p, inputs.get("group"), ds, fork)
                for p, ds in zip(inputs["partitions"], inputs["datasets"], strict=True)
            ]
            return hash_objects(
                "write-batch", keys, _task_source(task_ctx, inputs, flow_parameters)
            )
        ds: xr.Dataset = inputs["dataset"]
        partition: Partition | None = inputs.get("partition")
        plan = inputs.get("plan")
        group = inputs.get("group") if partition is not None else getattr(plan, "group", None)
        names = partition.variables if partition is not None else tuple(map(str, ds.variables))
        where = partition.key if partition is not None else repr(getattr(plan, "region", None))
        # A lone partition's or a whole graph's result records no base: key on it.
        extra = {
            "split_every": repr(inputs.get("split_every")),
            "base": inputs.get("base_snapshot"),
        }
        return hash_objects(
            "write",
            scope,
            where,
            group,
            tokenize(ds),
            node_ids(fork, group, names),
            extra,
            _task_source(task_ctx, inputs, flow_parameters),
            _code_token(steps.write_partition, steps.write_lazy_graph),
            raise_on_failure=True,
        )
