"""The churn pipeline, built from its YAML: a training DAG and a drift monitor DAG."""

from pathlib import Path

from airflow_mlops.factories import build_monitor_dag, build_training_dag, load_pipeline_config

config = load_pipeline_config(Path(__file__).parent / "configs" / "churn.yaml")
training = build_training_dag(config)
monitor = build_monitor_dag(config)
