"""Issue 7: commits racing on object storage (a real local S3 server, moto): disjoint
writers all land through rebase with bounded, jittered retries; writers of the same
chunk get a CommitConflictError and only one of them lands."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.fault_helpers import MotoRepository

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for _ in range(300):
            try:
                client.create_bucket(Bucket="race")
                break
            except Exception:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def _repo(endpoint: str, prefix: str) -> tuple[MotoRepository, str]:
    source = MotoRepository(endpoint, "race", prefix)
    repo = source.open_repository(create=True)
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(8, 4), chunks=(1, 4), dtype="f8")
    return source, session.commit("create a")


def _racers(
    source: MotoRepository, base: str, rows: list[int], go: Path
) -> list[subprocess.CompletedProcess]:
    script = textwrap.dedent(
        """
        import sys, time, zarr
        from pathlib import Path
        from icechunk_prefect.errors import CommitConflictError
        from icechunk_prefect.core.sessions import commit_fork
        from tests.fault_helpers import MotoRepository

        endpoint, prefix, base, row, go = sys.argv[1:6]
        source = MotoRepository(endpoint, "race", prefix)
        fork = source.open_repository().writable_session("main").fork()
        assert fork.snapshot_id == base
        zarr.open_array(fork.store, path="a", mode="r+")[int(row)] = float(row) + 1
        Path(go + f".ready-{row}-{id(fork)}").touch()
        while not Path(go).exists():
            time.sleep(0.01)
        try:
            sid = commit_fork(source, "main", fork, message=f"row {row}", base_snapshot=base,
                              key=f"writer-{row}-{len(sys.argv)}", rebase_tries=10)
            print("COMMITTED", sid)
        except CommitConflictError as exc:
            print("CONFLICT", exc)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, source.endpoint, source.prefix, base, str(r), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in rows
    ]
    # release them together, once every writer has forked at the same base
    while len(list(go.parent.glob(go.name + ".ready-*"))) < len(rows):
        assert all(p.poll() is None for p in procs), "a writer ended before the start"
        time.sleep(0.05)
    go.touch()
    out = []
    for p in procs:
        stdout, stderr = p.communicate()
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_disjoint_racing_commits_all_land(s3_endpoint, tmp_path):
    source, base = _repo(s3_endpoint, "disjoint")
    results = _racers(source, base, [0, 1, 2, 3], tmp_path / "go")
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    assert all("COMMITTED" in r.stdout for r in results), [r.stdout for r in results]
    repo = source.open_repository()
    history = list(repo.ancestry(branch="main"))
    assert len(history) == 2 + 4  # initial, create, one commit per writer
    a = np.asarray(zarr.open_array(repo.readonly_session("main").store, path="a", mode="r")[:])
    np.testing.assert_array_equal(a[:4, 0], [1.0, 2.0, 3.0, 4.0])


def test_same_chunk_racing_commits_one_lands(s3_endpoint, tmp_path):
    source, base = _repo(s3_endpoint, "overlap")
    results = _racers(source, base, [5, 5], tmp_path / "go")
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    outcomes = sorted(r.stdout.split()[0] for r in results)
    assert outcomes == ["COMMITTED", "CONFLICT"], [r.stdout for r in results]
    conflict = next(r.stdout for r in results if r.stdout.startswith("CONFLICT"))
    assert "Nothing of this run was committed" in conflict
    assert "'/a': 1 chunk(s) [[5, 0]]" in conflict  # names the array and the chunk
    assert "'row 5'" in conflict  # and the other commit
    history = list(source.open_repository().ancestry(branch="main"))
    assert len(history) == 3
