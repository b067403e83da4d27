"""A Dask cluster started by hand (``dask scheduler`` + ``dask worker`` processes), as an
existing cluster would be."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def hand_started_cluster(
    folder: Path, *, workers: int = 2, nanny: bool = True
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """Scheduler and ``workers`` worker processes on loopback, whose environment holds no
    Prefect setting and no storage credential. Yields the address and the worker
    processes (with ``nanny=False`` each is the worker itself: killed, it stays dead)."""
    from distributed import Client

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
    env["PREFECT_HOME"] = str(folder / "worker-prefect-home")  # no profile, no API URL
    env["PYTHONPATH"] = str(ROOT)
    scheduler_file = folder / "scheduler.json"
    logs = (folder / "cluster.log").open("wb")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                env=env, cwd=ROOT, stdout=logs, stderr=logs,
            )
        )  # fmt: skip
        for _ in range(1200):
            if scheduler_file.exists() and scheduler_file.stat().st_size:
                break
            if procs[0].poll() is not None:
                raise RuntimeError("dask scheduler exited; see cluster.log")
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address,
                     "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                     "--host", "127.0.0.1", "--name", f"hand-{i}",
                     "--nanny" if nanny else "--no-nanny"],
                    env=env, cwd=ROOT, stdout=logs, stderr=logs,
                )
            )  # fmt: skip
        with Client(address) as client:
            client.wait_for_workers(workers, timeout=300)
        yield address, procs[1:]
    finally:
        _stop(procs)
        logs.close()
