"""Multiclass: the class order, the one label encoding, the gate's metrics, the canary's divergence and the
monitor's class-share drift and unseen label classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.canary import Criteria, analyze
from airflow_mlops.ml.evaluate import compute_metrics, gate, roc_auc, slice_metrics
from airflow_mlops.ml.multiclass import (
    PROBABILITIES,
    class_share_drift,
    class_shares,
    js_distance,
    mean_probabilities,
    unseen_label_classes,
)
from airflow_mlops.ml.performance import bootstrap, per_row_equivalent, reference_performance
from airflow_mlops.ml.schema import infer_schema, label_classes
from airflow_mlops.ml.train import lgb_params
from airflow_mlops.ml.transform import label_values


class TestClasses:
    def test_classes_come_from_the_schema_integers_by_number_text_by_text(self):
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [10, 2, 1, 2]})
        schema = infer_schema(frame, numeric=["x"], categorical=[], label="y", task="multiclass")
        assert schema["columns"]["y"]["role"] == "categorical"
        assert "label_correlation" not in schema["columns"]["x"], "class keys are names, not amounts"
        assert label_classes(schema) == ["1", "2", "10"]
        text = infer_schema(
            pd.DataFrame({"x": [1.0, 2.0], "y": ["silver", "bronze"]}),
            numeric=["x"],
            categorical=[],
            label="y",
            task="multiclass",
        )
        assert label_classes(text) == ["bronze", "silver"]

    def test_no_recorded_classes_is_an_error(self):
        with pytest.raises(MlopsError, match="records no classes"):
            label_classes({"label": "y", "columns": {"y": {}}})

    def test_one_encoding_for_every_spelling_of_a_class(self):
        classes = ["1", "2", "10"]
        values = pd.Series([1, 2.0, "10", "10.0", None, 7, "x"], dtype=object)
        np.testing.assert_array_equal(label_values(values, 7, classes), [0, 1, 2, 2, np.nan, np.nan, np.nan])
        np.testing.assert_array_equal(label_values(pd.Series([2.0, 10.0]), 2, classes), [1, 2])
        np.testing.assert_array_equal(label_values(pd.Series(["b", "a"]), 2, ["a", "b"]), [1, 0])

    def test_binary_and_regression_labels_stay_numbers(self):
        np.testing.assert_array_equal(label_values(pd.Series([0, 1, None]), 3), [0.0, 1.0, np.nan])

    def test_lightgbm_gets_the_multiclass_objective_and_the_class_count(self):
        full = lgb_params("multiclass", {"num_leaves": 7}, seed=1, num_class=3)
        assert (full["objective"], full["num_class"], full["num_leaves"]) == ("multiclass", 3, 7)
        assert "num_class" not in lgb_params("classification", {}, seed=1)
        with pytest.raises(MlopsError, match="at least 2"):
            lgb_params("multiclass", {}, seed=1, num_class=1)


def _probabilities(y: np.ndarray, k: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = np.eye(k)[y] + rng.normal(0, noise, (len(y), k))
    e = np.exp(scores * 3)
    return e / e.sum(axis=1, keepdims=True)


class TestMetrics:
    def test_macro_and_weighted_roc_auc_are_the_one_vs_rest_means(self):
        rng = np.random.default_rng(0)
        y = rng.choice(3, 500, p=[0.6, 0.3, 0.1])
        p = _probabilities(y, 3, 0.8, 1)
        metrics = compute_metrics("multiclass", y, p, ["a", "b", "c"])
        aucs = [roc_auc((y == c).astype(float), p[:, c]) for c in range(3)]
        assert metrics["roc_auc_macro"] == pytest.approx(np.mean(aucs))
        assert metrics["roc_auc_weighted"] == pytest.approx(np.average(aucs, weights=np.bincount(y)))
        assert metrics["log_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(500), y])))
        assert metrics["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == y))
        for c, name in enumerate("abc"):
            assert metrics[f"recall:{name}"] == pytest.approx(np.mean(p[y == c].argmax(axis=1) == c))
        assert metrics["rows"] == 500

    def test_perfect_and_uninformative_predictions(self):
        y = np.array([0, 1, 2, 0, 1, 2])
        perfect = compute_metrics("multiclass", y, np.eye(3)[y])
        assert perfect["roc_auc_macro"] == 1.0 and perfect["accuracy"] == 1.0 and perfect["log_loss"] < 1e-9
        flat = compute_metrics("multiclass", y, np.full((6, 3), 1 / 3))
        assert flat["roc_auc_macro"] == 0.5 and flat["log_loss"] == pytest.approx(np.log(3))

    def test_a_class_without_rows_has_no_recall_and_no_auc(self):
        y = np.array([0, 0, 1, 1])
        p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
        metrics = compute_metrics("multiclass", y, p)
        assert np.isnan(metrics["recall:2"]) and metrics["roc_auc_macro"] == 1.0

    def test_slices_and_the_gate_work_as_for_the_other_tasks(self):
        rng = np.random.default_rng(3)
        y = rng.choice(3, 400)
        groups = np.where(np.arange(400) % 2 == 0, "even", "odd")
        p = np.where((groups == "even")[:, None], _probabilities(y, 3, 0.3, 4), _probabilities(y, 3, 2.0, 5))
        per = slice_metrics("multiclass", "roc_auc_macro", y, p, groups)
        assert set(per) == {"even", "odd"} and per["even"] > per["odd"]
        candidate = compute_metrics("multiclass", y, p)
        gap = per["even"] - per["odd"]
        assert gate("roc_auc_macro", 0.5, candidate, None, fairness_gap=gap, max_gap=gap + 0.01).blessed
        assert not gate("roc_auc_macro", 0.5, candidate, None, fairness_gap=gap, max_gap=gap / 2).blessed
        assert not gate("log_loss", candidate["log_loss"] / 2, candidate, None).blessed


class TestDivergenceAndDrift:
    def test_js_distance(self):
        assert js_distance({"a": 0.5, "b": 0.5}, {"b": 0.5, "a": 0.5}) == 0.0
        assert js_distance({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
        near = js_distance({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 0.45, "b": 0.35, "c": 0.2})
        far = js_distance({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 0.1, "b": 0.2, "c": 0.7})
        assert 0 < near < 0.1 < far < 1
        assert js_distance({}, {"a": 1.0}) == 1.0

    def test_class_shares_and_their_psi(self):
        shares = class_shares([0, 0, 1, 2, np.nan, 5], ["a", "b", "c"])
        assert shares == {"a": 0.5, "b": 0.25, "c": 0.25}
        assert class_share_drift(shares, shares) == 0.0
        assert class_share_drift(shares, {"a": 0.9, "b": 0.05, "c": 0.05}) > 0.2

    def test_unseen_label_classes_are_counted_by_class(self):
        assert unseen_label_classes(pd.Series([0.0, 1.0, 3.0, 3.0, None, 7.0]), ["0", "1", "2"]) == {"3": 2, "7": 1}
        assert unseen_label_classes(pd.Series([0.0, 2.0]), ["0", "1", "2"]) == {}

    def _log(self, version: str, probabilities: np.ndarray, start: int) -> pd.DataFrame:
        n = len(probabilities)
        return pd.DataFrame(
            {
                "_id": [f"r{start + i}" for i in range(n)],
                "_version": version,
                "_prediction": probabilities.argmax(axis=1).astype(float),
                PROBABILITIES: list(probabilities),
                "_error": False,
                "_latency_ms": 1.0,
                "_request": [f"q{start + i}" for i in range(n)],
            }
        )

    def test_the_canary_judges_the_probability_vectors_and_label_quality(self):
        criteria = Criteria(0.01, 1.5, 50.0, 0.2, 0.9, 50, 0.95)
        classes = {"c": ["0", "1", "2"], "p": ["0", "1", "2"]}
        rng = np.random.default_rng(0)
        y_c, y_p = rng.choice(3, 200), rng.choice(3, 200)
        good = self._log("c", _probabilities(y_c, 3, 0.5, 1), 0)
        prod = self._log("p", _probabilities(y_p, 3, 0.5, 2), 1000)
        labels = pd.DataFrame(
            {"_id": [*good["_id"], *prod["_id"], "r-x"], "label": [*y_c.astype(float), *y_p.astype(float), 3.0]}
        )
        labels.loc[0, "label"] = 3.0  # a class neither model knows: left out of label quality, counted
        verdict = analyze(
            pd.concat([good, prod]), labels, canary="c", production="p", task="multiclass", criteria=criteria, classes=classes
        )
        assert verdict.passed, verdict.reason
        assert "JS" in verdict.reason and verdict.figures["prediction_divergence"] < 0.1
        assert verdict.figures["canary"]["unseen_label_class_rows"] == 1 and verdict.figures["canary"]["labels"] == 199
        assert verdict.figures["label_quality"]["canary"] > 0.9
        assert set(mean_probabilities(good, classes["c"])) == {"0", "1", "2"}
        blind = analyze(pd.concat([good, prod]), labels, canary="c", production="p", task="multiclass", criteria=criteria)
        assert "label_quality" not in blind.figures, "without the versions' classes a label cannot be read as a class"

        skewed = np.tile([0.9, 0.05, 0.05], (200, 1))  # always class 0
        bad = self._log("c", skewed, 0)
        verdict = analyze(
            pd.concat([bad, prod]), labels, canary="c", production="p", task="multiclass", criteria=criteria, classes=classes
        )
        assert not verdict.passed
        assert "diverges from production (JS" in verdict.reason and "label quality ratio" in verdict.reason


class TestRealizedPerformance:
    def test_per_row_metrics_equal_the_gate_s(self):
        rng = np.random.default_rng(5)
        y = rng.choice(3, 300)
        p = _probabilities(y, 3, 1.2, 6)
        gate_metrics = compute_metrics("multiclass", y, p)
        for metric in ("accuracy", "log_loss"):
            ones, score = per_row_equivalent(metric, y, p)
            figure = bootstrap(metric, ones, score, confidence=0.9, rounds=50)[""]
            assert figure.value == pytest.approx(gate_metrics[metric])
            assert figure.low <= figure.value <= figure.high
        with pytest.raises(ValueError, match="accuracy, log_loss"):
            per_row_equivalent("roc_auc_macro", y, p)

    def test_the_reference_holds_the_per_row_metrics_per_slice(self):
        rng = np.random.default_rng(7)
        y = rng.choice(3, 200)
        p = _probabilities(y, 3, 1.0, 8)
        groups = {"region": np.where(np.arange(200) % 2 == 0, "a", "b")}
        reference = reference_performance("multiclass", y, p, slices=groups, rounds=20)
        assert set(reference["metrics"]) == {"accuracy", "log_loss"}
        assert reference["metrics"]["log_loss"]["value"] == pytest.approx(compute_metrics("multiclass", y, p)["log_loss"])
        assert set(reference["slices"]["region"]) == {"a", "b"} and reference["rows"] == 200
