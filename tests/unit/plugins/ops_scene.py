"""A churn pipeline's store as the ops pages see it, filled by the stage functions.

Three versions (production, a canary at 20% with one analysed step, one rejected by the gate), two drift checks
(the second drifted) and the open retrain request it filed, plus the pipeline's YAML pointing at that store.
Not a conftest.py (see tests/unit/stages/churn_setup.py, whose session fixture builds the models): a test module
takes the fixtures with ``built, scene = ops_scene.built, ops_scene.scene_fixture``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

import churn_setup
from churn_setup import GATE, PIPELINE, copy_store, log_predictions

from airflow_mlops.config.deployment import CanaryAnalysisConfig
from airflow_mlops.config.monitoring import DriftConfig
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages.deployment.canary import canary_check, canary_deploy
from airflow_mlops.stages.evaluation import evaluate, register, score_raw
from airflow_mlops.stages.monitoring import drift_check
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


@dataclass(frozen=True)
class Scene:
    store: ArtifactStore
    config_path: Path
    production: str
    canary: str
    rejected: str
    request_id: str


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
    drift_check(store, PIPELINE, **DriftConfig().model_dump(), run_id=MONITOR_RUNS[0])

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
    details = {"columns": drifted["drifted_columns"], "scores": drifted["scores"], "report_uri": drifted["report_uri"]}
    request = request_retrain(
        store,
        PIPELINE,
        reason=f"drift: {drifted['reason']}",
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
    path = folder / "configs" / "churn.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return Scene(
        store, path, production["model_version"], canary["model_version"], rejected["model_version"], request["request_id"]
    )


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
