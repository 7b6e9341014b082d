"""Evaluate a candidate against production on the same holdout rows; register the gate's decision."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops import __version__
from airflow_mlops.ml.transform import ROW_ID
from airflow_mlops.stages.features import read_features
from airflow_mlops.stages.performance import store_reference
from airflow_mlops.stages.training import load_booster
from airflow_mlops.store.layout import features_prefix, model_prefix, report_prefix
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateSettings:
    """The config's ``evaluation`` section, as the stage needs it."""

    metric: str
    threshold: float | None
    must_beat_production_by: float
    slices: list[str]
    fairness_column: str | None
    fairness_max_gap: float | None


def score_raw(store: ArtifactStore, pipeline: str, version: str, raw: pd.DataFrame, classes: list[str] | None = None) -> Any:
    """Predictions of a stored model on raw rows, through that model's own transform (the batch path). With
    ``classes`` (multiclass), its class probabilities as columns in that order: a class the model does not know
    has probability 0 (a model trained before a class appeared, judged on rows that have it)."""
    import numpy as np

    from airflow_mlops.ml.transform import FeatureTransform

    spec = store.read_json(f"{model_prefix(pipeline, version)}/transform.json")
    scores = load_booster(store, pipeline, version).predict(FeatureTransform(spec).apply_frame(raw), num_threads=1)
    if classes is None or spec.get("classes") == list(classes):
        return scores
    own = {c: j for j, c in enumerate(spec.get("classes") or [])}
    aligned = np.zeros((len(raw), len(classes)))
    for j, c in enumerate(classes):
        if c in own:
            aligned[:, j] = scores[:, own[c]]
    return aligned


def read_holdout(store: ArtifactStore, pipeline: str, features_id: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The features' transform spec and their eval split (model input and label), in row id order."""
    spec = store.read_json(f"{features_prefix(pipeline, features_id)}/transform.json")
    features = read_features(store, pipeline, features_id, "eval").sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    return spec, features


def holdout_metrics(
    store: ArtifactStore, pipeline: str, version: str, spec: Mapping[str, Any], features: pd.DataFrame
) -> tuple[Any, dict[str, float]]:
    """A stored model's predictions on the eval split (see :func:`read_holdout`) and every metric of its task."""
    from airflow_mlops.ml.evaluate import compute_metrics

    predictions = load_booster(store, pipeline, version).predict(features[spec["features"]], num_threads=1)
    return predictions, compute_metrics(spec["task"], features[spec["label"]].to_numpy(), predictions, spec.get("classes"))


def evaluate(
    store: ArtifactStore,
    pipeline: str,
    model_version: str,
    features_id: str,
    gate_settings: GateSettings,
    *,
    run_id: str,
    tuning: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Holdout metrics of the candidate and of the production model on the same rows, and the gate's decision.

    ``tuning``: the search the candidate won (see :func:`airflow_mlops.stages.tuning.select_trial`), shown in the report.
    """
    from airflow_mlops.ml.evaluate import compute_metrics, gate, slice_metrics

    spec, features = read_holdout(store, pipeline, features_id)
    task, label = spec["task"], spec["label"]
    raw = read_features(store, pipeline, features_id, "eval_raw").set_index(ROW_ID).loc[features[ROW_ID]].reset_index()
    y = features[label].to_numpy()
    predictions, candidate = holdout_metrics(store, pipeline, model_version, spec, features)
    slices = {
        col: slice_metrics(task, gate_settings.metric, y, predictions, raw[col].astype(str)) for col in gate_settings.slices
    }
    gap = None
    if gate_settings.fairness_column:
        per_group = slices.get(gate_settings.fairness_column) or slice_metrics(
            task, gate_settings.metric, y, predictions, raw[gate_settings.fairness_column].astype(str)
        )
        finite = [v for v in per_group.values() if v == v]
        gap = max(finite) - min(finite) if finite else None

    production_version = ModelRegistry(store, pipeline).production()
    production = None
    if production_version and production_version != model_version:
        classes = spec.get("classes")
        production = compute_metrics(task, y, score_raw(store, pipeline, production_version, raw, classes), classes)
    decision = gate(
        gate_settings.metric,
        gate_settings.threshold,
        candidate,
        production,
        must_beat_by=gate_settings.must_beat_production_by,
        fairness_gap=gap,
        max_gap=gate_settings.fairness_max_gap,
    )
    importance = global_importance(store, pipeline, model_version, spec, features, raw, gate_settings.slices)
    mprefix = model_prefix(pipeline, model_version)
    if not store.exists(f"{mprefix}/metrics.json"):
        stored = {"eval_rows": len(y), "metrics": candidate, "slices": slices, "importance": importance}
        if task == "multiclass":  # the reference of the monitor's predicted class shares
            from airflow_mlops.ml.multiclass import PREDICTED_CLASS_SHARES, class_shares

            stored[PREDICTED_CLASS_SHARES] = class_shares(predictions.argmax(axis=1), spec["classes"])
        store.write_json(f"{mprefix}/metrics.json", stored)
    # What the monitor judges realized performance against (with bootstrap replicates), and the calibrator of the
    # estimate before labels: both from these eval rows, stored with the model.
    groups = {col: raw[col].astype(str).to_numpy() for col in gate_settings.slices}
    store_reference(store, pipeline, model_version, task, y, predictions, groups)
    result = {
        "model_version": model_version,
        "metric": gate_settings.metric,
        "metrics": candidate,
        "slices": slices,
        "fairness_gap": gap,
        "production_version": production_version if production is not None else None,
        "production_metrics": production,
        "blessed": decision.blessed,
        "reason": decision.reason,
        "importance": importance,
    }
    if tuning is not None:
        result["tuning"] = dict(tuning)
    prefix = report_prefix(pipeline, run_id)
    store.write_text(f"{prefix}/evaluation.html", _evaluation_html(pipeline, result))
    store.write_json(f"{prefix}/evaluation.json", result)
    result["report_uri"] = store.uri(f"{prefix}/evaluation.html")
    log.info("Gate %s model %s: %s", "BLESSED" if decision.blessed else "REJECTED", model_version, decision.reason)
    return result


IMPORTANCE_ROWS = 10_000
"""Eval rows global importance is computed on (evenly spaced over the split): TreeSHAP costs about 0.4 ms a row
for 100 trees of 31 leaves, so the whole split of a large dataset would cost more than training."""


def global_importance(
    store: ArtifactStore,
    pipeline: str,
    version: str,
    spec: Mapping[str, Any],
    features: pd.DataFrame,
    raw: pd.DataFrame,
    slices: list[str],
) -> dict[str, Any]:
    """The model's global importance on the eval split (at most :data:`IMPORTANCE_ROWS` rows, evenly spaced): each
    feature's mean absolute contribution (:mod:`airflow_mlops.ml.explain`) and share of the total, overall and per
    slice value; the overall shares are the reference of the monitor's attribution drift."""
    import numpy as np

    from airflow_mlops.ml.explain import contributions, importance, shares

    rows = np.unique(np.linspace(0, len(features) - 1, min(len(features), IMPORTANCE_ROWS)).astype(np.int64))
    matrix = features[spec["features"]].to_numpy(dtype=float)[rows]
    found = contributions(load_booster(store, pipeline, version), matrix)
    names = spec["features"]
    overall = importance(found, names)
    by_slice = {}
    for col in slices:
        groups = raw[col].astype(str).to_numpy()[rows]
        by_slice[col] = {value: importance(found[groups == value], names) for value in sorted(set(groups.tolist()))}
    return {"rows": len(rows), "mean_abs_contribution": overall, "shares": shares(overall), "slices": by_slice}


def importance_sections(importance: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Report sections: global importance overall (mean |contribution| and share, the largest first) and per slice."""
    from airflow_mlops.ml.report import table

    if not importance:
        return []
    overall = importance["mean_abs_contribution"]
    order = sorted(overall, key=lambda f: -overall[f])
    heading = f"Global importance: mean |contribution| on {importance['rows']} eval rows (TreeSHAP)"
    sections = [
        (heading, table(["feature", "mean |contribution|", "share"], [(f, overall[f], importance["shares"][f]) for f in order]))
    ]
    for col, groups in importance["slices"].items():
        values = list(groups)
        rows = [(f, *(groups[v][f] for v in values)) for f in order]
        sections.append((f"Global importance by {col}", table(["feature", *values], rows)))
    return sections


def _evaluation_html(pipeline: str, result: Mapping[str, Any]) -> str:
    from airflow_mlops.ml.report import page, table

    prod = result["production_metrics"] or {}
    metrics = table(
        ["metric", f"candidate {result['model_version']}", f"production {result['production_version'] or '(none)'}"],
        [(m, v, prod.get(m)) for m, v in result["metrics"].items()],
    )
    sections = [("Holdout metrics", metrics)]
    sections += [
        (f"{result['metric']} by {col}", table([col, result["metric"]], values.items()))
        for col, values in result["slices"].items()
    ]
    sections += importance_sections(result.get("importance"))
    if result.get("tuning"):
        sections.append(trials_section(result["tuning"]))
    status = (result["blessed"], ("BLESSED: " if result["blessed"] else "REJECTED: ") + result["reason"])
    return page(f"Evaluation: {pipeline} {result['model_version']}", status, sections)


def trials_section(tuning: Mapping[str, Any]) -> tuple[str, str]:
    """A report section: every tuning trial's searched parameters and metric, the chosen one marked."""
    from airflow_mlops.ml.report import table

    trials = tuning["trials"]
    keys = sorted({k for t in trials for k in t["params"] if len({json.dumps(u["params"].get(k)) for u in trials}) > 1})
    rows = [
        [
            "chosen" if t["trial"] == tuning["chosen"] else "",
            t["trial"],
            t["model_version"],
            *(t["params"].get(k) for k in keys),
            t["value"],
        ]
        for t in trials
    ]
    heading = f"Tuning: {len(trials)} trials, the best by {tuning['metric']} on the eval split"
    return heading, table(["", "trial", "model version", *keys, tuning["metric"]], rows)


def register(
    store: ArtifactStore,
    pipeline: str,
    evaluation: Mapping[str, Any],
    *,
    lineage: Mapping[str, Any],
    promote: bool,
) -> dict[str, Any]:
    """Record the gate's decision in the registry (idempotent), with lineage and a model card.

    ``promote`` puts a blessed model straight on the production alias (pipelines without a canary).
    """
    version = evaluation["model_version"]
    status = "blessed" if evaluation["blessed"] else "rejected"
    mprefix = model_prefix(pipeline, version)
    full_lineage = {"pipeline": pipeline, "model_version": version, "code_version": __version__, **lineage}
    if not store.exists(f"{mprefix}/lineage.json"):
        store.write_json(f"{mprefix}/lineage.json", full_lineage)
        store.write_text(f"{mprefix}/card.html", _card_html(pipeline, status, evaluation, full_lineage))
    registry = ModelRegistry(store, pipeline)
    entry = registry.register(
        version, status=status, metrics=evaluation["metrics"], lineage=full_lineage, reason=evaluation["reason"]
    )
    doc = registry.load()
    production = (doc["aliases"].get("production") or {}).get("version")
    if entry["status"] == "blessed" and promote and production != version:
        # Never move production back to a model registered before it (re-running an old run must not
        # roll production back; rollbacks are explicit decisions).
        if production and doc["versions"][production]["registered_at"] > entry["registered_at"]:
            log.info("Production %s is newer than %s; left as is", production, version)
        else:
            doc = registry.set_alias(
                "production", version, promoted_at=datetime.now(UTC).isoformat(), reason=evaluation["reason"]
            )
            production = version
            log.info("Promoted %s %s to production (%s)", pipeline, version, evaluation["reason"])
    return {
        "model_version": version,
        "status": entry["status"],
        "reason": entry["reason"],
        "production": production,
        "revision": doc["revision"],
    }


def _card_html(pipeline: str, status: str, evaluation: Mapping[str, Any], lineage: Mapping[str, Any]) -> str:
    from airflow_mlops.ml.report import page, table

    sections = [
        ("Metrics (holdout)", table(["metric", "value"], evaluation["metrics"].items())),
        (
            "Lineage",
            table(
                ["field", "value"],
                [(k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in lineage.items() if k != "tuning"],
            ),
        ),
    ]
    sections += importance_sections(evaluation.get("importance"))
    if lineage.get("tuning"):
        sections.append(trials_section(lineage["tuning"]))
    return page(
        f"Model card: {pipeline} {evaluation['model_version']}",
        (status == "blessed", f"{status.upper()}: {evaluation['reason']}"),
        sections,
    )
