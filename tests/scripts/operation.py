"""Run one operational flow in this process, as a deployment run would, and print its outcome.

Usage: python tests/scripts/operation.py FLOW PARAMETERS_JSON
(FLOW: create, append or backfill; Prefect API: $PREFECT_API_URL; fault hooks from the
environment, see icechunk_prefect.testing.faults). Prints ``OK <snapshot or ->`` or
``ERROR <class>: <message>`` on its last line.
"""

from __future__ import annotations

import json
import sys

from icechunk_prefect.operations import append_dataset, backfill_dataset, create_dataset

FLOWS = {"create": create_dataset, "append": append_dataset, "backfill": backfill_dataset}

if __name__ == "__main__":
    name, parameters = sys.argv[1], json.loads(sys.argv[2])
    state = FLOWS[name](**parameters, return_state=True)
    try:
        result = state.result()
    except Exception as exc:
        print(f"ERROR {type(exc).__name__}: {exc}")
    else:
        print(f"OK {result.snapshot_id or '-'}")
