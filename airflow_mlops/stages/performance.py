"""Realized performance of the production model on joined labels, per window, model version and slice, judged
against the reference measured on its eval split at training; estimated performance (CBPE) from the logged scores
before labels come; and the decision whether the drop files a retrain request."""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.ml.metrics import MULTICLASS_REALIZED_METRICS
from airflow_mlops.stages.labels import read_joined, scan_predictions
from airflow_mlops.store.events import append_event, read_events
from airflow_mlops.store.layout import (
    calibrator_key,
    joined_labels_key,
    model_prefix,
    reference_performance_key,
    report_prefix,
)
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.ml.performance import Drop, Figure
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

ESTIMATED_METRICS = ("roc_auc", "accuracy")
NOT_ESTIMATED_REGRESSION = (
    "not estimated for regression: confidence-based estimation needs class probabilities, and a regressor's output "
    "carries no confidence to take an expected error from; realized performance from labels judges it"
)

NOT_ESTIMATED_MULTICLASS = "not estimated for multiclass: confidence-based estimation is for binary classification"


def _judged_metric(settings: PerformanceSettings) -> bool:
    """Whether realized performance judges the settings' metric (a multiclass model: the per-row means only)."""
    from airflow_mlops.ml.metrics import MULTICLASS_REALIZED_METRICS

    return settings.task != "multiclass" or settings.metric in MULTICLASS_REALIZED_METRICS


@dataclass(frozen=True)
class PerformanceSettings:
    """The config's ``monitor.performance`` section (the metric resolved), and ``evaluation.slices``."""

    task: str
    metric: str
    max_drop: float
    min_labels: int
    confidence: float
    window_hours: float
    estimated: str
    slices: list[str]


def store_reference(
    store: ArtifactStore, pipeline: str, version: str, task: str, labels: Any, predictions: Any, slices: Mapping[str, Any]
) -> None:
    """Store a model's reference performance (every metric on the eval split with its bootstrap replicates, per
    slice too) and, for a classifier, the calibrator fitted on the same rows; both JSON, kept if already there."""
    from airflow_mlops.ml.estimation import fit_calibrator
    from airflow_mlops.ml.performance import reference_performance

    key = reference_performance_key(pipeline, version)
    if not store.exists(key):
        store.write_json(key, reference_performance(task, labels, predictions, slices=slices))
    if task == "classification" and not store.exists(calibrator_key(pipeline, version)):
        store.write_json(calibrator_key(pipeline, version), fit_calibrator(predictions, labels))


def load_reference(store: ArtifactStore, pipeline: str, version: str, slices: list[str]) -> dict[str, Any] | None:
    """A model's reference performance; one trained before references were stored gets it now from its eval split
    (when its features are still there). None when neither is possible."""
    reference = store.read_json_if_exists(reference_performance_key(pipeline, version))
    if reference is not None:
        return reference
    features_id = store.read_json_if_exists(f"{model_prefix(pipeline, version)}/lineage.json", {}).get("features_id")
    if not features_id:
        return None
    from airflow_mlops.ml.transform import ROW_ID
    from airflow_mlops.stages.evaluation import holdout_metrics, read_holdout
    from airflow_mlops.stages.features import read_features

    spec, features = read_holdout(store, pipeline, features_id)
    predictions, _ = holdout_metrics(store, pipeline, version, spec, features)
    raw = read_features(store, pipeline, features_id, "eval_raw").set_index(ROW_ID).loc[features[ROW_ID]]
    groups = {col: raw[col].astype(str).to_numpy() for col in slices if col in raw}
    store_reference(store, pipeline, version, spec["task"], features[spec["label"]].to_numpy(), predictions, groups)
    log.info("Model %s of %s had no reference performance: computed it from its eval split", version, pipeline)
    return store.read_json(reference_performance_key(pipeline, version))


def performance_check(
    store: ArtifactStore,
    pipeline: str,
    settings: PerformanceSettings,
    *,
    run_id: str,
    ingest: Mapping[str, Any] | None,
    now: float | None = None,
) -> dict[str, Any]:
    """Judge the production model's realized performance in every window this run's labels fell in, and estimate
    it (classification) in those and in the windows with new predictions; record the check (an event, and
    ``performance.json`` under the run's reports). A retry of a recorded check returns its result unchanged.

    A window is judged once it holds ``min_labels`` labelled predictions of the production model: it has dropped
    when the whole interval of (reference - realized), or (realized - reference) for a loss, is above ``max_drop``.
    With ``estimated: request`` an estimated drop in a window without enough labels counts as well.
    """
    prefix = report_prefix(pipeline, run_id)
    if any(e.get("event_id") == f"performance-{run_id}" for e in read_events(store, pipeline)):
        log.info("Performance check of run %s already recorded; returning its result", run_id)
        return store.read_json(f"{prefix}/performance.json")["result"]
    now = time.time() if now is None else now
    production = ModelRegistry(store, pipeline).production()
    judged = production and _judged_metric(settings)
    reference = load_reference(store, pipeline, production, settings.slices) if judged else None
    windows: list[dict[str, Any]] = []
    if reference is not None:
        calibrator = store.read_json_if_exists(calibrator_key(pipeline, production))
        for start in _windows(store, pipeline, settings, ingest, now):
            window = _window(store, pipeline, settings, production, reference, start)
            window["estimated"] = _estimate(store, pipeline, settings, production, reference, calibrator, start)
            windows.append(window)
    result = _decide(settings, production, reference, windows, ingest)
    result["report_uri"] = store.uri(f"{prefix}/performance.json")
    store.write_json(f"{prefix}/performance.json", {"result": result, "settings": asdict(settings), "windows": windows})
    summary = [{k: v for k, v in w.items() if k not in ("slices", "versions")} for w in windows]
    append_event(
        store, pipeline, "performance_check", event_id=f"performance-{run_id}", checked_until=now, windows=summary, **result
    )
    (log.warning if result["dropped"] or result["estimated_warning"] else log.info)(
        "Performance check of %s: %s", pipeline, result["reason"]
    )
    return result


def _windows(
    store: ArtifactStore, pipeline: str, settings: PerformanceSettings, ingest: Mapping[str, Any] | None, now: float
) -> list[float]:
    """Starts of the windows to look at: those this run's labels fell in, and (for the estimate) those with
    predictions since the last check."""
    import numpy as np
    import pyarrow.parquet as pq

    size = settings.window_hours * 3600
    starts: set[float] = set()
    for day in (ingest or {}).get("days", []):
        key = joined_labels_key(pipeline, day, ingest["batch"])
        stamps = pq.read_table(io.BytesIO(store.read_bytes(key)), columns=["_ts"])["_ts"].to_numpy()
        starts.update((np.floor(stamps / size) * size).tolist())
    if settings.estimated != "off" and settings.task == "classification":
        checks = [e["checked_until"] for e in read_events(store, pipeline) if e["kind"] == "performance_check"]
        first = math.floor(max(max(checks, default=0.0), now - size) / size) * size
        starts.update(first + i * size for i in range(int((now - first) // size) + 1))
    return sorted(starts)


def _multiclass_rows(table: Any, metric: str) -> tuple[Any, Any, Any]:
    """The joined rows of a multiclass model whose label is one of its classes, and the binary labels and scores of
    ``metric`` per row (:func:`airflow_mlops.ml.performance.per_row_equivalent`), from the columns label ingestion
    adds (``LABEL_INDEX``, ``LABEL_PROBABILITY``, ``LABEL_HIT``)."""
    import numpy as np
    import pyarrow.compute as pc

    from airflow_mlops.stages.labels import LABEL_HIT, LABEL_INDEX, LABEL_PROBABILITY

    if LABEL_INDEX not in table.column_names:
        table = table.slice(0, 0)
        return table, np.empty(0), np.empty(0)
    table = table.filter(pc.is_finite(pc.fill_null(table[LABEL_INDEX], float("nan"))))
    score = table[LABEL_PROBABILITY if metric == "log_loss" else LABEL_HIT].to_numpy(zero_copy_only=False)
    return table, np.ones(len(table)), score


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _window(
    store: ArtifactStore,
    pipeline: str,
    settings: PerformanceSettings,
    production: str,
    reference: Mapping[str, Any],
    start: float,
) -> dict[str, Any]:
    """One window's realized figures: per version, the production model's (overall and per slice) and its drop."""
    from airflow_mlops.ml.performance import Figure, bootstrap, realized_drop

    end = start + settings.window_hours * 3600
    table = read_joined(store, pipeline, start, end)
    if settings.task == "multiclass":  # each row's label class and the probability its model gave it
        table, y, p = _multiclass_rows(table, settings.metric)
    else:
        y, p = table["label"].to_numpy(zero_copy_only=False), table["_prediction"].to_numpy(zero_copy_only=False)
    codes, names = _codes(table["_version"])
    out: dict[str, Any] = {"start": _iso(start), "end": _iso(end), "labels": len(table), "versions": {}, "slices": {}}
    figures = bootstrap(settings.metric, y, p, confidence=settings.confidence, groups=codes, names=names, overall=False)
    out["versions"] = {v: f.to_dict() for v, f in figures.items()}
    mine = codes == (names.index(production) if production in names else -1)
    ref = Figure.from_dict(reference["metrics"][settings.metric], settings.confidence)
    out["reference"] = ref.to_dict()
    out["production_labels"] = int(mine.sum())
    out["judged"] = out["dropped"] = False
    if not mine.any():
        return out
    realized = figures[production]
    drop = realized_drop(settings.metric, realized, ref, settings.confidence)
    out |= {"realized": realized.to_dict(), "drop": drop.to_dict(), "judged": realized.rows >= settings.min_labels}
    out["dropped"] = out["judged"] and drop.clears(settings.max_drop)
    for column in settings.slices:
        if column not in table.column_names:
            continue
        groups, values = _codes(table[column])
        per_value = bootstrap(
            settings.metric, y[mine], p[mine], confidence=settings.confidence, groups=groups[mine], names=values, overall=False
        )
        stored = reference.get("slices", {}).get(column, {})
        out["slices"][column] = {
            value: figure.to_dict() | _slice_reference(settings, figure, stored.get(value, {}).get(settings.metric))
            for value, figure in per_value.items()
        }
    return out


def _codes(column: Any) -> tuple[Any, list[str]]:
    """A text column as integer codes and the names they index (Arrow's dictionary encoding; null is ``None``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(column, pa.string())
    encoded = pc.dictionary_encode(pc.fill_null(text.combine_chunks() if hasattr(text, "combine_chunks") else text, "None"))
    return encoded.indices.to_numpy(zero_copy_only=False), [str(v) for v in encoded.dictionary.to_pylist()]


def _slice_reference(settings: PerformanceSettings, realized: Figure, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    from airflow_mlops.ml.performance import Figure, realized_drop

    if not stored:
        return {}
    reference = Figure.from_dict(stored, settings.confidence)
    drop = realized_drop(settings.metric, realized, reference, settings.confidence)
    return {"reference": reference.to_dict(), "drop": drop.to_dict()}


def _estimate(
    store: ArtifactStore,
    pipeline: str,
    settings: PerformanceSettings,
    production: str,
    reference: Mapping[str, Any],
    calibrator: Mapping[str, Any] | None,
    start: float,
) -> dict[str, Any]:
    """CBPE over the window's logged scores of the production model, or why it is not done."""
    import numpy as np
    import pyarrow.compute as pc

    from airflow_mlops.ml.estimation import calibrate, estimate_performance
    from airflow_mlops.ml.performance import Figure, estimated_drop

    if settings.estimated == "off":
        return {"done": False, "why": "monitor.performance.estimated is off"}
    if settings.task == "multiclass":
        return {"done": False, "why": NOT_ESTIMATED_MULTICLASS}
    if settings.task != "classification":
        return {"done": False, "why": NOT_ESTIMATED_REGRESSION}
    if settings.metric not in ESTIMATED_METRICS:
        return {"done": False, "why": f"estimation gives {' and '.join(ESTIMATED_METRICS)}, not {settings.metric}"}
    if calibrator is None:
        return {"done": False, "why": f"model {production} has no calibrator (trained before calibrators were stored)"}

    def served(t: Any) -> Any:
        ok = pc.and_(pc.equal(t["_version"], production), pc.invert(pc.fill_null(t["_error"], True)))
        return pc.and_(ok, pc.is_valid(t["_prediction"]))

    end = start + settings.window_hours * 3600
    parts = scan_predictions(store, pipeline, start, end, ["_version", "_prediction", "_error"], served)
    scores = np.concatenate([t["_prediction"].to_numpy() for t in parts]) if parts else np.array([])
    if not len(scores):
        return {"done": False, "why": "no logged predictions of the production model in the window", "rows": 0}
    estimate = estimate_performance(calibrate(dict(calibrator), scores))
    ref = Figure.from_dict(reference["metrics"][settings.metric], settings.confidence)
    drop = estimated_drop(settings.metric, estimate[settings.metric], len(scores), ref, settings.confidence)
    return {
        "done": True,
        "rows": len(scores),
        "value": _num(estimate[settings.metric]),
        "interval": _estimate_interval(estimate[settings.metric], drop),
        "drop": drop.to_dict(),
        "confusion": {k: estimate[k] for k in ("tp", "fp", "tn", "fn")},
        "dropped": len(scores) >= settings.min_labels and drop.clears(settings.max_drop),
    }


def _estimate_interval(value: float, drop: Drop) -> list[float | None]:
    half = drop.value - drop.low
    return [_num(value - half), _num(value + half)]


def _num(value: float) -> float | None:
    return None if value != value else float(value)


def _decide(
    settings: PerformanceSettings,
    production: str | None,
    reference: Mapping[str, Any] | None,
    windows: list[dict[str, Any]],
    ingest: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The check's verdict over its windows: the worst realized drop, else (``estimated: request``) an estimated
    one in a window without enough labels; the reason names the metric, the figures, the interval, the labels and
    the window."""
    base = {"metric": settings.metric, "production_version": production, "max_drop": settings.max_drop}
    base |= {"min_labels": settings.min_labels, "window_count": len(windows), "estimated_mode": settings.estimated}
    base |= {"ingest": {k: v for k, v in (ingest or {}).items() if k not in ("days", "unknown_examples")}}
    if production is None or reference is None:
        why = (
            "no production model"
            if production is None
            else f"realized multiclass performance judges {' or '.join(MULTICLASS_REALIZED_METRICS)}, not {settings.metric}"
            if not _judged_metric(settings)
            else f"model {production} has no reference performance"
        )
        return base | {"dropped": False, "trigger": None, "estimated_warning": False, "reason": f"not judged: {why}"}
    judged = [w for w in windows if w["judged"]]
    realized = sorted((w for w in judged if w["dropped"]), key=lambda w: -w["drop"]["interval"][0])
    estimated = [w for w in windows if w["estimated"].get("dropped") and w["production_labels"] < settings.min_labels]
    estimated.sort(key=lambda w: -w["estimated"]["drop"]["interval"][0])
    trigger = "realized" if realized else ("estimated" if estimated and settings.estimated == "request" else None)
    warning = bool(estimated) and trigger != "estimated"
    if trigger == "realized":
        reason = _realized_reason(settings, production, realized[0])
        window = realized[0]
    elif trigger == "estimated":
        reason = _estimated_reason(settings, production, estimated[0])
        window = estimated[0]
    else:
        reason, window = _calm_reason(settings, production, judged, windows), None
        if warning:
            reason += "; estimated: " + _estimated_reason(settings, production, estimated[0])
    figures = {}
    if window is not None:
        figures = {"window": [window["start"], window["end"]], "labels": window["production_labels"]}
        figures |= {"reference": window["reference"], "realized": window.get("realized"), "drop": window.get("drop")}
        if trigger == "estimated":
            figures["estimated"] = {k: window["estimated"][k] for k in ("value", "interval", "drop", "rows")}
    return base | figures | {"dropped": trigger is not None, "trigger": trigger, "estimated_warning": warning, "reason": reason}


def _realized_reason(settings: PerformanceSettings, production: str, window: Mapping[str, Any]) -> str:
    low, high = window["drop"]["interval"]
    return (
        f"{settings.metric} {window['realized']['value']:.4f} realized vs reference {window['reference']['value']:.4f} "
        f"(drop {window['drop']['value']:.4f}, {settings.confidence:.0%} interval {low:.4f} to {high:.4f}, above "
        f"max_drop {settings.max_drop:g}) over {window['production_labels']} labels of model {production}, "
        f"window {window['start']} to {window['end']}"
    )


def _estimated_reason(settings: PerformanceSettings, production: str, window: Mapping[str, Any]) -> str:
    estimate = window["estimated"]
    low, high = estimate["drop"]["interval"]
    return (
        f"{settings.metric} {estimate['value']:.4f} estimated (CBPE) vs reference {window['reference']['value']:.4f} "
        f"(drop {estimate['drop']['value']:.4f}, {settings.confidence:.0%} interval {low:.4f} to {high:.4f}, above "
        f"max_drop {settings.max_drop:g}) over {estimate['rows']} predictions and {window['production_labels']} labels "
        f"(< min_labels {settings.min_labels}) of model {production}, window {window['start']} to {window['end']}"
    )


def _calm_reason(
    settings: PerformanceSettings, production: str, judged: list[dict[str, Any]], windows: list[dict[str, Any]]
) -> str:
    if not judged:
        most = max((w["production_labels"] for w in windows), default=0)
        return f"no window with {settings.min_labels} labels of model {production} yet (most: {most})"
    worst = max(judged, key=lambda w: w["drop"]["value"])
    low, high = worst["drop"]["interval"]
    return (
        f"no drop above max_drop {settings.max_drop:g} in {len(judged)} judged window(s); largest: {settings.metric} "
        f"{worst['realized']['value']:.4f} vs reference {worst['reference']['value']:.4f} (drop {worst['drop']['value']:.4f}, "
        f"interval {low:.4f} to {high:.4f}) over {worst['production_labels']} labels, window {worst['start']}"
    )
