"""Taking turns on a dataset: an optional Prefect global concurrency limit per dataset.

Writers of one dataset need not take turns: a run whose chunks another commit
changed meanwhile re-writes them on the new tip (see ``docs/reliability.md``, "Two
writers on one dataset"). Where waiting is better than re-writing (a long backfill
of the newest days while appends land every few minutes), the operational flows
take the dataset's *turn* when their ``take_turns`` parameter is set: a Prefect
global concurrency limit of one slot, named after the repository, branch and group
(:func:`turn_name`), held from planning to commit. An append then waits for a
running backfill's commit instead of racing it. The trade-off: that append lands
only after the backfill, however long it runs.

The limit is created (one slot) the first time a run asks for it, and shows on the
Prefect UI's Concurrency page, where it can be inspected, reset or deactivated.
Every run of the dataset must set ``take_turns`` (set it in the deployments'
parameters): a run that does not set it does not wait.

Example:
    ```python
    from icechunk_prefect.operations.turns import turn_name

    assert turn_name("/data/climate.icechunk", "main", None).startswith("icechunk-climate-main-")
    ```
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from icechunk_prefect.storage.resolve import RepositoryLike, resolve_repository

__all__ = ["dataset_turn", "turn_name"]

TURN_SLOTS = 1


def turn_name(repo: RepositoryLike, branch: str, group: str | None) -> str:
    """The concurrency limit's name for a dataset: readable, unique per repository,
    branch and group (``icechunk-<repository>-<branch>-<hash>``)."""
    where = resolve_repository(repo).describe()
    digest = hashlib.sha256(f"{where}\n{branch}\n{group or ''}".encode()).hexdigest()[:10]
    stem = re.sub(r"\.icechunk$", "", where.rstrip("/").rsplit("/", 1)[-1].split(" ")[0])
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{stem}-{branch}").strip("-")[:60]
    return f"icechunk-{slug}-{digest}"


def _ensure_limit(name: str) -> None:
    """Create the limit (one slot) unless it exists (a user's own setting is kept)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run may have created it meanwhile
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=TURN_SLOTS)
                )


@contextmanager
def dataset_turn(
    repo: RepositoryLike, branch: str, group: str | None, *, enabled: bool
) -> Iterator[str | None]:
    """Hold the dataset's turn (when ``enabled``) for the body of the ``with`` block;
    yields the limit's name (``None`` when not enabled). Waits while another run holds it."""
    if not enabled:
        yield None
        return
    from prefect import get_run_logger
    from prefect.concurrency.sync import concurrency

    name = turn_name(repo, branch, group)
    _ensure_limit(name)
    logger = get_run_logger()
    logger.info("Waiting for the dataset's turn (concurrency limit %r)", name)
    with concurrency(name, occupy=TURN_SLOTS, strict=True):
        logger.info("Took the dataset's turn (concurrency limit %r)", name)
        yield name
