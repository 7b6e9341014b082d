"""A churn pipeline's store as the ops pages see it, filled by the stage functions.

Three versions (production, a canary at 20% with one analysed step, one rejected by the gate), two monitor runs
(the second's drift check drifted and its performance check found a drop: three days of labelled production traffic,
the third's labels flipped for month-to-month contracts) and the open retrain request they filed, plus the
pipeline's YAML pointing at that store (with monitor.labels).
Not a conftest.py (see tests/unit/stages/churn_setup.py, whose session fixture builds the models): a test module
takes the fixtures with ``built, scene = ops_scene.built, ops_scene.scene_fixture``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

import churn_setup
from churn_setup import GATE, PIPELINE, copy_store, log_predictions
from labelled_traffic import DAY0, log_at, write_labels

from airflow_mlops.config.deployment import CanaryAnalysisConfig
from airflow_mlops.config.monitoring import DriftConfig, PerformanceConfig
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.operators.retraining import PERFORMANCE_DETAILS, retrain_reasons
from airflow_mlops.stages.deployment.canary import canary_check, canary_deploy
from airflow_mlops.stages.evaluation import evaluate, register, score_raw
from airflow_mlops.stages.labels import LabelSource, ingest_labels
from airflow_mlops.stages.monitoring import drift_check
from airflow_mlops.stages.performance import PerformanceSettings, performance_check
from airflow_mlops.stages.retraining import request_retrain
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.events import append_event
from airflow_mlops.store.layout import report_prefix

built = churn_setup.built  # the session's models (a pytest fixture)
REPO = Path(__file__).resolve().parents[3]
FIRST_RUN = "scheduled__2026-11-20T00:00:00+00:00"
RETRAIN_RUN = "asset_triggered__2026-11-22T10:00:00+00:00"
MONITOR_RUNS = ("scheduled__2026-11-21T01:00:00+00:00", "scheduled__2026-11-22T09:00:00+00:00")
HOSTILE = '<script>alert("x")</script>'
PERFORMANCE = PerformanceSettings(
    task="classification", metric="roc_auc", slices=["contract"], **PerformanceConfig().model_dump(exclude={"metric"})
)
"""The monitor's performance settings for the scene's config (monitor.labels, performance defaults)."""


@dataclass(frozen=True)
class Scene:
    store: ArtifactStore
    config_path: Path
    production: str
    canary: str
    rejected: str
    request_id: str
    performance: list[dict[str, Any]]


def build_scene(models: Any, folder: Path) -> Scene:
    """Fill a copy of ``models``' store (churn_setup's ``built``) through the stage functions and write its pipeline YAML into ``folder``."""
    store = copy_store(models, folder)
    features_id = models.features["features_id"]
    production, canary, rejected = (models.model, models.candidate, models.challenger)

    def serve(version: str, rows: Any, request: str) -> None:
        log_predictions(store, version, rows, score_raw(store, PIPELINE, version, rows), request=request)

    first = evaluate(store, PIPELINE, production["model_version"], features_id, GATE, run_id=FIRST_RUN)
    register(store, PIPELINE, first, lineage=_lineage(models, FIRST_RUN), promote=False)
    canary_deploy(store, PIPELINE, production["model_version"], 20)  # the first model: straight to production
    serve(production["model_version"], make_churn(300, seed=31), "day1")
    labels = folder / "labels"
    days = [_labelled_day(store, production["model_version"], day, flip=day == 2) for day in range(3)]
    for day, (ids, outcome) in enumerate(days[:2]):  # the third day's labels arrive before the second monitor run
        write_labels(labels, f"day-{day}.csv", ids, outcome)
    drift_check(store, PIPELINE, **DriftConfig().model_dump(), run_id=MONITOR_RUNS[0])
    performance = [_performance_check(store, labels, MONITOR_RUNS[0])]

    why = {"request_id": f"retrain-{MONITOR_RUNS[0]}", "reason": "drift: monthly_charges"}
    candidate = evaluate(store, PIPELINE, canary["model_version"], features_id, GATE, run_id=RETRAIN_RUN)
    register(store, PIPELINE, candidate, lineage=_lineage(models, RETRAIN_RUN, retrain_request=why), promote=False)
    strict = dataclasses.replace(GATE, threshold=0.999)
    refused = evaluate(store, PIPELINE, rejected["model_version"], features_id, strict, run_id=RETRAIN_RUN)
    register(store, PIPELINE, refused, lineage=_lineage(models, RETRAIN_RUN), promote=False)

    deployed = canary_deploy(store, PIPELINE, canary["model_version"], 20)
    rows = make_churn(400, seed=32)
    serve(canary["model_version"], rows.iloc[:200], "canary")
    serve(production["model_version"], rows.iloc[200:], "prod")
    criteria = CanaryAnalysisConfig().model_dump()
    verdict = canary_check(
        store, PIPELINE, task="classification", min_requests=10, bake_seconds=600, criteria=criteria, now=deployed["since"] + 1
    )
    # What CanaryAnalysisSensor records of each analysed step.
    append_event(
        store, PIPELINE, "canary_analysis", **{k: verdict[k] for k in ("version", "weight", "passed", "reason", "figures")}
    )

    serve(production["model_version"], make_churn(900, seed=33, drift=1.0), "day2")
    drifted = drift_check(store, PIPELINE, **DriftConfig().model_dump(), run_id=MONITOR_RUNS[1])
    assert drifted["drifted"], "the scene needs a drifted check"
    write_labels(labels, "day-2.csv", *days[2])
    performance.append(_performance_check(store, labels, MONITOR_RUNS[1]))
    assert performance[-1]["dropped"], performance[-1]["reason"]
    # What RetrainRequestOperator files on both checks' results.
    details = {"columns": drifted["drifted_columns"], "scores": drifted["scores"], "report_uri": drifted["report_uri"]}
    details["performance"] = {k: performance[-1].get(k) for k in PERFORMANCE_DETAILS}
    request = request_retrain(
        store,
        PIPELINE,
        reason="; ".join(retrain_reasons(drifted, performance[-1])),
        details=details,
        cooldown_hours=0,
        run_id=MONITOR_RUNS[1],
        approval="manual",
    )
    append_event(store, PIPELINE, "note", reason=HOSTILE, user=HOSTILE)  # values come from files: all escaped
    store.write_text(f"{report_prefix(PIPELINE, MONITOR_RUNS[1])}/drift.html", "<h1>drift</h1>")  # evidently's, in a real run

    config = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
    config["artifacts"] = {"root": store.root_uri}
    config["source"]["uri"] = str(models.csv)
    config["monitor"]["labels"] = {"uri": str(labels / "*.csv"), "label_column": "churned"}
    path = folder / "configs" / "churn.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return Scene(
        store,
        path,
        production["model_version"],
        canary["model_version"],
        rejected["model_version"],
        request["request_id"],
        performance,
    )


def _labelled_day(store: ArtifactStore, version: str, day: int, *, flip: bool) -> tuple[Any, Any]:
    """400 predictions of ``version`` on ``day`` (days after DAY0) and their labels (ids, outcomes); ``flip``: the
    month-to-month contracts' labels flipped (concept drift: the inputs stay as in training)."""
    frame = log_at(store, version, make_churn(400, seed=40 + day), DAY0 + timedelta(days=day, hours=1))
    outcome = frame["churned"].astype(float)
    return frame["customer_id"], outcome.where(frame["contract"] != "month-to-month", 1 - outcome) if flip else outcome


def _performance_check(store: ArtifactStore, labels: Path, run_id: str) -> dict[str, Any]:
    """One monitor run's performance path: ingest the label files that arrived, then the performance check."""
    source = LabelSource(uri=str(labels / "*.csv"), label_column="churned")
    ingest = ingest_labels(store, PIPELINE, source, slices=PERFORMANCE.slices, run_id=run_id)
    return performance_check(store, PIPELINE, PERFORMANCE, run_id=run_id, ingest=ingest)


def _lineage(models: Any, run_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "dataset_id": models.dataset["dataset_id"],
        "features_id": models.features["features_id"],
        "dag_id": f"mlops_{PIPELINE}_training",
        "run_id": run_id,
        **extra,
    }


@pytest.fixture(scope="session", name="scene")
def scene_fixture(built: Any, tmp_path_factory: Any) -> Scene:
    """The session's scene (tests that change it take a copy of their own)."""
    return build_scene(built, tmp_path_factory.mktemp("scene"))
