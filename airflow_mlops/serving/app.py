"""The model server: an ASGI app over the registry's production and canary models.

Never imports Airflow. ``create_app`` wires the router, the prediction log, the metrics and a
registry watcher that swaps models without touching requests in flight (each request keeps the
router it started with). ``airflow-mlops serve`` runs it in one or more worker processes (uvicorn's
workers on one shared socket, each built by ``app_from_env``); every worker polls the registry
document, the shared truth, and the workers share the answered row ids through an SQLite file
(``SharedState``) and their metrics through prometheus_client's multiprocess files.

Two protocols reach the same scoring path (door checks, canary routing, logging, metrics): ``/predict``
(``{"instances": [...]}``) and the Open Inference Protocol v2 (KServe's) under ``/v2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.serving.metrics import CONTENT_TYPE, ServerMetrics
from airflow_mlops.serving.models import Router, ServedModel
from airflow_mlops.serving.predlog import PredictionLog, default_wal_dir, feedback_row, prediction_row
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_ROWS = 1000
DIRECT_ROWS = 32
"""Requests of at most this many rows are scored right on the event loop, bigger ones in a thread. Measured on 2
cores (25 features, 100 trees): one row takes 27 us directly and 184 us through ``asyncio.to_thread``, 32 rows 213
us and 352 us; the hop only pays for keeping the loop free for other requests while a big batch is scored, so the
loop is held at most about 0.2 ms."""
FEEDBACK_WINDOW_SECONDS = 7 * 24 * 3600
MAX_TRACKED_IDS = 2_000_000
"""Ids the server remembers for feedback (oldest forgotten first); they outlive a restart (``SharedState``)."""
NOT_ANSWERED = "not answered by this server in the feedback window"
SETTINGS_ENV = "MLOPS_SERVE_SETTINGS"
"""The environment variable through which ``airflow-mlops serve`` hands its settings (JSON) to its workers."""


class SharedState:
    """What the worker processes of one server share, in an SQLite file (WAL mode) beside the write-ahead logs.

    The row ids answered, each with when and whether it was labelled: feedback is taken for an id any worker
    answered within ``FEEDBACK_WINDOW_SECONDS``, and only the first label of an answer (an atomic
    ``UPDATE ... WHERE labelled = 0``). A worker writes the ids it answered every ``WRITE_SECONDS`` in one
    transaction from a thread (a commit per request would cost about 50 us of each), and its own before it judges
    a label; an id a label names that is not there yet (answered by another worker just now) is looked up again
    after ``VISIBLE_SECONDS``. The models refused in a server run are recorded too, so a refusal is counted once
    whichever worker found it. Each worker holds its own connection; SQLite's locks order the writes.

    :param path: the SQLite file; it outlives restarts, and so do the answered ids.
    :param run: the server run (one id for all its workers).
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS answered (id TEXT NOT NULL UNIQUE, at REAL NOT NULL, labelled INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS refused (run TEXT NOT NULL, version TEXT NOT NULL, PRIMARY KEY (run, version));
    """
    WRITE_SECONDS = 0.05
    VISIBLE_SECONDS = 4 * WRITE_SECONDS

    def __init__(self, path: Path, run: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.run = path, run
        self._db = self._connect()
        self._db.executescript(self.SCHEMA)
        self._lock = threading.Lock()  # the connection: the event loop, the writer and the registry refresh use it
        self._unwritten: list[tuple[str, float]] = []
        self._unwritten_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_every, name="answered-ids", daemon=True)

    def _connect(self) -> Any:
        import sqlite3

        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a commit is an append to SQLite's own WAL, no fsync
        return db

    @staticmethod
    @contextlib.contextmanager
    def _transaction(db: Any) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def start(self) -> None:
        self._writer.start()

    def close(self) -> None:
        self._stop.set()
        self._writer.join(timeout=10)
        self.write()

    def answered(self, ids: list[str], now: float) -> None:
        """Ids just answered: each answer may get one label (an id answered again may be labelled again)."""
        with self._unwritten_lock:
            self._unwritten.extend((row_id, now) for row_id in ids)

    def write(self) -> None:
        """Write the ids answered since the last write. A replaced row gets a new rowid, so rowids keep the order of
        the answers."""
        with self._unwritten_lock:
            batch, self._unwritten = self._unwritten, []
        if not batch:
            return
        try:
            with self._lock, self._transaction(self._db):
                self._db.executemany("INSERT OR REPLACE INTO answered VALUES (?, ?, 0)", batch)
        except Exception:
            with self._unwritten_lock:
                self._unwritten[:0] = batch
            raise

    def _write_every(self) -> None:
        while not self._stop.wait(self.WRITE_SECONDS):
            try:
                self.write()
            except Exception:  # the file is busy or the disk full: the ids stay queued, written at the next turn
                log.exception("Could not write the answered ids; will retry")

    def label(self, ids: list[str], now: float) -> list[str | None]:
        """Take the label of each id: None when taken, else why it is refused."""
        self.write()
        cutoff, refusals = now - FEEDBACK_WINDOW_SECONDS, []
        with self._lock, self._transaction(self._db):
            for row_id in ids:
                taken = self._db.execute(
                    "UPDATE answered SET labelled = 1 WHERE id = ? AND labelled = 0 AND at >= ?", (row_id, cutoff)
                ).rowcount
                if taken:
                    refusals.append(None)
                    continue
                known = self._db.execute("SELECT 1 FROM answered WHERE id = ? AND at >= ?", (row_id, cutoff)).fetchone()
                refusals.append("already labelled" if known else NOT_ANSWERED)
        return refusals

    def forget(self, now: float) -> None:
        """Drop the answers older than the feedback window, then the oldest beyond ``MAX_TRACKED_IDS`` (in rowid
        order: only the dropped rows are scanned). Its own connection, so the event loop's never waits on it."""
        with contextlib.closing(self._connect()) as db, self._transaction(db):
            first_kept = "SELECT rowid FROM answered WHERE at >= ? ORDER BY rowid LIMIT 1"
            db.execute(
                f"DELETE FROM answered WHERE rowid < coalesce(({first_kept}), (SELECT max(rowid) + 1 FROM answered))",
                (now - FEEDBACK_WINDOW_SECONDS,),
            )
            db.execute("DELETE FROM answered WHERE rowid <= (SELECT max(rowid) FROM answered) - ?", (MAX_TRACKED_IDS,))

    def first_refusal(self, version: str) -> bool:
        """Record that ``version`` could not be loaded; True for the first worker of this run to record it."""
        with self._lock, self._transaction(self._db):
            return bool(self._db.execute("INSERT OR IGNORE INTO refused VALUES (?, ?)", (self.run, version)).rowcount)


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
        self._wanted: tuple[str | None, str | None, float] | None = None
        self.load_errors: dict[str, str] = {}
        self._supervisor = os.getppid() if supervised else None

    def refresh(self) -> bool:
        """Load the registry's production and canary models (or the pinned ``version``) if they changed; True when
        swapped.

        A version that cannot be loaded is never served: production stays on the model it had, a canary gets no
        traffic, and the failure is logged, counted and shown by ``/health`` (it is not tried again).
        """
        if self.version:
            production, canary, percent = self.version, None, 0.0
        else:
            aliases = self.registry.load()["aliases"]
            production = (aliases.get("production") or {}).get("version")
            canary_alias = aliases.get("canary") or {}
            canary, percent = canary_alias.get("version"), float(canary_alias.get("weight", 0) or 0)
        wanted = (production, canary, percent)
        if wanted == self._wanted:
            return False
        models = {v: model for v in (production, canary) if v and (model := self._load(v))}
        self._wanted = wanted
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

    # -- the scoring path, shared by /predict and /v2/models/{name}/infer -------------------------

    async def _answer(self, rows: list[Any], keys: list[str]) -> list[tuple[str, float | None, str]] | Response:
        """``(id, prediction, version)`` per row, or the error response: door checks, canary routing, scoring, the
        prediction log, metrics and the answered ids. ``keys`` are the rows' own ids ("" for none: one is made)."""
        if not rows:
            return _error(422, "no instances to score")
        if len(rows) > MAX_ROWS:
            return _error(413, f"{len(rows)} instances; at most {MAX_ROWS} per request")
        router = self.router  # this request keeps this router even if the registry changes meanwhile
        if router.production is None:
            return _error(503, f"no production model for pipeline {self.pipeline!r} yet")
        groups: dict[str, tuple[ServedModel, list[int]]] = {}
        ids: list[str] = []
        for i, (row, key) in enumerate(zip(rows, keys, strict=True)):
            model = router.choose(key or None, random.random())
            try:
                model.check(row, i)
            except MlopsError as err:
                return _error(422, str(err))
            ids.append(key or uuid.uuid4().hex)
            groups.setdefault(model.version, (model, []))[1].append(i)
        request_id = uuid.uuid4().hex  # the canary analysis takes one latency sample per request and version
        answers: list[tuple[str, float | None, str]] = [("", None, "")] * len(rows)
        logged: list[dict[str, Any] | None] = [None] * len(rows)
        failed = None
        for model, indexes in groups.values():
            part = rows if len(indexes) == len(rows) else [rows[i] for i in indexes]
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
                answers[i] = (ids[i], score, model.version)
                logged[i] = logged[i] or self._log_row(rows[i], ids[i], model, score, ms, request_id)
        self.prediction_log.append(logged)
        if failed:
            return _error(500, failed)
        self.shared.answered(ids, time.time())
        return answers

    async def _score(self, model: ServedModel, rows: list[dict[str, Any]]) -> tuple[list[float] | None, float]:
        """The model's scores for ``rows`` (None when it fails, counted as errors of its version) and the call's ms.
        Up to ``DIRECT_ROWS`` rows are scored right here on the event loop, more in a thread."""
        t0 = time.perf_counter()
        try:
            scores = model.predict(rows) if len(rows) <= DIRECT_ROWS else await asyncio.to_thread(model.predict, rows)
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
        numeric = model.numeric
        features = {
            name: (None if (value := row.get(name)) is None else float(value) if name in numeric else str(value))
            for name in model.features
        }
        return prediction_row(
            row_id=row_id,
            version=model.version,
            prediction=prediction,
            latency_ms=latency_ms,
            request_id=request_id,
            features=features,
        )

    # -- routes ------------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        """``{"instances": [row, ...]}`` (or a list of rows, or one row); a row's ``id`` (or ``request_id``) keeps it
        on one side of a canary and is the id its feedback names."""
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        rows = body["instances"] if isinstance(body, dict) and "instances" in body else body
        rows = rows if isinstance(rows, list) else [rows]
        keys = [str(row.get("id") or row.get("request_id") or "") if isinstance(row, dict) else "" for row in rows]
        answers = await self._answer(rows, keys)
        if isinstance(answers, Response):
            return answers
        return JSONResponse({"predictions": [{"id": i, "prediction": p, "version": v} for i, p, v in answers]})

    async def infer(self, request: Request) -> Response:
        """Open Inference Protocol v2 ``infer``: one input per feature, each of shape ``[n]`` (or ``[n, 1]``); the
        rows' ids from ``parameters.ids`` (else made up), returned in the response's ``parameters.ids`` with the
        version of each row in ``parameters.versions``."""
        if (missing := self._unknown_model(request)) is not None:
            return missing
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        parsed = _v2_rows(body)
        if isinstance(parsed, Response):
            return parsed
        rows, keys = parsed
        answers = await self._answer(rows, keys)
        if isinstance(answers, Response):
            return answers
        ids, predictions, versions = (list(column) for column in zip(*answers, strict=True))
        given = body.get("id")
        return JSONResponse(
            {
                "model_name": self.pipeline,
                "model_version": ",".join(sorted(set(versions))),
                "id": given if isinstance(given, str) else uuid.uuid4().hex,
                "parameters": {"ids": ids, "versions": versions},
                "outputs": [{"name": "predict", "datatype": "FP64", "shape": [len(rows)], "data": predictions}],
            }
        )

    async def model_metadata(self, request: Request) -> Response:
        """v2 model metadata: the production model's features as inputs (FP64 numeric, BYTES categorical)."""
        if (missing := self._unknown_model(request)) is not None:
            return missing
        production, canary, _ = self.router.versions
        model = self.router.production
        if model is None:
            return _error(503, f"no production model for pipeline {self.pipeline!r} yet")
        inputs = [
            {"name": name, "datatype": "FP64" if name in model.numeric else "BYTES", "shape": [-1]} for name in model.features
        ]
        return JSONResponse(
            {
                "name": self.pipeline,
                "versions": [v for v in (production, canary) if v],
                "platform": "lightgbm",
                "inputs": inputs,
                "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
            }
        )

    async def model_ready(self, request: Request) -> Response:
        if (missing := self._unknown_model(request)) is not None:
            return missing
        ready = self.router.production is not None
        return JSONResponse({"name": self.pipeline, "ready": ready}, status_code=200 if ready else 503)

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.router.production is not None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    def _unknown_model(self, request: Request) -> Response | None:
        name = request.path_params["name"]
        return None if name == self.pipeline else _error(404, f"model {name!r} is not served here (this is {self.pipeline!r})")

    async def feedback(self, request: Request) -> Response:
        """Labels for answered rows: only ids this server (any worker) answered within ``FEEDBACK_WINDOW_SECONDS``,
        one label per answer (a second is refused), finite numbers only. Refused items are listed with why."""
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        items = body if isinstance(body, list) else [body]
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item or "label" not in item:
                return _error(422, f"feedback[{i}]: expected an object with 'id' and 'label'")
            label = item["label"]
            if isinstance(label, bool) or not isinstance(label, int | float) or not _finite(label):
                return _error(422, f"feedback[{i}].label: expected a finite number")
        ids = [str(item["id"]) for item in items]
        refusals = await asyncio.to_thread(self.shared.label, ids, time.time())
        unknown = [i for i, why in enumerate(refusals) if why == NOT_ANSWERED]
        if unknown:  # perhaps answered by another worker just now, its ids not written yet
            await asyncio.sleep(SharedState.VISIBLE_SECONDS)
            again = await asyncio.to_thread(self.shared.label, [ids[i] for i in unknown], time.time())
            for i, why in zip(unknown, again, strict=True):
                refusals[i] = why
        rows = [
            feedback_row(row_id, float(item["label"])) for row_id, item, why in zip(ids, items, refusals, strict=True) if not why
        ]
        refused = [{"id": row_id, "reason": why} for row_id, why in zip(ids, refusals, strict=True) if why]
        self.feedback_log.append(rows)
        return JSONResponse({"accepted": len(rows), "refused": refused}, status_code=200 if rows or not refused else 422)

    async def health(self, request: Request) -> Response:
        production, canary, percent = self.router.versions
        status = 200 if production else 503
        body = {"status": "ok" if production else "no model", "production": production, "canary": canary}
        body |= {"canary_percent": percent, "load_errors": self.load_errors, "worker": os.getpid()}
        return JSONResponse(body, status_code=status)

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


def _v2_rows(body: Any) -> tuple[list[dict[str, Any]], list[str]] | Response:
    """Rows and their ids from a v2 infer request: ``inputs`` holds one named input per feature, each with ``n``
    values (``data`` flat, or ``n`` one-value lists for shape ``[n, 1]``); ``parameters.ids`` holds ``n`` ids or
    is absent (then every id is "": made up later)."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs:
        return _error(400, "expected an object with a non-empty 'inputs' list (Open Inference Protocol v2)")
    columns: dict[str, list[Any]] = {}
    for i, given in enumerate(inputs):
        if not isinstance(given, dict) or not isinstance(given.get("name"), str) or not isinstance(given.get("data"), list):
            return _error(400, f"inputs[{i}]: expected an object with a 'name', a 'shape' and a 'data' list")
        name, data, shape = given["name"], given["data"], given.get("shape")
        if data and all(isinstance(v, list) and len(v) == 1 for v in data):
            data = [v[0] for v in data]
        if shape not in ([len(data)], [len(data), 1]):
            return _error(400, f"inputs[{i}] ({name}): shape {shape} does not fit its {len(data)} values; expected [n] or [n, 1]")
        if name in columns:
            return _error(400, f"inputs[{i}]: input {name!r} given twice")
        if columns and len(data) != len(first := next(iter(columns.values()))):
            return _error(400, f"inputs[{i}] ({name}): {len(data)} values, but inputs[0] has {len(first)}")
        columns[name] = data
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    parameters = body.get("parameters")
    ids = parameters.get("ids") if isinstance(parameters, dict) else None
    if ids is None:
        return rows, [""] * len(rows)
    if not isinstance(ids, list) or len(ids) != len(rows) or not all(isinstance(x, str) and x for x in ids):
        return _error(400, f"parameters.ids: expected a list of {len(rows)} non-empty strings, one per row")
    return rows, ids


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
"""Routes a bearer token can guard, each with its own tokens; a route without tokens is open. The ``predict``
tokens also guard v2 ``/v2/models/{name}`` and ``/v2/models/{name}/infer``; ``/health``, ``/v2/health/*`` and
``/v2/models/{name}/ready`` (the probes) are always open."""
_GUARDED_PATHS = {path: route for route, path in GUARDED.items()}


def _guarded_route(path: str) -> str | None:
    """The route whose tokens guard ``path``, None for an open one."""
    if path.startswith("/v2/models/"):
        parts = path.split("/")  # "", "v2", "models", name[, "ready" | "infer"]
        return None if len(parts) == 5 and parts[4] == "ready" else "predict"
    return _GUARDED_PATHS.get(path)


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

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = _guarded_route(scope.get("path", "")) if scope["type"] == "http" else None
        tokens = self.server.tokens.get(route) if route else None
        if tokens:
            header = next((value for name, value in scope.get("headers") or () if name == b"authorization"), b"")
            status = _authorized(tokens, header.decode("latin-1"))
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
        server.shared.start()
        watcher = asyncio.create_task(server.watch())
        try:
            yield
        finally:
            watcher.cancel()
            server.prediction_log.close()
            server.feedback_log.close()
            server.shared.close()

    routes = [
        Route("/predict", server.predict, methods=["POST"]),
        Route("/v2/models/{name}/infer", server.infer, methods=["POST"]),
        Route("/feedback", server.feedback, methods=["POST"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/metrics", server.metrics_text, methods=["GET"]),
        Route("/v2/health/live", server.live, methods=["GET"]),
        Route("/v2/health/ready", server.ready, methods=["GET"]),
        Route("/v2/models/{name}/ready", server.model_ready, methods=["GET"]),
        Route("/v2/models/{name}", server.model_metadata, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(_TokenGuard, server=server)])
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
