"""Fault-injection hooks for crash-safety tests (off unless an environment variable is set).

Each hook is named by an environment variable holding a *marker file* path; the
variable must be set in the process that runs the step (the flow process for
``pause_before_commit``, the Dask worker for ``fail_after_commit``).

- ``ICECHUNK_PREFECT_FAULT_PAUSE_BEFORE_COMMIT``: the flow process creates the
  marker, then waits (until the marker is removed) just before submitting the commit
  step: a test kills it there with SIGKILL ("crash between merge and commit").
- ``ICECHUNK_PREFECT_FAULT_FAIL_AFTER_COMMIT``: the commit step raises right after
  its commit landed, once (the marker remembers it): the retried step must find its
  own commit instead of committing again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["FAIL_AFTER_COMMIT", "PAUSE_BEFORE_COMMIT", "fail_after_commit", "pause_before_commit"]

PAUSE_BEFORE_COMMIT = "ICECHUNK_PREFECT_FAULT_PAUSE_BEFORE_COMMIT"
FAIL_AFTER_COMMIT = "ICECHUNK_PREFECT_FAULT_FAIL_AFTER_COMMIT"


class InjectedFault(RuntimeError):
    """Raised by a fault hook (a test asked for it)."""


def pause_before_commit() -> None:
    """Create the marker and wait while it exists (hook: the flow is about to commit)."""
    marker = os.environ.get(PAUSE_BEFORE_COMMIT)
    if not marker:
        return
    path = Path(marker)
    path.write_text(str(os.getpid()))
    while path.exists():
        time.sleep(0.05)


def fail_after_commit(snapshot_id: str) -> None:
    """Raise once after a commit landed (hook: the commit's response is lost)."""
    marker = os.environ.get(FAIL_AFTER_COMMIT)
    if not marker or Path(marker).exists():
        return
    Path(marker).write_text(snapshot_id)
    raise InjectedFault(f"injected fault: commit {snapshot_id} landed, then the step failed")
