"""The options of one write, as one value: :class:`WriteSpec`.

The ``to_icechunk`` flow and :class:`~icechunk_prefect.writer.FlowDatasetWriter` take
them as keyword arguments (those of ``icechunk.xarray.to_icechunk`` plus the
partitioning); from there they travel once, as a spec, to the metadata step, the plan
and the cache keys.

Example:
    ```python
    import numpy as np, xarray as xr
    from icechunk_prefect.core.spec import WriteSpec
    from icechunk_prefect.core.steps import plan_write, write_metadata

    spec = WriteSpec(mode="w", partition_size=4)
    ds = xr.Dataset({"t": ("x", np.arange(8.0))}, coords={"x": np.arange(8)}).chunk(x=4)
    fork = write_metadata("/tmp/doc-spec", "main", ds, spec)
    assert len(plan_write(fork, ds, spec).partitions) == 2
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from icechunk_prefect.core.planning import DEFAULT_PARTITION_BYTES

__all__ = ["WriteMode", "WriteSpec"]

WriteMode = Literal["w", "w-", "a", "a-", "r+"]
"""The write modes of ``to_zarr``."""


@dataclass(frozen=True)
class WriteSpec:
    """How to write a Dataset: where (``group``, ``region``, ``append_dim``), in which
    ``mode``, with which ``encoding`` and chunk checks (``safe_chunks``,
    ``align_chunks``), as ``icechunk.xarray.to_icechunk`` takes them; and how to
    split the lazy variables (``partition_dim``, ``partition_size`` or
    ``target_partition_bytes``; ``split_every`` for the whole-graph write)."""

    group: str | None = None
    mode: WriteMode | None = None
    append_dim: str | None = None
    region: Mapping[str, slice | str] | str | None = None
    encoding: Mapping[str, Any] | None = None
    safe_chunks: bool = True
    align_chunks: bool = False
    partition_dim: str | None = None
    partition_size: int | None = None
    target_partition_bytes: int = DEFAULT_PARTITION_BYTES
    split_every: int | None = None
