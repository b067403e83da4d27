"""Benchmark icechunk-prefect against plain ``icechunk.xarray.to_icechunk`` and the write limit.

Usage::

    uv run python benchmarks/run.py          # full size (>= 2 GB), ~6 min, quiet 2-core machine
    uv run python benchmarks/run.py --quick  # tiny sizes, a smoke test (~1-2 min)
    uv run python benchmarks/run.py --size-gb 0.3 --partitions 200 --forks 2000

Prints a markdown table (with the machine's cores, memory, load and library
versions) and saves it under ``benchmarks/results/``. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROWS = ("1", "2", "3", "4", "5", "6")
MB = 1e6


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (the test suite runs this)")
    p.add_argument("--size-gb", type=float, help="rows 1, 2, 5 dataset (default 2; quick 0.002)")
    p.add_argument("--chunk-mb", type=float, default=25.0, help="Zarr/dask chunk size (default 25)")
    p.add_argument("--partitions", type=int, help="row 3: tiny partitions (default 1000; quick 12)")
    p.add_argument("--forks", type=int, help="row 4: forks to merge (default 10000; quick 60)")
    p.add_argument(
        "--memory-gb", type=float, nargs=2, help="row 6: two sizes (default 1 4; quick 0.001 0.004)"
    )
    p.add_argument("--resume-partitions", type=int, help="row 5: partitions (default 8; quick 4)")
    p.add_argument(
        "--partition-size",
        type=int,
        help="rows 1, 6: time steps per partition of the partitioned flow (default: the flow's own "
        "choice, ~256 MB partitions; quick: 4 partitions)",
    )
    p.add_argument(
        "--repeat", type=int, help="row 1: runs per way, the median is kept (default 3; quick 1)"
    )
    p.add_argument("--rows", default=",".join(ROWS), help="rows to run, e.g. 1,2 (default all)")
    p.add_argument("--address", help="an existing Dask scheduler (default: start a LocalCluster)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--threads", type=int, default=1, help="LocalCluster threads per worker")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for the markdown result")
    p.add_argument("--workdir", help="folder for the repositories (default: a temporary one)")
    p.add_argument("--profile", action="store_true", help="add profiles of what dominates")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.size_gb = args.size_gb or (0.002 if quick else 2.0)
    args.partitions = args.partitions or (12 if quick else 1000)
    args.forks = args.forks or (60 if quick else 10000)
    args.memory_gb = args.memory_gb or ([0.001, 0.004] if quick else [1.0, 4.0])
    args.resume_partitions = args.resume_partitions or (4 if quick else 8)
    args.repeat = args.repeat or (1 if quick else 3)
    if quick and args.partition_size is None:
        args.partition_size = 96  # 352 steps of 16: 4 partitions
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
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
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**28 else f"{nbytes / 2**20:.1f} MiB"


def verdict(value: float, target: float) -> str:
    return f"<= {target:.2f}: {'met' if value <= target else 'missed'}"


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
        out += [f"| {' | '.join(r)} |" for r in self.rows]
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
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.memory_child:
        spec = json.loads(args.memory_child)
        prepare_environment(Path(spec["path"]).parent)
        memory_child(spec)
        return 0

    own_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="icechunk-prefect-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    prepare_environment(workdir)
    import machine  # after the environment: nothing here imports prefect

    facts = machine.facts()
    print("Machine:", json.dumps(facts, indent=1), flush=True)
    try:
        report, setup = run_rows(args, workdir)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    facts["load average at end (1 / 5 / 15 min)"] = machine.load()
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


def run_rows(args: argparse.Namespace, workdir: Path) -> tuple[Report, dict[str, Any]]:
    import cases
    import cloudpickle
    import profiling

    from icechunk_prefect import ensure_shared_api

    # Workers cannot import the benchmark's modules: ship their functions by value.
    cloudpickle.register_pickle_by_value(cases)

    api = ensure_shared_api()
    cluster = None
    address = args.address
    if not address:
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            dashboard_address=":0",
        )
        address = cluster.scheduler_address
    try:
        return _rows(args, workdir, address, api, cases, profiling)
    finally:
        if cluster is not None:
            cluster.close()


def _rows(
    args: argparse.Namespace, workdir: Path, address: str, api: str, cases: Any, profiling: Any
) -> tuple[Report, dict[str, Any]]:
    from distributed import Client

    report = Report()
    shape = shape_for(args)
    with Client(address, timeout=30) as c:
        info = c.scheduler_info(n_workers=-1)["workers"]
        workers = f"{len(info)} x {sorted({w['nthreads'] for w in info.values()})} threads"
    ds = shape.dataset(args.size_gb * 2**30)
    nbytes = cases.data_bytes(ds)
    setup = {
        "mode": "quick" if args.quick else "full",
        "dataset (rows 1, 2, 5)": (
            f"{len(ds.data_vars)} float32 variables x {dict(ds.sizes)}, "
            f"{size_text(nbytes)} ({nbytes / MB:.0f} MB)"
        ),
        "chunks": (
            f"{shape.time_chunk} x {shape.nlat} x {shape.nlon} = {shape.chunk_bytes / MB:.2f} MB"
        ),
        "Dask cluster": f"{'given' if args.address else 'LocalCluster'}: {workers}",
        "Prefect API": api if args.address else f"{api} (started for this run)",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", ""),
        "repeats (row 1, median kept, ways interleaved)": args.repeat,
        "profiled": "yes (timings include profiler overhead)" if args.profile else "no",
    }
    print("Setup:", json.dumps(setup, indent=1), flush=True)

    print("warming up (untimed)...", flush=True)
    warm = shape.dataset(1)
    fixed = {
        "1a": cases.write_plain(warm, cases.fresh(workdir, "warm-a"), address),
        "1b": cases.write_flow(warm, cases.fresh(workdir, "warm-b"), address, partitioned=False),
        "1c": cases.write_flow(warm, cases.fresh(workdir, "warm-c"), address, partitioned=True),
    }
    # A second, warm round: the first one pays for imports on the workers.
    fixed = {
        "1a": cases.write_plain(warm, cases.fresh(workdir, "warm-a"), address),
        "1b": cases.write_flow(warm, cases.fresh(workdir, "warm-b"), address, partitioned=False),
        "1c": cases.write_flow(warm, cases.fresh(workdir, "warm-c"), address, partitioned=True),
    }

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
            result = (
                f"{fmt_s(t.seconds)}, {t.mb_per_s:.1f} MB/s; committed after {fmt_s(t.to_commit)}"
            )
            if len(runs[key]) > 1:
                result += f" (runs: {', '.join(fmt_s(r.seconds) for r in runs[key])})"
            if key == "1a":
                report.row(key, what, result, "1.00 (reference)")
            else:
                ratio = t.seconds / ref.seconds
                commit_ratio = t.to_commit / ref.to_commit
                report.row(
                    key,
                    what,
                    result,
                    f"{ratio:.2f} x plain (to the commit: {commit_ratio:.2f} x)",
                    verdict(ratio, 1.10),
                )
        empty = [cases.empty_flow_call() for _ in range(3)]
        report.notes.append(
            "Prefect's own cost per flow call: a flow that does nothing took "
            f"{', '.join(fmt_s(e) for e in empty)}. Prefect 3.8.8 joins its flow-run heartbeat "
            "thread on exit, and that thread sleeps in 1-second steps, so a flow call returns "
            "on a whole second after it started (+0.5 s on average, up to 1 s), after its "
            "commit has landed: 'committed after' shows when the data became visible."
        )

    if "1" in args.rows:
        extra = {k: fixed[k].seconds - fixed["1a"].seconds for k in ("1b", "1c")}
        plain_rate = best["1a"].nbytes / best["1a"].seconds
        report.notes.append(
            "A small write (one chunk per variable, "
            f"{size_text(cases.data_bytes(warm))}, warm): plain {fmt_s(fixed['1a'].seconds)}, "
            f"whole-graph flow {fmt_s(fixed['1b'].seconds)}, partitioned flow "
            f"{fmt_s(fixed['1c'].seconds)} (committed after {fmt_s(fixed['1a'].to_commit)}, "
            f"{fmt_s(fixed['1b'].to_commit)}, {fmt_s(fixed['1c'].to_commit)}; an empty flow "
            "call costs about 1 s, see above). If the flows' extra time is a fixed cost, a flow "
            f"stays within 1.10 x plain from a plain write of {extra['1b'] / 0.1:.0f} s "
            f"(whole graph) / {extra['1c'] / 0.1:.0f} s (partitioned) on, i.e. about "
            f"{extra['1b'] / 0.1 * plain_rate / 2**30:.1f} / "
            f"{extra['1c'] / 0.1 * plain_rate / 2**30:.1f} GiB at row 1a's rate."
        )

    if "2" in args.rows:
        path = cases.fresh(workdir, "row2")
        lim = cases.write_limit(ds, path)
        cases.verify(path, ds, full=args.quick)
        cases.cleanup(path)
        ratios = ", ".join(
            f"{k}: {best[k].mb_per_s / lim.mb_per_s:.2f}" for k in ("1a", "1b", "1c")
        )
        report.row(
            "2",
            "write limit: numpy -> zarr's threads -> local Icechunk, no Dask, no Prefect",
            f"{fmt_s(lim.seconds)}, {lim.mb_per_s:.1f} MB/s "
            f"(making the values with numpy, untimed: {fmt_s(lim.extra['generate_s'])})",
            f"throughput / limit: {ratios}",
        )

    if "3" in args.rows:
        n = args.partitions
        many, one = cases.tiny_partitions(n, cases.fresh(workdir, "row3"), address)
        marginal = (many.seconds - one.seconds) / max(1, n - 1)
        report.row(
            "3",
            f"per-partition overhead: {n} tiny partitions (1 step of 2 x 4 float32 each)",
            f"{marginal:.3f} s per extra partition "
            f"({n} partitions: {fmt_s(many.seconds)}; same data as 1 partition: "
            f"{fmt_s(one.seconds)})",
            f"{many.seconds / n:.3f} s per partition, all in",
        )
        if args.profile and many.flow_run_id:
            breakdown = profiling.safely("task runs", profiling.task_breakdown, many.flow_run_id)
            report.profiles.append((f"3: Prefect task runs, {n} partitions", breakdown))

    if "4" in args.rows:
        n = args.forks
        prof = {} if args.profile else None
        r = cases.merge_commit_forks(n, cases.fresh(workdir, "row4"), prof)
        report.row(
            "4",
            f"merge (`merge_forks`) and commit (`commit_fork`) of {n} forks, "
            "one 640-byte chunk each",
            f"{fmt_s(r['merge_s'] + r['commit_s'])} (merge {fmt_s(r['merge_s'])}, "
            f"commit {fmt_s(r['commit_s'])})",
            f"{(r['merge_s'] + r['commit_s']) / n * 1e6:.0f} us per fork",
        )
        report.row(
            "4g",
            f"validation gate's object check: probe the {n} chunks of those forks (as for "
            "forks reused by a resumed run)",
            fmt_s(r["gate_s"]),
            f"{r['gate_s'] / n * 1000:.2f} s per 1,000 chunks",
        )
        if prof is not None:
            report.profiles.append((f"4: merge and commit of {n} forks (cProfile)", prof["text"]))

    if "5" in args.rows:
        r = cases.resume(ds, str(workdir / "row5"), address, args.resume_partitions)
        ratio = r["rerun"].seconds / r["full"].seconds
        report.row(
            "5",
            f"resume: run killed after {r['done_before_kill']} of {r['partitions']} partitions, "
            "then re-run",
            f"re-run {fmt_s(r['rerun'].seconds)}, full run {fmt_s(r['full'].seconds)} "
            f"(killed run {fmt_s(r['killed_s'])})",
            f"{ratio:.2f} re-run / full",
            verdict(ratio, 0.6),
        )

    if "6" in args.rows:
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
                if j == 1:
                    grow = (b["peak"] - a["peak"]) / MB
                    ratio = f"{grow:+.0f} MB vs {size_text(a['nbytes'])}"
                report.row(
                    key,
                    f"flow process peak memory, {kind} flow, writing {size_text(m['nbytes'])}",
                    result,
                    ratio,
                    "does not grow with the data" if j == 1 else "",
                )
    report.notes.append(
        "MB/s counts the data variables' uncompressed bytes (1 MB = 10^6 bytes). Wall times "
        "include Prefect flow-run creation and, for 1a, connecting the distributed client; "
        "they exclude creating the empty repository and starting the cluster and the API."
    )
    report.notes.append(
        "Row 2 writes precomputed numpy arrays; the flows also compute the synthetic values "
        "on the workers (the untimed numpy generation time shows what that costs)."
    )
    report.notes.append(
        "Row 5: the re-run reads the finished partitions' forks from the result storage and "
        "writes only the missing ones; its fixed part (flow run, metadata, validation, "
        "commit) is the same as a full run's."
    )
    return report, setup


if __name__ == "__main__":
    raise SystemExit(main())
