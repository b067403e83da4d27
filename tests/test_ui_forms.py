"""Issues 22 and 23: the backfill deployment's Custom run form, in a real browser, in both
UIs Prefect 3.9 serves (V1 at the server's root, V2 under /v2).

Headless Chromium (Debian's chromium and chromium-driver, driven by selenium) clicks
the form as a user does, against the test session's one Prefect server (which also
serves the UI, see tests/conftest.py):

- every parameter of the form shows with its description, the days with date pickers;
- each source kind is chosen in turn, a block of that kind is saved with its own fields
  (V1: the picker's "Add" dialog; V2: the Blocks page, because V2's "Add" dialog also
  submits the run form) and picked, and the form's Submit button creates a run whose
  parameters hold exactly that block, of that kind, with those values;
- a dry run with a chosen source runs, and its plan artifact names that source;
- a run with the source left empty runs, reads the dataset's own source and commits.

Screenshots of each step go to $ICECHUNK_UI_SHOTS when it is set.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.helpers import served_in_thread
from tests.ui_forms import browser_missing

MISSING = browser_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"no browser: {MISSING}")

SHOTS = Path(os.environ["ICECHUNK_UI_SHOTS"]) if os.environ.get("ICECHUNK_UI_SHOTS") else None
WAIT_SECONDS = 300

# tab title -> (block type slug, the fields a user fills, what the saved block holds)
KINDS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "SyntheticSource": (
        "icechunk-synthetic-source",
        {"Data Start": date(2024, 1, 1), "Periods": 20, "Nlat": 3, "Nlon": 4, "Time Chunk": 5},
        {"data_start": "2024-01-01", "periods": 20, "nlat": 3, "nlon": 4, "time_chunk": 5},
    ),
    "NetCDFFolderSource": (
        "icechunk-netcdf-folder-source",
        {"Folder": "/data/era5", "Pattern": "day-*.nc"},
        {"folder": "/data/era5", "pattern": "day-*.nc"},
    ),
    "ImportedSource": (
        "icechunk-imported-source",
        {"Path": "mypkg.sources:make_source"},
        {"path": "mypkg.sources:make_source"},
    ),
}


@pytest.fixture(scope="module")
def deployments(dask_cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A dataset made from a synthetic source, and two backfill deployments of it: one only
    registered (its runs are read, never run), one served (its runs run)."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.types.entrypoint import EntrypointType

    from icechunk_prefect import DaskClusterConfig, SyntheticSource
    from icechunk_prefect.operations import backfill_dataset, create_dataset

    repo = str(tmp_path_factory.mktemp("ui") / "repo")
    cluster = {"address": dask_cluster.scheduler_address}
    source = SyntheticSource(
        data_start=date(2024, 1, 1), periods=20, nlat=3, nlon=4, variables=["t2m"], time_chunk=5
    )
    create_dataset(repo, source, cluster=DaskClusterConfig(**cluster))
    params = {"repository": repo, "cluster": cluster}
    kw: dict[str, Any] = {"entrypoint_type": EntrypointType.MODULE_PATH, "parameters": params}
    form = backfill_dataset.to_deployment(name="ui-form", **kw)
    served = backfill_dataset.to_deployment(name="ui-run", **kw)
    assert isinstance(form, RunnerDeployment) and isinstance(served, RunnerDeployment)
    form_id = form.apply()
    with served_in_thread("icechunk-ui-test", [served]) as (run_id,):
        yield {"form": form_id, "run": run_id, "repo": repo}


def _api(call: Any) -> Any:
    from prefect.client.orchestration import get_client

    async def run() -> Any:
        async with get_client() as client:
            return await call(client)

    return asyncio.run(run())


def _run_named(name: str) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    def find() -> Any:
        return _api(
            lambda c: c.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
        )

    for _ in range(40):
        runs = find()
        if runs:
            return runs[0]
        time.sleep(0.25)
    raise AssertionError(f"no flow run named {name!r} was created")


def _finished(run_id: UUID) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        run = _api(lambda c: c.read_flow_run(run_id))
        if run.state and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"flow run {run_id} still {run.state}"
        time.sleep(1)


def _block_of(parameters: dict[str, Any]) -> Any:
    ref = parameters["source"]
    assert set(ref) == {"$ref"}, ref
    return _api(lambda c: c.read_block_document(UUID(ref["$ref"]["block_document_id"])))


def _check_form_renders(form: Any, schema: dict[str, Any]) -> None:
    """Every parameter: its label and its description; the two days: date pickers."""
    shown = " ".join(form.text().split())
    for name, prop in schema["properties"].items():
        form.label(name)
        description = " ".join(str(prop.get("description", "")).split())
        assert description and description in shown, (form.ui, name, description)
    for name in ("first_day", "last_day"):
        picker = form.input_after(name)
        if form.ui == "v1":
            assert picker.get_attribute("type") == "date", name
        else:
            assert picker.get_attribute("aria-haspopup") == "dialog", name
            assert "Pick a date" in picker.text, name
    form.shot("form")


@pytest.mark.parametrize("ui", ["v1", "v2"])
def test_custom_run_form(ui, prefect_ui, deployments):
    from prefect.blocks.core import Block

    from icechunk_prefect.operations.dataset_source import SOURCE_ATTRIBUTE
    from tests.helpers import history, read_back
    from tests.ui_forms import RunForm, chromium

    schema = _api(lambda c: c.read_deployment(deployments["form"])).parameter_openapi_schema
    saved: dict[str, str] = {}
    with chromium() as driver:
        form = RunForm(driver, prefect_ui, ui, SHOTS)
        form.open(deployments["form"])
        _check_form_renders(form, schema)

        # each kind in turn: a block of that kind with its own fields, picked and submitted
        for kind, (slug, fields, expected) in KINDS.items():
            block = f"{kind.lower()}-{ui}-{uuid.uuid4().hex[:6]}"
            if ui == "v2":
                form.create_block_page(slug, block, fields)
            form.open(deployments["form"])
            name = form.run_name()
            form.set_date("first_day", date(2024, 1, 4))
            form.set_date("last_day", date(2024, 1, 15))
            form.choose_tab(kind)
            if ui == "v1":
                form.add_block(block, fields)
            else:
                form.pick_block(block)
            form.submit()
            run = _run_named(name)
            assert (run.parameters["first_day"], run.parameters["last_day"]) == (
                "2024-01-04",
                "2024-01-15",
            )
            doc = _block_of(run.parameters)
            assert doc.block_type is not None and doc.block_type.slug == slug, (kind, doc)
            assert doc.name == block
            assert {k: doc.data.get(k) for k in expected} == expected, (kind, doc.data)
            loaded = Block.load_from_ref({"block_document_id": str(doc.id)}, _sync=True)  # type: ignore[call-arg]
            assert type(loaded).__name__ == kind
            _api(lambda c, run_id=run.id: c.delete_flow_run(run_id))  # never to run
            saved[kind] = block

        # a dry run reading a chosen source: the plan artifact names it
        form.open(deployments["run"])
        name = form.run_name()
        form.set_date("first_day", date(2024, 1, 6))
        form.set_date("last_day", date(2024, 1, 10))
        form.choose_tab("SyntheticSource")
        form.pick_block(saved["SyntheticSource"])
        form.switch_on("dry_run")
        form.submit()
        dry = _finished(_run_named(name).id)
        assert dry.state.is_completed(), dry.state
        assert dry.parameters["dry_run"] is True

        # the usual backfill: no source on the form, the dataset's own; it commits
        form.open(deployments["run"])
        name = form.run_name()
        form.set_date("first_day", date(2024, 1, 4))
        form.set_date("last_day", date(2024, 1, 8))
        form.submit()
        done = _finished(_run_named(name).id)
        assert done.state.is_completed(), done.state
        assert done.parameters.get("source") is None

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    plans = _api(
        lambda c: c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[dry.id]))
        )
    )
    plan = [a for a in plans if a.key == "icechunk-backfill-plan"]
    assert plan, plans
    said = " ".join(str(plan[0].description).split())
    assert f"Source: block icechunk-synthetic-source/{saved['SyntheticSource']}: synthetic" in said
    assert "(chosen for this run)" in said
    commit = history(deployments["repo"])[0].metadata
    assert commit["icechunk_prefect.flow_run_id"] == str(done.id)
    assert commit["icechunk_prefect.source_origin"] == "dataset"
    assert (
        commit["icechunk_prefect.source"] == read_back(deployments["repo"]).attrs[SOURCE_ATTRIBUTE]
    )
