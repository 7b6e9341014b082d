"""Shared setup of the stage tests: one small churn pipeline, built once per session.

Not a conftest.py: a second ``conftest`` module would shadow tests/conftest.py for ``from conftest import``.
Each test module wraps :func:`built_pipeline` in a fixture and copies the result into its own store with
:func:`copy_store`, so tests that change the registry, the logs or the events never see each other's changes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_mlops.ml.synthetic import FEATURES, make_churn
from airflow_mlops.serving.predlog import PredictionLog, feedback_row, prediction_row
from airflow_mlops.stages.data import Columns, acquire
from airflow_mlops.stages.evaluation import GateSettings
from airflow_mlops.stages.features import preprocess
from airflow_mlops.stages.training import TrainSettings, train
from airflow_mlops.store.artifacts import ArtifactStore

PIPELINE = "churn"
ROWS = 600
COLUMNS = Columns(
    label="churned",
    task="classification",
    numeric=["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"],
    categorical=["contract", "payment_method", "region"],
)
PREPROCESS: dict[str, Any] = {"eval_fraction": 0.25, "histogram_bins": 10, "runner": "DirectRunner"}
MODEL = TrainSettings(params={"num_leaves": 7, "min_data_in_leaf": 10}, num_boost_round=20, seed=42, early_stopping_rounds=None)
CHALLENGER = TrainSettings(
    params={"num_leaves": 15, "learning_rate": 0.3}, num_boost_round=60, seed=7, early_stopping_rounds=None
)
CANDIDATE = dataclasses.replace(MODEL, num_boost_round=22)  # a retrained model close to MODEL's predictions
GATE = GateSettings(
    metric="roc_auc", threshold=0.6, must_beat_production_by=0.0, slices=[], fairness_column=None, fairness_max_gap=None
)  # every model above passes it


@dataclass(frozen=True)
class Built:
    """A store holding one acquired dataset, its features and three models trained on them."""

    root: Path
    frame: pd.DataFrame  # the source rows, as make_churn gave them
    csv: Path
    dataset: dict[str, Any]  # acquire's result
    features: dict[str, Any]  # preprocess's result
    model: dict[str, Any]  # train's result with MODEL
    challenger: dict[str, Any]  # train's result with CHALLENGER: predictions that differ from MODEL's
    candidate: dict[str, Any]  # train's result with CANDIDATE: predictions close to MODEL's


@pytest.fixture(scope="session")
def built(tmp_path_factory: Any) -> Built:
    """The session's pipeline store, built once: a test module imports this fixture (and ``store``) to use it."""
    root = tmp_path_factory.mktemp("churn-pipeline")
    frame = make_churn(ROWS, seed=3)
    csv = root / "churn.csv"
    frame.to_csv(csv, index=False)
    store = ArtifactStore.from_uri(str(root / "store"))
    dataset = acquire(store, PIPELINE, str(csv))
    features = preprocess(store, PIPELINE, dataset["dataset_id"], COLUMNS, **PREPROCESS)
    model = train(store, PIPELINE, features["features_id"], MODEL)
    challenger = train(store, PIPELINE, features["features_id"], CHALLENGER)
    candidate = train(store, PIPELINE, features["features_id"], CANDIDATE)
    return Built(root / "store", frame, csv, dataset, features, model, challenger, candidate)


@pytest.fixture
def store(built: Built, tmp_path: Path) -> ArtifactStore:
    """A private copy of the built store for one test (a module may define its own ``store`` on top of it)."""
    return copy_store(built, tmp_path)


def copy_store(built: Built, tmp_path: Path) -> ArtifactStore:
    """A private copy of the built store."""
    shutil.copytree(built.root, tmp_path / "store")
    return ArtifactStore.from_uri(str(tmp_path / "store"))


def production_store(built: Built, tmp_path: Path, gate: Any = GATE) -> ArtifactStore:
    """A private copy of the built store with its first model evaluated by ``gate`` and in production (lineage
    naming its features)."""
    from airflow_mlops.stages.evaluation import evaluate, register

    store = copy_store(built, tmp_path)
    result = evaluate(store, PIPELINE, built.model["model_version"], built.features["features_id"], gate, run_id="train")
    register(store, PIPELINE, result, lineage={"features_id": built.features["features_id"]}, promote=True)
    return store


def blessed_store(built: Built, tmp_path: Path) -> ArtifactStore:
    """A private copy of the built store with its three models evaluated and registered as blessed, in order
    (production, close candidate, diverging challenger); none deployed."""
    from airflow_mlops.stages.evaluation import evaluate, register

    store = copy_store(built, tmp_path)
    for model in (built.model, built.candidate, built.challenger):
        result = evaluate(store, PIPELINE, model["model_version"], built.features["features_id"], GATE, run_id="train")
        assert register(store, PIPELINE, result, lineage={}, promote=False)["status"] == "blessed"
    return store


@pytest.fixture
def versions(built: Built) -> tuple[str, str, str]:
    """(production, close candidate, diverging challenger) model versions."""
    return built.model["model_version"], built.candidate["model_version"], built.challenger["model_version"]


def stamps(store: ArtifactStore) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every stored file: a write (an atomic replace) changes both."""
    return {key: (st.st_ino, st.st_mtime_ns) for key in store.list("") for st in [os.stat(store.local_path(key))]}


def log_predictions(
    store: ArtifactStore, version: str, rows: pd.DataFrame, predictions: Any, *, latency_ms: float = 5.0, request: str = "req"
) -> None:
    """Log ``rows`` (churn rows) as scored by ``version`` into the prediction log, as the model server does.

    A None in ``predictions`` logs a failed scoring call for that row.
    """
    log = PredictionLog(store, PIPELINE)
    log.append(
        [
            prediction_row(
                row_id=row["customer_id"],
                version=version,
                prediction=None if p is None else float(p),
                latency_ms=latency_ms,
                request_id=f"{request}-{i // 10}",  # ten rows per request
                features={k: (None if pd.isna(row[k]) else row[k]) for k in FEATURES},
            )
            for i, (row, p) in enumerate(zip(rows.to_dict("records"), predictions, strict=True))
        ]
    )
    log.flush()


def log_feedback(store: ArtifactStore, rows: pd.DataFrame) -> None:
    """Send the true labels of ``rows`` back into the feedback log."""
    log = PredictionLog(store, PIPELINE, kind="feedback")
    log.append([feedback_row(r["customer_id"], float(r["churned"])) for r in rows.to_dict("records")])
    log.flush()
