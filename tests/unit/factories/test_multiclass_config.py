"""``task: multiclass`` in the config: its gate metrics, and lint errors that name the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.loader import load_pipeline_config

BASE = {
    "pipeline": "segments",
    "source": {"uri": "data/{{ ds }}.csv"},
    "label": "segment",
    "task": "multiclass",
    "features": {"numeric": ["x1"], "categorical": ["region"]},
    "evaluation": {"metric": "roc_auc_macro", "threshold": 0.7, "slices": ["region"]},
}


def write(tmp_path, **top) -> str:
    path = tmp_path / "segments.yaml"
    path.write_text(yaml.safe_dump({**BASE, **top}))
    return str(path)


def errors(tmp_path, **top) -> str:
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(write(tmp_path, **top))
    return str(err.value)


class TestMulticlassConfig:
    @pytest.mark.parametrize("metric", ["roc_auc_macro", "roc_auc_weighted", "log_loss", "accuracy"])
    def test_its_gate_metrics(self, tmp_path, metric):
        threshold = 0.9 if metric == "log_loss" else 0.6
        config = load_pipeline_config(write(tmp_path, evaluation={"metric": metric, "threshold": threshold}))
        assert config.task == "multiclass" and config.evaluation.metric == metric

    @pytest.mark.parametrize(
        ("top", "expected"),
        [
            pytest.param(
                {"evaluation": {"metric": "roc_auc", "threshold": 0.7}},
                "evaluation.metric: does not apply to multiclass; use one of roc_auc_macro, roc_auc_weighted, log_loss, accuracy",
                id="binary-metric",
            ),
            pytest.param(
                {"evaluation": {"metric": "rmse", "threshold": 1.0}},
                "evaluation.metric: does not apply to multiclass",
                id="regression-metric",
            ),
            pytest.param(
                {"evaluation": {"metric": "roc_auc_weighted", "threshold": 1.5}},
                "evaluation.threshold: must be between 0 and 1 for roc_auc_weighted",
                id="auc-range",
            ),
            pytest.param(
                {"monitor": {"labels": {"uri": "labels/*.csv"}, "performance": {"estimated": "request"}}},
                "monitor.performance.estimated: estimated performance (CBPE) is for binary classification only, not multiclass",
                id="cbpe",
            ),
            pytest.param(
                {"monitor": {"labels": {"uri": "labels/*.csv"}, "performance": {}}},
                "monitor.performance.metric: realized multiclass performance judges accuracy or log_loss (means over rows), "
                "not roc_auc_macro",
                id="realized-metric",
            ),
            pytest.param(
                {"monitor": {"labels": {"uri": "l/*.csv"}, "performance": {"metric": "roc_auc_weighted"}}},
                "monitor.performance.metric: realized multiclass performance judges accuracy or log_loss",
                id="realized-auc",
            ),
        ],
    )
    def test_errors_name_the_key(self, tmp_path, top, expected):
        assert expected in errors(tmp_path, **top)

    def test_the_multiclass_metrics_do_not_apply_to_binary_classification(self, tmp_path):
        found = errors(tmp_path, task="classification", evaluation={"metric": "roc_auc_macro", "threshold": 0.7})
        assert "evaluation.metric: does not apply to classification; use one of roc_auc, log_loss, accuracy" in found

    @pytest.mark.parametrize("metric", ["accuracy", "log_loss"])
    def test_realized_performance_on_its_per_row_metrics(self, tmp_path, metric):
        monitor = {"labels": {"uri": "l/*.csv"}, "performance": {"metric": metric, "max_drop": 0.05}}
        assert load_pipeline_config(write(tmp_path, monitor=monitor)).monitor.performance_check.metric == metric

    def test_labels_alone_are_accepted(self, tmp_path):
        config = load_pipeline_config(write(tmp_path, monitor={"labels": {"uri": "labels/*.csv"}}))
        assert config.monitor.labels is not None

    def test_lint_names_the_file_and_the_key(self, tmp_path):
        path = write(tmp_path, monitor={"labels": {"uri": "l/*.csv"}, "performance": {"estimated": "request"}})
        done = subprocess.run(
            [sys.executable, "-m", "airflow_mlops.cli", "lint", path], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1
        assert f"{path}: monitor.performance.estimated: estimated performance (CBPE)" in done.stdout + done.stderr
