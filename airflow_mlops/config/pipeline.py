"""The whole pipeline file: ``artifacts``, the top-level keys, every section, and the rules that span sections."""

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, PrivateAttr, field_validator, model_validator

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID, NO_INPUT, Issue, Strict, check_schedule, config_issues, dag_id
from airflow_mlops.config.data import FeaturesConfig, PreprocessConfig, SourceConfig, ValidationConfig
from airflow_mlops.config.deployment import CanaryConfig
from airflow_mlops.config.evaluation import EvaluationConfig
from airflow_mlops.config.monitoring import MonitorConfig
from airflow_mlops.config.operations import OperationsConfig
from airflow_mlops.config.scoring import ScoringConfig
from airflow_mlops.config.training import ComputeConfig, ModelConfig
from airflow_mlops.ml.metrics import (
    DEFAULT_METRIC,
    HIGHER_IS_BETTER,
    MULTICLASS_REALIZED_METRICS,
    TASK_METRICS,
    UNIT_INTERVAL_METRICS,
)


class ArtifactsConfig(Strict):
    root: str | None = Field(
        None,
        description="Artifact root: file:// URI, local path (made absolute) or s3://bucket/prefix. Null: file://$AIRFLOW_HOME/mlops "
        "(unless conn_id names the root).",
    )
    aws_conn_id: str = Field(DEFAULT_AWS_CONN_ID, description="Airflow AWS connection for s3:// roots.")
    conn_id: str | None = Field(
        None,
        description="Instead of root: an Airflow connection of type mlops_artifacts holding the root (and its AWS connection).",
    )

    @model_validator(mode="after")
    def _one_place(self) -> Self:
        if self.conn_id is not None and self.root is not None:
            raise config_issues([Issue(("conn_id",), "give root or conn_id, not both", self.conn_id)])
        return self

    @property
    def location(self) -> str:
        """The root, or the connection that holds it, as docs and messages show it."""
        return self.root or f"the root of connection {self.conn_id!r}"


class PipelineConfig(Strict):
    pipeline: str = Field(
        ..., pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Pipeline name: lowercase letters, digits, underscores."
    )
    description: str = Field("", description="Shown as the DAG description.")
    owner: str = Field("mlops", description="DAG owner.")
    schedule: str | None = Field(
        "@daily", description="Cron expression or preset of the training DAG; null for manual runs only."
    )
    start_date: dt.date = Field(dt.date(2026, 11, 1), description="First logical date (a date or an ISO date string).")
    catchup: bool = Field(False, description="Run missed intervals.")
    tags: list[str] = Field(default_factory=list, description="Extra DAG tags.")
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig, description="Where artifacts are stored.")
    source: SourceConfig = Field(..., description="Where the training data comes from.")
    label: str = Field(..., min_length=1, description="Label column.")
    task: Literal["classification", "multiclass", "regression"] = Field(
        ...,
        description="classification (binary), multiclass (one of the label's classes, as the accepted schema records "
        "them) or regression.",
    )
    features: FeaturesConfig = Field(..., description="Feature columns by kind.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Data validation thresholds.")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig, description="Beam preprocessing settings.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model and its parameters.")
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="Where training runs.")
    evaluation: EvaluationConfig | None = Field(None, description="The evaluation gate.")
    canary: CanaryConfig | None = Field(None, description="Canary deployment; needs an evaluation gate.")
    monitor: MonitorConfig | None = Field(None, description="Drift monitoring.")
    scoring: ScoringConfig | None = Field(None, description="Batch scoring of a table with the production model.")
    operations: OperationsConfig = Field(
        default_factory=OperationsConfig, description="Retries, timeouts and notifications, per pipeline and per stage."
    )

    _config_path: str = PrivateAttr("<memory>")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return check_schedule(value)

    @property
    def config_path(self) -> str:
        """The file this config was loaded from, as the caller named it (``<memory>`` when built in code)."""
        return self._config_path

    @property
    def feature_columns(self) -> list[str]:
        return self.features.numeric + self.features.categorical

    @property
    def training_dag_id(self) -> str:
        return dag_id(self.pipeline, "training")

    @property
    def monitor_dag_id(self) -> str:
        return dag_id(self.pipeline, "monitor")

    @property
    def scoring_dag_id(self) -> str:
        return dag_id(self.pipeline, "scoring")

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        found = cross_field_issues(self.model_dump())
        if found:
            raise config_issues(found)
        return self


def cross_field_issues(data: Mapping[str, Any]) -> list[Issue]:
    """Rules that span sections, checked on a plain mapping.

    Values of the wrong type are skipped (their own error is reported elsewhere), so the loader can run this on
    the raw YAML when field validation failed and still report every problem at once.
    """
    found: list[Issue] = []
    features = _mapping(data.get("features"))
    seen: set[str] = set()
    for kind in ("numeric", "categorical"):
        for i, col in enumerate(_strings(features.get(kind))):
            if col is None:
                continue
            if col in seen:
                found.append(Issue(("features", kind, i), "duplicate feature (each column may be listed once)", col))
            seen.add(col)
    if not seen and not any(features.get(kind) for kind in ("numeric", "categorical")):
        found.append(Issue(("features",), "declare at least one numeric or categorical feature"))
    label = data.get("label")
    if isinstance(label, str) and label in seen:
        found.append(Issue(("label",), "the label is also listed as a feature", label))

    evaluation = data.get("evaluation")
    tuning = _mapping(_mapping(data.get("model")).get("tuning"))
    performance = _mapping(_mapping(data.get("monitor")).get("performance"))
    for loc, metric in (
        (("evaluation", "metric"), _mapping(evaluation).get("metric")),
        (("model", "tuning", "metric"), tuning.get("metric")),
        (("monitor", "performance", "metric"), performance.get("metric")),
    ):
        task = data.get("task")
        if task in TASK_METRICS and metric in HIGHER_IS_BETTER and metric not in TASK_METRICS[task]:
            found.append(Issue(loc, f"does not apply to {task}; use one of {', '.join(TASK_METRICS[task])}", metric))
    if isinstance(evaluation, Mapping):
        categorical = {c for c in _strings(features.get("categorical")) if c is not None}
        for i, col in enumerate(_strings(evaluation.get("slices"))):
            if col is not None and col not in categorical:
                found.append(Issue(("evaluation", "slices", i), _not_categorical(categorical), col))
        column = _mapping(evaluation.get("fairness")).get("column")
        if isinstance(column, str) and column not in categorical:
            found.append(Issue(("evaluation", "fairness", "column"), _not_categorical(categorical), column))
    found += _monitor_issues(data, label)
    for i, col in enumerate(_strings(_mapping(data.get("scoring")).get("id_columns"))):
        if col is not None and col in seen:
            found.append(Issue(("scoring", "id_columns", i), "is a feature (features are scored, not copied)", col))
    artifacts = _mapping(data.get("artifacts"))
    root = artifacts.get("root")  # a root in a connection (conn_id) is checked when the task opens it
    local_root = not artifacts.get("conn_id") and not (isinstance(root, str) and root.startswith("s3://"))
    compute = _mapping(data.get("compute"))
    if compute.get("target") == "kubernetes" and local_root and not _mapping(compute.get("kubernetes")).get("allow_local_root"):
        message = (
            "compute.target 'kubernetes' needs an s3:// artifact root: the training pod cannot read a local directory "
            "(or set compute.kubernetes.allow_local_root where the pod mounts the same path)"
        )
        found.append(Issue(("artifacts", "root"), message, NO_INPUT if root is None else root))
    if _mapping(data.get("canary")).get("target") == "kserve" and local_root:
        message = "canary.target 'kserve' needs an s3:// artifact root: the server pods cannot read a local directory"
        found.append(Issue(("artifacts", "root"), message, NO_INPUT if root is None else root))
    if data.get("canary") is not None and evaluation is None:
        found.append(Issue(("canary",), "a deploy section needs an evaluation gate: add an 'evaluation' section"))
    schedule = data.get("schedule")
    if data.get("monitor") is not None and schedule in ("@once", "@continuous"):
        message = "cannot be combined with a monitor section (the training DAG runs on a cron OR on retrain requests); use a cron, a preset or null"
        found.append(Issue(("schedule",), message, schedule))
    return found


ESTIMATED_METRICS = ("roc_auc", "accuracy")
"""The metrics confidence-based estimation (``monitor.performance.estimated``) gives for a binary classifier."""


def _monitor_issues(data: Mapping[str, Any], label: Any) -> list[Issue]:
    """``monitor.performance`` against the task and the gate's metric; ``monitor.labels`` columns told apart."""
    found: list[Issue] = []
    monitor = _mapping(data.get("monitor"))
    performance, labels = _mapping(monitor.get("performance")), _mapping(monitor.get("labels"))
    task = data.get("task")
    metric = performance.get("metric") or _mapping(data.get("evaluation")).get("metric") or DEFAULT_METRIC.get(task)
    max_drop = performance.get("max_drop")
    if metric in UNIT_INTERVAL_METRICS and isinstance(max_drop, int | float) and max_drop >= 1:
        found.append(Issue(("monitor", "performance", "max_drop"), f"must be below 1 for {metric} (a value in [0, 1])", max_drop))
    if performance.get("estimated") == "request":
        where = ("monitor", "performance", "estimated")
        if task == "regression":
            message = "estimated performance needs class probabilities (binary classification); use off or warn for regression"
            found.append(Issue(where, message, "request"))
        elif task == "multiclass":
            message = "estimated performance (CBPE) is for binary classification only, not multiclass; use off"
            found.append(Issue(where, message, "request"))
        elif task == "classification" and metric in HIGHER_IS_BETTER and metric not in ESTIMATED_METRICS:
            message = f"estimation gives {' and '.join(ESTIMATED_METRICS)}, not {metric}; use off or warn, or another metric"
            found.append(Issue(where, message, "request"))
    if task == "multiclass" and monitor.get("performance") is not None and metric not in MULTICLASS_REALIZED_METRICS:
        message = (
            f"realized multiclass performance judges {' or '.join(MULTICLASS_REALIZED_METRICS)} (means over rows), not "
            f"{metric}: set monitor.performance.metric"
        )
        found.append(Issue(("monitor", "performance", "metric"), message, performance.get("metric") or NO_INPUT))
    columns = {
        "id_column": labels.get("id_column", "id"),
        "label_column": labels.get("label_column") or label,
        "event_time_column": labels.get("event_time_column"),
    }
    seen: dict[str, str] = {}
    for key, column in columns.items():
        if isinstance(column, str) and column in seen:
            message = f"names the same column as monitor.labels.{seen[column]}"
            found.append(Issue(("monitor", "labels", key), message, column))
        elif isinstance(column, str):
            seen[column] = key
    return found


def _not_categorical(categorical: set[str]) -> str:
    return f"not a categorical feature (declared: {', '.join(sorted(categorical)) or 'none'})"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> list[str | None]:
    """The items of a list, None for items that are not strings (positions are kept for key paths)."""
    if not isinstance(value, list):
        return []
    return [v if isinstance(v, str) else None for v in value]
