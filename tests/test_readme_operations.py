"""Issue 22: the README's "Operations" block runs as written, command after command.

The block is read from README.md and each line runs in a shell from the project root,
in a fresh PREFECT_HOME and without PREFECT_API_URL (so the block's own
``prefect config set`` is what points the CLI at the server). Two things stand in:
the test session's Prefect server for ``prefect server start`` (its address replaces
``http://127.0.0.1:4200``: one server per test run), and a temporary folder for
``/data/climate.icechunk``. A line ending with ``&`` keeps running in the background,
as in a terminal (``serve.py`` is waited for until its deployments are registered for
this repository).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import history, read_back

ROOT = Path(__file__).resolve().parents[1]
README_REPO = "/data/climate.icechunk"
README_API = "http://127.0.0.1:4200/api"


def operations_block() -> list[str]:
    """The command lines of the first bash block under README.md's Operations heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Operations") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in README.md's Operations section"
    return [
        line.strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_block_extraction():
    lines = operations_block()
    assert lines[0] == "uv run prefect server start &"
    assert any("icechunk-create/create" in line for line in lines)  # the dataset is made
    assert lines[-1].startswith("uv run icechunk-prefect history")


def _deployments_registered(env: dict[str, str], names: list[str], repo: str) -> bool:
    """Each deployment of ``names`` is registered for ``repo`` (the session's server may
    hold deployments of the same names from other tests, for other repositories: a run
    created before serve.py registered its own would write there)."""
    for name in names:
        out = subprocess.run(
            ["uv", "run", "prefect", "deployment", "inspect", name, "-o", "json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if out.returncode != 0:
            return False
        try:
            parameters = json.loads(out.stdout).get("parameters") or {}
        except json.JSONDecodeError:
            return False
        if parameters.get("repository") != repo:
            return False
    return True


@pytest.mark.skipif(
    not any((Path(p) / "uv").exists() for p in os.environ["PATH"].split(":")),
    reason="uv is not installed (the README's commands start with uv run)",
)
def test_readme_operations_block_runs_as_written(prefect_api, tmp_path):
    repo = str(tmp_path / "climate.icechunk")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    background: list[subprocess.Popen[str]] = []
    outputs: dict[str, str] = {}
    try:
        for line in operations_block():
            if line == "uv run prefect server start &":
                continue  # the session's server stands in (one server per test run)
            command = line.replace(README_API, prefect_api).replace(README_REPO, repo)
            if command.endswith("&"):
                proc = subprocess.Popen(
                    command.removesuffix("&"),
                    shell=True,
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    start_new_session=True,
                )
                background.append(proc)
                if "serve.py" in command:
                    names = ["icechunk-create/create", "icechunk-backfill/backfill"]
                    deadline = time.monotonic() + 180
                    while not _deployments_registered(env, names, repo):
                        assert proc.poll() is None, "serve.py exited"
                        assert time.monotonic() < deadline, "serve.py registered nothing"
                        time.sleep(2)
                continue
            out = subprocess.run(
                command,
                shell=True,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            assert out.returncode == 0, (
                f"{line}\nexited {out.returncode}:\n" + (out.stdout + out.stderr)[-4000:]
            )
            outputs[line] = out.stdout
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in background:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    back = read_back(repo)
    assert back.sizes == {"time": 366, "lat": 45, "lon": 90}
    commits = history(repo)
    meta = commits[0].metadata
    assert meta["icechunk_prefect.operation"] == "backfill"
    assert meta["icechunk_prefect.parameters"]["first_day"] == "2024-03-01"
    assert meta["icechunk_prefect.source_origin"] == "dataset"
    march = back.t2m.sel(time=slice("2024-03-01", "2024-03-31"))
    assert march.sizes["time"] == 31 and not np.isnan(march.values).any()
    plan = next(v for k, v in outputs.items() if "plan backfill" in k)
    assert "Source: synthetic: 366 steps of D from 2024-01-01" in " ".join(plan.split())
    shown = next(v for k, v in outputs.items() if "history" in k)
    assert "backfill" in shown and "create" in shown
