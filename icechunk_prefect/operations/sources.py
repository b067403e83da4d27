"""Where the operational flows get their data: sources with a template and a window loader.

A *source* answers two questions:

- :meth:`DatasetSource.template`: what the whole dataset looks like (coordinates,
  variables, dtypes, attributes, Zarr chunking in each variable's ``encoding``),
  as a lazy Dataset over its full known extent. The ``create`` flow writes it.
- :meth:`DatasetSource.load`: the data for a window of days, as a lazy
  (dask-backed) Dataset. ``start`` and ``end`` are dates, both included: every
  time step from ``start`` 00:00 up to (not including) the day after ``end``.

Three kinds ship, each a Prefect Block type (save one by name in the UI's Blocks
page or with ``.save(name)``; a flow's ``source`` parameter then shows a block
picker per kind), and each usable inline from Python without saving:

- :class:`SyntheticSource` (kind ``synthetic``): values are a pure function of the
  coordinates (:mod:`icechunk_prefect.synthetic`), so any region can be checked exactly;
- :class:`NetCDFFolderSource` (kind ``netcdf``): a folder of netCDF files (e.g. one
  per day), opened lazily with ``xarray.open_mfdataset``;
- :class:`ImportedSource` (kind ``import``): your own source, by import path.

As JSON (``prefect deployment run -p source=...``, the ``--source`` option of
``icechunk-prefect plan``, the source recorded with a dataset) a source is an
object naming its kind explicitly, ``{"kind": "netcdf", "folder": "/data/era5"}``:
one without a ``kind``, with an unknown kind or with a field its kind does not
have is refused (:func:`source_from_config`), never read as some default kind.

Example:
    ```python
    from datetime import date
    from icechunk_prefect.operations.sources import SyntheticSource, source_from_config

    source = SyntheticSource(data_start=date(2024, 1, 1), periods=30, nlat=4, nlon=8)
    window = source.window(date(2024, 1, 5), date(2024, 1, 9))
    assert window.sizes["time"] == 5
    assert source_from_config({"kind": "synthetic", "periods": 30}).periods == 30
    ```
"""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

from prefect.blocks.core import Block
from pydantic import BeforeValidator, Field, HttpUrl

from icechunk_prefect.errors import ConfigurationError, InputValidationError

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = [
    "SOURCE_KINDS",
    "DatasetSource",
    "ImportedSource",
    "NetCDFFolderSource",
    "OptionalSourceParameter",
    "SourceBlock",
    "SourceParameter",
    "SyntheticSource",
    "as_source",
    "describe_source",
    "select_window",
    "source_config",
    "source_from_config",
]


@runtime_checkable
class DatasetSource(Protocol):
    """What the operational flows need from a source of data."""

    def template(self) -> xr.Dataset:
        """The dataset over its full known extent, lazy, with Zarr chunks in ``encoding``."""
        ...

    def load(self, start: date, end: date) -> xr.Dataset:
        """The data for the days ``start`` .. ``end`` (both included), lazy."""
        ...


def window_bounds(start: date, end: date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start 00:00, day after end 00:00)``: the half-open time range of a window of days."""
    import pandas as pd

    return pd.Timestamp(start), pd.Timestamp(end + timedelta(days=1))  # type: ignore[return-value]


def select_window(ds: xr.Dataset, start: date, end: date, dim: str = "time") -> xr.Dataset:
    """The steps of ``ds`` within the days ``start`` .. ``end`` (both included)."""
    lo, hi = window_bounds(start, end)
    index = ds.indexes[dim]
    i0 = int(index.searchsorted(lo, "left"))  # type: ignore[arg-type]
    i1 = int(index.searchsorted(hi, "left"))  # type: ignore[arg-type]
    return ds.isel({dim: slice(i0, i1)})


# The Icechunk logo (as on the IcechunkRepository block), pinned to a commit.
_LOGO = HttpUrl(
    "https://raw.githubusercontent.com/earth-mover/icechunk/"
    "d09b1fd46141410def4566fdc5ba00f5a61139f4/icechunk-python/docs/docs/assets/favicon/"
    "favicon-96x96.png"
)


class _Source:
    """What the three source block types share (a mixin: not a block type of its own).

    A source block has ``template()`` and ``window(start, end)``: ``load`` is Prefect's
    (``SyntheticSource.load("name")`` loads a saved block); :func:`as_source` gives
    the :class:`DatasetSource` the flows read.
    """

    _logo_url: ClassVar[HttpUrl | None] = _LOGO
    kind: ClassVar[str] = ""
    """The source's kind, as named in JSON (``{"kind": ...}``)."""

    def _what(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for plans, logs and commit summaries (a saved block's name first)."""
        assert isinstance(self, Block)
        name = self._block_document_name
        if name and not self._is_anonymous:
            return f"block {self.get_block_type_slug()}/{name}: {self._what()}"
        return self._what()


class SyntheticSource(_Source, Block):
    """Generated climate-like data (time x lat x lon) whose values depend only on the coordinates.

    The full extent is ``periods`` steps of ``freq`` from ``data_start``. Use it for
    demos and tests: :func:`icechunk_prefect.synthetic.expected_values` recomputes
    any region exactly.

    Example:
        ```python
        from datetime import date
        from icechunk_prefect import SyntheticSource

        source = SyntheticSource(data_start=date(2024, 1, 1), periods=10, nlat=2, nlon=3)
        print(source.describe())  # synthetic: 10 steps of D from 2024-01-01, 2 x 3, ...
        ```
    """

    _block_type_name: ClassVar[str | None] = "Icechunk Synthetic Source"
    _block_type_slug: ClassVar[str | None] = "icechunk-synthetic-source"
    _description: ClassVar[str | None] = (
        "Generated climate-like data (time x lat x lon) whose values depend only on the "
        "coordinates, for demos and tests."
    )
    kind: ClassVar[str] = "synthetic"

    data_start: date = Field(
        default=date(2020, 1, 1), description="First day of the generated data."
    )
    periods: int = Field(default=365, ge=1, description="Number of time steps generated.")
    freq: Literal["D", "6h", "h"] = Field(
        default="D", description="Time step: D (daily), 6h or h (hourly)."
    )
    nlat: int = Field(default=180, ge=1, description="Number of latitudes.")
    nlon: int = Field(default=360, ge=1, description="Number of longitudes.")
    variables: list[str] = Field(
        default=["t2m", "precip", "wind"],  # a default, not a factory: the UIs show it
        min_length=1,
        description="Variables to generate (t2m, precip, wind, rh).",
    )
    time_chunk: int = Field(default=10, ge=1, description="Time steps per Zarr chunk.")

    def _what(self) -> str:
        return (
            f"synthetic: {self.periods} steps of {self.freq} from {self.data_start.isoformat()}, "
            f"{self.nlat} x {self.nlon}, variables {', '.join(self.variables)}"
        )

    def template(self) -> xr.Dataset:
        """The whole generated dataset (lazy)."""
        from icechunk_prefect.synthetic import synthetic_climate

        return synthetic_climate(
            start=self.data_start.isoformat(),
            periods=self.periods,
            freq=self.freq,
            nlat=self.nlat,
            nlon=self.nlon,
            variables=tuple(self.variables),
            time_chunk=self.time_chunk,
        )

    def window(self, start: date, end: date) -> xr.Dataset:
        """The generated steps within ``start`` .. ``end`` (only those in the full extent)."""
        return select_window(self.template(), start, end)


class NetCDFFolderSource(_Source, Block):
    """A folder of netCDF files (e.g. one per day) concatenated along ``time``, opened lazily.

    File names are sorted; each file's time steps must be increasing and files must
    not overlap. Only the files are opened, never read in full: data stays lazy.

    Example:
        ```python
        from icechunk_prefect import NetCDFFolderSource

        print(NetCDFFolderSource(folder="/data/era5").describe())  # netCDF folder /data/era5 (*.nc)
        ```
    """

    _block_type_name: ClassVar[str | None] = "Icechunk netCDF Folder Source"
    _block_type_slug: ClassVar[str | None] = "icechunk-netcdf-folder-source"
    _description: ClassVar[str | None] = (
        "A folder of netCDF files (e.g. one per day) concatenated along time, opened lazily "
        "on the machine that runs the flow."
    )
    kind: ClassVar[str] = "netcdf"

    folder: str = Field(description="Folder holding the netCDF files.")
    pattern: str = Field(default="*.nc", description="Glob pattern of the files in the folder.")
    variables: list[str] | None = Field(
        default=None, description="Variables to keep (default: all data variables)."
    )
    time_chunk: int = Field(default=10, ge=1, description="Time steps per Zarr chunk.")
    engine: Literal["h5netcdf", "netcdf4", "scipy"] = Field(
        default="h5netcdf", description="xarray backend used to open the files."
    )

    def _what(self) -> str:
        keep = f", variables {', '.join(self.variables)}" if self.variables else ""
        return f"netCDF folder {self.folder} ({self.pattern}){keep}"

    def _files(self) -> list[str]:
        files = sorted(glob.glob(str(Path(self.folder).expanduser() / self.pattern)))
        if not files:
            raise ConfigurationError(
                f"No file matches {self.pattern!r} in folder {self.folder!r}. Check the folder "
                "and pattern of the source."
            )
        return files

    def _open(self) -> xr.Dataset:
        import xarray as xr

        ds = xr.open_mfdataset(
            self._files(),
            engine=self.engine,
            combine="nested",
            concat_dim="time",
            data_vars="minimal",
            coords="minimal",  # type: ignore[arg-type]
            compat="override",
            join="override",
            chunks={},
            parallel=False,
        )
        if self.variables is not None:
            missing = sorted(set(self.variables) - set(map(str, ds.data_vars)))
            if missing:
                raise InputValidationError(
                    f"Variables {missing} are not in the netCDF files of {self.folder!r} "
                    f"(they hold {sorted(map(str, ds.data_vars))})."
                )
            ds = ds[self.variables]
        return _zarr_encoding(ds, self.time_chunk)

    def template(self) -> xr.Dataset:
        """All files, concatenated (lazy)."""
        return self._open()

    def window(self, start: date, end: date) -> xr.Dataset:
        """The steps of the files within ``start`` .. ``end``."""
        return select_window(self._open(), start, end)


class ImportedSource(_Source, Block):
    """Your own source, found by import path (``package.module:factory``).

    The object at ``path`` is either a source (anything with ``template()`` and
    ``load(start, end)``) or a callable returning one; it is called with ``kwargs``.

    Example:
        ```python
        from icechunk_prefect import ImportedSource

        source = ImportedSource(path="mypkg.sources:make_source", kwargs={"region": "alps"})
        print(source.describe())  # imported mypkg.sources:make_source(region='alps')
        ```
    """

    _block_type_name: ClassVar[str | None] = "Icechunk Imported Source"
    _block_type_slug: ClassVar[str | None] = "icechunk-imported-source"
    _description: ClassVar[str | None] = (
        "Your own source, by import path (package.module:factory) and keyword arguments; "
        "the package must be installed where the flow runs."
    )
    kind: ClassVar[str] = "import"

    path: str = Field(
        description="Import path of a source or source factory, e.g. mypkg.sources:make_source."
    )
    kwargs: dict[str, Any] = Field(default={}, description="Keyword arguments for the factory.")

    def _what(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"imported {self.path}({args})"

    def resolve(self) -> DatasetSource:
        """Import the object and build the source."""
        from prefect.utilities.importtools import import_object

        try:
            obj = import_object(self.path)
        except (ImportError, AttributeError, ValueError, FileNotFoundError) as exc:
            raise ConfigurationError(
                f"Cannot import source {self.path!r}: {exc}. Give 'package.module:name' of an "
                "importable object on the machine that runs the flow."
            ) from exc
        if not isinstance(obj, DatasetSource) and callable(obj):
            obj = obj(**self.kwargs)
        if not isinstance(obj, DatasetSource):
            raise ConfigurationError(
                f"{self.path!r} gave a {type(obj).__name__}, which has no template() and "
                "load(start, end) methods; point to a source or a function returning one."
            )
        return obj

    def template(self) -> xr.Dataset:
        """The imported source's template."""
        return self.resolve().template()

    def window(self, start: date, end: date) -> xr.Dataset:
        """The imported source's window."""
        return self.resolve().load(start, end)


SourceBlock = SyntheticSource | NetCDFFolderSource | ImportedSource
"""One of the shipped source kinds."""

SOURCE_KINDS: dict[str, type[SyntheticSource | NetCDFFolderSource | ImportedSource]] = {
    cls.kind: cls for cls in (SyntheticSource, NetCDFFolderSource, ImportedSource)
}
"""The source kinds by the name JSON gives them (``{"kind": ...}``)."""


def source_from_config(config: Mapping[str, Any]) -> SourceBlock:
    """The source a JSON object describes; it must name its kind explicitly.

    Refused (:class:`~icechunk_prefect.errors.InputValidationError`, one line saying
    what to give): no ``kind``, an unknown kind, or a field that kind does not have.

    Example:
        ```python
        from icechunk_prefect.operations.sources import source_from_config

        source = source_from_config({"kind": "netcdf", "folder": "/data/era5"})
        print(type(source).__name__)  # NetCDFFolderSource
        try:
            source_from_config({"folder": "/data/era5"})
        except ValueError as exc:
            print(exc)  # The source names no kind ...
        ```
    """
    kinds = ", ".join(SOURCE_KINDS)
    kind = config.get("kind")
    if kind is None:
        raise InputValidationError(
            f'The source names no kind (seen fields {sorted(config)}); add "kind" with one '
            f"of {kinds}, or pick a saved source block."
        )
    cls = SOURCE_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InputValidationError(
            f"Unknown source kind {kind!r}; give one of {kinds}, or pick a saved source block."
        )
    fields = {k: v for k, v in config.items() if k != "kind"}
    unknown = sorted(set(fields) - set(cls.model_fields))
    if unknown:
        raise InputValidationError(
            f"A {kind} source has no field(s) {unknown} (its fields: "
            f"{', '.join(cls.model_fields)}); check the spelling, or the kind."
        )
    return cls.model_validate(fields)


def source_config(source: SourceBlock) -> dict[str, Any]:
    """The JSON object of a source, naming its kind (what :func:`source_from_config` reads).

    Example:
        ```python
        from icechunk_prefect import NetCDFFolderSource
        from icechunk_prefect.operations.sources import source_config

        config = source_config(NetCDFFolderSource(folder="/data/era5"))
        assert config["kind"] == "netcdf" and config["folder"] == "/data/era5"
        ```
    """
    fields = source.model_dump(mode="json", include=set(type(source).model_fields))
    return {"kind": source.kind, **fields}


def _explicit_kind(value: Any) -> Any:
    """Flow-parameter validation: a JSON object must name its kind (see the module doc)."""
    if isinstance(value, Mapping):
        return source_from_config(value)
    if value is None or isinstance(value, _Source):
        return value
    raise InputValidationError(
        f"A source is a saved source block or an object naming its kind, e.g. "
        f'{{"kind": "synthetic"}}; got a {type(value).__name__} ({value!r:.80}).'
    )


SourceParameter = Annotated[
    SyntheticSource | NetCDFFolderSource | ImportedSource, BeforeValidator(_explicit_kind)
]
"""A source as a required flow parameter: a source block (saved or inline), or a JSON
object naming its kind. The Prefect UIs show a tab per kind with a block picker."""

OptionalSourceParameter = Annotated[
    SyntheticSource | NetCDFFolderSource | ImportedSource | None, BeforeValidator(_explicit_kind)
]
""":data:`SourceParameter`, or ``None``: the source recorded with the dataset."""


@dataclass(frozen=True)
class _BlockSource:
    """A source block as a :class:`DatasetSource`."""

    block: SyntheticSource | NetCDFFolderSource

    def template(self) -> xr.Dataset:
        return self.block.template()

    def load(self, start: date, end: date) -> xr.Dataset:
        return self.block.window(start, end)


def as_source(source: Any) -> DatasetSource:
    """A :class:`DatasetSource` from a source block, a source object or JSON naming its kind."""
    if isinstance(source, ImportedSource):
        return source.resolve()
    if isinstance(source, SyntheticSource | NetCDFFolderSource):
        return _BlockSource(source)
    if isinstance(source, Mapping):
        return as_source(source_from_config(source))
    if isinstance(source, DatasetSource):
        return source
    raise ConfigurationError(
        f"Expected a source (with template() and load(start, end)), got {type(source).__name__}."
    )


def describe_source(source: Any) -> str:
    """One line naming a source (its kind and what it reads), for plans and logs."""
    if isinstance(source, _Source):
        return source.describe()
    return f"{type(source).__module__}.{type(source).__qualname__}"


_KEEP_ENCODING = ("dtype", "_FillValue", "units", "calendar", "scale_factor", "add_offset")


def _zarr_encoding(ds: xr.Dataset, time_chunk: int, dim: str = "time") -> xr.Dataset:
    """Replace file-format encodings by Zarr chunks of ``time_chunk`` steps (full other dims)."""
    ds = ds.copy()
    for name, var in ds.variables.items():
        enc = {k: v for k, v in var.encoding.items() if k in _KEEP_ENCODING}
        if name in ds.data_vars and var.ndim:
            enc["chunks"] = tuple(
                min(time_chunk, n) if d == dim else n
                for d, n in zip(var.dims, var.shape, strict=True)
            )
        var.encoding = enc
    return ds


def check_variables(
    requested: Sequence[str] | None, available: Sequence[str], where: str
) -> list[str]:
    """``requested`` (default all of ``available``), refusing names not available."""
    if not requested:
        return list(available)
    unknown = [v for v in requested if v not in available]
    if unknown:
        raise InputValidationError(
            f"Unknown variable(s) {unknown}: {where} has {sorted(available)}. Pick variables "
            "from that list (or leave 'variables' empty for all)."
        )
    return list(dict.fromkeys(requested))
