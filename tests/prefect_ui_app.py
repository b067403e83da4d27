"""The test session's Prefect server app: Prefect's ephemeral server, plus its UI.

``prefect_test_harness`` starts ``prefect.server.api.server:create_app`` as an
ephemeral server (the services a test run needs, no scheduler) without the UI.
The browser tests need the UI (V1 at ``/``, V2 at ``/v2``) from that same, one
server: this factory builds the same app and mounts the UI Prefect builds for a
non-ephemeral server in place of the empty one.
"""

from __future__ import annotations

from typing import Any


def create_app() -> Any:
    """Prefect's ephemeral server app, serving both UIs."""
    from prefect.server.api.server import create_app as create_server_app
    from prefect.server.api.server import create_ui_app

    app = create_server_app(ephemeral=True)
    ui = create_ui_app(ephemeral=False)
    mounts = [route for route in app.router.routes if getattr(route, "name", None) == "ui"]
    assert len(mounts) == 1, "Prefect's server app no longer mounts its UI as 'ui'"
    mounts[0].app = ui  # type: ignore[attr-defined]
    return app
