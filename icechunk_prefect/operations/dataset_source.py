"""The source a dataset was created from: recorded with the dataset, found again by its flows.

``create_dataset`` records its source, as JSON naming its kind, in the dataset's
group attribute ``icechunk_prefect.source`` (attributes live with the data: they
survive snapshot expiry and show in ``xarray.open_zarr(...).attrs``). The append
and backfill flows, and ``icechunk-prefect plan``, use that source when their
``source`` parameter is left empty; a source given to them is used for that run
only, and the plan artifact and the commit metadata say which one ran and where it
came from (``source_origin``: ``dataset`` or ``parameter``).

Example:
    ```python
    from datetime import date
    from icechunk_prefect.operations import create_dataset
    from icechunk_prefect.operations.dataset_source import choose_source, recorded_source
    from icechunk_prefect.operations.sources import SyntheticSource
    from icechunk_prefect.storage.resolve import resolve_repository

    source = SyntheticSource(data_start=date(2024, 1, 1), periods=10, nlat=2, nlon=3, time_chunk=5)
    create_dataset("/tmp/doc-dataset-source", source, overwrite=True)
    repo = resolve_repository("/tmp/doc-dataset-source")
    print(recorded_source(repo)["kind"])  # synthetic
    print(choose_source(None, repo).describe())  # synthetic: ... (recorded with the dataset)
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import zarr
from zarr.errors import GroupNotFoundError

from icechunk_prefect.core import metadata
from icechunk_prefect.errors import ConfigurationError, InputValidationError
from icechunk_prefect.operations.plans import require_extent
from icechunk_prefect.operations.sources import (
    DatasetSource,
    ImportedSource,
    NetCDFFolderSource,
    SourceBlock,
    SyntheticSource,
    as_source,
    describe_source,
    source_config,
    source_from_config,
)
from icechunk_prefect.storage.local import RepositorySource

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "SOURCE_ATTRIBUTE",
    "ChosenSource",
    "choose_source",
    "config_of",
    "record_source",
    "recorded_source",
]

SOURCE_ATTRIBUTE = metadata.key("source")
"""The group attribute holding the source a dataset was created from (JSON with ``kind``)."""

SourceOrigin = Literal["dataset", "parameter"]


def record_source(ds: xr.Dataset, config: Mapping[str, Any] | None) -> xr.Dataset:
    """``ds`` with ``config`` (a source's JSON) in its attributes (unchanged when ``None``)."""
    if config is None:
        return ds
    out = ds.copy()
    out.attrs = {**ds.attrs, SOURCE_ATTRIBUTE: dict(config)}
    return out


def recorded_source(
    repo: RepositorySource, branch: str = "main", group: str | None = None
) -> dict[str, Any] | None:
    """The source JSON recorded with the dataset on ``branch`` (``None``: none recorded)."""
    session = repo.open_repository().readonly_session(branch=branch)
    try:
        grp = zarr.open_group(session.store, path=group or "", mode="r")
    except (FileNotFoundError, KeyError, GroupNotFoundError):
        return None
    value = grp.attrs.get(SOURCE_ATTRIBUTE)
    return dict(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class ChosenSource:
    """The source a run reads, and where that choice came from."""

    source: DatasetSource
    """What the run loads data from."""
    config: dict[str, Any] | None
    """Its JSON (``kind`` and fields); ``None`` for a source object given from Python."""
    origin: SourceOrigin
    """``dataset``: recorded with the dataset; ``parameter``: given to this run."""
    label: str
    """One line naming it."""

    def describe(self) -> str:
        """``<label> (recorded with the dataset)`` or ``<label> (chosen for this run)``."""
        where = "recorded with the dataset" if self.origin == "dataset" else "chosen for this run"
        return f"{self.label} ({where})"

    def parameters(self) -> dict[str, Any]:
        """What the run's commit metadata and result record about the source."""
        return {"source": self.config or self.label, "source_origin": self.origin}


def choose_source(
    source: Any, repo: RepositorySource, branch: str = "main", group: str | None = None
) -> ChosenSource:
    """The source given (``origin="parameter"``), else the one recorded with the dataset.

    Neither is refused (:class:`~icechunk_prefect.errors.ConfigurationError`): the
    flows never fall back to a default kind.
    """
    if source is not None:
        block = source_from_config(source) if isinstance(source, Mapping) else source
        config = source_config(block) if _is_block(block) else None
        return ChosenSource(as_source(block), config, "parameter", describe_source(block))
    config = recorded_source(repo, branch, group)
    if config is None:
        require_extent(repo, branch, group)  # no dataset at all: say that first
        raise ConfigurationError(
            f"The dataset in {repo.describe()} (branch {branch!r}, group {group or '/'!r}) "
            f"records no source (attribute {SOURCE_ATTRIBUTE!r}; datasets made by "
            "create_dataset have it). Give a source for this run."
        )
    try:
        block = source_from_config(config)
    except (InputValidationError, ValueError) as exc:
        raise ConfigurationError(
            f"The source recorded with the dataset in {repo.describe()} cannot be read "
            f"({exc}); give a source for this run."
        ) from exc
    return ChosenSource(as_source(block), config, "dataset", describe_source(block))


def _is_block(value: Any) -> bool:
    return isinstance(value, SyntheticSource | NetCDFFolderSource | ImportedSource)


def config_of(source: SourceBlock | Mapping[str, Any] | Any) -> dict[str, Any] | None:
    """The JSON of a source to record with a new dataset (``None`` for a plain object)."""
    if isinstance(source, Mapping):
        return source_config(source_from_config(source))
    return source_config(source) if _is_block(source) else None
