"""Scoring a request, the path ``/predict`` and ``/v2/models/{name}/infer`` share: door checks on the rows, canary
routing, scoring (on the event loop or in a thread), the prediction log, the metrics and the answered ids."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from typing import Any

from starlette.responses import Response

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.serving.admission import refusal, rows_refusal
from airflow_mlops.serving.models import ServedModel
from airflow_mlops.serving.predlog import prediction_row
from airflow_mlops.serving.server import ModelServer

log = logging.getLogger(__name__)

DIRECT_ROWS = 32
"""Requests of at most this many rows are scored right on the event loop, bigger ones in a thread. Measured on 2
cores (25 features, 100 trees): one row takes 27 us directly and 184 us through ``asyncio.to_thread``, 32 rows 213
us and 352 us; the hop only pays for keeping the loop free for other requests while a big batch is scored, so the
loop is held at most about 0.2 ms."""


async def answer(server: ModelServer, rows: list[Any], keys: list[str]) -> list[tuple[str, Any, str]] | Response:
    """``(id, output, version)`` per row, or the refusal: door checks, canary routing, scoring, the prediction log,
    metrics and the answered ids. ``keys`` are the rows' own ids ("" for none: one is made). The output is the
    model's :meth:`~airflow_mlops.serving.models.ServedModel.output`: a number, or for a multiclass model the class
    and the probabilities of every class."""
    if (refused := rows_refusal(rows)) is not None:
        return refused
    router = server.router  # this request keeps this router even if the registry changes meanwhile
    if router.production is None:
        return refusal(503, f"no production model for pipeline {server.pipeline!r} yet")
    groups: dict[str, tuple[ServedModel, list[int]]] = {}
    ids: list[str] = []
    for i, (row, key) in enumerate(zip(rows, keys, strict=True)):
        model = router.choose(key or None, random.random())
        try:
            model.check(row, i)
        except MlopsError as err:
            return refusal(422, str(err))
        ids.append(key or uuid.uuid4().hex)
        groups.setdefault(model.version, (model, []))[1].append(i)
    request_id = uuid.uuid4().hex  # the canary analysis takes one latency sample per request and version
    answers: list[tuple[str, Any, str]] = [("", None, "")] * len(rows)
    logged: list[dict[str, Any] | None] = [None] * len(rows)
    failed = None
    for model, indexes in groups.values():
        part = rows if len(indexes) == len(rows) else [rows[i] for i in indexes]
        scores, ms = await _score(server, model, part)
        if scores is None and model is not router.production:
            # A canary that cannot score must not fail the caller: production answers these rows,
            # and the log keeps the canary's failure for the canary analysis.
            for i in indexes:
                logged[i] = _log_row(rows[i], ids[i], model, None, ms, request_id)
            model = router.production
            scores, ms = await _score(server, model, part)
        if scores is None:
            failed, scores = f"model {model.version} failed to score", [None] * len(indexes)
        for i, score in zip(indexes, scores, strict=True):
            answers[i] = (ids[i], model.output(score), model.version)
            logged[i] = logged[i] or _log_row(rows[i], ids[i], model, score, ms, request_id)
    server.prediction_log.append(logged)
    if failed:
        return refusal(500, failed)
    server.shared.answered(ids, time.time())
    return answers


async def explanations(server: ModelServer, rows: list[Any], answers: list[tuple[str, Any, str]]) -> list[Any]:
    """Each answered row's explanation by the version that answered it (in a thread for more than ``DIRECT_ROWS``
    rows); None for a row whose version is no longer loaded."""
    router = server.router
    models = {m.version: m for m in (router.production, router.canary, router.holdback) if m is not None}
    found: list[Any] = [None] * len(rows)
    groups: dict[str, list[int]] = {}
    for i, (_, _, version) in enumerate(answers):
        groups.setdefault(version, []).append(i)
    for version, indexes in groups.items():
        if (model := models.get(version)) is None:
            continue
        part = [rows[i] for i in indexes]
        explained = model.explain(part) if len(part) <= DIRECT_ROWS else await asyncio.to_thread(model.explain, part)
        for i, one in zip(indexes, explained, strict=True):
            found[i] = one
    return found


async def _score(server: ModelServer, model: ServedModel, rows: list[dict[str, Any]]) -> tuple[list[Any] | None, float]:
    """The model's scores for ``rows`` (None when it fails, counted as errors of its version) and the call's ms.
    Up to ``DIRECT_ROWS`` rows are scored right here on the event loop, more in a thread."""
    t0 = time.perf_counter()
    try:
        scores = model.predict(rows) if len(rows) <= DIRECT_ROWS else await asyncio.to_thread(model.predict, rows)
    except Exception:  # a model that cannot score is a server-side failure, counted per version
        log.exception("Model %s failed to score %d rows", model.version, len(rows))
        scores = None
    seconds = time.perf_counter() - t0
    server.metrics.observe(model.version, seconds, rows=len(rows), error=scores is None)
    return scores, seconds * 1000


def _log_row(
    row: dict[str, Any], row_id: str, model: ServedModel, score: Any, latency_ms: float, request_id: str
) -> dict[str, Any]:
    """The row's log entry: ``score`` a number, or a multiclass model's class probabilities (logged as they are, with
    the most probable class's index as the prediction)."""
    probabilities, prediction = None, score
    if model.classes is not None and score is not None:
        probabilities = list(score)
        prediction = float(max(range(len(score)), key=score.__getitem__))
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
        probabilities=probabilities,
    )
