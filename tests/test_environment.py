"""Issue 22: the environment a user builds: the Prefect versions it admits and tests, a
``uv run`` that prints only what its command prints, and bytecode for fast cold starts."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _prefect_requirement() -> Requirement:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(r for r in map(Requirement, deps) if r.name == "prefect")


def test_prefect_versions_admitted_tested_and_documented():
    """pyproject admits 3.8 and 3.9; .ci/run tests the oldest minor after the README's test
    command; the README names both; prefect.yaml names a version the pins admit."""
    spec = _prefect_requirement().specifier
    import prefect

    assert Version(prefect.__version__) in spec
    for version in ("3.8.0", "3.8.8", "3.9.0", "3.9.1"):
        assert Version(version) in spec, version
    ci = (ROOT / ".ci" / "run").read_text()
    oldest = re.search(r'^OLDEST_PREFECT="prefect==(\d+\.\d+)\.\*"', ci, re.M)
    assert oldest is not None
    minimum = min(Version(s.version) for s in spec if s.operator == ">=")
    assert Version(oldest[1]) == minimum  # the smoke subset runs on the lowest admitted minor
    assert ci.index("uv run pytest") < ci.index('-m pytest -p no:cacheprovider "${SMOKE[@]}"')
    facts = (ROOT / "README.md").read_text().split("## Facts worth knowing", 1)[1]
    assert "prefect 3.9" in facts and "prefect 3.8" in facts
    deployed = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    assert Version(str(deployed["prefect-version"])) in spec


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.skip("no `uv` here: the check is about `uv run`")
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"the suite runs in {sys.prefix}, not the project environment `uv run` uses")
    return found


def test_uv_run_prints_only_what_the_command_prints(tmp_path):
    """A ``uv run`` in the project adds no line of its own (no "Bytecode compiled ...")."""
    env = {k: v for k, v in os.environ.items() if k not in ("UV_PROJECT_ENVIRONMENT",)}
    proc = subprocess.run(
        [_uv(), "run", "python", "-c", "print('only this')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "only this\n"
    assert proc.stderr == ""


def test_ci_builds_bytecode_before_the_tests():
    """``.ci/run`` builds the environment with bytecode before the README's test command
    (the README says to, where Python writes none itself)."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "uv sync --quiet --compile-bytecode" in ci
    assert ci.index("--compile-bytecode") < ci.index("uv run pytest")
    assert "export ICECHUNK_PREFECT_EXPECT_BYTECODE=1" in ci


def test_environment_has_bytecode_where_python_writes_none():
    """Where ``PYTHONDONTWRITEBYTECODE`` is set and the environment was built with
    bytecode (``uv sync --compile-bytecode``, as ``.ci/run`` does, and says so), the
    modules every process imports at start (Prefect's server, distributed) still have it
    after ``uv run``: no process compiles them from source."""
    if not sys.flags.dont_write_bytecode:
        pytest.skip("Python writes bytecode itself here (PYTHONDONTWRITEBYTECODE is not set)")
    if not os.environ.get("ICECHUNK_PREFECT_EXPECT_BYTECODE"):
        pytest.skip("the environment was not built with `uv sync --compile-bytecode` here")
    _uv()
    for module in ("prefect.server.api.server", "distributed.worker", "xarray.core.dataset"):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin
        cached = importlib.util.cache_from_source(spec.origin)
        assert Path(cached).exists(), (
            f"no bytecode for {module} ({cached}): build the environment with "
            "`uv sync --compile-bytecode` (README, the two commands)"
        )
