"""Benchmark icechunk-prefect against plain ``icechunk.xarray.to_icechunk``, the write limit
and its own targets (issue 14). Every row prints its target and "met"/"missed"; all ratios are
measured side by side in one run, on one Dask cluster and one Prefect API.

Usage::

    uv run python benchmarks/run.py          # full size (2 GB): ~15 min on a quiet 2-core
                                             # machine, plus row 4's untimed making of
                                             # 100,000 forks (minutes; see --forks)
    uv run python benchmarks/run.py --quick  # tiny sizes, a smoke test (~3 min; the demo
                                             # rows run alongside the others there)
    uv run python benchmarks/run.py --size-gb 0.3 --partitions 200 --forks 2000 --skip-demo

Rows (``--rows`` takes the numbers; ``demo`` is an alias of 7, ``--skip-demo`` drops it):

  1a/1b/1c  2 GB written by plain ``to_icechunk`` / the flow, whole graph / partitioned:
            flow <= 1.02 x plain
  2         the write limit (numpy -> zarr -> Icechunk, one process): throughput / limit
            >= 0.85 for each way (judged on 1c, the partitioned flow)
  3, 3c     per extra partition: wall time, and the flow process's CPU time
            (``time.process_time()``; the Dask scheduler, workers and the Prefect API are
            other processes) <= 15 ms (judged on 3c)
  3p        partitions per second one flow process can drive: cost model 1 / (3c's CPU
            seconds per partition) >= 200
  4, 4g     merge + commit of --forks forks (default 100,000) <= 3 s; the gate's object check
  5s, 5     resume after a half-way kill, 256 MB / 2 GB: re-run / full <= 0.60 / <= 0.52
  6a-6d     flow process peak memory at two sizes: does not grow with the data
  7a, 7b    ``uv run icechunk-prefect demo`` cold (fresh copy of the project tree, fresh
            PREFECT_HOME, `uv sync --compile-bytecode` included) <= 30 s / warm (same copy
            again) <= 15 s
  8         append one time step to the 2 GB dataset: flow <= plain to_icechunk + commit + 1.5 s
  9         a tiny flow call on the running cluster and API (median of 3, after a warm-up)
            <= 2.0 s
  10a-10e   small writes through ``to_icechunk(ds, path)`` with no cluster argument, each size
            in a fresh process with no Prefect API (10 MB and 100 MB; quick: 1.8 / 7.2 MB):
            first call (broken down: API start, cluster start, imports, the rest) <= an empty
            flow's first call in a fresh process (10e) + 3 s; second call <= plain
            ``to_icechunk`` + commit on the running cluster + 2 s
  11        two writers: a backfill of the newest --backfill-partitions chunks while another
            process appends a day every --append-every seconds: it lands; partitions re-written
            <= those holding a collided chunk (one per round: the last chunk); wall time
            <= 1.1 x the same backfill alone

Without ``--address`` the Dask cluster (a LocalCluster) runs in a separate process, so the
benchmark process's CPU time is the flow process's alone. Prints a markdown table (with the
machine's cores, memory, load and library versions) and saves it under
``benchmarks/results/``. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROWS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")
ROW_ALIASES = {"demo": "7"}
MB = 1e6
MEMORY_TOLERANCE_MB = 32  # row 6: peak RSS growth still counted as "not growing"
QUICK_DEMO_ARGS = ["--days", "20", "--nlat", "20", "--nlon", "20"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (the test suite runs this)")
    p.add_argument("--size-gb", type=float, help="rows 1, 2, 5, 8 dataset (default 2; quick 0.002)")
    p.add_argument("--chunk-mb", type=float, default=25.0, help="Zarr/dask chunk size (default 25)")
    p.add_argument("--partitions", type=int, help="row 3: tiny partitions (default 1000; quick 12)")
    p.add_argument("--forks", type=int, help="row 4: forks to merge (default 100000; quick 60)")
    p.add_argument(
        "--memory-gb", type=float, nargs=2, help="row 6: two sizes (default 1 4; quick 0.001 0.004)"
    )
    p.add_argument("--resume-partitions", type=int, help="row 5: partitions (default 8; quick 4)")
    p.add_argument(
        "--resume-small-gb",
        type=float,
        help="row 5s: the small resume dataset, GiB (default 0.25; quick 0.001)",
    )
    p.add_argument(
        "--partition-size",
        type=int,
        help="rows 1, 6: time steps per partition of the partitioned flow (default: the flow's own "
        "choice, ~256 MB partitions; quick: 4 partitions)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        help="rows 1 and 8: runs per way, the median is kept (default 3; quick 1)",
    )
    p.add_argument(
        "--demo-args",
        help="rows 7a/7b: extra arguments of `icechunk-prefect demo` (default: none, the demo's "
        f"own sizes; quick: {' '.join(QUICK_DEMO_ARGS)!r})",
    )
    p.add_argument(
        "--backfill-partitions",
        type=int,
        help="row 11: chunks (partitions) the backfill rewrites (default 24; quick 3)",
    )
    p.add_argument(
        "--append-every",
        type=float,
        default=4.0,
        help="row 11: seconds between the other process's appends (default 4)",
    )
    p.add_argument("--skip-demo", action="store_true", help="leave out rows 7a/7b (the demo)")
    p.add_argument(
        "--rows",
        default=",".join(ROWS),
        help="rows to run, e.g. 1,2 or 3,9 ('demo' = 7; default all)",
    )
    p.add_argument("--address", help="an existing Dask scheduler (default: start a LocalCluster)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--threads", type=int, default=1, help="LocalCluster threads per worker")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for the markdown result")
    p.add_argument("--workdir", help="folder for the repositories (default: a temporary one)")
    p.add_argument("--profile", action="store_true", help="add profiles of what dominates")
    p.add_argument(
        "--small-steps",
        type=int,
        nargs=2,
        help="row 10: time steps of the two small writes, 451 KB each (default 24 240; quick 4 16)",
    )
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--first-call-child", help=argparse.SUPPRESS)
    p.add_argument("--cluster-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.size_gb = args.size_gb or (0.002 if quick else 2.0)
    args.partitions = args.partitions or (12 if quick else 1000)
    args.forks = args.forks or (60 if quick else 100_000)
    args.memory_gb = args.memory_gb or ([0.001, 0.004] if quick else [1.0, 4.0])
    args.resume_partitions = args.resume_partitions or (4 if quick else 8)
    args.resume_small_gb = args.resume_small_gb or (0.001 if quick else 0.25)
    args.repeat = args.repeat or (1 if quick else 3)
    args.backfill_partitions = args.backfill_partitions or (3 if quick else 24)
    args.small_steps = args.small_steps or ([4, 16] if quick else [24, 240])
    if args.demo_args is None:
        args.demo_args = list(QUICK_DEMO_ARGS) if quick else []
    else:
        args.demo_args = args.demo_args.split()
    if quick and args.partition_size is None:
        args.partition_size = 96  # 352 steps of 16: 4 partitions
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    rows = [ROW_ALIASES.get(r, r) for r in rows]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        p.error(f"unknown rows {unknown}; known: {', '.join(ROWS)} (and 'demo' for 7)")
    if args.skip_demo:
        rows = [r for r in rows if r != "7"]
    args.rows = rows
    return args


def prepare_environment(workdir: Path) -> None:
    """Settings that must be in place before prefect is imported."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    if not os.environ.get("PREFECT_API_URL"):
        # Our own ephemeral server and database: other runs on this machine are left alone.
        os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect-home"))


def shape_for(args: argparse.Namespace) -> Any:
    from cases import Shape

    if args.quick:
        return Shape(nlat=16, nlon=32, time_chunk=16)
    nlat, nlon = 720, 1440  # a 0.25 degree global grid: 4.1 MB per float32 step
    step = nlat * nlon * 4
    return Shape(nlat=nlat, nlon=nlon, time_chunk=max(1, round(args.chunk_mb * MB / step)))


# ------------------------------------------------------------- the cluster (child)


def cluster_child(spec: dict[str, Any]) -> None:
    """Run a LocalCluster in this process until the parent closes our stdin.

    The benchmark's own process then holds only the flow (and the plain writes'
    client): its ``time.process_time()`` is the flow process's CPU, not the scheduler's.
    """
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=spec["workers"],
        threads_per_worker=spec["threads"],
        processes=True,
        dashboard_address=":0",
    )
    print("CLUSTER_ADDRESS " + cluster.scheduler_address, flush=True)
    try:
        sys.stdin.read()  # EOF: the parent is done (or gone)
    finally:
        cluster.close()


class ClusterProcess:
    """A LocalCluster in a child process (see :func:`cluster_child`)."""

    def __init__(self, workers: int, threads: int, log: Path, timeout: float = 120) -> None:
        spec = json.dumps({"workers": workers, "threads": threads})
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--cluster-child", spec],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        self.address = ""
        while not self.address:
            text = log.read_text()
            for line in text.splitlines():
                if line.startswith("CLUSTER_ADDRESS "):
                    self.address = line.split(" ", 1)[1].strip()
            if self.address:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the cluster process did not start:\n{text[-3000:]}")
            time.sleep(0.2)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.terminate()  # our own child, by its pid
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        self._log.close()


def api_process_note(api: str) -> str:
    """Which process serves the Prefect API: confirm it is not the flow (this) process."""
    from urllib.parse import urlparse

    import psutil

    port = urlparse(api).port
    me = os.getpid()
    listen = psutil.CONN_LISTEN
    mine = [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == listen and c.laddr and c.laddr.port == port
    ]
    owners: set[int] = set()
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == listen and c.laddr and c.laddr.port == port and c.pid:
                owners.add(c.pid)
    except (psutil.AccessDenied, OSError):
        pass
    if mine or me in owners:
        return f"the Prefect API ({api}) listens in the flow process (pid {me}): its CPU IS counted"
    who = []
    for pid in sorted(owners):
        try:
            p = psutil.Process(pid)
            parent = "a child of the flow process" if p.ppid() == me else f"parent {p.ppid()}"
            who.append(f"pid {pid} ({p.name()}, {parent})")
        except psutil.Error:
            who.append(f"pid {pid}")
    served = ", ".join(who) if who else "another process (its pid is not visible here)"
    return (
        f"the Prefect API ({api}) is served by {served}, not by the flow process (pid {me}): "
        "its CPU is not in the flow process's time.process_time()"
    )


# ------------------------------------------------------------- row 6 (child)


def _peak_rss() -> int | None:
    """This process's resident-set high-water mark (``VmHWM``), in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Start a new high-water mark from the current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(spec: dict[str, Any]) -> None:
    """Run one flow in this (fresh) process; print the process's peak RSS during it as JSON.

    ``getrusage().ru_maxrss`` is not used: Linux carries it over from the parent
    across fork and exec, so it reports the benchmark's own peak, not this flow's.
    """
    import psutil

    proc = psutil.Process()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)

    import cases

    shape = cases.Shape(**spec["shape"])
    ds = shape.dataset(spec["gb"] * 2**30)
    path = spec["path"]
    kw = {"partition_size": spec["partition_size"]} if spec.get("partition_size") else {}
    peak_before = _peak_rss()
    reset = _reset_peak_rss()
    rss_before = proc.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timing = cases.write_flow(ds, path, spec["address"], partitioned=spec["partitioned"], **kw)
    stop.set()
    sampler.join()
    hwm = _peak_rss() if reset else None
    cases.verify(path, ds, full=False)
    cases.cleanup(path)
    result = {
        "rss_before": rss_before,
        "peak_before": peak_before,
        "peak_sampled": peak[0],
        "peak": hwm if hwm is not None else peak[0],
        "peak_source": "VmHWM" if hwm is not None else "sampled every 10 ms",
        "seconds": timing.seconds,
        "nbytes": timing.nbytes,
    }
    print("MEMORY_RESULT " + json.dumps(result), flush=True)


def run_memory_children(specs: list[dict[str, Any]], parallel: bool) -> list[dict[str, Any]]:
    """Run each spec in a fresh process (all at once when ``parallel``); collect the results."""
    me = str(Path(__file__).resolve())

    def start(spec: dict[str, Any]) -> subprocess.Popen[str]:
        cmd = [sys.executable, me, "--memory-child", json.dumps(spec)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    results = []
    if parallel:
        procs = [start(s) for s in specs]
        outputs = [(p, *p.communicate()) for p in procs]
    else:
        outputs = []
        for s in specs:
            p = start(s)
            outputs.append((p, *p.communicate()))
    for proc, out, err in outputs:
        found = [ln for ln in out.splitlines() if ln.startswith("MEMORY_RESULT ")]
        if not found:
            raise RuntimeError(
                f"memory child failed (exit {proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
            )
        results.append(json.loads(found[-1].split(" ", 1)[1]))
    return results


# ------------------------------------------------------------- the table


def fmt_s(x: float) -> str:
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def size_text(nbytes: float) -> str:
    if nbytes >= 2**28:
        return f"{nbytes / 2**30:.2f} GiB"
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def verdict(
    value: float,
    target: float,
    *,
    at_least: bool = False,
    unit: str = "",
    digits: int = 2,
    name: str = "",
) -> str:
    """``"<= 1.02: met"`` (or ``">= ..."`` with ``at_least``), optionally with a unit and a name."""
    ok = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    head = f"{name} " if name else ""
    return f"{head}{sign} {target:.{digits}f}{unit}: {'met' if ok else 'missed'}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def _row_order(key: str) -> tuple[int, str]:
    digits = "".join(ch for ch in key if ch.isdigit())
    return (int(digits) if digits else 99, key)


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.notes: list[str] = []
        self.profiles: list[tuple[str, str]] = []
        self.started = time.monotonic()

    def row(self, key: str, what: str, result: str, ratio: str = "", target: str = "") -> None:
        self.rows.append((key, what, result, ratio, target))
        elapsed = time.monotonic() - self.started
        print(f"  [{key} @ {elapsed:.0f}s] {what}: {result} {ratio} {target}".rstrip(), flush=True)

    def markdown(self, facts: dict[str, Any], setup: dict[str, Any]) -> str:
        out = ["# icechunk-prefect benchmark", "", "## Machine", ""]
        out += ["| fact | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in facts.items()]
        out += ["", "## Setup", "", "| setting | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in setup.items()]
        out += ["", "## Results", ""]
        out += ["| # | measurement | result | ratio | target |", "|---|---|---|---|---|"]
        rows = sorted(self.rows, key=lambda r: _row_order(r[0]))  # stable: same key keeps order
        out += [f"| {' | '.join(_cell(c) for c in r)} |" for r in rows]
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        if self.profiles:
            out += ["", "## Profiles", ""]
            for title, text in self.profiles:
                out += [f"### {title}", "", "```text", text.rstrip(), "```", ""]
        return "\n".join(out).rstrip() + "\n"


def _median(timings: list[Any]) -> Any:
    """The median run (by wall time; the lower middle one of an even count)."""
    ordered = sorted(timings, key=lambda t: t.seconds)
    return ordered[(len(ordered) - 1) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    started_env = dict(os.environ)  # before we set anything: what the demo rows start from
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.memory_child:
        spec = json.loads(args.memory_child)
        prepare_environment(Path(spec["path"]).parent)
        memory_child(spec)
        return 0
    if args.cluster_child:
        cluster_child(json.loads(args.cluster_child))
        return 0
    if args.first_call_child:
        spec = json.loads(args.first_call_child)
        import cases

        result = cases.first_calls(spec["kind"], spec["steps"], spec["workdir"])
        print("FIRST_CALL_RESULT " + json.dumps(result), flush=True)
        return 0

    own_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="icechunk-prefect-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    prepare_environment(workdir)
    import machine  # after the environment: nothing here imports prefect

    facts = machine.facts()
    print("Machine:", json.dumps(facts, indent=1), flush=True)
    t_run = time.monotonic()
    try:
        report, setup = run_rows(args, workdir, started_env)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    facts["load average at end (1 / 5 / 15 min)"] = machine.load()
    setup["benchmark wall time"] = fmt_s(time.monotonic() - t_run)
    text = report.markdown(facts, setup)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = "quick" if args.quick else f"{args.size_gb:g}gb"
    target = out / f"{stamp}-{label}.md"
    target.write_text(text)
    print("\n" + text, flush=True)
    print(f"saved {target}", flush=True)
    return 0


def run_rows(
    args: argparse.Namespace, workdir: Path, started_env: dict[str, str]
) -> tuple[Report, dict[str, Any]]:
    report = Report()
    setup: dict[str, Any] = {"mode": "quick" if args.quick else "full"}
    demo_thread = None
    if "7" in args.rows:
        if args.quick:
            # A smoke test: the demo runs alongside the other rows to keep --quick short.
            setup["demo timing"] = (
                "quick: rows 7a/7b ran alongside the other rows (all timings are smoke-test "
                "figures)"
            )
            demo_thread = threading.Thread(
                target=demo_rows_safely, args=(args, workdir, started_env, report, setup)
            )
            demo_thread.start()
        else:
            # Full: the demo rows first, in their own processes, while nothing of ours runs.
            setup["demo timing"] = "rows 7a/7b ran first, alone (no cluster or API of ours yet)"
            demo_rows_safely(args, workdir, started_env, report, setup)
    try:
        _other_rows(args, workdir, report, setup)
        return report, setup
    finally:
        if demo_thread is not None:
            demo_thread.join()


def _other_rows(
    args: argparse.Namespace, workdir: Path, report: Report, setup: dict[str, Any]
) -> None:
    if not set(args.rows) - {"7"}:
        return

    import cases
    import cloudpickle
    import profiling

    from icechunk_prefect.runtime import ensure_shared_api

    # Workers cannot import the benchmark's modules: ship their functions by value.
    cloudpickle.register_pickle_by_value(cases)

    api = ensure_shared_api()
    cluster = None
    address = args.address
    if not address:
        cluster = ClusterProcess(args.workers, args.threads, workdir / "cluster.log")
        address = cluster.address
    try:
        _rows(args, workdir, address, api, cluster, cases, profiling, report, setup)
    finally:
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------- rows 7a/7b: the demo


def demo_rows_safely(
    args: argparse.Namespace,
    workdir: Path,
    started_env: dict[str, str],
    report: Report,
    setup: dict[str, Any],
) -> None:
    """:func:`demo_rows`; an error (no git, a copy that fails) becomes failed rows, not a crash."""
    try:
        demo_rows(args, workdir, started_env, report, setup)
    except Exception as exc:
        done = {r[0] for r in report.rows}
        for key, target in (("7a", 30), ("7b", 15)):
            if key not in done:
                report.row(
                    key,
                    "demo (`uv run icechunk-prefect demo`)",
                    f"FAILED: {type(exc).__name__}: {exc}",
                    "",
                    f"<= {target} s: missed (failed)",
                )


def demo_rows(
    args: argparse.Namespace,
    workdir: Path,
    started_env: dict[str, str],
    report: Report,
    setup: dict[str, Any],
) -> None:
    import demo

    uv = demo.uv_executable()
    what = "`uv run icechunk-prefect demo" + "".join(f" {a}" for a in args.demo_args) + "`"
    targets = {"7a": 30.0, "7b": 15.0}
    if uv is None:
        for key in targets:
            report.row(key, what, "not measured: no `uv` found", "", f"<= {targets[key]:.0f} s")
        return
    root = demo.project_root(HERE)
    copy = workdir / "demo-project"
    shutil.rmtree(copy, ignore_errors=True)
    files, copy_s = demo.copy_project(root, copy)
    home = workdir / "demo-prefect-home"
    shutil.rmtree(home, ignore_errors=True)
    env = demo.demo_env(started_env, home)
    cache = demo.uv_cache_dir(uv, env)
    setup["demo (rows 7a/7b)"] = (
        f"{what} in a copy of {root} ({files} files: tracked + untracked not ignored, "
        f"no .venv; copied in {fmt_s(copy_s)}, untimed); PREFECT_HOME {home} (new for 7a, "
        f"kept for 7b); uv cache {cache}, shared with this machine (as a user's is)"
    )
    print("demo: cold run...", flush=True)
    repo = workdir / "demo-repo"
    runs = {}
    for key in ("7a", "7b"):
        runs[key] = demo.run_demo(uv, copy, env, repo, args.demo_args, 900, build=key == "7a")
    labels = {
        "7a": "demo, cold: fresh copy of the project, env build (`uv sync --compile-bytecode`, "
        "as the README says where PYTHONDONTWRITEBYTECODE is set; timed), new PREFECT_HOME",
        "7b": "demo, warm: the same copy and PREFECT_HOME again",
    }
    for key, run in runs.items():
        target = targets[key]
        if run.ok:
            own = (
                f"demo's own: written {run.written_mb:,g} MB in {run.written_s:.1f} s, "
                f"set-up {run.setup_s if run.setup_s is not None else float('nan'):.1f} s"
            )
            rest = run.seconds - run.written_s - (run.setup_s or 0.0)
            result = (
                f"{fmt_s(run.seconds)} wall ({own}; the rest, {fmt_s(rest)}: uv, "
                "interpreter and imports, data set-up, read-back check)"
            )
            report.row(
                key,
                f"{labels[key]}: {what}",
                result,
                "",
                verdict(run.seconds, target, unit=" s", digits=0),
            )
        else:
            tail = " / ".join(run.output.strip().splitlines()[-3:])[-300:]
            report.row(
                key,
                f"{labels[key]}: {what}",
                f"FAILED after {fmt_s(run.seconds)} (exit {run.returncode}): {tail}",
                "",
                f"<= {target:.0f} s: missed (failed)",
            )
            report.notes.append(f"Row {key} output (last 2000 characters): {run.output[-2000:]!r}")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------- the other rows


def _rows(
    args: argparse.Namespace,
    workdir: Path,
    address: str,
    api: str,
    cluster: ClusterProcess | None,
    cases: Any,
    profiling: Any,
    report: Report,
    setup: dict[str, Any],
) -> None:
    from distributed import Client

    shape = shape_for(args)
    with Client(address, timeout=30) as c:
        info = c.scheduler_info(n_workers=-1)["workers"]
        workers = f"{len(info)} x {sorted({w['nthreads'] for w in info.values()})} threads"
    ds = shape.dataset(args.size_gb * 2**30)
    nbytes = cases.data_bytes(ds)
    where = (
        f"LocalCluster in a separate process (pid {cluster.proc.pid}, scheduler and workers "
        "outside the flow process)"
        if cluster is not None
        else "given"
    )
    api_note = api_process_note(api)
    setup.update(
        {
            "dataset (rows 1, 2, 5, 8)": (
                f"{len(ds.data_vars)} float32 variables x {dict(ds.sizes)}, "
                f"{size_text(nbytes)} ({nbytes / MB:.0f} MB)"
            ),
            "chunks": (
                f"{shape.time_chunk} x {shape.nlat} x {shape.nlon} = "
                f"{shape.chunk_bytes / MB:.2f} MB"
            ),
            "Dask cluster": f"{where}: {address}, {workers}",
            "Prefect API": api if args.address else f"{api} (started for this run)",
            "Prefect API process": api_note,
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", ""),
            "repeats (rows 1, 8, 11; median kept; 1 and 8 interleave the ways)": args.repeat,
            "profiled": "yes (timings include profiler overhead)" if args.profile else "no",
        }
    )
    print("Setup:", json.dumps(setup, indent=1), flush=True)

    print(f"warming up (untimed) @ {time.monotonic() - report.started:.0f}s...", flush=True)
    warm = shape.dataset(1)
    # Two rounds (one in --quick): the first pays for imports on the workers.
    fixed: dict[str, Any] = {}
    for _ in range(1 if args.quick else 2):
        fixed = {
            "1a": cases.write_plain(warm, cases.fresh(workdir, "warm-a"), address),
            "1b": cases.write_flow(
                warm, cases.fresh(workdir, "warm-b"), address, partitioned=False
            ),
            "1c": cases.write_flow(warm, cases.fresh(workdir, "warm-c"), address, partitioned=True),
        }
    for key in fixed:
        cases.cleanup(str(workdir / f"warm-{key[-1]}"))

    rows_1_2(args, workdir, address, ds, fixed, warm, cases, profiling, report)
    if "9" in args.rows:
        row_9(workdir, address, cases, report)
    if "8" in args.rows:
        row_8(args, workdir, address, ds, cases, report)
    if "3" in args.rows:
        row_3(args, workdir, address, cases, profiling, report, api_note)
    if "4" in args.rows:
        row_4(args, workdir, cases, report)
    if "5" in args.rows:
        small = shape.dataset(args.resume_small_gb * 2**30)
        for key, data, target in (("5s", small, 0.60), ("5", ds, 0.52)):
            r = cases.resume(data, str(workdir / f"row{key}"), address, args.resume_partitions)
            ratio = r["rerun"].seconds / r["full"].seconds
            report.row(
                key,
                f"resume, {size_text(cases.data_bytes(data))}: run killed after "
                f"{r['done_before_kill']} of {r['partitions']} partitions, then re-run",
                f"re-run {fmt_s(r['rerun'].seconds)}, full run {fmt_s(r['full'].seconds)} "
                f"(killed run {fmt_s(r['killed_s'])})",
                f"{ratio:.2f} re-run / full",
                verdict(ratio, target),
            )
    if "6" in args.rows:
        row_6(args, workdir, address, shape, cases, report)
    if "10" in args.rows:
        row_10(args, workdir, address, cases, report)
    if "11" in args.rows:
        row_11(args, workdir, address, cases, report)

    report.notes.append(
        "MB/s counts the data variables' uncompressed bytes (1 MB = 10^6 bytes). Wall times "
        "include Prefect flow-run creation and, for 1a and 8's plain append, connecting the "
        "distributed client; they exclude creating the empty repository and starting the "
        "cluster and the API."
    )
    report.notes.append(
        "Row 2 writes precomputed numpy arrays; the flows also compute the synthetic values "
        "on the workers (the untimed numpy generation time shows what that costs)."
    )
    report.notes.append(
        "Rows 5s/5: the re-run reads the finished partitions' forks from the result storage "
        "and writes only the missing ones; its fixed part (flow run, metadata, validation, "
        "commit) is the same as a full run's, so a smaller size tends to a higher ratio "
        "(hence 5s's looser target)."
    )


def rows_1_2(
    args: argparse.Namespace,
    workdir: Path,
    address: str,
    ds: Any,
    fixed: dict[str, Any],
    warm: Any,
    cases: Any,
    profiling: Any,
    report: Report,
) -> None:
    ways = {
        "1a": ("plain `icechunk.xarray.to_icechunk`, distributed client, one commit", None),
        "1b": ("`to_icechunk` flow, `partitioned=False` (whole graph in one task)", False),
        "1c": ("`to_icechunk` flow, `partitioned=True` (one task per partition)", True),
    }
    runs: dict[str, list[Any]] = {key: [] for key in ways}
    psize = {"partition_size": args.partition_size} if args.partition_size else {}
    if "1" in args.rows or "2" in args.rows:
        for _ in range(max(1, args.repeat)):
            for key, (_, partitioned) in ways.items():
                path = cases.fresh(workdir, f"row{key}")
                prof: dict[str, str] = {}
                t_wall = profiling.now()
                with profiling.flow_process_profile(args.profile, prof):
                    if partitioned is None:
                        t = cases.write_plain(ds, path, address)
                    else:
                        t = cases.write_flow(ds, path, address, partitioned=partitioned, **psize)
                t_end = profiling.now()
                cases.verify(path, ds, full=args.quick)
                cases.cleanup(path)
                runs[key].append(t)
                if args.profile:
                    report.profiles.append((f"{key}: flow process (cProfile)", prof["text"]))
                    workers_text = profiling.safely(
                        "worker profile", profiling.worker_profile, address, t_wall, t_end
                    )
                    report.profiles.append((f"{key}: Dask workers", workers_text))
                    if t.flow_run_id:
                        tasks_text = profiling.safely(
                            "task runs", profiling.task_breakdown, t.flow_run_id
                        )
                        report.profiles.append((f"{key}: Prefect task runs", tasks_text))
    best = {key: _median(ts) for key, ts in runs.items() if ts}
    if "1" in args.rows:
        ref = best["1a"]
        for key, (what, partitioned) in ways.items():
            t = best[key]
            if partitioned:
                what += f", {t.extra.get('partitions', '?')} partitions"
            what += f", {size_text(t.nbytes)}"
            result = (
                f"{fmt_s(t.seconds)}, {t.mb_per_s:.1f} MB/s; committed after {fmt_s(t.to_commit)}"
            )
            if len(runs[key]) > 1:
                result += f" (runs: {', '.join(fmt_s(r.seconds) for r in runs[key])})"
            if key == "1a":
                report.row(key, what, result, "1.00 (reference)", "reference for 1b/1c")
            else:
                ratio = t.seconds / ref.seconds
                commit_ratio = t.to_commit / ref.to_commit
                report.row(
                    key,
                    what,
                    result,
                    f"{ratio:.2f} x plain (to the commit: {commit_ratio:.2f} x)",
                    verdict(ratio, 1.02),
                )
        empty = [cases.empty_flow_call() for _ in range(3)]
        report.notes.append(
            "Prefect's own cost per flow call: a flow that does nothing took "
            f"{', '.join(fmt_s(e) for e in empty)}. Prefect 3.8.8 joins its flow-run heartbeat "
            "thread on exit, and that thread sleeps in 1-second steps, so a flow call returns "
            "on a whole second after it started (+0.5 s on average, up to 1 s), after its "
            "commit has landed: 'committed after' shows when the data became visible."
        )
        extra = {k: fixed[k].seconds - fixed["1a"].seconds for k in ("1b", "1c")}
        plain_rate = best["1a"].nbytes / best["1a"].seconds
        report.notes.append(
            "A small write (one chunk per variable, "
            f"{size_text(cases.data_bytes(warm))}, warm): plain {fmt_s(fixed['1a'].seconds)}, "
            f"whole-graph flow {fmt_s(fixed['1b'].seconds)}, partitioned flow "
            f"{fmt_s(fixed['1c'].seconds)} (committed after {fmt_s(fixed['1a'].to_commit)}, "
            f"{fmt_s(fixed['1b'].to_commit)}, {fmt_s(fixed['1c'].to_commit)}; an empty flow "
            "call costs about 1 s, see above). If the flows' extra time is a fixed cost, a flow "
            f"stays within 1.02 x plain from a plain write of {extra['1b'] / 0.02:.0f} s "
            f"(whole graph) / {extra['1c'] / 0.02:.0f} s (partitioned) on, i.e. about "
            f"{extra['1b'] / 0.02 * plain_rate / 2**30:.1f} / "
            f"{extra['1c'] / 0.02 * plain_rate / 2**30:.1f} GiB at row 1a's rate."
        )

    if "2" in args.rows:
        path = cases.fresh(workdir, "row2")
        lim = cases.write_limit(ds, path)
        cases.verify(path, ds, full=args.quick)
        cases.cleanup(path)
        ratio = {k: best[k].mb_per_s / lim.mb_per_s for k in ("1a", "1b", "1c")}
        report.row(
            "2",
            "write limit: numpy -> zarr's threads -> local Icechunk, no Dask, no Prefect, "
            f"one process, {size_text(lim.nbytes)}",
            f"{fmt_s(lim.seconds)}, {lim.mb_per_s:.1f} MB/s "
            f"(making the values with numpy, untimed: {fmt_s(lim.extra['generate_s'])})",
            f"throughput / limit: 1c: {ratio['1c']:.2f}, 1b: {ratio['1b']:.2f} "
            f"({verdict(ratio['1b'], 0.85, at_least=True)}), "
            f"1a: {ratio['1a']:.2f} (plain, reference)",
            verdict(ratio["1c"], 0.85, at_least=True, name="1c (partitioned flow, judged)"),
        )


def row_11(
    args: argparse.Namespace, workdir: Path, address: str, cases: Any, report: Report
) -> None:
    nlat, nlon, chunk = (16, 32, 10) if args.quick else (360, 720, 10)
    r = cases.backfill_under_appends(
        workdir,
        address,
        nlat=nlat,
        nlon=nlon,
        time_chunk=chunk,
        partitions=args.backfill_partitions,
        append_every=args.append_every,
        repeat=max(1, args.repeat),
    )
    alone, loaded, during = (statistics.median(r[k]) for k in ("alone", "loaded", "during"))
    ratio = during / alone
    step_mb = 3 * nlat * nlon * 4 / MB
    rounds, rewritten = sum(r["rounds"]), sum(r["rewritten"])

    def runs(key: str) -> str:
        return ", ".join(fmt_s(x) for x in r[key])

    report.row(
        "11",
        f"two writers: `backfill_dataset` from day {chunk // 2} to the newest day "
        f"({r['days']} days at first, {r['partitions']} partitions of {chunk} days of "
        f"3 x {nlat} x {nlon} float32, {r['days'] * step_mb:,.0f} MB; the last chunk "
        f"half full) while another process runs `append_dataset` of one day every "
        f"{args.append_every:g} s; {len(r['during'])} run(s) each way, the median kept",
        f"landed each time: round(s) {r['rounds']} (their own time: "
        f"{', '.join(fmt_s(x) for x in r['round_seconds'])}), partition(s) re-written on the "
        f"new tip {r['rewritten']} of {r['partitions']}; append(s) committed during each "
        f"{r['appends_during']} ({r['appends']} in all); with appends {fmt_s(during)} "
        f"({runs('during')}), alone {fmt_s(alone)} ({runs('alone')}), with the same appends "
        f"going to a copy of the dataset (the load, no collision) {fmt_s(loaded)} "
        f"({runs('loaded')}); values verified",
        f"{ratio:.2f} x alone ({during / loaded:.2f} x under the same load); "
        f"re-written {rewritten} / rounds {rounds}",
        f"{verdict(ratio, 1.1)}; re-written <= rounds (one collided chunk a round): "
        f"{'met' if rewritten <= rounds else 'missed'}",
    )
    report.notes.append(
        "Row 11: the appends run in another process on the same Dask cluster and Prefect API, "
        "so on a small machine they also take CPU from the backfill; the time under the same "
        "load (appends to a copy of the dataset) separates that from the cost of landing on a "
        "moving branch (the rounds' own time: reading the other commits' changes, re-writing, "
        "merging and validating)."
    )


def row_9(workdir: Path, address: str, cases: Any, report: Report) -> None:
    tiny = cases.tiny_dataset()
    times = []
    for i in range(4):  # the first is the warm-up
        path = cases.fresh(workdir, f"row9-{i}")
        t = cases.write_flow(tiny, path, address, partitioned=True)
        cases.verify(path, tiny, full=True)
        cases.cleanup(path)
        if i:
            times.append(t.seconds)
    med = statistics.median(times)
    report.row(
        "9",
        f"tiny flow call ({cases.data_bytes(tiny) / 1024:.1f} KiB, "
        f"{', '.join(map(str, tiny.data_vars))}) with "
        "`IcechunkDaskTaskRunner(address=...)` on the running cluster and API",
        f"median {fmt_s(med)} of 3 calls after a warm-up (runs: "
        f"{', '.join(fmt_s(x) for x in times)})",
        "",
        verdict(med, 2.0, unit=" s", digits=1),
    )


def row_8(
    args: argparse.Namespace, workdir: Path, address: str, ds: Any, cases: Any, report: Report
) -> None:
    base_plain = cases.fresh(workdir, "row8-plain")
    base_flow = cases.fresh(workdir, "row8-flow")
    t0 = time.perf_counter()
    cases.write_plain(ds, base_plain, address)
    shutil.copytree(base_plain, base_flow)
    base_s = time.perf_counter() - t0
    n0 = ds.sizes["time"]
    rounds = max(1, args.repeat)
    plain: list[Any] = []
    flow: list[Any] = []
    steps = []
    for k in range(1, rounds + 1):
        step = cases.next_step(ds, k)
        steps.append(step)
        order = ("plain", "flow") if k % 2 else ("flow", "plain")
        for way in order:
            if way == "plain":
                plain.append(cases.append_plain(step, base_plain, address))
            else:
                flow.append(cases.append_flow(step, base_flow, address))
    cases.verify_append(base_plain, n0, steps)
    cases.verify_append(base_flow, n0, steps)
    cases.cleanup(base_plain)
    cases.cleanup(base_flow)
    p = statistics.median(t.seconds for t in plain)
    f = statistics.median(t.seconds for t in flow)
    extra = f - p
    report.row(
        "8",
        f"append one time step ({size_text(cases.data_bytes(steps[0]))}) to the "
        f"{size_text(cases.data_bytes(ds))} dataset, end to end: the flow "
        '(`append_dim="time"`) vs plain `to_icechunk(..., append_dim="time")` + '
        "`session.commit`, same cluster",
        f"flow {fmt_s(f)}, plain {fmt_s(p)} (medians of {rounds} rounds, ways alternating; "
        f"flow: {', '.join(fmt_s(t.seconds) for t in flow)}; plain: "
        f"{', '.join(fmt_s(t.seconds) for t in plain)}); both repositories verified to hold "
        f"the {rounds} new step(s)",
        f"flow - plain = {extra:+.3f} s",
        verdict(extra, 1.5, unit=" s", digits=1, name="flow - plain"),
    )
    report.notes.append(
        f"Row 8: the base ({n0} steps) was written once with plain `to_icechunk` and the "
        f"folder copied, so both ways start from identical repositories ({fmt_s(base_s)}, "
        "untimed); round k appends step k to both."
    )


def row_3(
    args: argparse.Namespace,
    workdir: Path,
    address: str,
    cases: Any,
    profiling: Any,
    report: Report,
    api_note: str,
) -> None:
    n = args.partitions
    many, one = cases.tiny_partitions(n, cases.fresh(workdir, "row3"), address)
    marginal = (many.seconds - one.seconds) / max(1, n - 1)
    cpu_marginal = (many.cpu_s - one.cpu_s) / max(1, n - 1)
    report.row(
        "3",
        f"per extra partition, wall time: {n} tiny partitions (1 step of 2 x 4 float32 each) "
        "vs the same data as 1 partition",
        f"{marginal * 1000:.1f} ms per extra partition ({n} partitions: "
        f"{fmt_s(many.seconds)}; 1 partition: {fmt_s(one.seconds)})",
        f"{many.seconds / n * 1000:.1f} ms per partition, all in",
        verdict(marginal * 1000, 15, unit=" ms", digits=0, name="wall")
        + " (the target is judged on 3c)",
    )
    report.row(
        "3c",
        "per extra partition, flow process CPU (`time.process_time()` of the flow process; "
        "workers, scheduler and Prefect API are other processes)",
        f"{cpu_marginal * 1000:.1f} ms per extra partition (CPU {fmt_s(many.cpu_s)} for {n} "
        f"partitions, {fmt_s(one.cpu_s)} for 1)",
        f"{many.cpu_s / n * 1000:.1f} ms per partition, all in",
        verdict(cpu_marginal * 1000, 15, unit=" ms", digits=0),
    )
    if cpu_marginal > 0:
        rate = 1 / cpu_marginal
        rate_text = f"{rate:,.0f} partitions/s"
    else:
        rate = float("inf")
        rate_text = "unbounded (CPU per extra partition measured <= 0: noise)"
    report.row(
        "3p",
        "partitions per second one flow process can drive (cost model: 1 / row 3c's flow "
        "process CPU seconds per extra partition, not a measured rate)",
        f"{rate_text} (measured wall rate of row 3: {n / many.seconds:,.1f} partitions/s "
        "on this cluster)",
        "",
        verdict(rate, 200, at_least=True, unit=" /s", digits=0),
    )
    report.notes.append(f"Rows 3c/3p: {api_note}.")
    if args.profile and many.flow_run_id:
        breakdown = profiling.safely("task runs", profiling.task_breakdown, many.flow_run_id)
        report.profiles.append((f"3: Prefect task runs, {n} partitions", breakdown))


def row_4(args: argparse.Namespace, workdir: Path, cases: Any, report: Report) -> None:
    n = args.forks
    prof = {} if args.profile else None
    r = cases.merge_commit_forks(n, cases.fresh(workdir, "row4"), prof)
    total = r["merge_s"] + r["commit_s"]
    report.row(
        "4",
        f"merge (`merge_forks`) and commit (`commit_fork`) of {n} forks, one 640-byte chunk each",
        f"{fmt_s(total)} (merge {fmt_s(r['merge_s'])}, commit {fmt_s(r['commit_s'])})",
        f"{total / n * 1e6:.0f} us per fork",
        verdict(total, 3.0, unit=" s", digits=0),
    )
    report.row(
        "4g",
        f"validation gate's object check: probe the {n} chunks of those forks (as for "
        "forks reused by a resumed run)",
        fmt_s(r["gate_s"]),
        f"{r['gate_s'] / n * 1000:.2f} s per 1,000 chunks",
        "no target (reported)",
    )
    if prof is not None:
        report.profiles.append((f"4: merge and commit of {n} forks (cProfile)", prof["text"]))


def row_6(
    args: argparse.Namespace, workdir: Path, address: str, shape: Any, cases: Any, report: Report
) -> None:
    from dataclasses import asdict

    specs = [
        {
            "gb": gb,
            "partitioned": partitioned,
            "partition_size": args.partition_size,
            "address": address,
            "shape": asdict(shape),
            "path": cases.fresh(workdir, f"row6-{partitioned}-{gb}"),
        }
        for partitioned in (True, False)
        for gb in args.memory_gb
    ]
    measured = run_memory_children(specs, parallel=args.quick)
    found = {(s["partitioned"], s["gb"]): m for s, m in zip(specs, measured, strict=True)}
    small, large = args.memory_gb
    for i, partitioned in enumerate((True, False)):
        a, b = found[(partitioned, small)], found[(partitioned, large)]
        kind = "partitioned" if partitioned else "whole graph"
        for j, m in enumerate((a, b)):
            key = f"6{'abcd'[2 * i + j]}"
            result = (
                f"peak RSS {m['peak'] / MB:.0f} MB during the flow ({m['peak_source']}; "
                f"sampled: {m['peak_sampled'] / MB:.0f} MB; RSS before the flow: "
                f"{m['rss_before'] / MB:.0f} MB), "
                f"{fmt_s(m['seconds'])} for {size_text(m['nbytes'])}"
            )
            ratio = ""
            target = f"see {key[0]}{'abcd'[2 * i + 1]}"
            if j == 1:
                grow = (b["peak"] - a["peak"]) / MB
                ratio = f"{grow:+.0f} MB vs {size_text(a['nbytes'])}"
                target = (
                    "does not grow with the data: "
                    + verdict(grow, MEMORY_TOLERANCE_MB, unit=" MB", digits=0, name="growth")
                    + " (tolerance chosen here)"
                )
            report.row(
                key,
                f"flow process peak memory, {kind} flow, writing {size_text(m['nbytes'])}",
                result,
                ratio,
                target,
            )


def first_call_child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run :func:`cases.first_calls` in a fresh process (``env``: no Prefect API); its result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--first-call-child", json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("FIRST_CALL_RESULT ")]
    if proc.returncode or not found:
        raise RuntimeError(
            f"first-call child {spec} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(found[-1].split(" ", 1)[1])


def _breakdown(call: dict[str, float]) -> str:
    return (
        f"Prefect API start {fmt_s(call['api_s'])}, cluster start {fmt_s(call['cluster_s'])}, "
        f"imports {fmt_s(call['imports_s'])}, the rest (flow run, write, commit) "
        f"{fmt_s(call['rest_s'])}"
    )


def row_10(
    args: argparse.Namespace, workdir: Path, address: str, cases: Any, report: Report
) -> None:
    """Small writes with no cluster argument, first and second call in a fresh process,
    against an empty flow in a fresh process and plain ``to_icechunk`` on the running cluster.

    The children get no ``PREFECT_API_URL`` (each starts Prefect's temporary API, as a
    user's script does) and a ``PREFECT_HOME`` of their own, whose database a first,
    untimed child creates (a user's ``~/.prefect`` persists)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(workdir / "first-call-prefect-home")
    spec = {"workdir": str(workdir), "steps": 0}
    first_call_child({**spec, "kind": "empty"}, env)  # untimed: creates the database
    empty = first_call_child({**spec, "kind": "empty"}, env)
    e1, e2 = (c["seconds"] for c in empty["calls"])
    report.row(
        "10e",
        "an empty Prefect flow, first and second call in a fresh process with no Prefect API "
        "(the reference of 10a/10c)",
        f"first {fmt_s(e1)} ({_breakdown(empty['calls'][0])}); second {fmt_s(e2)}",
        "",
        "reference for 10a/10c",
    )
    keys = iter("abcd")
    for steps in args.small_steps:
        ds = cases.small_dataset(steps)
        plain = []
        for i in range(3):  # the first warms the workers up
            path = cases.fresh(workdir, f"row10-plain-{steps}-{i}")
            plain.append(cases.write_plain(ds, path, address).seconds)
            cases.verify_small(path, ds)
            cases.cleanup(path)
        up = statistics.median(plain[1:])
        flow = first_call_child({**spec, "kind": "flow", "steps": steps}, env)
        (first, second), size = flow["calls"], size_text(flow["nbytes"])
        what = f"`to_icechunk(ds, path)`, no cluster argument, {size} ({steps} x 205 x 275 float64"
        what += ", one chunk per step), in a fresh process with no Prefect API"
        report.row(
            f"10{next(keys)}",
            f"{what}: first call",
            f"{fmt_s(first['seconds'])}: {_breakdown(first)}",
            f"empty flow's first call {fmt_s(e1)}: {first['seconds'] - e1:+.2f} s",
            verdict(
                first["seconds"] - e1, 3.0, unit=" s", digits=0, name="first - empty flow's first"
            ),
        )
        report.row(
            f"10{next(keys)}",
            f"{what}: second call",
            f"{fmt_s(second['seconds'])} (plain `to_icechunk` + commit on the running cluster: "
            f"{fmt_s(up)}, median of runs {', '.join(fmt_s(x) for x in plain[1:])} after a "
            "warm-up; both repositories verified)",
            f"{second['seconds'] - up:+.2f} s vs plain",
            verdict(second["seconds"] - up, 2.0, unit=" s", digits=0, name="second - plain"),
        )
    report.notes.append(
        "Rows 10a-10d: the breakdown times Prefect's `SubprocessASGIServer.start` (the temporary "
        "API), `distributed.LocalCluster.__init__` and the imports the calling thread makes "
        "outside those two; the rest is the flow run itself (tasks, write, commit, Prefect's "
        "exit of a flow call). Up to 256 MiB the flow's default runner starts a cluster of "
        "threads in the flow process (see docs/scaling.md)."
    )


if __name__ == "__main__":
    raise SystemExit(main())
