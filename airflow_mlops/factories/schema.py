"""The pipeline config: one YAML file per pipeline, validated by these models (unknown keys are errors)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Scalar = int | float | str | bool
HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "log_loss": False, "rmse": False, "mae": False}
TASK_METRICS = {"classification": ("roc_auc", "log_loss", "accuracy"), "regression": ("rmse", "mae")}
RESERVED_MODEL_PARAMS = ("seed", "objective", "deterministic")


Loc = tuple[str | int, ...]


def issue(loc: Loc, message: str) -> PydanticCustomError:
    """A cross-field error; the loader appends ``loc`` to the model's own path."""
    return issues([(loc, message)])


def issues(found: list[tuple[Loc, str]]) -> PydanticCustomError:
    return PydanticCustomError("config_issue", "; ".join(m for _, m in found), {"issues": found})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArtifactsConfig(Strict):
    root: str | None = Field(None, description="Artifact root: file:// URI, local path or s3://bucket/prefix. Default: $AIRFLOW_HOME/mlops.")
    aws_conn_id: str = Field("aws_default", description="Airflow AWS connection for s3:// roots.")


class SourceConfig(Strict):
    uri: str = Field(..., min_length=1, description="Local path or glob (relative to the YAML file) or s3://bucket/prefix; Jinja allowed, e.g. {{ ds }}.")
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="File format; auto picks it from the extension.")
    aws_conn_id: str = Field("aws_default", description="Airflow AWS connection for s3:// sources.")


class FeaturesConfig(Strict):
    numeric: list[str] = Field(default_factory=list, description="Numeric feature columns (standardized, mean-imputed).")
    categorical: list[str] = Field(default_factory=list, description="Categorical feature columns (vocabulary + out-of-vocabulary bucket).")


class ValidationConfig(Strict):
    min_rows: PositiveInt = Field(50, description="Fewer rows than this is an anomaly.")
    max_null_ratio_increase: Fraction = Field(0.05, description="Allowed absolute increase of a column's null ratio over the schema's.")
    max_out_of_range_share: Fraction = Field(0.01, description="Allowed share of numeric values outside the schema's [min, max].")
    max_unseen_category_share: Fraction = Field(0.01, description="Allowed share of categorical values not in the schema's domain.")


class PreprocessConfig(Strict):
    eval_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of rows in the eval split (split by row content).")
    runner: Literal["DirectRunner", "PrismRunner", "FlinkRunner", "SparkRunner", "DataflowRunner"] = Field(
        "DirectRunner", description="Apache Beam runner."
    )
    pipeline_options: dict[str, Scalar] = Field(default_factory=dict, description="Beam pipeline options, passed as --key=value.")
    histogram_bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric column in the reference profile.")


class ModelConfig(Strict):
    type: Literal["lightgbm"] = Field("lightgbm", description="Model family.")
    params: dict[str, Scalar] = Field(default_factory=dict, description="LightGBM parameters (seed, objective, deterministic are set by the pipeline).")
    num_boost_round: int = Field(200, ge=1, le=100_000, description="Boosting rounds.")
    early_stopping_rounds: PositiveInt | None = Field(None, description="Stop when a held-out tenth of the training rows stops improving.")
    seed: int = Field(42, description="Random seed; the same inputs and seed give a byte-identical model.")

    @model_validator(mode="after")
    def _reserved(self) -> ModelConfig:
        for key in self.params:
            if key in RESERVED_MODEL_PARAMS:
                raise issue(("params", key), f"'{key}' is set by the pipeline; use model.seed or task instead")
        return self


class KubernetesConfig(Strict):
    image: str = Field(..., min_length=1, description="Training image (see docker/).")
    namespace: str = Field("default", description="Namespace of the training pod.")
    gpus: int = Field(1, ge=0, le=16, description="nvidia.com/gpu count.")
    cpu: str = Field("4", description="CPU request.")
    memory: str = Field("16Gi", description="Memory request.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector labels.")
    service_account: str | None = Field(None, description="Service account of the pod.")


class ComputeConfig(Strict):
    target: Literal["local", "kubernetes"] = Field("local", description="Where training runs.")
    kubernetes: KubernetesConfig | None = Field(None, description="Pod settings; required when target is kubernetes.")

    @model_validator(mode="after")
    def _needs_pod(self) -> ComputeConfig:
        if self.target == "kubernetes" and self.kubernetes is None:
            raise issue(("kubernetes",), "required when compute.target is 'kubernetes' (at least an image)")
        return self


class FairnessConfig(Strict):
    column: str = Field(..., description="Categorical feature whose slices are compared.")
    max_gap: Fraction = Field(..., description="Largest allowed gap of the gate metric between slices.")


class EvaluationConfig(Strict):
    metric: Literal["roc_auc", "log_loss", "accuracy", "rmse", "mae"] = Field(..., description="Gate metric.")
    threshold: float = Field(..., description="Minimum for roc_auc/accuracy; maximum for log_loss/rmse/mae.")
    must_beat_production_by: float = Field(0.0, ge=0.0, description="Required improvement over production; 0 means not worse.")
    slices: list[str] = Field(default_factory=list, description="Categorical features to report the metric for, per value.")
    fairness: FairnessConfig | None = Field(None, description="Limit on the metric gap between slices of one column.")

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]

    @model_validator(mode="after")
    def _threshold_range(self) -> EvaluationConfig:
        if self.metric in ("roc_auc", "accuracy") and not 0.0 <= self.threshold <= 1.0:
            raise issue(("threshold",), f"must be between 0 and 1 for {self.metric}")
        return self


class CanaryAnalysisConfig(Strict):
    max_error_rate_increase: Fraction = Field(0.01, description="Canary error rate may exceed production's by at most this.")
    max_p95_latency_ratio: float = Field(1.5, ge=1.0, description="Canary p95 latency / production p95 latency limit.")
    max_prediction_divergence: Fraction = Field(0.2, description="Limit on the divergence of prediction distributions.")
    min_label_quality_ratio: Fraction = Field(0.98, description="Canary label quality / production label quality minimum, where feedback exists.")


class CanaryConfig(Strict):
    target: Literal["local", "kserve"] = Field("local", description="Where the model is served.")
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field([10, 50], min_length=1, description="Canary traffic percent at each step.")
    bake_minutes: float = Field(10, gt=0, description="Longest wait at each step before it is judged.")
    min_requests: PositiveInt = Field(200, description="Canary requests that end a step's wait (else the bake time does).")
    check_seconds: float = Field(10.0, gt=0, le=3600, description="Time between checks of the prediction log while a step bakes.")
    analysis: CanaryAnalysisConfig = Field(default_factory=CanaryAnalysisConfig, description="Promotion criteria.")

    @model_validator(mode="after")
    def _increasing(self) -> CanaryConfig:
        for i in range(1, len(self.steps)):
            if self.steps[i] <= self.steps[i - 1]:
                raise issue(("steps", i), f"steps must increase; {self.steps[i]} follows {self.steps[i - 1]}")
        return self


class DriftConfig(Strict):
    method: Literal["psi", "ks"] = Field("psi", description="Per-column drift score against the reference profile: psi, or ks (approximate for discrete columns).")
    column_threshold: Fraction = Field(0.2, description="A column drifts when its score passes this.")
    share_threshold: Fraction = Field(0.3, description="The data drifts when this share of columns drifts.")


class MonitorConfig(Strict):
    schedule: str = Field("@hourly", description="Schedule of the monitor DAG.")
    min_rows: PositiveInt = Field(500, description="New logged predictions needed before a drift check.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift thresholds.")
    cooldown_hours: float = Field(24, ge=0, description="Minimum time between two retrain requests.")
    check_seconds: float = Field(30.0, gt=0, le=3600, description="Time between counts of new logged predictions.")


class PipelineConfig(Strict):
    pipeline: str = Field(..., pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Pipeline name: lowercase letters, digits, underscores.")
    description: str = Field("", description="Shown as the DAG description.")
    owner: str = Field("mlops", description="DAG owner.")
    schedule: str | None = Field("@daily", description="Cron expression or preset of the training DAG; null for manual runs only.")
    start_date: dt.date = Field(dt.date(2026, 11, 1), description="First logical date.")
    catchup: bool = Field(False, description="Run missed intervals.")
    tags: list[str] = Field(default_factory=list, description="Extra DAG tags.")
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig, description="Where artifacts are stored.")
    source: SourceConfig = Field(..., description="Where the training data comes from.")
    label: str = Field(..., min_length=1, description="Label column.")
    task: Literal["classification", "regression"] = Field(..., description="Binary classification or regression.")
    features: FeaturesConfig = Field(..., description="Feature columns by kind.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Data validation thresholds.")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig, description="Beam preprocessing settings.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model and its parameters.")
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="Where training runs.")
    evaluation: EvaluationConfig | None = Field(None, description="The evaluation gate.")
    canary: CanaryConfig | None = Field(None, description="Canary deployment; needs an evaluation gate.")
    monitor: MonitorConfig | None = Field(None, description="Drift monitoring.")

    _config_path: str = PrivateAttr("<memory>")

    @property
    def config_path(self) -> str:
        return self._config_path

    @property
    def feature_columns(self) -> list[str]:
        return self.features.numeric + self.features.categorical

    @property
    def training_dag_id(self) -> str:
        return f"mlops_{self.pipeline}_training"

    @property
    def monitor_dag_id(self) -> str:
        return f"mlops_{self.pipeline}_monitor"

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineConfig:
        found: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        for kind in ("numeric", "categorical"):
            for i, col in enumerate(getattr(self.features, kind)):
                if col in seen:
                    found.append((("features", kind, i), f"duplicate feature {col!r}"))
                seen.add(col)
        if not seen:
            found.append((("features",), "declare at least one numeric or categorical feature"))
        if self.label in seen:
            found.append((("label",), f"label {self.label!r} is also listed as a feature"))
        if self.evaluation is not None:
            if self.evaluation.metric not in TASK_METRICS[self.task]:
                found.append((("evaluation", "metric"), f"{self.evaluation.metric} does not apply to {self.task}; use one of {TASK_METRICS[self.task]}"))
            categorical = set(self.features.categorical)
            for i, col in enumerate(self.evaluation.slices):
                if col not in categorical:
                    found.append((("evaluation", "slices", i), f"{col!r} is not a categorical feature"))
            if self.evaluation.fairness and self.evaluation.fairness.column not in categorical:
                found.append((("evaluation", "fairness", "column"), f"{self.evaluation.fairness.column!r} is not a categorical feature"))
        if self.canary is not None and self.evaluation is None:
            found.append((("canary",), "a deploy section needs an evaluation gate: add an 'evaluation' section"))
        if found:
            raise issues(found)
        return self
