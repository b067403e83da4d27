"""Operational flows: create, append (scheduled), backfill (UI-triggered) and maintenance.

Example:
    ```python
    from icechunk_prefect.operations import (
        append_dataset,
        backfill_dataset,
        create_dataset,
        maintain_repository,
    )

    print([f.name for f in (create_dataset, append_dataset, backfill_dataset)])
    ```
"""

from icechunk_prefect.operations.flows import (
    OperationResult,
    append_dataset,
    backfill_dataset,
    create_dataset,
    write_on_cluster,
)
from icechunk_prefect.operations.maintenance import (
    MaintenanceReport,
    maintain_repository,
    run_maintenance,
)
from icechunk_prefect.operations.plans import GapPolicy, prepare_append, prepare_backfill

__all__ = [
    "GapPolicy",
    "MaintenanceReport",
    "OperationResult",
    "append_dataset",
    "backfill_dataset",
    "create_dataset",
    "maintain_repository",
    "prepare_append",
    "prepare_backfill",
    "run_maintenance",
    "write_on_cluster",
]
