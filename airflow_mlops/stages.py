"""The lifecycle stages over the artifact store, free of Airflow.

Each stage reads its inputs from the store, does the work through ml/ and beam/, writes its
content-addressed outputs, and returns a small JSON-able dict. Operators call these in-process;
the training pod calls the same ``train`` through ``airflow-mlops train``. Every stage finds its
own earlier output by content, so a retried task neither duplicates nor rewrites anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops import __version__
from airflow_mlops.exceptions import ArtifactNotFound, DataValidationError
from airflow_mlops.store.artifacts import dumps
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

ROW_ID = "_row_id"
DONE = "_SUCCESS.json"


def schema_key(pipeline: str) -> str:
    return f"schemas/{pipeline}/schema.json"


def features_prefix(pipeline: str, features_id: str) -> str:
    return f"features/{pipeline}/{features_id}"


def model_prefix(pipeline: str, version: str) -> str:
    return f"models/{pipeline}/{version}"


def report_prefix(pipeline: str, run_id: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    return f"reports/{pipeline}/{safe}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# -- acquire ---------------------------------------------------------------------------------------


def acquire(store: ArtifactStore, pipeline: str, source_uri: str, *, fmt: str = "auto", s3_client: Any = None) -> dict[str, Any]:
    """Read the source and store it as a content-addressed snapshot."""
    from airflow_mlops.store.datasets import read_source, snapshot

    frame, files = read_source(source_uri, fmt, s3_client)
    log.info("Read %d rows x %d columns from %d file(s) at %s", len(frame), frame.shape[1], len(files), source_uri)
    snap = snapshot(store, pipeline, frame, source=source_uri, files=files)
    return {"dataset_id": snap.dataset_id, "dataset_uri": snap.uri, "rows": snap.rows, "created": snap.created, "source": source_uri}


# -- validate --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """The roles of a pipeline's columns."""

    label: str
    task: str
    numeric: list[str]
    categorical: list[str]

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


def validate(
    store: ArtifactStore, pipeline: str, dataset_id: str, columns: Columns, thresholds: Mapping[str, Any], *, run_id: str
) -> dict[str, Any]:
    """Check the dataset against the accepted schema (inferred and stored on the first run).

    Writes ``validation.html`` and ``validation.json`` under reports/ and raises
    :class:`DataValidationError` naming the report when anything is anomalous.
    """
    from airflow_mlops.ml.schema import Anomaly, Thresholds, infer_schema, render_report_html
    from airflow_mlops.ml.schema import validate as check
    from airflow_mlops.store.datasets import load_dataset

    frame = load_dataset(store, pipeline, dataset_id)
    key = schema_key(pipeline)
    current, _ = store.read_versioned(key)
    created = False
    if current is None:
        inferred = infer_schema(frame, numeric=columns.numeric, categorical=columns.categorical, label=columns.label, task=columns.task)
        inferred["inferred_from"] = dataset_id
        created = store.write_if_match(key, dumps(inferred), None)
        current, _ = store.read_versioned(key)  # ours, or the one a concurrent run stored first
        log.info("No schema yet: %s one from dataset %s at %s", "inferred" if created else "another run stored", dataset_id[:12], store.uri(key))
    schema = json.loads(current)
    report = check(frame, schema, Thresholds(**thresholds))
    for col in [c for c in [columns.label, *columns.features] if c not in schema["columns"]]:
        report.anomalies.append(Anomaly(col, "missing_column", "configured column is not in the accepted schema"))
    prefix = report_prefix(pipeline, run_id)
    store.write_text(f"{prefix}/validation.html", render_report_html(report, pipeline=pipeline, dataset_id=dataset_id, schema_uri=store.uri(key)))
    store.write_json(f"{prefix}/validation.json", {"dataset_id": dataset_id, **report.to_dict()})
    report_uri = store.uri(f"{prefix}/validation.html")
    result = {"anomalies": len(report.anomalies), "report_uri": report_uri, "schema_uri": store.uri(key), "schema_created": created}
    if not report.ok:
        lines = "; ".join(f"{a.column}: {a.kind}: {a.message}" for a in report.anomalies[:10])
        raise DataValidationError(f"{len(report.anomalies)} data anomalies in dataset {dataset_id[:12]} ({lines}). Report: {report_uri}", report_uri)
    return result


# -- preprocess ------------------------------------------------------------------------------------


def preprocess(
    store: ArtifactStore,
    pipeline: str,
    dataset_id: str,
    columns: Columns,
    *,
    eval_fraction: float,
    histogram_bins: int,
    runner: str = "DirectRunner",
    pipeline_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the Beam preprocessing pipeline unless this dataset was already preprocessed the same way."""
    settings = {
        "columns": asdict(columns),
        "eval_fraction": eval_fraction,
        "histogram_bins": histogram_bins,
        "code": __version__,
    }
    features_id = f"{dataset_id[:16]}-{_digest(settings)[:12]}"
    prefix = features_prefix(pipeline, features_id)
    if store.exists(f"{prefix}/{DONE}"):
        log.info("Features %s already computed for dataset %s; skipping the Beam pipeline", features_id, dataset_id[:12])
        return {**store.read_json(f"{prefix}/{DONE}"), "cached": True}

    from airflow_mlops.beam.preprocess import PreprocessSpec, run_preprocess
    from airflow_mlops.store.datasets import dataset_prefix

    spec = PreprocessSpec(
        numeric=columns.numeric,
        categorical=columns.categorical,
        label=columns.label,
        task=columns.task,
        eval_fraction=eval_fraction,
        histogram_bins=histogram_bins,
        runner=runner,
        pipeline_options=dict(pipeline_options or {}),
    )
    with tempfile.TemporaryDirectory(prefix="mlops-preprocess-") as tmp:
        data = Path(tmp) / "data.parquet"
        data.write_bytes(store.read_bytes(f"{dataset_prefix(pipeline, dataset_id)}/data.parquet"))
        out = Path(tmp) / "out"
        summary = run_preprocess(str(data), out, spec)
        transform = json.loads((out / "transform.json").read_text())
        store.upload_dir(out, prefix)
    done = {
        "features_id": features_id,
        "features_uri": store.uri(prefix),
        "dataset_id": dataset_id,
        "transform_hash": _digest(transform),
        **summary,
    }
    store.write_json(f"{prefix}/{DONE}", done)  # last: marks the features complete
    return {**done, "cached": False}


def _read_parquet_dir(store: ArtifactStore, prefix: str) -> pd.DataFrame:
    import pandas as pd

    keys = [k for k in store.list(prefix) if k.endswith(".parquet")]
    if not keys:
        raise ArtifactNotFound(f"No Parquet files under {store.uri(prefix)}")
    return pd.concat([pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in keys], ignore_index=True)


# -- train -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 200
    seed: int = 42
    early_stopping_rounds: int | None = None


def train(store: ArtifactStore, pipeline: str, features_id: str, settings: TrainSettings) -> dict[str, Any]:
    """Train LightGBM on the stored features; a model with the same content id is reused, not retrained."""
    from airflow_mlops.ml.train import model_version, train_model

    fprefix = features_prefix(pipeline, features_id)
    features_done = store.read_json(f"{fprefix}/{DONE}")
    version = model_version(
        dataset_id=features_done["dataset_id"],
        transform_hash=features_done["transform_hash"],
        params=settings.params,
        num_boost_round=settings.num_boost_round,
        seed=settings.seed,
    )
    mprefix = model_prefix(pipeline, version)
    result = {"model_version": version, "model_uri": store.uri(mprefix), "features_id": features_id, "dataset_id": features_done["dataset_id"]}
    if store.exists(f"{mprefix}/model.txt"):
        log.info("Model %s already trained from these inputs; reusing %s", version, store.uri(mprefix))
        return {**result, "cached": True}
    spec = store.read_json(f"{fprefix}/transform.json")
    booster = train_model(
        _read_parquet_dir(store, f"{fprefix}/train"),
        features=spec["features"],
        categorical=[c for c in spec["features"] if c in spec["categorical"]],
        label=spec["label"],
        task=spec["task"],
        params=settings.params,
        num_boost_round=settings.num_boost_round,
        seed=settings.seed,
        early_stopping_rounds=settings.early_stopping_rounds,
    )
    for name in ("transform.json", "profile.json"):
        store.write_bytes(f"{mprefix}/{name}", store.read_bytes(f"{fprefix}/{name}"))
    store.write_json(f"{mprefix}/training.json", {**result, **asdict(settings), "trees": booster.num_trees()})
    store.write_text(f"{mprefix}/model.txt", booster.model_to_string())  # last: marks the model complete
    log.info("Stored model %s at %s", version, store.uri(mprefix))
    return {**result, "cached": False}


# -- evaluate --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateSettings:
    metric: str
    threshold: float | None
    must_beat_production_by: float = 0.0
    slices: list[str] = field(default_factory=list)
    fairness_column: str | None = None
    fairness_max_gap: float | None = None


def load_booster(store: ArtifactStore, pipeline: str, version: str) -> Any:
    import lightgbm as lgb

    return lgb.Booster(model_str=store.read_text(f"{model_prefix(pipeline, version)}/model.txt"))


def score_raw(store: ArtifactStore, pipeline: str, version: str, raw: pd.DataFrame) -> Any:
    """Predictions of a stored model on raw rows, through that model's own transform."""
    import numpy as np

    from airflow_mlops.ml.transform import FeatureTransform

    transform = FeatureTransform(store.read_json(f"{model_prefix(pipeline, version)}/transform.json"))
    matrix = np.array([transform.apply(row) for row in raw.to_dict("records")], dtype=float)
    return load_booster(store, pipeline, version).predict(matrix, num_threads=1)


def evaluate(
    store: ArtifactStore, pipeline: str, model_version: str, features_id: str, gate_settings: GateSettings, *, run_id: str
) -> dict[str, Any]:
    """Holdout metrics of the candidate and of the production model on the same rows, and the gate's decision."""
    from airflow_mlops.ml.evaluate import compute_metrics, gate, slice_metrics

    fprefix = features_prefix(pipeline, features_id)
    spec = store.read_json(f"{fprefix}/transform.json")
    task, label = spec["task"], spec["label"]
    features = _read_parquet_dir(store, f"{fprefix}/eval").sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    raw = _read_parquet_dir(store, f"{fprefix}/eval_raw").set_index(ROW_ID).loc[features[ROW_ID]].reset_index()
    y = features[label].to_numpy()
    predictions = load_booster(store, pipeline, model_version).predict(features[spec["features"]], num_threads=1)
    candidate = compute_metrics(task, y, predictions)
    slices = {col: slice_metrics(task, gate_settings.metric, y, predictions, raw[col].astype(str)) for col in gate_settings.slices}
    gap = None
    if gate_settings.fairness_column:
        per_group = slices.get(gate_settings.fairness_column) or slice_metrics(
            task, gate_settings.metric, y, predictions, raw[gate_settings.fairness_column].astype(str)
        )
        finite = [v for v in per_group.values() if v == v]
        gap = max(finite) - min(finite) if finite else None

    registry = ModelRegistry(store, pipeline)
    production_version = registry.production()
    production = None
    if production_version and production_version != model_version:
        production = compute_metrics(task, y, score_raw(store, pipeline, production_version, raw))
    decision = gate(
        gate_settings.metric,
        gate_settings.threshold,
        candidate,
        production,
        must_beat_by=gate_settings.must_beat_production_by,
        fairness_gap=gap,
        max_gap=gate_settings.fairness_max_gap,
    )
    mprefix = model_prefix(pipeline, model_version)
    if not store.exists(f"{mprefix}/metrics.json"):
        store.write_json(f"{mprefix}/metrics.json", {"eval_rows": len(y), "metrics": candidate, "slices": slices})
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
    }
    prefix = report_prefix(pipeline, run_id)
    store.write_text(f"{prefix}/evaluation.html", _evaluation_html(pipeline, result))
    store.write_json(f"{prefix}/evaluation.json", result)
    result["report_uri"] = store.uri(f"{prefix}/evaluation.html")
    log.info("Gate %s model %s: %s", "BLESSED" if decision.blessed else "REJECTED", model_version, decision.reason)
    return result


def _evaluation_html(pipeline: str, result: Mapping[str, Any]) -> str:
    from airflow_mlops.ml.report import page, table

    prod = result["production_metrics"] or {}
    metrics = table(
        ["metric", f"candidate {result['model_version']}", f"production {result['production_version'] or '(none)'}"],
        [(m, v, prod.get(m)) for m, v in result["metrics"].items()],
    )
    sections = [("Holdout metrics", metrics)]
    sections += [(f"{result['metric']} by {col}", table([col, result["metric"]], values.items())) for col, values in result["slices"].items()]
    status = (result["blessed"], ("BLESSED: " if result["blessed"] else "REJECTED: ") + result["reason"])
    return page(f"Evaluation: {pipeline} {result['model_version']}", status, sections)


# -- register --------------------------------------------------------------------------------------


def register(
    store: ArtifactStore,
    pipeline: str,
    evaluation: Mapping[str, Any],
    *,
    lineage: Mapping[str, Any],
    promote: bool = False,
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
    entry = registry.register(version, status=status, metrics=evaluation["metrics"], lineage=full_lineage, reason=evaluation["reason"])
    doc = registry.load()
    production = (doc["aliases"].get("production") or {}).get("version")
    if entry["status"] == "blessed" and promote and production != version:
        # Never move production back to a model registered before it (re-running an old run must not
        # roll production back; rollbacks are explicit decisions).
        if production and doc["versions"][production]["registered_at"] > entry["registered_at"]:
            log.info("Production %s is newer than %s; left as is", production, version)
        else:
            doc = registry.set_alias("production", version, promoted_at=datetime.now(UTC).isoformat(), reason=evaluation["reason"])
            production = version
            log.info("Promoted %s %s to production (%s)", pipeline, version, evaluation["reason"])
    return {"model_version": version, "status": entry["status"], "production": production, "revision": doc["revision"]}


def _card_html(pipeline: str, status: str, evaluation: Mapping[str, Any], lineage: Mapping[str, Any]) -> str:
    from airflow_mlops.ml.report import page, table

    sections = [
        ("Metrics (holdout)", table(["metric", "value"], evaluation["metrics"].items())),
        ("Lineage", table(["field", "value"], [(k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in lineage.items()])),
    ]
    return page(f"Model card: {pipeline} {evaluation['model_version']}", (status == "blessed", f"{status.upper()}: {evaluation['reason']}"), sections)


# -- canary ----------------------------------------------------------------------------------------


def read_log(store: ArtifactStore, pipeline: str, kind: str, since_ts: float) -> pd.DataFrame:
    """Rows of the prediction (or feedback) log written at or after ``since_ts`` (epoch seconds)."""
    import pandas as pd

    since_day = datetime.fromtimestamp(since_ts, UTC).strftime("%Y-%m-%d")
    keys = [k for k in store.list(f"{kind}/{pipeline}") if k.endswith(".parquet") and k.split("/")[2] >= since_day]
    if not keys:
        return pd.DataFrame({"_ts": [], "_id": [], "_version": [], "_prediction": [], "_error": [], "_latency_ms": [], "_request": [], "label": []})
    frame = pd.concat([pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in keys], ignore_index=True)
    return frame[frame["_ts"] >= since_ts].reset_index(drop=True)


def canary_deploy(store: ArtifactStore, pipeline: str, version: str, percent: int) -> dict[str, Any]:
    """Put a blessed candidate on the canary alias with ``percent`` of the traffic (idempotent).

    The first model of a pipeline has no production to be compared with: it goes straight to production.
    """
    import time

    registry = ModelRegistry(store, pipeline)
    if registry.production() in (None, version):
        if registry.production() is None:
            registry.set_alias("production", version, promoted_at=datetime.now(UTC).isoformat(), reason="first model")
            from airflow_mlops.store.events import append_event

            append_event(store, pipeline, "promote", event_id=f"promote-{version}", version=version, reason="first model: no production to compare with")
        return {"canary": None, "weight": 0, "production": version}
    current = registry.load()["aliases"].get("canary") or {}
    if current.get("version") == version and current.get("weight") == percent:
        return {"canary": version, "weight": percent, "since": current["since"]}
    since = time.time()
    registry.set_alias("canary", version, weight=percent, since=since)
    from airflow_mlops.store.events import append_event

    append_event(store, pipeline, "canary_step", version=version, weight=percent, production=registry.production())
    log.info("Canary %s now takes %s%% of %s traffic", version, percent, pipeline)
    return {"canary": version, "weight": percent, "since": since}


def canary_check(
    store: ArtifactStore,
    pipeline: str,
    *,
    task: str,
    min_requests: int,
    bake_seconds: float,
    criteria: Mapping[str, Any],
    now: float,
) -> dict[str, Any] | None:
    """The verdict on the current canary step, or None while it needs more time and traffic."""
    from airflow_mlops.ml.canary import Criteria, Verdict, analyze

    doc = ModelRegistry(store, pipeline).load()
    canary = doc["aliases"].get("canary") or {}
    production = (doc["aliases"].get("production") or {}).get("version")
    if not canary.get("version"):
        if production:  # the deploy step promoted a first model directly
            return Verdict(True, f"{production} is production; no canary step", {}).to_dict() | {"version": production, "weight": 100}
        return Verdict(False, "no canary is deployed", {}).to_dict() | {"weight": None}
    frame = read_log(store, pipeline, "predictions", canary["since"])
    served = int((frame["_version"] == canary["version"]).sum())
    if served < min_requests and now - canary["since"] < bake_seconds:
        log.info("Canary %s: %d/%d requests, %.0f/%.0f s baked", canary["version"], served, min_requests, now - canary["since"], bake_seconds)
        return None
    if served == 0:
        verdict = Verdict(False, "the canary received no traffic during the bake time", {"canary": {"requests": 0}})
    else:
        labels = read_log(store, pipeline, "feedback", canary["since"])[["_id", "label"]].drop_duplicates("_id", keep="last")
        verdict = analyze(frame, labels, canary=canary["version"], production=production, task=task, criteria=Criteria(**criteria))
    return verdict.to_dict() | {"version": canary["version"], "production": production, "weight": canary["weight"]}


def canary_resolve(store: ArtifactStore, pipeline: str, decision: str, verdict: Mapping[str, Any]) -> dict[str, Any]:
    """Promote the canary to production or roll it back; the decision and its figures go to the events log."""
    from airflow_mlops.store.events import append_event

    registry = ModelRegistry(store, pipeline)
    version = verdict.get("version") or registry.alias("canary")
    previous = registry.production()
    if decision == "promote" and version and previous != version:
        registry.set_alias("production", version, promoted_at=datetime.now(UTC).isoformat(), reason=verdict["reason"])
    registry.set_alias("canary", None)

    def record(doc: dict[str, Any]) -> None:
        if version in doc["versions"]:
            doc["versions"][version]["canary"] = {"decision": decision, "reason": verdict["reason"]}

    registry.update(record)
    event = append_event(
        store, pipeline, decision, event_id=f"{decision}-{version}", version=version, previous_production=previous,
        reason=verdict["reason"], figures=verdict.get("figures", {}),
    )
    log.info("Canary %s of %s: %s (%s)", version, pipeline, decision.upper(), verdict["reason"])
    return {"decision": decision, "version": version, "production": registry.production(), "event_time": event["time"]}


# -- monitor ---------------------------------------------------------------------------------------


def last_drift_check(store: ArtifactStore, pipeline: str) -> float:
    """Epoch seconds up to which logged predictions were already checked (0 before the first check)."""
    from airflow_mlops.store.events import read_events

    checks = [e["checked_until"] for e in read_events(store, pipeline) if e["kind"] == "drift_check"]
    return max(checks, default=0.0)


def new_logged_rows(store: ArtifactStore, pipeline: str) -> int:
    """Predictions logged since the last drift check."""
    return len(read_log(store, pipeline, "predictions", last_drift_check(store, pipeline) + 1e-6))


def drift_check(
    store: ArtifactStore, pipeline: str, *, method: str, column_threshold: float, share_threshold: float, run_id: str
) -> dict[str, Any]:
    """Compare predictions logged since the last check with the production model's reference profile,
    save an evidently drift report, and record the check."""
    from airflow_mlops.ml.drift import detect_drift
    from airflow_mlops.store.events import append_event

    since = last_drift_check(store, pipeline)
    frame = read_log(store, pipeline, "predictions", since + 1e-6)
    production = ModelRegistry(store, pipeline).production()
    if production is None:
        raise ArtifactNotFound(f"{pipeline} has no production model to compare new data with.")
    profile = store.read_json(f"{model_prefix(pipeline, production)}/profile.json")
    result = detect_drift(frame, profile, method=method, column_threshold=column_threshold, share_threshold=share_threshold)
    prefix = report_prefix(pipeline, run_id)
    report_uri = store.uri(f"{prefix}/drift.html")
    store.write_text(f"{prefix}/drift.html", _drift_html(store, pipeline, production, frame, profile))
    checked_until = float(frame["_ts"].max()) if len(frame) else since
    out = {**result.to_dict(), "reason": result.reason, "production_version": production, "report_uri": report_uri,
           "checked_from": since, "checked_until": checked_until}
    store.write_json(f"{prefix}/drift.json", out)
    append_event(store, pipeline, "drift_check", event_id=f"drift-{run_id}", **{k: out[k] for k in ("drifted", "reason", "scores", "rows", "checked_until", "report_uri")})
    log.info("Drift check of %s over %d rows: %s", pipeline, result.rows, result.reason)
    return out


def _drift_html(store: ArtifactStore, pipeline: str, production: str, current: pd.DataFrame, profile: Mapping[str, Any]) -> str:
    """evidently's data drift report: new rows against the eval rows the production model was checked on."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    lineage = store.read_json(f"{model_prefix(pipeline, production)}/lineage.json") if store.exists(f"{model_prefix(pipeline, production)}/lineage.json") else {}
    columns = list(profile["numeric"]) + list(profile["categorical"])
    features_id = lineage.get("features_id")
    reference = _read_parquet_dir(store, f"{features_prefix(pipeline, features_id)}/eval_raw")[columns] if features_id else current[columns].iloc[:0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drift.html"
        Report([DataDriftPreset()]).run(current[columns], reference).save_html(str(path))
        return path.read_text()


def request_retrain(store: ArtifactStore, pipeline: str, *, reason: str, details: Mapping[str, Any], cooldown_hours: float, run_id: str) -> dict[str, Any]:
    """Record a retrain request unless one is still open or the cooldown since the last one has not passed."""
    from airflow_mlops.store.events import append_event, read_events

    events = read_events(store, pipeline)
    requests = [e for e in events if e["kind"] == "retrain_request"]
    done = {e.get("request_id") for e in events if e["kind"] == "retrain_done"}
    open_requests = [r for r in requests if r["event_id"] not in done]
    if open_requests:
        return {"requested": False, "why": f"request {open_requests[-1]['event_id']} is still open", "request_id": open_requests[-1]["event_id"]}
    if requests:
        last = datetime.fromisoformat(requests[-1]["time"])
        remaining = last.timestamp() + cooldown_hours * 3600 - datetime.now(UTC).timestamp()
        if remaining > 0:
            return {"requested": False, "why": f"cooldown: {remaining / 3600:.1f} h left after {requests[-1]['event_id']}", "request_id": None}
    event = append_event(store, pipeline, "retrain_request", event_id=f"retrain-{run_id}", reason=reason, details=dict(details))
    return {"requested": True, "why": reason, "request_id": event["event_id"]}


def close_retrain_request(store: ArtifactStore, pipeline: str, request_id: str, *, model_version: str, status: str) -> None:
    from airflow_mlops.store.events import append_event

    append_event(store, pipeline, "retrain_done", event_id=f"done-{request_id}", request_id=request_id, model_version=model_version, status=status)
