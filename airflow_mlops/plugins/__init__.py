"""The ops UI: an Airflow plugin whose FastAPI app the api-server mounts under ``/mlops``.

Airflow loads plugins in every process (scheduler, workers, dag-processor), so this module imports nothing but
Airflow's plugin base: the FastAPI app, its pages and the store are imported when the first request arrives.
Registered by the ``airflow.plugins`` entry point only (see pyproject.toml).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/mlops"
"""Where the api-server mounts the app (not under Airflow's reserved ``/api/v2``, ``/ui``, ``/auth``...)."""


class LazyApp:
    """An ASGI app that builds the real one (``airflow_mlops.plugins.app.create_app``) on its first request."""

    def __init__(self) -> None:
        self._app: Callable[..., Awaitable[None]] | None = None
        self._lock = threading.Lock()

    def get(self) -> Callable[..., Awaitable[None]]:
        """The FastAPI app, built once."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_mlops.plugins.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await self.get()(scope, receive, send)


class MlopsPlugin(AirflowPlugin):
    """ML pipelines in the Airflow UI: an overview, one page per pipeline, the reports, and the control actions."""

    name = "airflow-mlops"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "airflow-mlops"}]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "ML pipelines",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "mlops",
            "nav_top_level": True,
            "icon": f"{URL_PREFIX}/icon.svg",
        },
        {
            # On every DAG's page; the route finds the DAG's pipeline (tag pipeline:<name> or mlops_<name>_<kind>).
            "name": "ML pipeline",
            "href": f"{URL_PREFIX}/dags/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "mlops-pipeline",
        },
    ]
