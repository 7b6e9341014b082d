"""The model server's state, shared by its routes: the router over the production, canary and holdback models
(swapped when the registry changes), the prediction and feedback logs, the metrics, the tokens and what the workers share."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from starlette.requests import Request

from airflow_mlops.serving.auth import GUARDED
from airflow_mlops.serving.metrics import ServerMetrics
from airflow_mlops.serving.models import Router, ServedModel
from airflow_mlops.serving.predlog import PredictionLog
from airflow_mlops.serving.shared_state import SharedState
from airflow_mlops.serving.write_ahead import default_wal_dir
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry

log = logging.getLogger(__name__)


class ModelServer:
    """State shared by the routes: the current router, the logs, the metrics.

    :param store: the artifact store holding the registry and the models.
    :param pipeline: the pipeline whose models are served; also the model's name in the v2 protocol.
    :param poll_seconds: how often the registry is read.
    :param flush_seconds: how often the logs ship their rows.
    :param wal_dir: folder of the write-ahead logs and of ``answered.sqlite3``.
    :param tokens: bearer tokens per guarded route (see ``GUARDED``).
    :param version: serve this version alone, as production (no canary; the registry is not watched).
    :param run: the server run this worker belongs to (a fresh one by default).
    :param supervised: a worker under uvicorn's supervisor: it stops when the supervisor is gone.
    """

    def __init__(
        self,
        store: ArtifactStore,
        pipeline: str,
        *,
        poll_seconds: float = 2.0,
        flush_seconds: float = 2.0,
        wal_dir: Path | str | None = None,
        tokens: Mapping[str, Collection[str]] | None = None,
        version: str | None = None,
        run: str | None = None,
        supervised: bool = False,
    ) -> None:
        self.store, self.pipeline, self.poll_seconds, self.version = store, pipeline, poll_seconds, version
        self.tokens = {route: frozenset(t for t in (tokens or {}).get(route, ()) if t) for route in GUARDED}
        self.registry = ModelRegistry(store, pipeline)
        self.router = Router(None)
        self.metrics = ServerMetrics()
        wal_root = Path(wal_dir or default_wal_dir(store, pipeline))
        logs = {"flush_seconds": flush_seconds, "wal_dir": wal_root}
        self.prediction_log = PredictionLog(store, pipeline, kind="predictions", **logs)
        self.feedback_log = PredictionLog(store, pipeline, kind="feedback", **logs)
        self.shared = SharedState(wal_root / "answered.sqlite3", run or uuid.uuid4().hex)
        self._loaded: dict[str, ServedModel] = {}
        self._wanted: tuple[str | None, str | None, float, str | None, float] | None = None
        self.load_errors: dict[str, str] = {}
        self._supervisor = os.getppid() if supervised else None

    def refresh(self) -> bool:
        """Load the registry's production, canary and holdback models (or the pinned ``version``) if they changed;
        True when swapped.

        A version that cannot be loaded is never served: production stays on the model it had, a canary or a holdback
        gets no traffic, and the failure is logged, counted and shown by ``/health`` (it is not tried again).
        """
        wanted = (self.version, None, 0.0, None, 0.0) if self.version else routing(self.registry.load()["aliases"])
        if wanted == self._wanted:
            return False
        production, canary, percent, holdback, held = wanted
        models = {v: model for v in (production, canary, holdback) if v and (model := self._load(v))}
        self._wanted = wanted
        # A production that cannot load leaves the last good one serving; no production alias means none.
        serving = self.router.production if production and production not in models else models.get(production)
        trial, control = models.get(canary), models.get(holdback)
        self._loaded = {m.version: m for m in (serving, trial, control) if m}
        self.router = Router(serving, trial, percent if trial else 0.0, control, held if control else 0.0)
        log.info("Serving %s", self.router.versions)
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
            if self.shared.first_refusal(version):  # every worker refuses it; the server counts it once
                self.metrics.load_failed(version)
            log.error("Not serving model %s: %s", version, err)
            return None

    async def watch(self) -> None:
        """Every ``poll_seconds``: read the registry (unless pinned), forget answers past the feedback window, and
        stop this worker when its supervisor is gone (killed: a worker must not serve on alone)."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            if self._supervisor is not None and os.getppid() != self._supervisor:
                log.error("The server's supervisor process is gone; stopping worker %d", os.getpid())
                os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful exit: the logs ship what they hold
                return
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # a broken registry write must not take the server down
                log.exception("Registry refresh failed; keeping the current models")
            try:
                await asyncio.to_thread(self.shared.forget, time.time())
            except Exception:
                log.exception("Could not forget old answered ids; will retry")

    @staticmethod
    def of(request: Request) -> ModelServer:
        """The server whose app received ``request`` (``create_app`` keeps it in the app's state)."""
        return request.app.state.server


def routing(aliases: Mapping[str, Any]) -> tuple[str | None, str | None, float, str | None, float]:
    """What the registry's aliases say should serve: production, the canary and its percent, the holdback and its
    (only beside the production it was kept for: a stale one, production having moved, takes no traffic)."""
    production = (aliases.get("production") or {}).get("version")
    canary, holdback = aliases.get("canary") or {}, aliases.get("holdback") or {}
    if holdback.get("beside") != production:
        holdback = {}
    return (
        production,
        canary.get("version"),
        float(canary.get("weight") or 0),
        holdback.get("version"),
        float(holdback.get("weight") or 0),
    )
