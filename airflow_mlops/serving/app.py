"""The model server: an ASGI app over the registry's production and canary models.

Never imports Airflow. ``create_app`` wires the routes (``routes``, ``open_inference``) to a ``ModelServer``
(``server``: the router, the prediction log, the metrics and a registry watcher that swaps models without touching
requests in flight, each request keeping the router it started with) behind the bearer tokens (``auth``).
``airflow-mlops serve`` runs it in one or more worker processes (uvicorn's workers on one shared socket, each built
by ``app_from_env``); every worker polls the registry document, the shared truth, and the workers share the
answered row ids through an SQLite file (``shared_state``) and their metrics through prometheus_client's
multiprocess files.

Two protocols reach the same scoring path (``scoring``: door checks, canary routing, logging, metrics):
``/predict`` (``{"instances": [...]}``) and the Open Inference Protocol v2 (KServe's) under ``/v2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from airflow_mlops.serving import open_inference, routes
from airflow_mlops.serving.auth import GUARDED, TokenGuard, read_tokens
from airflow_mlops.serving.server import ModelServer
from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

SETTINGS_ENV = "MLOPS_SERVE_SETTINGS"
"""The environment variable through which ``airflow-mlops serve`` hands its settings (JSON) to its workers."""


def create_app(server: ModelServer) -> Starlette:
    """The ASGI app; its lifespan loads the models, starts the watcher and flushes the logs on exit."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            await asyncio.to_thread(server.refresh)
        except Exception:
            log.exception("Could not load models at start; will retry")
        server.prediction_log.start()
        server.feedback_log.start()
        server.shared.start()
        watcher = asyncio.create_task(server.watch())
        try:
            yield
        finally:
            watcher.cancel()
            server.prediction_log.close()
            server.feedback_log.close()
            server.shared.close()

    endpoints = [
        Route("/predict", routes.predict, methods=["POST"]),
        Route("/v2/models/{name}/infer", open_inference.infer, methods=["POST"]),
        Route("/feedback", routes.feedback, methods=["POST"]),
        Route("/health", routes.health, methods=["GET"]),
        Route("/metrics", routes.metrics_text, methods=["GET"]),
        Route("/v2/health/live", open_inference.live, methods=["GET"]),
        Route("/v2/health/ready", open_inference.ready, methods=["GET"]),
        Route("/v2/models/{name}/ready", open_inference.model_ready, methods=["GET"]),
        Route("/v2/models/{name}", open_inference.model_metadata, methods=["GET"]),
    ]
    app = Starlette(routes=endpoints, lifespan=lifespan, middleware=[Middleware(TokenGuard, tokens=server.tokens)])
    app.state.server = server
    for route, path in GUARDED.items():
        if not server.tokens[route]:
            log.warning("%s is open: no token configured for it", path)
    return app


def app_from_env() -> Starlette:
    """The app of one worker of ``airflow-mlops serve`` (a uvicorn app factory): its settings come as JSON in
    ``$MLOPS_SERVE_SETTINGS``, set by the command before it starts the workers."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s")
    settings = json.loads(os.environ[SETTINGS_ENV])
    server = ModelServer(
        ArtifactStore.from_uri(settings["artifact_root"]),
        settings["pipeline"],
        poll_seconds=settings["poll_seconds"],
        flush_seconds=settings["flush_seconds"],
        wal_dir=settings["wal_dir"],
        tokens={route: read_tokens(route, settings["token_files"].get(route)) for route in GUARDED},
        version=settings["version"],
        run=settings["run"],
        supervised=settings["workers"] > 1,
    )
    return create_app(server)
