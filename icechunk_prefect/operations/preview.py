"""What an append or backfill would write, without writing (``icechunk-prefect plan``).

Example:
    ```python
    from datetime import date
    from icechunk_prefect.operations import create_dataset
    from icechunk_prefect.operations.preview import preview
    from icechunk_prefect.operations.sources import SyntheticSource

    source = SyntheticSource(data_start=date(2024, 1, 1), periods=20, nlat=4, nlon=8, time_chunk=5)
    create_dataset("/tmp/doc-ops-preview", source, overwrite=True)
    # no source given: the one recorded with the dataset
    plan = preview(
        "backfill", "/tmp/doc-ops-preview", start=date(2024, 1, 3), end=date(2024, 1, 12)
    )
    print(plan.describe()["partitions"])
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from typing import Any, Literal

from icechunk_prefect.errors import InputValidationError
from icechunk_prefect.operations.dataset_source import ChosenSource, choose_source
from icechunk_prefect.operations.plans import GapPolicy, prepare_append, prepare_backfill
from icechunk_prefect.operations.windows import WindowPlan
from icechunk_prefect.storage.resolve import resolve_repository

__all__ = ["preview"]


def preview(
    operation: Literal["append", "backfill"],
    repository: str,
    source: Any = None,
    *,
    start: date | None = None,
    end: date | None = None,
    variables: Sequence[str] | None = None,
    on_gap: GapPolicy = "error",
    branch: str = "main",
    group: str | None = None,
    partition_size: int | None = None,
) -> WindowPlan:
    """The plan the append or backfill flow would run with these parameters (nothing written).

    ``source`` as the flows take it; ``None``: the source recorded with the dataset
    (the plan's ``source`` note says which one)."""
    if operation == "backfill" and (start is None or end is None):
        raise InputValidationError(
            f"A backfill plan needs both a first and a last day (seen first day {start}, last "
            f"day {end}); give both (YYYY-MM-DD, --first-day and --last-day on the command line)."
        )
    repo = resolve_repository(repository)
    chosen = choose_source(source, repo, branch, group)
    src = chosen.source
    if operation == "append":
        plan, _ = prepare_append(
            repo,
            src,
            branch=branch,
            group=group,
            start=start,
            end=end,
            on_gap=on_gap,
            partition_size=partition_size,
        )
        return _noted(plan, chosen)
    assert start is not None and end is not None
    plan, _ = prepare_backfill(
        repo,
        src,
        start=start,
        end=end,
        variables=variables,
        branch=branch,
        group=group,
        partition_size=partition_size,
    )
    return _noted(plan, chosen)


def _noted(plan: WindowPlan, chosen: ChosenSource) -> WindowPlan:
    return replace(plan, notes=(*plan.notes, f"Source: {chosen.describe()}."))
