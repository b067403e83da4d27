"""Issue 12: a repository whose creation was killed half way is completed on the re-run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import icechunk
import pytest

from icechunk_prefect import LocalRepository, to_icechunk
from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.storage.local import interrupted_create
from tests.helpers import flow_run_logs, history, read_back, small_dataset

_CREATE = """
import sys, icechunk
storage = icechunk.local_filesystem_storage(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
icechunk.Repository.create(storage)
"""


def _killed_during_create(path: Path, tries: int = 40) -> list[str]:
    """SIGKILL a process inside ``Repository.create`` as soon as its first object shows;
    repeat until the kill landed before the create finished. Returns what it left."""
    for _ in range(tries):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", _CREATE, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        first = path / "snapshots"
        while not first.exists() and proc.poll() is None:
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and not icechunk.Repository.exists(
            icechunk.local_filesystem_storage(str(path))
        ):
            return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    pytest.fail(f"no kill landed inside Repository.create in {tries} tries")


def test_killed_create_is_completed_by_the_rerun(runner, repo_path):
    left = _killed_during_create(Path(repo_path))
    assert left and all(x.startswith("snapshots") or x.startswith("transactions") for x in left)
    assert interrupted_create(Path(repo_path))

    ds = small_dataset()
    state = to_icechunk.with_options(task_runner=runner)(
        ds, repo_path, mode="w", partition_size=20, return_state=True
    )
    assert state.is_completed(), state.message
    commits = history(repo_path)
    assert len(commits) == 2 and commits[0].id == state.result()
    assert read_back(repo_path).identical(ds.compute())
    said = "interrupted repository creation"
    logs = flow_run_logs(state.state_details.flow_run_id, contains=said)
    assert any(said in m for m in logs), logs


def test_folder_with_anything_else_is_still_refused(repo_path):
    left = _killed_during_create(Path(repo_path))
    assert left
    (Path(repo_path) / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="not an Icechunk repository and is not empty"):
        LocalRepository(repo_path).open_repository(create=True)
    assert (Path(repo_path) / "notes.txt").read_text() == "mine"
