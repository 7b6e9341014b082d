"""Realized performance: bootstrap intervals by resample counts, references, drops."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airflow_mlops.ml import performance
from airflow_mlops.ml.evaluate import compute_metrics
from airflow_mlops.ml.performance import Figure, bootstrap, estimated_drop, realized_drop, reference_performance


def calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(n), 2)  # ties, as a model's scores have
    return (rng.random(n) < p).astype(float), p


class TestBootstrap:
    @pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "log_loss"])
    def test_the_figure_is_compute_metrics_and_inside_its_interval(self, metric):
        y, p = calibrated(800, seed=1)
        figure = bootstrap(metric, y, p, confidence=0.95)[""]
        assert figure.value == pytest.approx(compute_metrics("classification", y, p)[metric])
        assert figure.low < figure.value < figure.high and figure.rows == 800 and len(figure.replicates) == 300

    @pytest.mark.parametrize("metric", ["rmse", "mae"])
    def test_regression(self, metric):
        rng = np.random.default_rng(2)
        y = rng.normal(size=500)
        p = y + rng.normal(scale=0.3, size=500)
        figure = bootstrap(metric, y, p, confidence=0.9)[""]
        assert figure.value == pytest.approx(compute_metrics("regression", y, p)[metric])
        assert figure.low < figure.value < figure.high

    def test_a_replicate_is_the_metric_of_a_resample(self):
        """Counts per row are resampling with replacement: the first round equals the metric of the drawn rows."""
        y, p = calibrated(300, seed=3)
        figure = bootstrap("roc_auc", y, p, confidence=0.95, seed=7)[""]
        drawn = np.random.default_rng(7).integers(0, 300, 300)
        assert figure.replicates[0] == pytest.approx(compute_metrics("classification", y[drawn], p[drawn])["roc_auc"])

    def test_seeded_and_per_group(self):
        y, p = calibrated(600, seed=4)
        groups = np.repeat(["a", "b", "c"], 200)
        first = bootstrap("roc_auc", y, p, confidence=0.95, groups=groups)
        again = bootstrap("roc_auc", y, p, confidence=0.95, groups=groups)
        assert set(first) == {"", "a", "b", "c"} and first["b"].rows == 200
        assert all((first[k].low, first[k].high) == (again[k].low, again[k].high) for k in first)
        part = compute_metrics("classification", y[200:400], p[200:400])["roc_auc"]
        assert first["b"].value == pytest.approx(part)

    def test_above_the_row_cap_the_interval_is_that_of_all_rows(self, monkeypatch):
        """m-out-of-n: rounds draw fewer rows, the deviation scaled back; the width follows 1/sqrt(rows)."""
        y, p = calibrated(8000, seed=5)
        exact = bootstrap("roc_auc", y, p, confidence=0.95)[""]
        monkeypatch.setattr(performance, "BOOTSTRAP_MAX_ROWS", 1000)
        capped = bootstrap("roc_auc", y, p, confidence=0.95)[""]
        assert capped.value == exact.value and capped.low < capped.value < capped.high
        assert np.median(capped.replicates) == pytest.approx(exact.value, abs=0.01)
        assert (capped.high - capped.low) == pytest.approx(exact.high - exact.low, rel=0.35)

    def test_one_class_has_no_roc_auc(self):
        figure = bootstrap("roc_auc", np.ones(50), np.linspace(0, 1, 50), confidence=0.95)[""]
        assert np.isnan(figure.value) and np.isnan(figure.low)
        assert figure.to_dict()["value"] is None


class TestReference:
    def test_json_ready_with_slices_and_read_back_at_any_confidence(self):
        y, p = calibrated(400, seed=6)
        reference = reference_performance("classification", y, p, slices={"contract": np.repeat(["x", "y"], 200)})
        again = json.loads(json.dumps(reference))
        assert set(again["metrics"]) == {"roc_auc", "log_loss", "accuracy"}
        assert set(again["slices"]["contract"]) == {"x", "y"} and again["slices"]["contract"]["x"]["roc_auc"]["rows"] == 200
        wide = Figure.from_dict(again["metrics"]["roc_auc"], 0.99)
        narrow = Figure.from_dict(again["metrics"]["roc_auc"], 0.8)
        assert wide.low < narrow.low < wide.value < narrow.high < wide.high


class TestDrops:
    def test_a_drop_clears_only_when_its_whole_interval_is_above(self):
        y, p = calibrated(2000, seed=8)
        reference = bootstrap("roc_auc", y, p, confidence=0.95)[""]
        flipped = np.where(np.arange(2000) < 700, 1 - y, y)
        worse = bootstrap("roc_auc", flipped, p, confidence=0.95, seed=1)[""]
        same = bootstrap("roc_auc", *calibrated(2000, seed=9), confidence=0.95, seed=1)[""]
        drop = realized_drop("roc_auc", worse, reference, 0.95)
        assert drop.value > 0.2 and drop.clears(0.05) and not drop.clears(drop.high)
        assert not realized_drop("roc_auc", same, reference, 0.95).clears(0.05)

    def test_a_rising_loss_is_a_drop(self):
        y, p = calibrated(1000, seed=10)
        reference = bootstrap("log_loss", y, p, confidence=0.95)[""]
        worse = bootstrap("log_loss", 1 - y, p, confidence=0.95)[""]
        assert realized_drop("log_loss", worse, reference, 0.95).value > 0

    def test_an_estimated_drop_widens_with_fewer_rows(self):
        y, p = calibrated(1000, seed=11)
        reference = bootstrap("roc_auc", y, p, confidence=0.95)[""]
        few, many = (estimated_drop("roc_auc", reference.value - 0.1, n, reference, 0.95) for n in (100, 100_000))
        assert few.value == pytest.approx(0.1) and few.low < many.low < 0.1 < many.high < few.high
