"""Where the time goes: the flow process (cProfile), the Dask workers (distributed's
statistical profiler) and the Prefect task runs of a flow run (the API's run times)."""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from uuid import UUID


@contextlib.contextmanager
def flow_process_profile(enabled: bool, out: dict[str, str], top: int = 15) -> Iterator[None]:
    """cProfile this process while the block runs; put the top functions in ``out["text"]``."""
    if not enabled:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(top)
        buf.write("\n--- by cumulative time ---\n")
        stats.sort_stats("cumulative").print_stats(top)
        out["text"] = _trim_pstats(buf.getvalue())


def _trim_pstats(text: str) -> str:
    keep = []
    for line in text.splitlines():
        if line.strip().startswith(("Ordered by", "List reduced")) or not line.strip():
            continue
        keep.append(line.replace("/work/", "").rstrip())
    return "\n".join(keep)


def worker_profile(address: str, start: float, stop: float, top: int = 15) -> str:
    """Top functions by samples on the Dask workers between ``start`` and ``stop`` (time.time())."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        tree = client.profile(start=start, stop=stop)
    self_counts: dict[str, int] = defaultdict(int)
    total = int(tree.get("count", 0)) or 1

    def walk(node: dict[str, Any]) -> None:
        children = node.get("children", {}).values()
        desc = node.get("description", {})
        child_sum = sum(int(c.get("count", 0)) for c in children)
        if desc:
            filename = _short(desc.get("filename", ""))
            where = f"{desc.get('name')} ({filename}:{desc.get('line_number')})"
            self_counts[where] += int(node.get("count", 0)) - child_sum
        for c in children:
            walk(c)

    walk(tree)
    rows = sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]
    lines = [f"{count / total:6.1%}  {where}" for where, count in rows if count > 0]
    head = f"{total} samples (share of samples with this function on top of the stack)"
    return "\n".join([head, *lines])


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.12/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def task_breakdown(flow_run_id: UUID | str) -> str:
    """Task runs of a flow run grouped by task: count, summed run time, span; and the flow run."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    fid = UUID(str(flow_run_id))
    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(fid)
        offset = 0
        while True:
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fid])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
                offset=offset,
            )
            runs.extend(page)
            if len(page) < 200:
                break
            offset += 200
    groups: dict[str, list[Any]] = defaultdict(list)
    for r in runs:
        groups[r.task_key.rsplit("-", 1)[0]].append(r)
    lines = [
        f"flow run: {flow_run.total_run_time.total_seconds():.2f} s of run time "
        f"({len(runs)} task runs)",
        f"{'task':32s} {'runs':>5s} {'sum run s':>10s} {'mean s':>8s} {'span s':>8s}",
    ]
    for name, rs in sorted(groups.items(), key=lambda kv: -_sum(kv[1])):
        starts = [r.start_time for r in rs if r.start_time]
        ends = [r.end_time for r in rs if r.end_time]
        span = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
        total = _sum(rs)
        lines.append(
            f"{name[:32]:32s} {len(rs):5d} {total:10.2f} {total / len(rs):8.3f} {span:8.2f}"
        )
    return "\n".join(lines)


def _sum(runs: list[Any]) -> float:
    return sum(r.total_run_time.total_seconds() for r in runs)


def safely(what: str, fn: Any, *args: Any) -> str:
    """``fn(*args)``, or a line saying why the profile could not be collected."""
    try:
        return str(fn(*args))
    except Exception as exc:  # a profile is a bonus: never lose the measurements for it
        return f"could not collect {what}: {type(exc).__name__}: {exc}"


def now() -> float:
    """Wall-clock time as distributed's profiler records it."""
    return time.time()
