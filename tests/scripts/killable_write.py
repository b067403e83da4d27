"""Run one write of tests/resume_cases.py on an existing cluster; the test kills this process.

Usage: python tests/scripts/killable_write.py SCENARIO REPO MARKS SCHEDULER_ADDRESS
(result storage: $ICECHUNK_PREFECT_RESULT_STORAGE, Prefect API: $PREFECT_API_URL).
"""

from __future__ import annotations

import sys
from typing import Any

from icechunk_prefect import IcechunkDaskTaskRunner, to_icechunk
from tests.resume_cases import write_call

if __name__ == "__main__":
    scenario, repo, marks, address = sys.argv[1:5]
    ds, kwargs = write_call(scenario, marks)
    runner: Any = IcechunkDaskTaskRunner(address=address)  # (prefect-dask's variance)
    to_icechunk.with_options(task_runner=runner)(ds, repo, **kwargs)
