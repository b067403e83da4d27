"""Issue 13: every ``icechunk-prefect`` command refuses bad input with one line on stderr.

Each case invokes the real app (typer's CliRunner, stdout and stderr apart); a few run
the installed ``icechunk-prefect`` script as a subprocess, exactly as a user types it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import icechunk
import pytest
import zarr
from typer.testing import CliRunner

from icechunk_prefect.cli import app

SCRIPT = str(Path(sys.executable).parent / "icechunk-prefect")


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A repository without a dataset, a folder holding a file, a file, a damaged repository."""
    base = tmp_path_factory.mktemp("cli")
    repo = base / "repo"
    icechunk.Repository.create(icechunk.local_filesystem_storage(str(repo)))
    (base / "junk").mkdir()
    (base / "junk" / "notes.txt").write_text("not a repository")
    (base / "a-file").write_text("x")
    damaged = base / "damaged"
    icechunk.Repository.create(icechunk.local_filesystem_storage(str(damaged)))
    (damaged / "repo").write_text("garbage")  # the repository's info file
    return {
        "repo": str(repo),
        "junk": str(base / "junk"),
        "file": str(base / "a-file"),
        "damaged": str(damaged),
        "missing": str(base / "missing"),
    }


# command line (``{name}`` -> a path of ``places``) -> what the one error line says
CASES: dict[str, tuple[str, str]] = {
    "unknown command": ("nosuch", r"No such command 'nosuch'"),
    "history: unknown branch": (
        "history {repo} --branch nope",
        r"Branch 'nope' does not exist in file://.*/repo \(branches: \['main'\]\)",
    ),
    "history: missing repository": (
        "history {missing}",
        r"No Icechunk repository at '.*/missing' \(the path does not exist\)",
    ),
    "history: folder that is not a repository": (
        "history {junk}",
        r"No Icechunk repository at '.*/junk' \(the folder holds \['notes.txt'\]\)",
    ),
    "history: damaged repository (an Icechunk error)": (
        "history {damaged}",
        r"Icechunk refused: invalid icechunk header .*\(FormatError; check the repository",
    ),
    "history: limit 0": (
        "history {repo} --limit 0",
        r"Invalid value for '--limit': Input should be greater than or equal to 1",
    ),
    "history: no repository given": ("history", r"Missing argument 'repo'"),
    "history: unsaved block": (
        "history icechunk-repository/no-such-block-13",
        r"No saved IcechunkRepository block named",
    ),
    "plan: missing repository": (
        "plan backfill {missing} --first-day 2024-01-01 --last-day 2024-01-02",
        r"No Icechunk repository at '.*/missing'",
    ),
    "plan: path is a file": (
        "plan append {file}",
        r"Repository path '.*/a-file' is a file, not a folder",
    ),
    "plan: no dataset": (
        "plan append {repo}",
        r"There is no dataset in file://.*/repo \(branch 'main', group '/'\)",
    ),
    "plan: unknown operation": ("plan rewrite {repo}", r"'rewrite' is not one of 'append', 'back"),
    "plan: bad date": (
        "plan backfill {repo} --first-day 2024-13-01 --last-day 2024-12-31",
        r"--first-day: '2024-13-01' is not a date \(month must be in 1..12\); give YYYY-MM-DD",
    ),
    "plan: backfill without dates": (
        "plan backfill {repo}",
        r"needs both a first and a last day \(seen first day None, last day None\)",
    ),
    "plan: source not JSON": (
        "plan append {repo} --source {{bad",
        r"--source: '\{bad' is not JSON",
    ),
    "plan: unknown source kind": (
        'plan append {repo} --source {{"kind":"ftp"}}',
        r"--source: Unknown source kind 'ftp'; give one of synthetic, netcdf, import",
    ),
    "plan: bad on-gap": ("plan append {repo} --on-gap maybe", r"'maybe' is not one of 'error'"),
    "plan: partition size 0": ("plan append {repo} --partition-size 0", r"--partition-size"),
    "demo: folder holding something else": (
        "demo --path {junk}",
        r"'.*/junk' is not an Icechunk repository and is not empty \(it holds \['notes.txt'\]\)",
    ),
    "demo: path is a file": ("demo --path {file}", r"'.*/a-file' is a file, not a folder"),
    "demo: zero days": ("demo --days 0", r"Invalid value for '--days'"),
    "demo: too many variables": ("demo --variables 9", r"Invalid value for '--variables'"),
}


def _args(line: str, places: dict[str, str]) -> list[str]:
    return [part.format(**places) for part in line.split(" ")]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_on_stderr_exit_2(case: str, places: dict[str, str]) -> None:
    line, message = CASES[case]
    result = CliRunner().invoke(app, _args(line, places), env={"COLUMNS": "80"})
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ICECHUNK_LOG"}
    return subprocess.run(
        [SCRIPT, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.mark.parametrize(
    "line",
    [
        "history {repo} --branch nope",
        "plan backfill {missing} --first-day 2024-01-01 --last-day 2024-01-02",
    ],
)
def test_installed_script_one_line_no_traceback(line: str, places: dict[str, str]) -> None:
    out = _script(*_args(line, places))
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1, out.stderr  # no traceback, no Icechunk warning
    assert out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr


def test_good_input_still_works(tmp_path: Path) -> None:
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path)))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(2,), chunks=(1,), dtype="i4")[:] = 1
    sid = session.commit("one array")
    result = CliRunner().invoke(app, ["history", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert sid in result.stdout and result.stderr == ""
    helped = CliRunner().invoke(app, [])  # no command: the help, as before
    assert "Usage" in helped.output and "history" in helped.output
