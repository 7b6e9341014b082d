"""DAG parse time: the YAML-built churn DAGs (training + monitor) vs the same DAGs written by hand.

Runs `airflow dags report` (the DAG processor's own timing) several times over each folder (one
process each, so neither file inherits the other's imports) and prints each file's median parse
duration and the ratio against the baseline.
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


def main(repeats: int = 5) -> None:
    """Each DAG folder gets its own `airflow dags report` process, so each file pays for its own imports."""
    root = Path(tempfile.mkdtemp(prefix="mlops-parse-"))
    shutil.copytree(REPO / "dags", root / "yaml_built")
    (root / "hand_written").mkdir()
    (root / "hand_written" / "hand_written.py").write_text(HAND_WRITTEN)
    airflow = str(Path(sys.executable).parent / "airflow")
    home = {"AIRFLOW_HOME": str(root / "airflow-home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    subprocess.run(
        [airflow, "db", "migrate"], env={**os.environ, **home}, capture_output=True, check=True
    )  # `dags report` needs it
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        for folder in ("yaml_built", "hand_written"):
            env = {**os.environ, **home, "AIRFLOW__CORE__DAGS_FOLDER": str(root / folder)}
            out = subprocess.run(
                [airflow, "dags", "report", "-o", "json"], env=env, capture_output=True, text=True, check=True
            ).stdout
            for row in json.loads(out.strip().splitlines()[-1]):
                samples.setdefault(Path(row["file"]).name, []).append(_seconds(row["duration"]))
    base = statistics.median(samples["hand_written.py"])
    print(f"{'file':<20}{'median parse (s)':>18}{'ratio vs hand-written':>24}   ({repeats} runs of `airflow dags report` each)")
    for name, values in sorted(samples.items()):
        median = statistics.median(values)
        print(f"{name:<20}{median:>18.4f}{median / base:>24.2f}")
    shutil.rmtree(root)


def _seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
