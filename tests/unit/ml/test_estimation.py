import json
import math

import numpy as np
import pytest

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.estimation import MAX_KNOTS, calibrate, estimate_performance, fit_calibrator
from airflow_mlops.ml.evaluate import roc_auc


def _calibrated_model(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities of class 1 and labels drawn from them: a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.8, 1.6, size=n)
    return p, (rng.random(n) < p).astype(int)


def _accuracy(labels: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((p >= threshold) == (labels == 1)))


class TestFitCalibrator:
    def test_json_round_trip_gives_identical_probabilities(self):
        p, y = _calibrated_model(5000, seed=1)
        calibrator = fit_calibrator(p, y)
        again = json.loads(json.dumps(calibrator))
        assert again == calibrator
        scores = np.random.default_rng(2).random(1000)
        np.testing.assert_array_equal(calibrate(again, scores), calibrate(calibrator, scores))

    def test_monotone_and_small(self):
        rng = np.random.default_rng(3)
        scores = rng.random(100_000)
        labels = (rng.random(100_000) < scores**2).astype(int)
        calibrator = fit_calibrator(scores, labels)
        assert len(calibrator["x"]) == len(calibrator["y"]) <= MAX_KNOTS
        assert np.all(np.diff(calibrator["x"]) > 0)
        assert np.all(np.diff(calibrator["y"]) >= 0)
        grid = np.linspace(-0.5, 1.5, 2001)
        out = calibrate(calibrator, grid)
        assert np.all(np.diff(out) >= 0)
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert calibrator["rows"] == 100_000 and calibrator["positives"] == int(labels.sum())
        assert len(json.dumps(calibrator)) < 20_000

    def test_pools_adjacent_violators(self):
        # (0.1: 0), (0.2: 1, 0.3: 0) pooled to 0.5 at their mean score 0.25, (0.4: 1).
        calibrator = fit_calibrator([0.3, 0.1, 0.4, 0.2], [0, 0, 1, 1])
        assert calibrator["x"] == pytest.approx([0.1, 0.25, 0.4])
        assert calibrator["y"] == pytest.approx([0.0, 0.5, 1.0])
        np.testing.assert_allclose(calibrate(calibrator, [0.0, 0.175, 0.325, 0.9]), [0.0, 0.25, 0.75, 1.0])

    def test_ties_share_one_value(self):
        calibrator = fit_calibrator([0.5, 0.5, 0.5, 0.5, 0.9], [0, 1, 1, 0, 1])
        assert calibrator["x"] == pytest.approx([0.5, 0.9])
        assert calibrator["y"] == pytest.approx([0.5, 1.0])

    def test_one_class_only(self):
        calibrator = fit_calibrator([0.2, 0.4, 0.9], [0, 0, 0])
        np.testing.assert_array_equal(calibrate(calibrator, [0.1, 0.5, 1.0]), [0.0, 0.0, 0.0])

    @pytest.mark.parametrize(
        ("scores", "labels", "match"),
        [
            pytest.param([], [], "empty", id="empty"),
            pytest.param([0.1, 0.2], [1], "pair up", id="lengths"),
            pytest.param([0.1, 0.2], [0, 2], "0 or 1", id="labels"),
            pytest.param([0.1, float("nan")], [0, 1], "NaN", id="nan-score"),
        ],
    )
    def test_bad_input_is_a_clear_error(self, scores, labels, match):
        with pytest.raises(MlopsError, match=match):
            fit_calibrator(scores, labels)


class TestCalibrate:
    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"kind": "platt"}, id="kind"),
            pytest.param({"version": 2}, id="version"),
            pytest.param({"kind": None}, id="missing-kind"),
        ],
    )
    def test_unknown_kind_or_version(self, change):
        calibrator = fit_calibrator([0.1, 0.9], [0, 1]) | change
        with pytest.raises(MlopsError, match="not one this airflow-mlops reads"):
            calibrate(calibrator, [0.5])

    def test_malformed_knots(self):
        calibrator = fit_calibrator([0.1, 0.9], [0, 1]) | {"y": [1.0, 0.0]}
        with pytest.raises(MlopsError, match="non-decreasing"):
            calibrate(calibrator, [0.5])

    def test_squashed_scores_are_fixed(self):
        p, y = _calibrated_model(40_000, seed=4)
        squashed = 0.45 + 0.1 * p  # same ranking, all within [0.45, 0.55]: badly miscalibrated
        fit, held = slice(0, 20_000), slice(20_000, None)
        raw = estimate_performance(squashed[held])
        assert abs(raw["accuracy"] - _accuracy(y[held], p[held])) > 0.1
        fixed = calibrate(fit_calibrator(squashed[fit], y[fit]), squashed[held])
        assert np.abs(fixed - p[held]).mean() < 0.03
        estimate = estimate_performance(fixed)
        # The realized accuracy of the calibrated decision rule (calibrated p >= 0.5).
        assert estimate["accuracy"] == pytest.approx(_accuracy(y[held], fixed), abs=0.03)
        assert estimate["roc_auc"] == pytest.approx(roc_auc(y[held], squashed[held]), abs=0.03)


class TestEstimatePerformance:
    def test_expected_confusion_matrix(self):
        result = estimate_performance([0.9, 0.6, 0.2, 0.4])
        assert result["rows"] == 4
        assert (result["tp"], result["fp"], result["fn"], result["tn"]) == pytest.approx((1.5, 0.5, 0.6, 1.4))
        assert result["accuracy"] == pytest.approx(2.9 / 4)
        assert result["precision"] == pytest.approx(0.75)
        assert result["recall"] == pytest.approx(1.5 / 2.1)

    def test_roc_auc_is_the_expected_pair_order(self):
        # Each row k adds (1 - p_k) false positives while the true positives climb from those ranked above it to
        # half its own p_k: the trapezoids sum to this pairwise formula.
        p = np.random.default_rng(5).random(300)
        order = np.argsort(-p)
        q = p[order]
        above = np.cumsum(q) - q
        expected = float(np.sum((1 - q) * (above + q / 2)) / (q.sum() * (1 - q).sum()))
        assert estimate_performance(p)["roc_auc"] == pytest.approx(expected, rel=1e-12)

    def test_threshold(self):
        result = estimate_performance([0.9, 0.6, 0.2, 0.4], threshold=0.3)
        assert result["tp"] == pytest.approx(1.9)
        assert result["fn"] == pytest.approx(0.2)

    def test_calibrated_synthetic_model_matches_realized(self):
        p, y = _calibrated_model(20_000, seed=6)
        estimate = estimate_performance(p)
        assert estimate["roc_auc"] == pytest.approx(roc_auc(y, p), abs=0.03)
        assert estimate["accuracy"] == pytest.approx(_accuracy(y, p), abs=0.03)
        predicted = p >= 0.5
        assert estimate["tp"] == pytest.approx(float(np.sum(y[predicted])), rel=0.05)

    def test_empty(self):
        result = estimate_performance([])
        assert result["rows"] == 0
        assert result["tp"] == result["fp"] == result["tn"] == result["fn"] == 0.0
        assert all(math.isnan(result[k]) for k in ("accuracy", "precision", "recall", "roc_auc"))

    def test_all_equal_probabilities(self):
        result = estimate_performance([0.3] * 10)
        assert result["rows"] == 10
        assert result["roc_auc"] == pytest.approx(0.5)
        assert result["accuracy"] == pytest.approx(0.7)
        assert math.isnan(result["precision"])  # nothing predicted positive
        assert result["recall"] == 0.0

    @pytest.mark.parametrize("value", [pytest.param(0.0, id="zeros"), pytest.param(1.0, id="ones")])
    def test_one_class_expected(self, value):
        result = estimate_performance([value] * 5)
        assert math.isnan(result["roc_auc"])
        assert result["accuracy"] == 1.0

    @pytest.mark.parametrize(
        ("probabilities", "threshold", "match"),
        [
            pytest.param([0.2, 1.2], 0.5, "outside", id="above-one"),
            pytest.param([0.2, float("nan")], 0.5, "NaN", id="nan"),
            pytest.param([0.2], 1.5, "threshold", id="threshold"),
        ],
    )
    def test_bad_input_is_a_clear_error(self, probabilities, threshold, match):
        with pytest.raises(MlopsError, match=match):
            estimate_performance(probabilities, threshold)


@pytest.fixture(scope="module")
def churn_held_out():
    """Scores of a LightGBM model trained on 8,000 churn rows, and the labels, on 8,000 held-out rows."""
    from airflow_mlops.ml.synthetic import FEATURES, make_churn
    from airflow_mlops.ml.train import train_model
    from airflow_mlops.ml.transform import ROW_ID

    frame = make_churn(16_000, seed=21)
    for column in ("contract", "payment_method", "region"):
        frame[column] = frame[column].astype("category").cat.codes.astype(float)
    frame[ROW_ID] = [f"{i:08x}" for i in range(len(frame))]
    frame["churned"] = frame["churned"].astype(float)
    train, held = frame.iloc[:8000], frame.iloc[8000:]
    booster = train_model(
        train,
        features=list(FEATURES),
        categorical=["contract", "payment_method", "region"],
        label="churned",
        task="classification",
        params={"num_leaves": 15, "learning_rate": 0.05},
        num_boost_round=150,
        seed=7,
    )
    scores = booster.predict(held[list(FEATURES)])
    return scores, held["churned"].to_numpy()


class TestRealModel:
    """Issue 21 (d): a LightGBM model on churn data, calibrated on one half of the held-out rows, estimated on the
    other half, against the realized figures there."""

    def test_estimate_matches_realized(self, churn_held_out):
        scores, labels = churn_held_out
        half = len(scores) // 2
        calibrator = json.loads(json.dumps(fit_calibrator(scores[:half], labels[:half])))
        probabilities = calibrate(calibrator, scores[half:])
        estimate = estimate_performance(probabilities)
        realized_auc = roc_auc(labels[half:], scores[half:])
        realized_accuracy = _accuracy(labels[half:], probabilities)
        print(
            f"\nchurn LightGBM: estimated ROC AUC {estimate['roc_auc']:.4f} vs realized {realized_auc:.4f}; "
            f"estimated accuracy {estimate['accuracy']:.4f} vs realized {realized_accuracy:.4f}; "
            f"{len(calibrator['x'])} knots"
        )
        assert estimate["rows"] == len(scores) - half
        assert estimate["roc_auc"] == pytest.approx(realized_auc, abs=0.03)
        assert estimate["accuracy"] == pytest.approx(realized_accuracy, abs=0.03)
