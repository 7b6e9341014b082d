"""The model server: an ASGI app over the registry's production and canary models.

Never imports Airflow. ``create_app`` wires the router, the prediction log, the metrics and a
registry watcher that swaps models without touching requests in flight (each request keeps the
router it started with).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.serving.metrics import ServerMetrics
from airflow_mlops.serving.models import Router, ServedModel
from airflow_mlops.serving.predlog import PredictionLog, feedback_row, prediction_row
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_ROWS = 1000
FEEDBACK_WINDOW_SECONDS = 7 * 24 * 3600
MAX_TRACKED_IDS = 2_000_000
"""Ids the server remembers for feedback (oldest forgotten first); a restart forgets them all."""
ID_KEYS = ("id", "request_id")


class ModelServer:
    """State shared by the routes: the current router, the logs, the metrics."""

    def __init__(
        self,
        store: ArtifactStore,
        pipeline: str,
        *,
        poll_seconds: float = 2.0,
        flush_seconds: float = 2.0,
        wal_dir: Path | str | None = None,
        tokens: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.store, self.pipeline, self.poll_seconds = store, pipeline, poll_seconds
        self.tokens = {route: frozenset(t for t in (tokens or {}).get(route, ()) if t) for route in GUARDED}
        self.registry = ModelRegistry(store, pipeline)
        self.router = Router(None)
        self.metrics = ServerMetrics()
        logs = {"flush_seconds": flush_seconds, "wal_dir": wal_dir}
        self.prediction_log = PredictionLog(store, pipeline, kind="predictions", **logs)
        self.feedback_log = PredictionLog(store, pipeline, kind="feedback", **logs)
        self._loaded: dict[str, ServedModel] = {}
        self._wanted: tuple[str | None, str | None, float] | None = None
        self.load_errors: dict[str, str] = {}
        self._answered: dict[str, list[Any]] = {}  # id -> [last answered at, labelled since]
        self._answered_at: collections.deque[tuple[float, str]] = collections.deque()
        self._ids_lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the registry's production and canary models if they changed; True when swapped.

        A version that cannot be loaded is never served: production stays on the model it had, a canary gets no
        traffic, and the failure is logged, counted and shown by ``/health`` (it is not tried again).
        """
        aliases = self.registry.load()["aliases"]
        production = (aliases.get("production") or {}).get("version")
        canary_alias = aliases.get("canary") or {}
        canary, percent = canary_alias.get("version"), float(canary_alias.get("weight", 0) or 0)
        wanted = (production, canary, percent)
        if wanted == self._wanted:
            return False
        self._wanted = wanted
        models = {v: model for v in (production, canary) if v and (model := self._load(v))}
        # A production that cannot load leaves the last good one serving; no production alias means none.
        serving = self.router.production if production and production not in models else models.get(production)
        trial = models.get(canary)
        self._loaded = {m.version: m for m in (serving, trial) if m}
        share = percent if trial else 0.0
        versions = (serving.version if serving else None, trial.version if trial else None, share)
        self.router = Router(serving, trial, share, versions)
        log.info("Serving production %s, canary %s at %s%%", *versions)
        return True

    def _load(self, version: str) -> ServedModel | None:
        if version in self._loaded:
            return self._loaded[version]
        if version in self.load_errors:
            return None
        try:
            return ServedModel.load(self.store, self.pipeline, version)
        except Exception as err:  # a model that cannot load must not take the server down
            self.load_errors[version] = str(err)
            self.metrics.load_failed(version)
            log.error("Not serving model %s: %s", version, err)
            return None

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # a broken registry write must not take the server down
                log.exception("Registry refresh failed; keeping the current models")

    # -- routes ------------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        rows = body["instances"] if isinstance(body, dict) and "instances" in body else body
        rows = rows if isinstance(rows, list) else [rows]
        if not rows:
            return _error(422, "no instances to score")
        if len(rows) > MAX_ROWS:
            return _error(413, f"{len(rows)} instances; at most {MAX_ROWS} per request")
        router = self.router  # this request keeps this router even if the registry changes meanwhile
        if router.production is None:
            return _error(503, f"no production model for pipeline {self.pipeline!r} yet")
        groups: dict[str, tuple[ServedModel, list[int]]] = {}
        ids: list[str] = []
        for i, row in enumerate(rows):
            key = str(row.get("id") or row.get("request_id") or "") if isinstance(row, dict) else ""
            model = router.choose(key or None, random.random())
            try:
                model.check(row, i)
            except MlopsError as err:
                return _error(422, str(err))
            ids.append(key or uuid.uuid4().hex)
            groups.setdefault(model.version, (model, []))[1].append(i)
        request_id = uuid.uuid4().hex  # the canary analysis takes one latency sample per request and version
        answers: list[dict[str, Any]] = [{}] * len(rows)
        logged: list[dict[str, Any] | None] = [None] * len(rows)
        failed = None
        for model, indexes in groups.values():
            part = [rows[i] for i in indexes]
            scores, ms = await self._score(model, part)
            if scores is None and model is not router.production:
                # A canary that cannot score must not fail the caller: production answers these rows,
                # and the log keeps the canary's failure for the canary analysis.
                for i in indexes:
                    logged[i] = self._log_row(rows[i], ids[i], model, None, ms, request_id)
                model = router.production
                scores, ms = await self._score(model, part)
            if scores is None:
                failed, scores = f"model {model.version} failed to score", [None] * len(indexes)
            for i, score in zip(indexes, scores, strict=True):
                answers[i] = {"id": ids[i], "prediction": score, "version": model.version}
                logged[i] = logged[i] or self._log_row(rows[i], ids[i], model, score, ms, request_id)
        self.prediction_log.append(logged)
        if failed:
            return _error(500, failed)
        self._remember(ids)
        return JSONResponse({"predictions": answers})

    async def _score(self, model: ServedModel, rows: list[dict[str, Any]]) -> tuple[list[float] | None, float]:
        """The model's scores for ``rows`` (None when it fails, counted as errors of its version) and the call's ms."""
        t0 = time.perf_counter()
        try:
            scores = await asyncio.to_thread(model.predict, rows)
        except Exception:  # a model that cannot score is a server-side failure, counted per version
            log.exception("Model %s failed to score %d rows", model.version, len(rows))
            scores = None
        seconds = time.perf_counter() - t0
        self.metrics.observe(model.version, seconds, rows=len(rows), error=scores is None)
        return scores, seconds * 1000

    @staticmethod
    def _log_row(
        row: dict[str, Any], row_id: str, model: ServedModel, prediction: float | None, latency_ms: float, request_id: str
    ) -> dict[str, Any]:
        numeric = model.transform.spec["numeric"]
        features = {
            name: (None if row.get(name) is None else float(row[name]) if name in numeric else str(row[name]))
            for name in model.transform.features
        }
        return prediction_row(
            row_id=row_id,
            version=model.version,
            prediction=prediction,
            latency_ms=latency_ms,
            request_id=request_id,
            features=features,
        )

    async def feedback(self, request: Request) -> Response:
        """Labels for answered rows: only ids this server answered within ``FEEDBACK_WINDOW_SECONDS``, one label
        per answer (a second is refused), finite numbers only. Refused items are listed with why."""
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        items = body if isinstance(body, list) else [body]
        rows, refused = [], []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item or "label" not in item:
                return _error(422, f"feedback[{i}]: expected an object with 'id' and 'label'")
            label = item["label"]
            if isinstance(label, bool) or not isinstance(label, int | float) or not _finite(label):
                return _error(422, f"feedback[{i}].label: expected a finite number")
        now = time.time()
        with self._ids_lock:
            self._forget(now)
            for item in items:
                row_id = str(item["id"])
                answered = self._answered.get(row_id)
                if answered is None:
                    refused.append({"id": row_id, "reason": "not answered by this server in the feedback window"})
                elif answered[1]:
                    refused.append({"id": row_id, "reason": "already labelled"})
                else:
                    answered[1] = True
                    rows.append(feedback_row(row_id, float(item["label"])))
        self.feedback_log.append(rows)
        return JSONResponse({"accepted": len(rows), "refused": refused}, status_code=200 if rows or not refused else 422)

    def _remember(self, ids: list[str]) -> None:
        """Ids just answered: each answer may get one label within the feedback window (an id answered again, as
        when a client scores the same customer twice, may be labelled again)."""
        now = time.time()
        with self._ids_lock:
            for row_id in ids:
                self._answered[row_id] = [now, False]
                self._answered_at.append((now, row_id))
            self._forget(now)

    def _forget(self, now: float) -> None:
        while self._answered_at and (
            self._answered_at[0][0] < now - FEEDBACK_WINDOW_SECONDS or len(self._answered_at) > MAX_TRACKED_IDS
        ):
            at, row_id = self._answered_at.popleft()
            if (answered := self._answered.get(row_id)) is not None and answered[0] == at:  # not answered since
                del self._answered[row_id]

    async def health(self, request: Request) -> Response:
        production, canary, percent = self.router.versions
        status = 200 if production else 503
        body = {"status": "ok" if production else "no model", "production": production, "canary": canary}
        return JSONResponse({**body, "canary_percent": percent, "load_errors": self.load_errors}, status_code=status)

    async def metrics_text(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return _error(413, f"body of {declared} bytes; at most {MAX_BODY_BYTES}")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, an integer of over 4,300 digits, deep nesting
        return _error(400, f"body is not valid JSON: {str(err)[:200]}")
    if b"\\u" in raw:  # escapes can spell a lone surrogate, which no log can store
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError as err:
            return _error(422, f"body holds text that is not valid Unicode: {err.reason}")
    return body


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond float range
        return False


GUARDED = {"predict": "/predict", "feedback": "/feedback", "metrics": "/metrics"}
"""Routes a bearer token can guard, each with its own tokens; a route without tokens is open (``/health`` always)."""


def read_tokens(route: str, token_file: str | None) -> list[str]:
    """Tokens for ``route``: one per line of ``token_file`` (blank lines and ``#`` comments skipped), else the
    comma-separated ``MLOPS_<ROUTE>_TOKENS`` environment variable."""
    if token_file:
        lines = Path(token_file).read_text().splitlines()
        return [t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#")]
    return [t.strip() for t in os.environ.get(f"MLOPS_{route.upper()}_TOKENS", "").split(",") if t.strip()]


def _authorized(tokens: frozenset[str], header: str | None) -> int:
    """200 when the ``Authorization`` header bears one of ``tokens`` (compared in constant time), 401 without a
    bearer token, 403 with a wrong one."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401
    given_bytes = given.strip().encode()
    return 200 if any(hmac.compare_digest(given_bytes, t.encode()) for t in tokens) else 403


class _TokenGuard:
    """ASGI middleware: each guarded route with tokens needs ``Authorization: Bearer <token>`` (never logged)."""

    def __init__(self, app: Any, server: ModelServer) -> None:
        self.app, self.server = app, server
        self.routes = {path: route for route, path in GUARDED.items()}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        tokens = self.server.tokens.get(route) if route else None
        if tokens:
            headers = dict(scope.get("headers") or [])
            status = _authorized(tokens, (headers.get(b"authorization") or b"").decode("latin-1"))
            if status != 200:
                message = "a bearer token is required" if status == 401 else "this token may not use this route"
                response = _error(status, f"{scope['path']}: {message}")
                if status == 401:
                    response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
        watcher = asyncio.create_task(server.watch())
        try:
            yield
        finally:
            watcher.cancel()
            server.prediction_log.close()
            server.feedback_log.close()

    routes = [
        Route("/predict", server.predict, methods=["POST"]),
        Route("/feedback", server.feedback, methods=["POST"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/metrics", server.metrics_text, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(_TokenGuard, server=server)])
    app.state.server = server
    for route, path in GUARDED.items():
        if not server.tokens[route]:
            log.warning("%s is open: no token configured for it", path)
    return app
