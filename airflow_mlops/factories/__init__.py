"""Public API: ``load_pipeline_config``, the DAG builders and ``load_pipelines`` (every YAML of a folder).

The builders are imported on first use so that ``airflow-mlops lint`` can load configs without Airflow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_monitor_dag", "build_scoring_dag", "build_training_dag", "load_pipeline_config", "load_pipelines"]


def __getattr__(name: str) -> Any:
    if name == "load_pipeline_config":
        from airflow_mlops.factories.loader import load_pipeline_config

        return load_pipeline_config
    if name in ("build_training_dag", "build_monitor_dag"):
        from airflow_mlops.factories import builders

        return getattr(builders, name)
    if name == "build_scoring_dag":
        from airflow_mlops.factories.scoring import build_scoring_dag

        return build_scoring_dag
    if name == "load_pipelines":
        from airflow_mlops.factories.folder import load_pipelines

        return load_pipelines
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
