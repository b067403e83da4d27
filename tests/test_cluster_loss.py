"""Issue 12: a cluster that loses every worker for good ends the run Failed, in bounded time.

The workers are ``dask worker --no-nanny`` processes (nothing restarts them); the test
SIGKILLs all of them while the partitions are being written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.cluster_helpers import ROOT, hand_started_cluster
from tests.helpers import history

TIMEOUT = 3.0  # cluster_timeout given to the flow (seconds)


def test_all_workers_killed_flow_fails_within_bound(repo_path, tmp_path):
    marks, outcome = tmp_path / "marks", tmp_path / "outcome.json"
    marks.mkdir()
    for loc in ("0_0", "1_0", "2_0", "3_0"):
        (marks / f"hang-{loc}").touch()
    with hand_started_cluster(tmp_path, workers=2, nanny=False) as (address, workers):
        script = textwrap.dedent(
            f"""
            import json
            from icechunk_prefect import IcechunkDaskTaskRunner, to_icechunk
            from tests.fault_helpers import instrument
            from tests.helpers import small_dataset

            ds = instrument(small_dataset(), "a", {str(marks)!r})
            runner = IcechunkDaskTaskRunner(address={address!r})
            state = to_icechunk.with_options(task_runner=runner)(
                ds, {repo_path!r}, mode="w", partition_size=10, cluster_timeout={TIMEOUT},
                resume=False, return_state=True,
            )
            try:
                state.result()
                error = None
            except Exception as exc:
                error = [type(exc).__name__, str(exc)]
            json.dump({{"state": state.name, "error": error}}, open({str(outcome)!r}, "w"))
            """
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        flow_proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
        try:
            deadline = time.monotonic() + 240
            while not list(marks.glob("hanging-*")) and time.monotonic() < deadline:
                assert flow_proc.poll() is None, "the flow ended before its partitions ran"
                time.sleep(0.1)
            assert list(marks.glob("hanging-*")), "no partition started in time"
            for worker in workers:  # every worker, for good
                os.kill(worker.pid, signal.SIGKILL)
            killed = time.monotonic()
            # Bound: 4 tries of (TIMEOUT + polling) plus Prefect's retry delays (2, 4, 8 s
            # with jitter up to 1.5x) and a generous margin for a loaded 2-core machine.
            flow_proc.wait(timeout=120)
            elapsed = time.monotonic() - killed
        finally:
            if flow_proc.poll() is None:
                flow_proc.kill()
                flow_proc.wait()
            for hang in marks.glob("hang-*"):
                hang.unlink()
    seen = json.loads(outcome.read_text())
    assert seen["state"] == "Failed"
    assert seen["error"][0] == "ClusterUnavailableError"
    assert "the cluster has no workers" in seen["error"][1]
    assert elapsed < 120
    assert len(history(repo_path)) == 1  # the repository's first snapshot only: 0 commits
