"""Realized performance per window against the reference stored at training; estimated performance beside it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from churn_setup import GATE, PIPELINE, built, copy_store, production_store  # noqa: F401 (pytest fixtures)
from labelled_traffic import DAY0, log_at, write_labels

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages import performance as stage
from airflow_mlops.stages.labels import LabelSource, ingest_labels
from airflow_mlops.stages.monitoring import drift_check
from airflow_mlops.stages.performance import PerformanceSettings, load_reference, performance_check
from airflow_mlops.store.events import read_events
from airflow_mlops.store.layout import calibrator_key, reference_performance_key

SETTINGS = PerformanceSettings(
    task="classification",
    metric="roc_auc",
    max_drop=0.05,
    min_labels=200,
    confidence=0.95,
    window_hours=24,
    estimated="warn",
    slices=["contract"],
)


@pytest.fixture
def store(built, tmp_path):
    """A copy of the pipeline store with its first model evaluated (slices by contract) and in production."""
    return production_store(built, tmp_path, dataclasses.replace(GATE, slices=["contract"]))


@pytest.fixture
def version(built):
    return built.model["model_version"]


def check(store, tmp_path, run_id, settings=SETTINGS):
    """One monitor run: ingest the label files that arrived, then the performance check."""
    source = LabelSource(uri=str(tmp_path / "labels" / "*.csv"), label_column="churned")
    ingest = ingest_labels(store, PIPELINE, source, slices=list(settings.slices), run_id=run_id)
    return performance_check(store, PIPELINE, settings, run_id=run_id, ingest=ingest)


def day_of_traffic(store, version, tmp_path, day, *, rows=400, flip=None):
    """``rows`` predictions on ``day`` (days after DAY0) from the training distribution, and their labels as an
    export; ``flip``: a contract whose labels are flipped (the link between inputs and label changed there)."""
    frame = log_at(store, version, make_churn(rows, seed=100 + day), DAY0 + timedelta(days=day, hours=1))
    labels = frame["churned"].astype(float)
    if flip is not None:
        labels = labels.where(frame["contract"] != flip, 1 - labels)
    write_labels(tmp_path / "labels", f"day-{day:02d}.csv", frame["customer_id"], labels)
    return frame


class TestReference:
    def test_evaluation_stores_the_reference_and_the_calibrator(self, store, version):
        reference = store.read_json(reference_performance_key(PIPELINE, version))
        metrics = store.read_json(f"models/{PIPELINE}/{version}/metrics.json")["metrics"]
        assert set(reference["metrics"]) == {"roc_auc", "log_loss", "accuracy"}
        auc = reference["metrics"]["roc_auc"]
        assert auc["value"] == pytest.approx(metrics["roc_auc"]) and len(auc["replicates"]) == 300
        assert auc["interval"][0] < auc["value"] < auc["interval"][1]
        assert set(reference["slices"]["contract"]) == {"month-to-month", "one-year", "two-year"}
        assert store.read_json(calibrator_key(PIPELINE, version))["kind"] == "isotonic"

    def test_a_model_trained_before_references_gets_one_from_its_eval_split(self, store, version):
        stored = store.read_json(reference_performance_key(PIPELINE, version))
        store.delete(reference_performance_key(PIPELINE, version))
        assert load_reference(store, PIPELINE, version, ["contract"]) == stored


class TestPerformanceCheck:
    def test_calm_labelled_traffic_for_ten_windows_gives_no_false_alarm(self, store, version, tmp_path):
        """(b) Ten daily windows of labelled traffic like the training data, one monitor run each: no drop."""
        results = []
        for day in range(10):
            day_of_traffic(store, version, tmp_path, day)
            results.append(check(store, tmp_path, f"run-{day}"))
        assert [r["dropped"] for r in results] == [False] * 10, [r["reason"] for r in results]
        assert all(r["window_count"] >= 1 and "no drop above max_drop 0.05" in r["reason"] for r in results)
        events = [e for e in read_events(store, PIPELINE) if e["kind"] == "performance_check"]
        assert len(events) == 10 and not any(e["dropped"] for e in events)
        [window] = [w for w in events[-1]["windows"] if w["labels"]]
        assert window["judged"] and window["production_labels"] == 400
        assert window["estimated"]["done"] and abs(window["estimated"]["value"] - window["realized"]["value"]) < 0.1

    def test_concept_drift_is_a_drop_with_its_reason_while_inputs_do_not_drift(self, store, version, tmp_path):
        """(a) Inputs from the training distribution, labels flipped for month-to-month contracts: no input
        drift, a realized drop named with its figures."""
        day_of_traffic(store, version, tmp_path, 0, rows=600, flip="month-to-month")
        drift = drift_check(store, PIPELINE, method="psi", column_threshold=0.2, share_threshold=0.3, run_id="run-1")
        assert not drift["drifted"], drift["reason"]
        result = check(store, tmp_path, "run-1")
        assert result["dropped"] and result["trigger"] == "realized", result["reason"]
        assert result["labels"] == 600 and result["drop"]["interval"][0] > 0.05
        reason = result["reason"]
        for part in ("roc_auc", "realized vs reference", "95% interval", "600 labels", "max_drop 0.05", DAY0.date().isoformat()):
            assert part in reason, reason
        assert result["report_uri"] == store.uri(f"reports/{PIPELINE}/run-1/performance.json")
        report = store.read_json(f"reports/{PIPELINE}/run-1/performance.json")
        [window] = [w for w in report["windows"] if w["labels"]]
        slices = window["slices"]["contract"]
        assert slices["month-to-month"]["drop"]["value"] > slices["two-year"]["drop"]["value"], "the flipped slice fell most"
        assert check(store, tmp_path, "run-1") == result, "a retry returns the recorded check"

    def test_too_few_labels_are_not_judged(self, store, version, tmp_path):
        day_of_traffic(store, version, tmp_path, 0, rows=150, flip="month-to-month")
        result = check(store, tmp_path, "run-1")
        assert not result["dropped"] and "no window with 200 labels" in result["reason"]

    def test_an_estimated_drop_files_only_with_estimated_request(self, store, version, tmp_path):
        """Scores near 0.5 (a model that lost its confidence): CBPE estimates a low ROC AUC before any label."""
        rows = make_churn(400, seed=5)
        rng = np.random.default_rng(0)
        log_at(store, version, rows, DAY0 + timedelta(days=11, hours=1), scores=0.5 + rng.normal(0, 0.01, 400))
        now = (DAY0 + timedelta(days=11, hours=12)).timestamp()
        warn = performance_check(store, PIPELINE, SETTINGS, run_id="run-1", ingest=None, now=now)
        assert not warn["dropped"] and warn["estimated_warning"] and "estimated (CBPE)" in warn["reason"]
        request = dataclasses.replace(SETTINGS, estimated="request")
        result = performance_check(store, PIPELINE, request, run_id="run-2", ingest=None, now=now)
        assert result["dropped"] and result["trigger"] == "estimated", result["reason"]
        assert result["estimated"]["rows"] == 400 and "0 labels (< min_labels 200)" in result["reason"]

    def test_no_production_model_is_not_judged(self, built, tmp_path):
        store = copy_store(built, tmp_path)
        result = performance_check(store, PIPELINE, SETTINGS, run_id="r", ingest=None)
        assert not result["dropped"] and result["reason"] == "not judged: no production model"


class TestEstimate:
    def test_regression_says_why_it_is_not_estimated(self, store, version):
        settings = dataclasses.replace(SETTINGS, task="regression", metric="rmse")
        why = stage._estimate(store, PIPELINE, settings, version, {}, None, 0.0)
        assert not why["done"] and "class probabilities" in why["why"]
