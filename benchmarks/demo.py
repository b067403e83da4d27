"""Rows 7a/7b: ``uv run icechunk-prefect demo`` as a user runs it, cold and warm.

Cold: a fresh copy of the project's working tree (what ``git ls-files`` lists plus
untracked files that are not ignored, so uncommitted changes count; never ``.venv``)
in a temporary folder, with a fresh ``PREFECT_HOME``: the README's ``uv sync
--compile-bytecode`` builds the environment, then ``uv run`` runs the demo, which starts a
new Prefect database, a local cluster and writes.
Warm: the same command again in the same copy with the same ``PREFECT_HOME``, as a
user's ``~/.prefect`` persists. The uv cache is the machine's own (shared), as on a
user's machine that has installed these packages before.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Variables the benchmark itself sets or that point into its own environment: the demo
# must not see them (a user's shell has none of them).
_DROP = (
    "PREFECT_API_URL",
    "PREFECT_HOME",
    "PREFECT_PROFILES_PATH",
    "PREFECT_LOGGING_LEVEL",
    "VIRTUAL_ENV",
    "UV_PROJECT_ENVIRONMENT",
    "PYTHONPATH",
    "PYTHONHOME",
)


@dataclass
class DemoRun:
    """One ``uv run icechunk-prefect demo`` call."""

    seconds: float
    returncode: int
    written_mb: float | None = None
    written_s: float | None = None
    setup_s: float | None = None
    output: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.written_s is not None


def project_root(start: Path) -> Path:
    """The git work tree ``start`` lives in (the checkout the benchmark is run from)."""
    out = subprocess.run(
        ["git", "-C", str(start), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def project_files(root: Path) -> list[str]:
    """Tracked files and untracked files that are not ignored, as they are on disk now."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = sorted({n for n in out.stdout.split("\0") if n})
    keep = []
    for name in names:
        if name == ".venv" or name.startswith(".venv/"):
            continue
        path = root / name
        if path.is_file() or path.is_symlink():  # a tracked file deleted in the tree is skipped
            keep.append(name)
    return keep


def copy_project(root: Path, dest: Path) -> tuple[int, float]:
    """Copy the project's files into ``dest``; (number of files, seconds)."""
    t0 = time.perf_counter()
    names = project_files(root)
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target, follow_symlinks=False)
    return len(names), time.perf_counter() - t0


def uv_executable() -> str | None:
    """The ``uv`` this benchmark runs under (``$UV`` inside ``uv run``), else the one on PATH."""
    found = os.environ.get("UV")
    if found and Path(found).exists():
        return found
    return shutil.which("uv")


def demo_env(base: dict[str, str], prefect_home: Path) -> dict[str, str]:
    """``base`` (the environment the benchmark was started with) for a user's demo run."""
    env = {k: v for k, v in base.items() if k not in _DROP}
    env["PREFECT_HOME"] = str(prefect_home)
    env["COLUMNS"] = "200"  # rich wraps its table at 80 columns without a terminal
    return env


_WRITTEN = re.compile(r"written\W+([\d,.]+) MB in ([\d.]+) s")
_SETUP = re.compile(r"set-up\W+([\d.]+) s")


def parse_demo_output(text: str, run: DemoRun) -> None:
    """Fill in the demo's own figures: "written X MB in Y s" and "set-up Z s" (table rows)."""
    written = _WRITTEN.findall(text)
    if written:
        run.written_mb = float(written[-1][0].replace(",", ""))
        run.written_s = float(written[-1][1])
    setup = _SETUP.findall(text)
    if setup:
        run.setup_s = float(setup[-1])


BUILD = ["sync", "--compile-bytecode"]
"""How the README builds the environment where Python writes no bytecode itself (once)."""


def run_demo(
    uv: str,
    project: Path,
    env: dict[str, str],
    repo: Path,
    demo_args: list[str],
    timeout: float,
    build: bool = False,
) -> DemoRun:
    """``uv run icechunk-prefect demo --path repo ...`` in ``project`` (first ``uv sync
    --compile-bytecode`` with ``build``, timed with it): wall time and output."""
    shutil.rmtree(repo, ignore_errors=True)
    cmd = [uv, "run", "icechunk-prefect", "demo", "--path", str(repo), *demo_args]
    t0 = time.perf_counter()
    try:
        output, code = "", 0
        if build:
            done = subprocess.run(
                [uv, *BUILD], cwd=project, env=env, capture_output=True, text=True, timeout=timeout
            )
            output, code = done.stdout + "\n" + done.stderr + "\n", done.returncode
        if code == 0:
            proc = subprocess.run(
                cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
            )
            output += proc.stdout + "\n" + proc.stderr
            code = proc.returncode
        seconds = time.perf_counter() - t0
    except subprocess.TimeoutExpired as exc:
        seconds = time.perf_counter() - t0
        output = _text(exc.stdout) + "\n" + _text(exc.stderr)
        code = -1
    run = DemoRun(seconds=seconds, returncode=code, output=output)
    parse_demo_output(output, run)
    shutil.rmtree(repo, ignore_errors=True)
    return run


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def uv_cache_dir(uv: str, env: dict[str, str]) -> str:
    try:
        out = subprocess.run(
            [uv, "cache", "dir"], capture_output=True, text=True, env=env, timeout=30
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"
