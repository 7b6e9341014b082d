import numpy as np
import pytest
from sklearn import metrics as skm

from airflow_mlops.exceptions import ModelGateError
from airflow_mlops.ml.evaluate import compute_metrics, gate, roc_auc, slice_metrics


class TestMetrics:
    def test_classification_matches_scikit_learn(self):
        rng = np.random.default_rng(3)
        y = rng.integers(0, 2, 500)
        p = np.clip(rng.random(500) * 0.6 + y * 0.3, 0, 1).round(2)  # rounded: many ties
        got = compute_metrics("classification", y, p)
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
        assert got["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-9)
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))

    def test_regression_matches_scikit_learn(self):
        rng = np.random.default_rng(4)
        y, p = rng.normal(size=200), rng.normal(size=200)
        got = compute_metrics("regression", y, p)
        assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
        assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p))

    def test_single_class_auc_is_nan(self):
        assert np.isnan(roc_auc(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4])))

    def test_empty_eval_set_is_an_error(self):
        with pytest.raises(ModelGateError, match="empty"):
            compute_metrics("classification", [], [])

    def test_slices(self):
        got = slice_metrics("regression", "mae", [1, 2, 3, 4], [1, 2, 4, 6], ["a", "a", "b", "b"])
        assert got == {"a": 0.0, "b": 1.5}


class TestGate:
    @pytest.mark.parametrize(
        ("metric", "threshold", "candidate", "production", "margin", "blessed", "why"),
        [
            pytest.param("roc_auc", 0.7, 0.8, None, 0.0, True, "no production", id="first-model-meets-minimum"),
            pytest.param("roc_auc", 0.7, 0.6, None, 0.0, False, "misses the minimum", id="first-model-below-minimum"),
            pytest.param("roc_auc", 0.7, 0.8, 0.85, 0.0, False, "vs production", id="worse-than-production"),
            pytest.param("roc_auc", 0.7, 0.86, 0.85, 0.02, False, "required 0.02", id="not-enough-improvement"),
            pytest.param("roc_auc", 0.7, 0.88, 0.85, 0.02, True, "improves", id="beats-production-by-margin"),
            pytest.param("rmse", 2.0, 1.5, 1.6, 0.0, True, "improves", id="lower-is-better-beats"),
            pytest.param("rmse", 2.0, 2.5, None, 0.0, False, "maximum", id="lower-is-better-over-maximum"),
            pytest.param("roc_auc", 0.7, float("nan"), None, 0.0, False, "cannot judge", id="nan-metric"),
        ],
    )
    def test_decisions(self, metric, threshold, candidate, production, margin, blessed, why):
        decision = gate(
            metric, threshold, {metric: candidate}, None if production is None else {metric: production}, must_beat_by=margin
        )
        assert decision.blessed is blessed
        assert why in decision.reason

    def test_fairness_gap(self):
        decision = gate("roc_auc", 0.5, {"roc_auc": 0.9}, None, fairness_gap=0.3, max_gap=0.1)
        assert not decision.blessed and "fairness" in decision.reason
