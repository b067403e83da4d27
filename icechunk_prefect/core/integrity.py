"""Proof that what a commit will reference can still be read (plain functions, no Prefect).

A resumed run reuses forks that a failed run persisted (see
:mod:`icechunk_prefect.caching`). Those forks refer to objects written long ago:
their base snapshot (an anonymous snapshot of the failed run) and the chunk
objects of their writes. Garbage collection deletes such objects once they are
older than its grace period, because no branch or tag reaches them. A reused fork
is therefore only merged when everything it refers to is still there:

- :func:`fork_problem` opens the fork's base snapshot (its ``status()``) and probes
  every native chunk it wrote; the writer discards a reused fork that fails and
  writes that partition again, in the same run;
- :func:`unreadable_chunks` probes chunks through any session or fork: the commit
  step calls it on the chunks of reused forks, under the repository's commit lock,
  right before it commits (the last check of the validation gate).

A probe reads one byte of the chunk through Icechunk (chunks inlined in the
manifest need no object; virtual chunks are not probed). Measured on a 2-core
machine, local filesystem: about 0.3 s per 1,000 chunks (``benchmarks/run.py``,
"gate: probe 1,000 reused chunks").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import zarr
from icechunk.session import ForkSession

__all__ = [
    "PROBE_CONCURRENCY",
    "Chunks",
    "chunk_counts",
    "chunk_keys",
    "fork_problem",
    "unreadable_chunks",
    "written_chunks",
]

PROBE_CONCURRENCY = 64
"""Chunk probes in flight at once."""

Chunks = Mapping[str, Iterable[tuple[int, ...]]]


def written_chunks(fork: Any) -> dict[str, list[tuple[int, ...]]]:
    """The chunks ``fork`` (a session or fork) wrote, by array path (``/group/name``)."""
    return {
        path: sorted({tuple(c) for c in coords})
        for path, coords in fork.status().updated_chunks.items()
        if coords
    }


def chunk_keys(store: Any, chunks: Chunks) -> list[str]:
    """Zarr store keys of ``chunks`` (array path -> chunk coordinates) in ``store``."""
    keys: list[str] = []
    for path, coords in chunks.items():
        name = path.strip("/")
        arr = zarr.open_array(store, path=name, mode="r")
        prefix = f"{name}/" if name else ""
        keys.extend(prefix + arr.metadata.encode_chunk_key(tuple(c)) for c in coords)
    return keys


async def _probe(store: Any, keys: list[str], limit: int) -> list[str]:
    from zarr.abc.store import RangeByteRequest
    from zarr.core.buffer import default_buffer_prototype

    prototype = default_buffer_prototype()
    gate = asyncio.Semaphore(limit)

    async def one(key: str) -> str | None:
        async with gate:
            try:
                await store.get(key, prototype, byte_range=RangeByteRequest(0, 1))
            except Exception as exc:  # object not found, storage error
                return f"{key}: {str(exc).splitlines()[0]}"
        return None

    found = await asyncio.gather(*(one(k) for k in keys))
    return [f for f in found if f is not None]


def unreadable_chunks(fork: Any, chunks: Chunks, *, limit: int = PROBE_CONCURRENCY) -> list[str]:
    """The chunks of ``chunks`` that cannot be read through ``fork``'s store, with why.

    Example:
        ```python
        import icechunk, numpy as np, zarr
        from icechunk_prefect.core.integrity import unreadable_chunks, written_chunks

        repo = icechunk.Repository.open_or_create(
            icechunk.local_filesystem_storage("/tmp/doc-integrity"))
        session = repo.writable_session("main")
        a = zarr.create_array(session.store, name="a", shape=(4, 256), chunks=(1, 256),
                              dtype="f8", overwrite=True)
        a[:] = np.random.rand(4, 256)
        assert unreadable_chunks(session, written_chunks(session)) == []
        ```
    """
    from zarr.core.sync import sync

    store = fork.store
    try:
        keys = chunk_keys(store, chunks)
    except Exception as exc:
        return [f"cannot open the arrays ({str(exc).splitlines()[0]})"]
    if not keys:
        return []
    return sync(_probe(store, keys, limit))


def fork_problem(fork: ForkSession) -> str | None:
    """Why a persisted ``fork`` cannot be reused (``None``: it can).

    Its base snapshot must open and every native chunk it wrote must be readable.
    """
    try:
        chunks = written_chunks(fork)
    except Exception as exc:  # its base snapshot was deleted
        return (
            f"its base snapshot {fork.snapshot_id} cannot be read, garbage collected since? "
            f"({str(exc).splitlines()[0]})"
        )
    bad = unreadable_chunks(fork, chunks)
    if bad:
        return f"{len(bad)} of its chunk(s) cannot be read, garbage collected since? e.g. {bad[0]}"
    return None


def chunk_counts(fork: ForkSession) -> dict[str, int]:
    """How many chunks a fork has written, by array path (what
    :func:`~icechunk_prefect.core.sessions.merge_forks` checks; cheapest where the fork
    was written, e.g. on the worker)."""
    return {path: len(coords) for path, coords in fork.status().updated_chunks.items()}
