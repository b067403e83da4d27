"""The overlap check of ``merge_forks``: exact, with chunk counts read by the caller or here."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import icechunk
import numpy as np
import pytest
import zarr
from icechunk.session import ForkSession

from icechunk_prefect import merge_forks
from icechunk_prefect.core.integrity import chunk_counts
from icechunk_prefect.errors import DoubleWriteError


def _forks(
    tmp_path: Any, rows: Sequence[Sequence[int]]
) -> tuple[icechunk.Repository, list[ForkSession]]:
    """One fork per entry of ``rows``, each writing those rows of arrays ``a`` and ``b``."""
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "r")))
    session = repo.writable_session("main")
    for name in ("a", "b"):
        zarr.create_array(session.store, name=name, shape=(8, 4), chunks=(1, 4), dtype="f8")
    session.commit("create")
    blob = pickle.dumps(repo.writable_session("main").fork())
    forks = []
    for i, written in enumerate(rows):
        child: ForkSession = pickle.loads(blob)
        for name in ("a", "b"):  # the same coordinates in two arrays are no overlap
            for r in written:
                zarr.open_array(child.store, path=name, mode="r+")[r] = np.full(4, i)
        forks.append(pickle.loads(pickle.dumps(child)))  # as a worker sends it back
    return repo, forks


@pytest.mark.parametrize("with_counts", [False, True])
def test_disjoint_forks_merge_every_chunk(tmp_path, with_counts):
    _, forks = _forks(tmp_path, [[0, 1], [2], [3, 4, 5]])
    counts = [chunk_counts(f) for f in forks] if with_counts else None
    merged = merge_forks(forks, counts=counts)
    chunks = merged.status().updated_chunks
    assert sorted(chunks["/a"]) == sorted(chunks["/b"]) == [[r, 0] for r in range(6)]


@pytest.mark.parametrize("with_counts", [False, True])
def test_overlap_refused_and_named(tmp_path, with_counts):
    _, forks = _forks(tmp_path, [[0, 1], [2], [3, 1]])
    counts = [chunk_counts(f) for f in forks] if with_counts else None
    with pytest.raises(DoubleWriteError, match=r"\(0 and 2 of this merge\) wrote chunk \[1, 0\]"):
        merge_forks(forks, counts=counts)
    # the fork merged into is left as it was: nothing of the others leaked into it
    assert sorted(forks[0].status().updated_chunks["/a"]) == [[0, 0], [1, 0]]


def test_overlap_found_among_many_forks(tmp_path):
    """One shared chunk among many forks: the counts differ by one, the check names it."""
    rows = [[i] for i in range(8)] + [[5]]
    _, forks = _forks(tmp_path, rows)
    with pytest.raises(DoubleWriteError, match=r"\(5 and 8 of this merge\) wrote chunk \[5, 0\]"):
        merge_forks(forks, counts=[chunk_counts(f) for f in forks])


def test_into_is_not_checked_against_the_forks(tmp_path):
    """``into`` (e.g. the metadata fork) may hold chunks the forks rewrite; the forks
    among themselves may not."""
    _, (into, *forks) = _forks(tmp_path, [[0], [0], [1]])
    merged = merge_forks(forks, into)
    assert sorted(merged.status().updated_chunks["/a"]) == [[0, 0], [1, 0]]
    _, (into, *forks) = _forks(tmp_path / "2", [[0], [1], [1]])
    with pytest.raises(DoubleWriteError, match=r"\(0 and 1 of this merge\)"):
        merge_forks(forks, into)


def test_counts_must_match_the_forks(tmp_path):
    _, forks = _forks(tmp_path, [[0], [1]])
    with pytest.raises(ValueError, match="1 chunk counts for 2 forks"):
        merge_forks(forks, counts=[{}])
