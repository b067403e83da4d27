"""Serve the operational deployments from this process (no work pool needed).

    uv run python deployments/serve.py --repository /data/climate.icechunk

creates (or updates) three deployments on the Prefect API in ``PREFECT_API_URL``
and runs their flow runs here until stopped:

- ``icechunk-append/append-daily``: appends new days, on a cron schedule;
- ``icechunk-backfill/backfill``: no schedule, triggered from the UI or with
  ``prefect deployment run icechunk-backfill/backfill -p start=... -p end=...``;
- ``icechunk-maintenance/maintenance-weekly``: expires old snapshots and
  garbage-collects, on a cron schedule.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment

from icechunk_prefect.operations import append_dataset, backfill_dataset, maintain_repository

APPEND_CRON = "15 6 * * *"  # every day at 06:15
MAINTENANCE_CRON = "0 3 * * 0"  # Sundays at 03:00


def build_deployments(
    repository: str,
    *,
    source: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    append_cron: str | None = APPEND_CRON,
    append_interval: timedelta | None = None,
    maintenance_cron: str | None = MAINTENANCE_CRON,
) -> list[RunnerDeployment]:
    """The three deployments, with ``repository`` (and optional source/cluster) as defaults.

    ``append_interval`` replaces the append cron schedule by a fixed interval.
    """
    common: dict[str, Any] = {"repository": repository}
    if source is not None:
        common["source"] = source
    if cluster is not None:
        common["cluster"] = cluster
    kw: dict[str, Any] = {"entrypoint_type": EntrypointType.MODULE_PATH}
    return [
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
            description="Rewrite a date range (set start, end and variables when triggering).",
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
