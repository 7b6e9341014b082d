"""DAG parse time: the YAML-built churn DAGs (training + monitor) vs the same DAGs written by hand, twice: with
EmptyOperator (Airflow alone), and with airflow-mlops's own operators and sensors (what the factory adds: the
YAML, the config and the builders); and one DAG file building 100 pipelines from a folder of YAMLs with
load_pipelines, per pipeline against the same baselines.

Runs `airflow dags report` (the DAG processor's own timing) several times over each folder (one
process each, so no file inherits another's imports) and prints each file's median parse
duration and the ratios against both baselines.
Usage: .venv/bin/python benchmarks/dag_parse.py [repeats]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

HAND_WRITTEN = '''"""Baseline: the same two DAGs (15 + 7 tasks, groups, schedules), written by hand with EmptyOperator."""
from datetime import datetime, timezone

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, TaskGroup

start = datetime(2026, 11, 1, tzinfo=timezone.utc)
schedule = AssetOrTimeSchedule(timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=[Asset("hand_written_retrain")])
with DAG("hand_written_training", schedule=schedule, start_date=start, catchup=False, max_active_runs=1):
    with TaskGroup("data"):
        acquire = EmptyOperator(task_id="acquire")
        validate = EmptyOperator(task_id="validate")
    with TaskGroup("features"):
        preprocess = EmptyOperator(task_id="preprocess")
    with TaskGroup("training"):
        train = EmptyOperator(task_id="train")
    with TaskGroup("evaluation"):
        evaluate = EmptyOperator(task_id="evaluate")
        gate = EmptyOperator(task_id="gate")
    with TaskGroup("registry"):
        bless = EmptyOperator(task_id="bless")
        reject = EmptyOperator(task_id="reject")
        close = EmptyOperator(task_id="close_request", trigger_rule="all_done")
    with TaskGroup("deploy"):
        canary = EmptyOperator(task_id="canary")
        analysis = EmptyOperator(task_id="analysis")
        decide = EmptyOperator(task_id="decide")
        promote = EmptyOperator(task_id="promote")
        rollback = EmptyOperator(task_id="rollback")
        watch = EmptyOperator(task_id="watch")
    acquire >> validate >> preprocess >> train >> evaluate >> gate >> [bless, reject] >> close
    bless >> canary >> analysis >> decide >> [promote, rollback]
    promote >> watch
    [watch, rollback] >> close

with DAG("hand_written_monitor", schedule="@hourly", start_date=start, catchup=False, max_active_runs=1):
    wait = EmptyOperator(task_id="wait_for_predictions")
    check = EmptyOperator(task_id="drift_check")
    branch = EmptyOperator(task_id="branch")
    wait >> check >> [branch, EmptyOperator(task_id="drift_report"), EmptyOperator(task_id="compact_log")]
    branch >> [EmptyOperator(task_id="request_retrain", outlets=[Asset("hand_written_retrain")]), EmptyOperator(task_id="no_drift")]
'''


HAND_WRITTEN_OURS = '''"""Baseline: the same two DAGs written by hand with airflow-mlops's own operators and sensors (no YAML, no factory)."""
from datetime import datetime, timezone

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, TaskGroup

from airflow_mlops.operators.data import DataAcquisitionOperator, DataValidationOperator
from airflow_mlops.operators.deployment import CanaryBranchOperator, CanaryDeployOperator, CanaryResolveOperator
from airflow_mlops.operators.evaluation import EvaluationGateOperator, ModelEvaluationOperator, ModelRegistrationOperator
from airflow_mlops.operators.monitoring import DriftBranchOperator, DriftCheckOperator, DriftReportOperator, LogCompactionOperator
from airflow_mlops.operators.preprocessing import BeamPreprocessOperator
from airflow_mlops.operators.retraining import RetrainRequestCloseOperator, RetrainRequestOperator
from airflow_mlops.operators.training import ModelTrainingOperator
from airflow_mlops.sensors.canary import CanaryAnalysisSensor, PromotionWatchSensor
from airflow_mlops.sensors.drift import DriftDataSensor

store = {"pipeline": "ours", "artifact_root": "file:///tmp/mlops"}
columns = {"label_column": "churned", "problem_type": "classification", "numeric": ["a", "b"], "categorical": ["c"]}
start = datetime(2026, 11, 1, tzinfo=timezone.utc)
schedule = AssetOrTimeSchedule(timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=[Asset("ours_retrain")])
with DAG("ours_training", schedule=schedule, start_date=start, catchup=False, max_active_runs=1):
    with TaskGroup("data"):
        acquire = DataAcquisitionOperator(task_id="acquire", source_uri="/data/{{ ds }}.csv", **store)
        validate = DataValidationOperator(task_id="validate", dataset_id=acquire.output["dataset_id"], **columns, **store)
    with TaskGroup("features"):
        preprocess = BeamPreprocessOperator(task_id="preprocess", dataset_id=acquire.output["dataset_id"], **columns, **store)
    with TaskGroup("training"):
        train = ModelTrainingOperator(task_id="train", features_id=preprocess.output["features_id"], **store)
    with TaskGroup("evaluation"):
        evaluate = ModelEvaluationOperator(
            task_id="evaluate", model_version=train.output["model_version"], features_id=preprocess.output["features_id"],
            metric="roc_auc", threshold=0.7, **store,
        )
        gate = EvaluationGateOperator(task_id="gate", result=evaluate.output, true_task_id="registry.bless", false_task_id="registry.reject")
    with TaskGroup("registry"):
        bless = ModelRegistrationOperator(task_id="bless", evaluation=evaluate.output, lineage={}, **store)
        reject = ModelRegistrationOperator(task_id="reject", evaluation=evaluate.output, lineage={}, **store)
        close = RetrainRequestCloseOperator(task_id="close_request", registration_task_ids=["registry.bless"], **store)
    with TaskGroup("deploy"):
        canary = CanaryDeployOperator(task_id="canary", model_version=train.output["model_version"], percent=20, **store)
        analysis = CanaryAnalysisSensor(task_id="analysis", steps=[20, 50], problem_type="classification", **store)
        decide = CanaryBranchOperator(task_id="decide", result=analysis.output, true_task_id="deploy.promote", false_task_id="deploy.rollback")
        promote = CanaryResolveOperator(task_id="promote", decision="promote", analysis=analysis.output, **store)
        rollback = CanaryResolveOperator(task_id="rollback", decision="rollback", analysis=analysis.output, **store)
        watch = PromotionWatchSensor(task_id="watch", promotion=promote.output, problem_type="classification", **store)
    validate >> preprocess
    gate >> [bless, reject] >> close
    bless >> canary >> analysis >> decide >> [promote, rollback]
    promote >> watch
    [watch, rollback] >> close

with DAG("ours_monitor", schedule="@hourly", start_date=start, catchup=False, max_active_runs=1):
    wait = DriftDataSensor(task_id="wait_for_predictions", **store)
    check = DriftCheckOperator(task_id="drift_check", **store)
    branch = DriftBranchOperator(task_id="branch", result=check.output, true_task_id="request_retrain", false_task_id="no_drift")
    wait >> check >> [branch, DriftReportOperator(task_id="drift_report", **store), LogCompactionOperator(task_id="compact_log", **store)]
    branch >> [RetrainRequestOperator(task_id="request_retrain", drift=check.output, **store), EmptyOperator(task_id="no_drift")]
'''


MANY_PIPELINES = '''"""Every pipeline in configs/ (load_pipelines): its training and monitor DAGs."""
from pathlib import Path

from airflow_mlops.factories import load_pipelines

globals().update(load_pipelines(Path(__file__).parent / "configs"))
'''
PIPELINES = 100


def write_many_pipelines(folder: Path, count: int = PIPELINES) -> None:
    """``folder``: a DAG file calling load_pipelines on ``configs/``, and ``count`` copies of the churn YAML there,
    each a pipeline of its own."""
    configs = folder / "configs"
    configs.mkdir(parents=True)
    churn = (REPO / "dags" / "configs" / "churn.yaml").read_text()
    for i in range(count):
        (configs / f"churn_{i:03d}.yaml").write_text(churn.replace("pipeline: churn", f"pipeline: churn_{i:03d}", 1))
    (folder / "pipelines.py").write_text(MANY_PIPELINES)


def main(repeats: int = 5) -> None:
    """Each DAG folder gets its own `airflow dags report` process, so each file pays for its own imports."""
    root = Path(tempfile.mkdtemp(prefix="mlops-parse-"))
    shutil.copytree(REPO / "dags", root / "yaml_built")
    (root / "hand_written").mkdir()
    (root / "hand_written" / "hand_written.py").write_text(HAND_WRITTEN)
    (root / "hand_written_ours").mkdir()
    (root / "hand_written_ours" / "hand_written_ours.py").write_text(HAND_WRITTEN_OURS)
    write_many_pipelines(root / "many_pipelines")
    airflow = str(Path(sys.executable).parent / "airflow")
    home = {"AIRFLOW_HOME": str(root / "airflow-home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    subprocess.run(
        [airflow, "db", "migrate"], env={**os.environ, **home}, capture_output=True, check=True
    )  # `dags report` needs it
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        for folder in ("yaml_built", "hand_written", "hand_written_ours", "many_pipelines"):
            env = {**os.environ, **home, "AIRFLOW__CORE__DAGS_FOLDER": str(root / folder)}
            out = subprocess.run(
                [airflow, "dags", "report", "-o", "json"], env=env, capture_output=True, text=True, check=True
            ).stdout
            for row in json.loads(out.strip().splitlines()[-1]):
                samples.setdefault(Path(row["file"]).name, []).append(_seconds(row["duration"]))
    base, ours = statistics.median(samples["hand_written.py"]), statistics.median(samples["hand_written_ours.py"])
    print(
        f"{'file':<24}{'median parse (s)':>18}{'vs EmptyOperator DAGs':>24}{'vs our operators by hand':>27}"
        f"   ({repeats} runs of `airflow dags report` each)"
    )
    many = statistics.median(samples.pop("pipelines.py"))
    for name, values in sorted(samples.items()):
        median = statistics.median(values)
        print(f"{name:<24}{median:>18.4f}{median / base:>24.2f}{median / ours:>27.2f}")
    per = many / PIPELINES
    print(f"{'pipelines.py':<24}{many:>18.4f}   (load_pipelines: {PIPELINES} YAMLs, {2 * PIPELINES} DAGs in one file)")
    print(f"{'  per pipeline':<24}{per:>18.4f}{per / base:>24.2f}{per / ours:>27.2f}")
    churn = statistics.median(samples["churn.py"])
    print(f"per pipeline vs churn.py (one pipeline, the same YAML, in its own DAG file): {per / churn:.2f}x")
    shutil.rmtree(root)


def _seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
