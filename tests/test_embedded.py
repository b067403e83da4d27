"""The embedded default: no Prefect API configured, a local cluster, a local repository.

Each test runs in a subprocess with a fresh PREFECT_HOME and no PREFECT_API_URL, as a
user's first run would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_one_prefect_server_for_flow_and_workers(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "scripts" / "embedded_run.py"),
            str(tmp_path / "repo"),
        ],
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    # exactly one Prefect server process in the whole process tree (flow + workers)
    assert out["servers"] == 1
    probes = out["probes"]
    assert {p["servers_here"] for p in probes} == {0}  # no worker started its own server
    assert {p["api"] for p in probes} == {out["api"]}  # workers talk to the flow's API
    assert len({p["pid"] for p in probes}) >= 1
    # the worker task runs are in the flow's own API
    names = out["task_runs"]
    assert sum(n.startswith("probe") for n in names) == 4
    assert "commit main" in names
    assert sum(n.startswith("write time[") for n in names) == 4


def test_readme_demo_command(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "icechunk_prefect.cli",
            "demo",
            "--path",
            str(tmp_path / "demo"),
            "--days",
            "30",
            "--nlat",
            "8",
            "--nlon",
            "16",
            "--time-chunk",
            "5",
            "--partition-mb",
            "1",
        ],
        env={**_clean_env(tmp_path), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "read-back check" in proc.stdout and "passed" in proc.stdout
    from tests.helpers import history

    commits = history(str(tmp_path / "demo"))
    assert len(commits) == 2
    assert commits[0].message.startswith("demo: 30 days")
