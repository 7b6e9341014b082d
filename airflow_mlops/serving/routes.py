"""The model server's own routes: ``/predict``, ``/feedback``, ``/health`` and ``/metrics`` (the Open Inference
Protocol v2 ones are in ``open_inference``). Each finds its server in the app's state."""

from __future__ import annotations

import asyncio
import os
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_mlops.serving.admission import finite, json_body, refusal
from airflow_mlops.serving.metrics import CONTENT_TYPE
from airflow_mlops.serving.predlog import feedback_row
from airflow_mlops.serving.scoring import answer, explanations
from airflow_mlops.serving.server import ModelServer
from airflow_mlops.serving.shared_state import NOT_ANSWERED, SharedState


async def predict(request: Request) -> Response:
    """``{"instances": [row, ...]}`` (or a list of rows, or one row); a row's ``id`` (or ``request_id``) keeps it
    on one side of a canary and is the id its feedback names. With ``"explain": true`` each prediction also has its
    ``explanation`` (the features' contributions to the raw score and the expected value, by the model that
    answered it); a request without it never pays for them."""
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    rows = body["instances"] if isinstance(body, dict) and "instances" in body else body
    rows = rows if isinstance(rows, list) else [rows]
    keys = [str(row.get("id") or row.get("request_id") or "") if isinstance(row, dict) else "" for row in rows]
    server = ModelServer.of(request)
    answers = await answer(server, rows, keys)
    if isinstance(answers, Response):
        return answers
    # a multiclass model's output is {"prediction": class, "probabilities": {class: p}}: its keys join the row's
    predictions = [{"id": i, **(p if isinstance(p, dict) else {"prediction": p}), "version": v} for i, p, v in answers]
    if isinstance(body, dict) and body.get("explain") is True:
        for prediction, found in zip(predictions, await explanations(server, rows, answers), strict=True):
            prediction["explanation"] = found
    return JSONResponse({"predictions": predictions})


async def feedback(request: Request) -> Response:
    """Labels for answered rows: only ids this server (any worker) answered within ``FEEDBACK_WINDOW_SECONDS``,
    one label per answer (a second is refused), finite numbers only. Refused items are listed with why."""
    server = ModelServer.of(request)
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    items = body if isinstance(body, list) else [body]
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item or "label" not in item:
            return refusal(422, f"feedback[{i}]: expected an object with 'id' and 'label'")
        label = item["label"]
        if isinstance(label, bool) or not isinstance(label, int | float) or not finite(label):
            return refusal(422, f"feedback[{i}].label: expected a finite number")
    ids = [str(item["id"]) for item in items]
    refusals = await asyncio.to_thread(server.shared.label, ids, time.time())
    unknown = [i for i, why in enumerate(refusals) if why == NOT_ANSWERED]
    if unknown:  # perhaps answered by another worker just now, its ids not written yet
        await asyncio.sleep(SharedState.VISIBLE_SECONDS)
        again = await asyncio.to_thread(server.shared.label, [ids[i] for i in unknown], time.time())
        for i, why in zip(unknown, again, strict=True):
            refusals[i] = why
    rows = [feedback_row(row_id, float(item["label"])) for row_id, item, why in zip(ids, items, refusals, strict=True) if not why]
    refused = [{"id": row_id, "reason": why} for row_id, why in zip(ids, refusals, strict=True) if why]
    server.feedback_log.append(rows)
    return JSONResponse({"accepted": len(rows), "refused": refused}, status_code=200 if rows or not refused else 422)


async def health(request: Request) -> Response:
    server = ModelServer.of(request)
    versions = server.router.versions
    status = 200 if versions["production"] else 503
    body = {"status": "ok" if versions["production"] else "no model", **versions}
    body |= {"load_errors": server.load_errors, "worker": os.getpid()}
    return JSONResponse(body, status_code=status)


async def metrics_text(request: Request) -> Response:
    return Response(ModelServer.of(request).metrics.render(), media_type=CONTENT_TYPE)
