"""``monitor.labels`` and ``monitor.performance``: defaults, errors named by key path, and the monitor DAG they build."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from airflow_mlops.config.monitoring import PerformanceConfig
from airflow_mlops.config.operations import EVENTS
from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.loader import load_pipeline_config

BASE = {
    "pipeline": "churn",
    "source": {"uri": "data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract"]},
    "evaluation": {"metric": "accuracy", "threshold": 0.6, "slices": ["contract"]},
    "monitor": {"labels": {"uri": "labels/*.csv"}},
}


def write(tmp_path, **changes):
    config = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def errors(tmp_path, **changes) -> str:
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(write(tmp_path, **changes))
    return str(err.value)


class TestPerformanceConfig:
    def test_labels_turn_performance_on_with_the_defaults(self, tmp_path):
        config = load_pipeline_config(write(tmp_path))
        labels, performance = config.monitor.labels, config.monitor.performance_check
        assert labels.uri == str(tmp_path / "labels" / "*.csv"), "relative to the YAML file, like the source"
        assert (labels.id_column, labels.label_column, labels.format) == ("id", None, "auto")
        assert performance == PerformanceConfig()
        assert (performance.max_drop, performance.min_labels, performance.confidence) == (0.05, 200, 0.95)
        assert (performance.window_hours, performance.estimated, performance.metric) == (24, "warn", None)
        assert "performance_drop" in EVENTS

    def test_no_labels_and_no_performance_section_judge_no_performance(self, tmp_path):
        assert load_pipeline_config(write(tmp_path, monitor__labels=None)).monitor.performance_check is None
        config = load_pipeline_config(write(tmp_path, monitor__labels=None, monitor__performance={"min_labels": 50}))
        assert config.monitor.performance_check.min_labels == 50, "the /feedback labels alone"

    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            pytest.param(
                {"monitor__performance": {"metric": "rmse"}},
                "monitor.performance.metric: does not apply to classification",
                id="metric-of-another-task",
            ),
            pytest.param(
                {"monitor__performance": {"max_drop": 1.5}},
                "monitor.performance.max_drop: must be below 1 for accuracy",
                id="drop-beyond-the-metric",
            ),
            pytest.param(
                {"monitor__performance": {"estimated": "request", "metric": "log_loss"}},
                "monitor.performance.estimated: estimation gives roc_auc and accuracy, not log_loss",
                id="estimated-metric",
            ),
            pytest.param(
                {"task": "regression", "evaluation": None, "monitor__performance": {"estimated": "request"}},
                "monitor.performance.estimated: estimated performance needs class probabilities",
                id="estimated-regression",
            ),
            pytest.param(
                {"monitor__labels": {"uri": "l.csv", "id_column": "churned"}},
                "monitor.labels.label_column: names the same column as monitor.labels.id_column",
                id="id-is-the-label",
            ),
            pytest.param({"monitor__labels": {"format": "csv"}}, "monitor.labels.uri: required key is missing", id="no-uri"),
            pytest.param(
                {"monitor__labels": {"uri": "l.csv", "sql": "select 1", "conn_id": "wh"}},
                "monitor.labels.uri: give exactly one of uri (label files) and sql (a query)",
                id="uri-and-sql",
            ),
            pytest.param({"monitor__labels": {"sql": "select 1"}}, "monitor.labels.conn_id: required with sql", id="sql-no-conn"),
            pytest.param(
                {"monitor__labels": {"uri": "l.csv", "id_col": "x"}},
                "monitor.labels.id_col: unknown key (did you mean 'id_column'?)",
                id="misspelt-key",
            ),
            pytest.param(
                {"monitor__performance": {"estimated": "maybe"}}, "monitor.performance.estimated: Input should be", id="bad-mode"
            ),
            pytest.param(
                {"monitor__performance": {"confidence": 1.0}},
                "monitor.performance.confidence: Input should be less than 1",
                id="conf",
            ),
        ],
    )
    def test_errors_name_the_key(self, tmp_path, changes, expected):
        assert expected in errors(tmp_path, **changes)

    def test_every_error_at_once(self, tmp_path):
        message = errors(tmp_path, monitor__performance={"metric": "rmse", "min_labels": 0})
        assert "monitor.performance.min_labels" in message and "monitor.performance.metric" in message


class TestMonitorDag:
    def test_labels_ingest_then_the_performance_check_and_one_request_deciding_on_both(self, tmp_path):
        from airflow_mlops.factories import build_monitor_dag

        query = {"sql": "select id, churned from labels where day = '{{ ds }}'", "conn_id": "warehouse"}
        ingest = build_monitor_dag(load_pipeline_config(write(tmp_path, monitor__labels=query))).get_task("ingest_labels")
        assert (ingest.labels_sql, ingest.labels_conn_id, ingest.labels_uri) == (query["sql"], "warehouse", None)

        path = write(tmp_path, operations={"notify": [{"kind": "webhook", "on": ["performance_drop", "retrain_request"]}]})
        dag = build_monitor_dag(load_pipeline_config(path))
        assert {t.task_id for t in dag.tasks} == {
            "wait_for_predictions",
            "drift_check",
            "drift_report",
            "compact_log",
            "ingest_labels",
            "performance_check",
            "branch",
            "request_retrain",
            "no_retrain",
        }
        ingest, check = dag.get_task("ingest_labels"), dag.get_task("performance_check")
        assert ingest.upstream_task_ids == set(), "labels are read whether or not new predictions came"
        assert (ingest.labels_uri, ingest.label_column, ingest.slices) == (
            str(tmp_path / "labels/*.csv"),
            "churned",
            ["contract"],
        )
        assert check.upstream_task_ids == {"ingest_labels"} and check.metric == "accuracy", "the gate's metric"
        assert [n.event for n in check.on_success_callback] == ["performance_drop"]
        branch, request = dag.get_task("branch"), dag.get_task("request_retrain")
        assert {"drift_check", "performance_check"} <= branch.upstream_task_ids and branch.trigger_rule == "all_done"
        assert {"drift_check", "performance_check", "branch"} <= request.upstream_task_ids
        assert request.trigger_rule == "all_done" and dag.get_task("no_retrain").upstream_task_ids == {"branch"}

    def test_without_labels_the_drift_monitor_is_unchanged(self, tmp_path):
        from airflow_mlops.factories import build_monitor_dag

        dag = build_monitor_dag(load_pipeline_config(write(tmp_path, monitor__labels=None)))
        assert "no_drift" in dag.task_ids and "performance_check" not in dag.task_ids
        assert dag.get_task("request_retrain").trigger_rule == "all_success"

    def test_building_imports_nothing_heavy(self, tmp_path):
        path = write(tmp_path)
        code = (
            "import sys; from airflow_mlops.factories import build_monitor_dag, load_pipeline_config;"
            f"build_monitor_dag(load_pipeline_config({str(path)!r}));"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'pyarrow', 'numpy', 'lightgbm'});"
            "print(heavy); sys.exit(1 if heavy else 0)"
        )
        result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_a_source_following_an_asset_schedules_on_it_or_the_retrain_request(tmp_path):
    from airflow_mlops.factories import build_training_dag

    dag = build_training_dag(load_pipeline_config(write(tmp_path, source={"asset": "mlops_shared_features_dataset"})))
    names = {a.name for a in dag.timetable.asset_condition.objects}
    assert names == {"mlops_shared_features_dataset", "mlops_churn_retrain_request"}
    assert type(dag.timetable.asset_condition).__name__ == "AssetAny", "either event starts a run"
    cron = build_training_dag(load_pipeline_config(write(tmp_path, source={"asset": "x_table"}, schedule="@daily")))
    assert {a.name for a in cron.timetable.asset_condition.objects} == {"x_table", "mlops_churn_retrain_request"}
