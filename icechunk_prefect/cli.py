"""The ``icechunk-prefect`` command line.

Bad input (an unknown branch, a path that is no repository, an invalid option value)
ends with one line on stderr, ``error: <what was wrong, the value seen, what to do>``,
and exit code 2, never a traceback: usage errors, the package's own errors
(:mod:`icechunk_prefect.errors`) and Icechunk's errors are converted here, at the
command line's boundary. Icechunk's own warnings are silenced unless ``ICECHUNK_LOG``
is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from typer.core import TyperGroup

BAD_INPUT = 2
"""Exit code of every command refusing its input."""


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (Icechunk's: its first paragraph, not the Rust trace)."""
    text = str(exc).split("\n\ncontext:", 1)[0]
    return " ".join(text.split()) or type(exc).__name__


def _fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


class _OneLineErrors(TyperGroup):
    """Ends bad input with one ``error: ...`` line on stderr and exit code 2 (module doc)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(
                args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        import icechunk

        from icechunk_prefect.errors import IcechunkPrefectError

        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.Abort:
            _fail("aborted.", 1)
        except typer.TyperException as exc:  # usage errors (typer's own click)
            if type(exc).__name__ == "NoArgsIsHelpError":  # no command given: the help
                return super().main(
                    args, prog_name, complete_var, True, windows_expand_args, **extra
                )
            ctx = getattr(exc, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _fail(" ".join(exc.format_message().split()) + where, exc.exit_code)
        except IcechunkPrefectError as exc:
            _fail(_one_line(exc))
        except icechunk.IcechunkError as exc:
            _fail(
                f"Icechunk refused: {_one_line(exc)} ({type(exc).__name__}; check the repository "
                f"given: it must be readable by icechunk {icechunk.__version__})."
            )
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    help="Distributed, transactional writes into Icechunk with Prefect and Dask.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.callback()
def _main() -> None:
    """Distributed, transactional writes into Icechunk with Prefect and Dask."""
    if "ICECHUNK_LOG" not in os.environ:
        import icechunk

        icechunk.set_logs_filter("error")  # e.g. local storage's concurrency warning


def _day(value: str | None, option: str) -> date | None:
    """``--first-day`` / ``--last-day``: an ISO date, or a usage error saying so."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a date ({exc}); give YYYY-MM-DD, e.g. 2024-03-01.",
            param_hint=option,
        ) from exc


def _source(text: str) -> Any:
    """``--source``: JSON describing a source, checked against the source models."""
    from pydantic import ValidationError

    from icechunk_prefect.errors import InputValidationError
    from icechunk_prefect.operations.sources import source_from_config

    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"{text!r} is not JSON ({exc.msg} at character {exc.pos}); give e.g. "
            '\'{"kind": "netcdf", "folder": "/data"}\'.',
            param_hint="--source",
        ) from exc
    if not isinstance(config, dict):
        raise typer.BadParameter(
            f"{text!r} is not a JSON object; give e.g. "
            '\'{"kind": "netcdf", "folder": "/data"}\'.',
            param_hint="--source",
        )
    try:
        source_from_config(config)
    except InputValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--source") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "source"
        raise typer.BadParameter(
            f"{text!r} is not a valid source: {where}: {first['msg']}. Kinds: synthetic, "
            "netcdf (folder=...), import (path='module:attr').",
            param_hint="--source",
        ) from exc
    return config


@app.command()
def demo(
    path: Annotated[
        Path | None,
        typer.Option(help="Repository folder (default: a new temporary folder)."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Time steps (daily).")] = 365,
    nlat: Annotated[int, typer.Option(min=1, help="Latitudes.")] = 180,
    nlon: Annotated[int, typer.Option(min=1, help="Longitudes.")] = 360,
    variables: Annotated[int, typer.Option(min=1, max=4, help="Number of variables (1-4).")] = 3,
    time_chunk: Annotated[int, typer.Option(min=1, help="Time steps per Zarr chunk.")] = 10,
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
    from icechunk_prefect.core import metadata
    from icechunk_prefect.runtime import ensure_shared_api
    from icechunk_prefect.synthetic import VARIABLES, expected_values, synthetic_climate

    repo_path = path or Path(tempfile.mkdtemp(prefix="icechunk-prefect-demo-"))
    # Refuse a file or a folder holding something else before starting Prefect and Dask.
    LocalRepository(str(repo_path)).open_repository(create=True)
    names = list(VARIABLES)[:variables]
    ds = synthetic_climate(
        periods=days, nlat=nlat, nlon=nlon, variables=names, time_chunk=time_chunk
    )
    size_mb = ds.nbytes / 2**20
    console.print(
        f"[bold]demo[/]: {size_mb:,.0f} MB, {dict(ds.sizes)}, variables {names} -> {repo_path}"
    )
    from concurrent.futures import ThreadPoolExecutor

    from distributed import LocalCluster

    # Set-up: the Prefect API and the local cluster start side by side (each takes
    # seconds; the workers report to the API through the task runner's settings).
    setup_started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        # The pool thread only starts the server: the environment (process-wide) is set
        # here, not while the cluster below is being started from this thread.
        api_started = pool.submit(ensure_shared_api, export=False)
        local: dict[str, Any] = {"threads_per_worker": 1, "dashboard_address": None}
        cluster = LocalCluster(n_workers=workers, processes=True, **local)
        api = api_started.result()
    os.environ["PREFECT_API_URL"] = api
    setup = time.monotonic() - setup_started
    console.print(f"Prefect API: {api}; Dask: {workers} workers; set-up {setup:.1f} s")
    flow = cast(Any, to_icechunk).with_options(
        task_runner=IcechunkDaskTaskRunner(address=cluster.scheduler_address)
    )
    started = time.monotonic()
    with cluster, partition_progress(console, f"writing {size_mb:,.0f} MB"):
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
    table.add_row("parent", str(meta.get(metadata.BASE_SNAPSHOT)))
    table.add_row("message", info.message)
    table.add_row(
        "flow run",
        f"{meta.get(metadata.FLOW_RUN_NAME)} ({state.state_details.flow_run_id})",
    )
    table.add_row("variables", ", ".join(sorted(map(str, back.data_vars))))
    table.add_row("shape", str(dict(back.sizes)))
    table.add_row("partitions", str(meta.get(metadata.PARTITIONS)))
    rate = size_mb / elapsed
    table.add_row(
        "written",
        f"{size_mb:,.0f} MB in {elapsed:.1f} s ({rate:,.1f} MB/s), the flow run to its commit",
    )
    table.add_row("set-up", f"{setup:.1f} s (Prefect API and Dask cluster, side by side)")
    table.add_row("repository", str(repo_path))
    table.add_row("read-back check", "passed" if ok else "FAILED")
    console.print(table)
    if not ok:
        raise typer.Exit(1)


@app.command()
def plan(
    operation: Annotated[Literal["append", "backfill"], typer.Argument(help="The flow.")],
    repository: Annotated[
        str, typer.Argument(help="Repository path, or icechunk-repository/<saved block name>.")
    ],
    source: Annotated[
        str | None,
        typer.Option(
            help='Source as JSON naming its kind, e.g. \'{"kind": "netcdf", "folder": "/data"}\' '
            "(default: the source recorded with the dataset)."
        ),
    ] = None,
    first_day: Annotated[
        str | None, typer.Option("--first-day", "--start", help="First day (YYYY-MM-DD).")
    ] = None,
    last_day: Annotated[
        str | None, typer.Option("--last-day", "--end", help="Last day, included (YYYY-MM-DD).")
    ] = None,
    variables: Annotated[str | None, typer.Option(help="Comma-separated variables.")] = None,
    on_gap: Annotated[
        Literal["error", "fill"], typer.Option(help="append: error or fill.")
    ] = "error",
    partition_size: Annotated[int | None, typer.Option(min=1, help="Time steps per task.")] = None,
    branch: Annotated[str, typer.Option(help="Branch.")] = "main",
    group: Annotated[str | None, typer.Option(help="Group of the dataset.")] = None,
) -> None:
    """Print what an append or backfill would write, without writing anything."""
    from icechunk_prefect.operations.preview import preview

    result = preview(
        operation,
        repository,
        _source(source) if source is not None else None,
        start=_day(first_day, "--first-day"),
        end=_day(last_day, "--last-day"),
        variables=variables.split(",") if variables else None,
        on_gap=on_gap,
        branch=branch,
        group=group,
        partition_size=partition_size,
    )
    table = Table(title=f"{operation} plan ({result.extent})")
    for col in ("partition", "positions", "first", "last", "steps", "variables"):
        table.add_column(col)
    for row in result.rows():
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    for note in result.notes:
        console.print(note)
    parts = len(result.partitions)
    console.print(f"{result.steps} step(s), {parts} partition(s); nothing written.")


# ------------------------------------------------------------------ progress bar


@contextlib.contextmanager
def partition_progress(out: Console, description: str = "writing") -> Iterator[Progress]:
    """A rich progress bar advanced as partition tasks of flows run in this process finish."""
    from icechunk_prefect.reporting.progress import progress_listener

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("partitions"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=out,
        transient=False,
    )
    task_id = progress.add_task(description, total=None, last="")

    def on_progress(done: int, total: int, label: str) -> None:
        progress.update(task_id, completed=done, total=total, last=label)

    with progress, progress_listener(on_progress):
        yield progress


# ------------------------------------------------------------------ history


@app.command()
def history(
    repo: Annotated[
        str, typer.Argument(help="Repository path, or icechunk-repository/<saved block name>.")
    ],
    branch: Annotated[str, typer.Option(help="Branch to list.")] = "main",
    limit: Annotated[int, typer.Option(min=1, help="Newest commits to show.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON lines instead of a table.")
    ] = False,
) -> None:
    """List a branch's commits with the run metadata each carries.

    For commits made by icechunk-prefect: the flow run (name and id), its
    parameters, the number of partitions, the variables and region written.
    """
    from icechunk_prefect.reporting.history import commit_history

    out = Console()  # reads COLUMNS now (not at import)
    records = commit_history(repo, branch, limit=limit)
    if as_json:
        for rec in records:
            typer.echo(json.dumps(rec.to_dict(), sort_keys=True))
        return
    table = Table(title=f"{repo} @ {branch}", show_lines=True)
    for col in ("snapshot", "written", "message", "flow run", "parameters", "partitions"):
        table.add_column(col, overflow="fold")
    for rec in records:
        run = f"{rec.flow_run_name}\n{rec.flow_run_id}" if rec.flow_run_id else "-"
        params = (
            ", ".join(f"{k}={v}" for k, v in rec.parameters.items() if v is not None)
            if rec.parameters
            else "-"
        )
        table.add_row(
            rec.snapshot_id,
            rec.written_at.strftime("%Y-%m-%d %H:%M:%S"),
            rec.message,
            run,
            params,
            "-" if rec.partitions is None else str(rec.partitions),
        )
    out.print(table)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
