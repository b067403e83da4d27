"""The ``icechunk-prefect`` command line."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Distributed, transactional writes into Icechunk with Prefect and Dask.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.callback()
def _main() -> None:
    """Distributed, transactional writes into Icechunk with Prefect and Dask."""


@app.command()
def demo(
    path: Annotated[
        Path | None,
        typer.Option(help="Repository folder (default: a new temporary folder)."),
    ] = None,
    days: Annotated[int, typer.Option(help="Time steps (daily).")] = 365,
    nlat: Annotated[int, typer.Option(help="Latitudes.")] = 180,
    nlon: Annotated[int, typer.Option(help="Longitudes.")] = 360,
    variables: Annotated[int, typer.Option(min=1, max=4, help="Number of variables (1-4).")] = 3,
    time_chunk: Annotated[int, typer.Option(help="Time steps per Zarr chunk.")] = 10,
    workers: Annotated[int, typer.Option(min=1, help="Local Dask worker processes.")] = 2,
    partition_mb: Annotated[int, typer.Option(min=1, help="Target partition size, MB.")] = 64,
    whole_graph: Annotated[
        bool, typer.Option(help="One task for the whole dask graph instead of partitions.")
    ] = False,
) -> None:
    """Write a generated climate-like dataset (~300 MB by default) with the to_icechunk flow.

    Runs on a local Dask cluster with a Prefect API the run brings up itself, into a
    local repository, then prints the commit, the flow run and a read-back check.
    """
    import numpy as np
    import xarray as xr

    from icechunk_prefect import IcechunkDaskTaskRunner, LocalRepository, to_icechunk
    from icechunk_prefect.runtime import ensure_shared_api
    from icechunk_prefect.synthetic import VARIABLES, expected_values, synthetic_climate

    repo_path = path or Path(tempfile.mkdtemp(prefix="icechunk-prefect-demo-"))
    names = list(VARIABLES)[:variables]
    ds = synthetic_climate(
        periods=days, nlat=nlat, nlon=nlon, variables=names, time_chunk=time_chunk
    )
    size_mb = ds.nbytes / 2**20
    console.print(
        f"[bold]demo[/]: {size_mb:,.0f} MB, {dict(ds.sizes)}, variables {names} -> {repo_path}"
    )
    api = ensure_shared_api()
    console.print(f"Prefect API: {api}")
    flow = to_icechunk.with_options(
        task_runner=IcechunkDaskTaskRunner(cluster_kwargs={"n_workers": workers})
    )
    started = time.monotonic()
    state = flow(
        ds,
        LocalRepository(str(repo_path)),
        mode="w",
        message=f"demo: {days} days of {', '.join(names)}",
        partitioned=not whole_graph,
        target_partition_bytes=partition_mb * 2**20,
        return_state=True,
    )
    snapshot = state.result()
    elapsed = time.monotonic() - started
    repo = LocalRepository(str(repo_path)).open_repository()
    info = next(iter(repo.ancestry(branch="main")))
    meta = info.metadata or {}
    back = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
    checks = []
    rng = np.random.default_rng(0)
    for name in names:
        t0 = int(rng.integers(0, max(1, days - 5)))
        sub = back.isel(time=slice(t0, t0 + 5))
        checks.append(bool(np.array_equal(sub[name].values, expected_values(sub, name))))
    ok = all(checks) and bool(back.time.equals(ds.time)) and dict(back.sizes) == dict(ds.sizes)

    table = Table(title="committed", show_header=False)
    table.add_row("snapshot", snapshot)
    table.add_row("parent", str(meta.get("icechunk_prefect.base_snapshot")))
    table.add_row("message", info.message)
    table.add_row(
        "flow run",
        f"{meta.get('icechunk_prefect.flow_run_name')} ({state.state_details.flow_run_id})",
    )
    table.add_row("variables", ", ".join(sorted(back.data_vars)))
    table.add_row("shape", str(dict(back.sizes)))
    table.add_row("partitions", str(meta.get("icechunk_prefect.partitions")))
    rate = size_mb / elapsed
    table.add_row("written", f"{size_mb:,.0f} MB in {elapsed:.1f} s ({rate:,.1f} MB/s)")
    table.add_row("repository", str(repo_path))
    table.add_row("read-back check", "passed" if ok else "FAILED")
    console.print(table)
    if not ok:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
