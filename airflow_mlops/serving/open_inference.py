"""The Open Inference Protocol v2 (KServe's) under ``/v2``: infer, model metadata and the health probes, over the
same scoring path as ``/predict``. The model's name is the pipeline's."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_mlops.serving.admission import json_body, refusal
from airflow_mlops.serving.scoring import answer, explanations
from airflow_mlops.serving.server import ModelServer


async def infer(request: Request) -> Response:
    """``infer``: one input per feature, each of shape ``[n]`` (or ``[n, 1]``); the rows' ids from
    ``parameters.ids`` (else made up), returned in the response's ``parameters.ids`` with the version of each row
    in ``parameters.versions``."""
    server = ModelServer.of(request)
    if (missing := _unknown_model(server, request)) is not None:
        return missing
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    parsed = _v2_rows(body)
    if isinstance(parsed, Response):
        return parsed
    rows, keys = parsed
    answers = await answer(server, rows, keys)
    if isinstance(answers, Response):
        return answers
    ids, predictions, versions = (list(column) for column in zip(*answers, strict=True))
    outputs = _outputs(predictions)
    parameters = body.get("parameters")
    if isinstance(parameters, dict) and parameters.get("explain") is True:
        outputs.append(_contributions(await explanations(server, rows, answers)))
    given = body.get("id")
    return JSONResponse(
        {
            "model_name": server.pipeline,
            "model_version": ",".join(sorted(set(versions))),
            "id": given if isinstance(given, str) else uuid.uuid4().hex,
            "parameters": {"ids": ids, "versions": versions},
            "outputs": outputs,
        }
    )


def _outputs(predictions: list[Any]) -> list[dict[str, Any]]:
    """The ``outputs`` of an infer response: ``predict`` (FP64, one score per row); for a multiclass model
    ``predict`` holds each row's class (BYTES) and ``probabilities`` (FP64, shape ``[n, classes]``, row-major) the
    probability of each class its ``parameters.classes`` names (the classes of every version that answered, in
    order of first appearance; a class a version does not know has probability 0 in its rows)."""
    n = len(predictions)
    if not predictions or not isinstance(predictions[0], dict):
        return [{"name": "predict", "datatype": "FP64", "shape": [n], "data": predictions}]
    classes = list(dict.fromkeys(c for p in predictions for c in p["probabilities"]))
    data = [p["probabilities"].get(c, 0.0) for p in predictions for c in classes]
    return [
        {"name": "predict", "datatype": "BYTES", "shape": [n], "data": [p["prediction"] for p in predictions]},
        {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [n, len(classes)],
            "data": data,
            "parameters": {"classes": classes},
        },
    ]


def _contributions(found: list[Any]) -> dict[str, Any]:
    """The ``contributions`` output of an infer asked to explain (``parameters.explain``): FP64 of shape ``[n,
    features + 1]``, or ``[n, classes, features + 1]`` for a multiclass model, row-major; ``parameters.features``
    names the columns (the last is ``_expected_value``) and ``parameters.classes`` the classes. A feature or class
    a row's version does not have is 0 there."""
    from airflow_mlops.ml.explain import EXPECTED_VALUE

    known = [f for f in found if f is not None]
    multiclass = bool(known) and isinstance(known[0]["expected_value"], dict)
    found = [f or {"contributions": {}, "expected_value": {} if multiclass else 0.0} for f in found]
    if not multiclass:
        features = list(dict.fromkeys(name for f in known for name in f["contributions"]))
        data = [v for f in found for v in [*(f["contributions"].get(n, 0.0) for n in features), f["expected_value"]]]
        shape, extra = [len(found), len(features) + 1], {}
    else:
        classes = list(dict.fromkeys(c for f in known for c in f["contributions"]))
        features = list(dict.fromkeys(n for f in known for per in f["contributions"].values() for n in per))
        data = [
            v
            for f in found
            for c in classes
            for v in [*(f["contributions"].get(c, {}).get(n, 0.0) for n in features), f["expected_value"].get(c, 0.0)]
        ]
        shape, extra = [len(found), len(classes), len(features) + 1], {"classes": classes}
    names = [*features, EXPECTED_VALUE]
    return {"name": "contributions", "datatype": "FP64", "shape": shape, "data": data, "parameters": {"features": names, **extra}}


async def model_metadata(request: Request) -> Response:
    """Model metadata: the production model's features as inputs (FP64 numeric, BYTES categorical)."""
    server = ModelServer.of(request)
    if (missing := _unknown_model(server, request)) is not None:
        return missing
    model = server.router.production
    if model is None:
        return refusal(503, f"no production model for pipeline {server.pipeline!r} yet")
    inputs = [{"name": name, "datatype": "FP64" if name in model.numeric else "BYTES", "shape": [-1]} for name in model.features]
    return JSONResponse(
        {
            "name": server.pipeline,
            "versions": [m.version for m in (model, server.router.canary, server.router.holdback) if m],
            "platform": "lightgbm",
            "inputs": inputs,
            "outputs": (
                [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
                if model.classes is None
                else [
                    {"name": "predict", "datatype": "BYTES", "shape": [-1]},
                    {
                        "name": "probabilities",
                        "datatype": "FP64",
                        "shape": [-1, len(model.classes)],
                        "parameters": {"classes": list(model.classes)},
                    },
                ]
            ),
        }
    )


async def model_ready(request: Request) -> Response:
    server = ModelServer.of(request)
    if (missing := _unknown_model(server, request)) is not None:
        return missing
    ready = server.router.production is not None
    return JSONResponse({"name": server.pipeline, "ready": ready}, status_code=200 if ready else 503)


async def live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    ready = ModelServer.of(request).router.production is not None
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def _unknown_model(server: ModelServer, request: Request) -> Response | None:
    name = request.path_params["name"]
    return None if name == server.pipeline else refusal(404, f"model {name!r} is not served here (this is {server.pipeline!r})")


def _v2_rows(body: Any) -> tuple[list[dict[str, Any]], list[str]] | Response:
    """Rows and their ids from a v2 infer request: ``inputs`` holds one named input per feature, each with ``n``
    values (``data`` flat, or ``n`` one-value lists for shape ``[n, 1]``); ``parameters.ids`` holds ``n`` ids or
    is absent (then every id is "": made up later)."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs:
        return refusal(400, "expected an object with a non-empty 'inputs' list (Open Inference Protocol v2)")
    columns: dict[str, list[Any]] = {}
    for i, given in enumerate(inputs):
        if not isinstance(given, dict) or not isinstance(given.get("name"), str) or not isinstance(given.get("data"), list):
            return refusal(400, f"inputs[{i}]: expected an object with a 'name', a 'shape' and a 'data' list")
        name, data, shape = given["name"], given["data"], given.get("shape")
        if data and all(isinstance(v, list) and len(v) == 1 for v in data):
            data = [v[0] for v in data]
        if shape not in ([len(data)], [len(data), 1]):
            return refusal(
                400, f"inputs[{i}] ({name}): shape {shape} does not fit its {len(data)} values; expected [n] or [n, 1]"
            )
        if name in columns:
            return refusal(400, f"inputs[{i}]: input {name!r} given twice")
        if columns and len(data) != len(first := next(iter(columns.values()))):
            return refusal(400, f"inputs[{i}] ({name}): {len(data)} values, but inputs[0] has {len(first)}")
        columns[name] = data
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    parameters = body.get("parameters")
    ids = parameters.get("ids") if isinstance(parameters, dict) else None
    if ids is None:
        return rows, [""] * len(rows)
    if not isinstance(ids, list) or len(ids) != len(rows) or not all(isinstance(x, str) and x for x in ids):
        return refusal(400, f"parameters.ids: expected a list of {len(rows)} non-empty strings, one per row")
    return rows, ids
