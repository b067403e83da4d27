"""Issue 6: the benchmark script's --quick mode runs end to end and produces every row.

It runs as a subprocess on the shared Dask cluster and Prefect server, at tiny
sizes. No timing is asserted: only that each measurement ran, checked what it
wrote, and reported a figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ["1a", "1b", "1c", "2", "3", "4", "5", "6a", "6b", "6c", "6d"]


def _table(text: str) -> dict[str, list[str]]:
    section = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"\d[a-d]?", cells[0]):
            rows[cells[0]] = cells
    return rows


def _first_number(cell: str) -> float:
    m = re.search(r"[-+]?\d+(?:\.\d+)?", cell)
    assert m, f"no number in {cell!r}"
    return float(m.group())


def test_quick_benchmark_writes_table_with_all_rows(dask_cluster, prefect_api, tmp_path):
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--quick",
        "--address",
        dask_cluster.scheduler_address,
        "--out",
        str(out),
        "--workdir",
        str(tmp_path / "work"),
    ]
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    saved = list(out.glob("*-quick.md"))
    assert len(saved) == 1
    text = saved[0].read_text()
    assert text in proc.stdout  # the same table is printed
    for fact in (
        "cores (physical / logical / usable)",
        "memory (total / available)",
        "load average at start",
        "version: icechunk |",
        "version: prefect |",
        "version: prefect-dask |",
        "version: dask |",
    ):
        assert fact in text

    rows = _table(text)
    assert list(rows) == ROWS
    for key in ("1a", "1b", "1c", "2"):
        assert _first_number(rows[key][2]) > 0, rows[key]  # seconds
        assert "MB/s" in rows[key][2]
    for key in ("1b", "1c"):
        assert "x plain" in rows[key][3] and "<= 1.10" in rows[key][4]
    assert "4 partitions" in rows["1c"][1]
    assert "1a: " in rows["2"][3] and "1c: " in rows["2"][3]
    assert "12 tiny partitions" in rows["3"][1]
    assert "60 forks" in rows["4"][1]
    assert "re-run / full" in rows["5"][3] and "<= 0.60" in rows["5"][4]
    for key in ("6a", "6b", "6c", "6d"):
        assert _first_number(rows[key][2].split("peak RSS", 1)[1]) > 50, rows[key]  # MB
    for key in ("6b", "6d"):
        assert "MB vs" in rows[key][3]
