"""Serve the operational deployments from this process (no work pool needed).

    uv run python deployments/serve.py --repository /data/climate.icechunk

creates (or updates) four deployments on the Prefect API in ``PREFECT_API_URL``
and runs their flow runs here until stopped:

- ``icechunk-create/create``: creates the dataset from the source given to it (once;
  the source is recorded with the dataset);
- ``icechunk-append/append-daily``: appends new days, on a cron schedule;
- ``icechunk-backfill/backfill``: no schedule, triggered from the UI or with
  ``prefect deployment run icechunk-backfill/backfill -p first_day=... -p last_day=...``;
- ``icechunk-maintenance/maintenance-weekly``: expires old snapshots and
  garbage-collects, on a cron schedule.

No source is set here: append and backfill read from the source recorded with the
dataset (a run may still be given another one).
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment

from icechunk_prefect.operations import (
    append_dataset,
    backfill_dataset,
    create_dataset,
    maintain_repository,
)

APPEND_CRON = "15 6 * * *"  # every day at 06:15
MAINTENANCE_CRON = "0 3 * * 0"  # Sundays at 03:00


def build_deployments(
    repository: str,
    *,
    cluster: dict[str, Any] | None = None,
    append_cron: str | None = APPEND_CRON,
    append_interval: timedelta | None = None,
    maintenance_cron: str | None = MAINTENANCE_CRON,
) -> list[RunnerDeployment]:
    """The four deployments, with ``repository`` (and an optional cluster) as defaults.

    ``append_interval`` replaces the append cron schedule by a fixed interval.
    """
    common: dict[str, Any] = {"repository": repository}
    if cluster is not None:
        common["cluster"] = cluster
    kw: dict[str, Any] = {"entrypoint_type": EntrypointType.MODULE_PATH}
    return [
        create_dataset.to_deployment(
            name="create",
            parameters=dict(common),
            description="Create the dataset from a source (recorded with it for later runs).",
            tags=["icechunk", "create"],
            **kw,
        ),
        append_dataset.to_deployment(
            name="append-daily",
            cron=None if append_interval else append_cron,
            interval=append_interval,
            concurrency_limit=1,  # two appends at once would race for the same steps
            parameters=dict(common),
            description="Append the days the store does not hold yet.",
            tags=["icechunk", "append"],
            **kw,
        ),
        backfill_dataset.to_deployment(
            name="backfill",
            parameters=dict(common),
            description="Rewrite a date range (set first_day, last_day and variables per run).",
            tags=["icechunk", "backfill"],
            **kw,
        ),
        maintain_repository.to_deployment(
            name="maintenance-weekly",
            cron=maintenance_cron,
            parameters={"repository": repository},
            description="Expire old snapshots and garbage-collect failed runs' leftovers.",
            tags=["icechunk", "maintenance"],
            **kw,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", required=True, help="Icechunk repository path.")
    parser.add_argument("--append-cron", default=APPEND_CRON)
    parser.add_argument("--maintenance-cron", default=MAINTENANCE_CRON)
    args = parser.parse_args()
    serve(
        *build_deployments(
            args.repository,
            append_cron=args.append_cron,
            maintenance_cron=args.maintenance_cron,
        ),
        limit=2,
    )


if __name__ == "__main__":
    main()
