"""The pipeline config: one YAML file per pipeline, validated by these models (unknown keys are errors).

The fields' defaults are the package's only defaults: the loader merges them under every file, and the
operators and sensors, used on their own, default to them too (see :func:`field_default`).
Imported when DAG files are parsed and by ``airflow-mlops lint``: pydantic, the standard library and the
package's plain tables (metrics, reserved parameters) only.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from airflow_mlops.ml.metrics import HIGHER_IS_BETTER, TASK_METRICS, UNIT_INTERVAL_METRICS
from airflow_mlops.ml.train import RESERVED_PARAMS
from airflow_mlops.ml.tuning import MAX_TRIALS, SEARCHES, generate_trials, space_size

DEFAULT_AWS_CONN_ID = "aws_default"
SCHEDULE_PRESETS = (
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "@annually",
    "@midnight",
)
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#-]+$")


def dag_id(pipeline: str, kind: str) -> str:
    """``mlops_<pipeline>_<kind>``: the id of a pipeline's ``training`` or ``monitor`` DAG."""
    return f"mlops_{pipeline}_{kind}"


def field_default(model: type[BaseModel], name: str) -> Any:
    """The default of one config field, for operators and sensors used without a pipeline config."""
    return model.model_fields[name].get_default(call_default_factory=True)


Loc = tuple[str | int, ...]
NO_INPUT: Any = object()
"""Marks an issue without one offending value (its error line then has no ``Got ... instead``)."""


class Issue(NamedTuple):
    """One cross-field problem: where (relative to the model that found it), what, and the offending value."""

    loc: Loc
    message: str
    value: Any = NO_INPUT


def config_issues(found: list[Issue]) -> PydanticCustomError:
    """One pydantic error carrying several issues; the loader turns each into its own error line."""
    return PydanticCustomError("config_issue", "; ".join(i.message for i in found), {"issues": found})


def _scalar(value: Any) -> Any:
    """One clear error for a non-scalar parameter (instead of one per member of the union)."""
    if isinstance(value, bool | int | float | str):
        return value
    raise PydanticCustomError("scalar_type", "Input should be a number, a string or a boolean")


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Scalar = Annotated[int | float | str | bool, BeforeValidator(_scalar)]
Percent = Annotated[int, Field(ge=1, le=100)]


def check_schedule(value: str | None) -> str | None:
    """A preset (``@daily``) or a cron expression of 5 to 7 fields; Airflow checks the fields' values when it parses the DAG."""
    if value is None:
        return None
    if value.startswith("@"):
        if value not in SCHEDULE_PRESETS:
            raise PydanticCustomError(
                "schedule",
                "unknown schedule preset; use one of {presets}, a cron expression or null",
                {"presets": ", ".join(SCHEDULE_PRESETS)},
            )
        return value
    fields = value.split()
    if not 5 <= len(fields) <= 7 or not all(_CRON_FIELD.match(f) for f in fields):
        raise PydanticCustomError("schedule", "not a cron expression (minute hour day month weekday) or an @preset")
    return value


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors."""

    # The validation code is built on first validation, not at import: a DAG file parse whose config comes from the
    # parse-time cache (see factories/loader.py) never validates, so it never pays for it.
    model_config = ConfigDict(extra="forbid", defer_build=True)


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
    def _one_place(self) -> ArtifactsConfig:
        if self.conn_id is not None and self.root is not None:
            raise config_issues([Issue(("conn_id",), "give root or conn_id, not both", self.conn_id)])
        return self

    @property
    def location(self) -> str:
        """The root, or the connection that holds it, as docs and messages show it."""
        return self.root or f"the root of connection {self.conn_id!r}"


class SourceWaitConfig(Strict):
    timeout_minutes: float = Field(360, gt=0, description="Longest wait for the source; then the run fails naming the path.")
    poke_seconds: float = Field(60, gt=0, le=3600, description="Time between looks for the source.")


class SourceConfig(Strict):
    uri: str = Field(
        ...,
        min_length=1,
        description="Local path or glob (relative to the YAML file) or s3://bucket/prefix; Jinja allowed, e.g. {{ ds }}.",
    )
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="File format; auto picks it from the extension.")
    aws_conn_id: str = Field(DEFAULT_AWS_CONN_ID, description="Airflow AWS connection for s3:// sources.")
    wait: SourceWaitConfig | None = Field(
        None, description="Wait (deferrable) for late data before acquire: a file or object at the uri. None: no wait."
    )


class FeaturesConfig(Strict):
    numeric: list[str] = Field(default_factory=list, description="Numeric feature columns (standardized, mean-imputed).")
    categorical: list[str] = Field(
        default_factory=list, description="Categorical feature columns (vocabulary + out-of-vocabulary bucket)."
    )


class ValidationConfig(Strict):
    min_rows: PositiveInt = Field(50, description="Fewer rows than this is an anomaly.")
    max_null_ratio_increase: Fraction = Field(
        0.05, description="Allowed absolute increase of a column's null ratio over the schema's."
    )
    max_out_of_range_share: Fraction = Field(0.01, description="Allowed share of numeric values outside the schema's [min, max].")
    max_unseen_category_share: Fraction = Field(
        0.01, description="Allowed share of categorical values not in the schema's domain."
    )
    max_duplicate_share: Fraction = Field(0.01, description="Allowed share of rows that repeat an earlier row exactly.")
    max_infinite_share: Fraction = Field(0.0, description="Allowed share of +-inf values in a numeric column.")
    max_label_null_share: Fraction = Field(0.0, description="Allowed share of rows without a label.")
    max_label_shift: Fraction = Field(
        0.2,
        description="Allowed move of the label: a class share (classification) or a 10/50/90% quantile, "
        "in units of the schema's 10-90% spread (regression).",
    )
    max_label_association_drop: Fraction = Field(
        0.5,
        description="Allowed relative loss of a numeric feature's correlation with the label (shuffled rows); 1 turns "
        "the check off.",
    )
    min_volume_ratio: float = Field(
        0.5, ge=0.0, description="Fewer rows than this x the median of the last accepted datasets is an anomaly."
    )
    max_volume_ratio: float = Field(
        5.0, gt=0.0, description="More rows than this x the median of the last accepted datasets is an anomaly."
    )
    allow_extra_columns: bool = Field(False, description="Accept columns the schema does not have.")
    distribution_shift_threshold: float = Field(
        0.25, gt=0.0, description="PSI of a numeric column against the schema's quantiles above which it has shifted."
    )
    distribution_shift_action: Literal["off", "warn", "anomaly"] = Field(
        "warn", description="What a shifted numeric column is: nothing, a warning in the report, or an anomaly."
    )


class PreprocessConfig(Strict):
    eval_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of rows in the eval split (split by row content).")
    runner: Literal["DirectRunner", "PrismRunner", "FlinkRunner", "SparkRunner", "DataflowRunner"] = Field(
        "DirectRunner", description="Apache Beam runner."
    )
    pipeline_options: dict[str, Scalar] = Field(default_factory=dict, description="Beam pipeline options, passed as --key=value.")
    histogram_bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric column in the reference profile.")


class SearchSpace(Strict):
    """One parameter's search space: YAML gives a list of values, or a range ``{low, high, log}`` (random search)."""

    values: list[Scalar] | None = Field(None, min_length=1, description="The values to choose from.")
    low: int | float | None = Field(None, description="A range's smallest value.")
    high: int | float | None = Field(None, description="A range's largest value (integers when both ends are integers).")
    log: bool = Field(False, description="Draw uniformly on a log scale (low must be > 0).")

    @model_validator(mode="before")
    @classmethod
    def _list_or_range(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"values": value}
        if not isinstance(value, Mapping | SearchSpace):
            raise PydanticCustomError("search_space", "give a list of values, or a range {low, high, log}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> SearchSpace:
        if self.values is not None:
            found = [
                Issue(("values", i), "repeats an earlier value", v)
                for i, v in enumerate(self.values)
                if (type(v), v) in {(type(w), w) for w in self.values[:i]}
            ]
            if self.low is not None or self.high is not None or self.log:
                found.append(Issue((), "give a list of values or a range {low, high, log}, not both"))
        elif self.low is None or self.high is None:
            found = [Issue((end,), "a range needs low and high") for end in ("low", "high") if getattr(self, end) is None]
        elif not self.low < self.high:
            found = [Issue(("high",), f"must be greater than low ({self.low})", self.high)]
        else:
            found = [Issue(("low",), "must be > 0 for a log range", self.low)] if self.log and self.low <= 0 else []
        if found:
            raise config_issues(found)
        return self

    def plain(self) -> list[Any] | dict[str, Any]:
        """As :func:`airflow_mlops.ml.tuning.generate_trials` takes it: the list, or ``{low, high, log}``."""
        return list(self.values) if self.values is not None else {"low": self.low, "high": self.high, "log": self.log}


class TuningConfig(Strict):
    search: Literal[SEARCHES] = Field(  # type: ignore[valid-type]
        "random", description="grid: every combination of the value lists; random: `trials` draws seeded by model.seed."
    )
    space: dict[str, SearchSpace] = Field(
        ...,
        min_length=1,
        description="LightGBM parameter -> a list of values, or (random only) {low, high, log}; each trial's values "
        "merge over model.params.",
    )
    trials: int | None = Field(
        None, ge=1, le=MAX_TRIALS, description="How many trials: required for random; grid runs every combination."
    )
    parallelism: PositiveInt = Field(4, le=MAX_TRIALS, description="Trials trained at the same time (in one DAG run).")
    metric: Literal[tuple(HIGHER_IS_BETTER)] | None = Field(  # type: ignore[valid-type]
        None,
        description="Metric on the eval split that picks the best trial (ties: the first); null: the gate's metric, "
        "or the task's default (roc_auc, rmse) without a gate.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TuningConfig:
        found = [
            Issue(("space", key), "reserved: the pipeline sets it (use model.seed; the objective follows task)", key)
            for key in self.space
            if key in RESERVED_PARAMS
        ]
        if self.search == "grid":
            found += [
                Issue(("space", key), "grid search needs a list of values (a range is for random search)")
                for key, values in self.space.items()
                if values.values is None
            ]
        if found:
            raise config_issues(found)
        size = space_size(self.plain_space())
        if self.search == "grid" and size > MAX_TRIALS:
            found.append(Issue(("space",), f"the grid has {size} combinations; at most {MAX_TRIALS} are allowed"))
        elif self.search == "grid" and self.trials is not None and self.trials != size:
            found.append(
                Issue(
                    ("trials",),
                    f"grid search runs every one of its {size} combinations: omit trials or set it to {size}",
                    self.trials,
                )
            )
        elif self.search == "random" and self.trials is None:
            found.append(Issue(("trials",), "random search needs a trial count"))
        elif self.search == "random" and size is not None and size < self.trials:
            found.append(Issue(("trials",), f"the space holds only {size} distinct combinations", self.trials))
        if found:
            raise config_issues(found)
        return self

    def plain_space(self) -> dict[str, Any]:
        """The space as plain data: lists, and ranges as ``{low, high, log}`` mappings."""
        return {key: values.plain() for key, values in self.space.items()}


class ModelConfig(Strict):
    type: Literal["lightgbm"] = Field("lightgbm", description="Model family.")
    params: dict[str, Scalar] = Field(
        default_factory=lambda: {"num_leaves": 31, "learning_rate": 0.05, "min_data_in_leaf": 20},
        description="LightGBM parameters (seed, objective and deterministic are set by the pipeline); a file's params merge over these.",
    )
    num_boost_round: int = Field(200, ge=1, le=100_000, description="Boosting rounds.")
    early_stopping_rounds: PositiveInt | None = Field(
        None, description="Stop when a held-out tenth of the training rows stops improving."
    )
    seed: int = Field(42, description="Random seed; the same inputs and seed give a byte-identical model.")
    device: Literal["cpu", "cuda", "gpu"] = Field(
        "cpu",
        description="LightGBM's device_type: cpu (byte-identical models), cuda (a CUDA build, docker/trainer.Dockerfile) "
        "or gpu (an OpenCL build). A device that is not there fails the training.",
    )
    allow_cpu_fallback: bool = Field(False, description="Train on the CPU when the device is not there (else fail).")
    tuning: TuningConfig | None = Field(
        None, description="Hyperparameter search: train every trial (mapped tasks), keep the best on the eval split."
    )

    def trial_params(self) -> list[dict[str, Any]]:
        """Each tuning trial's full LightGBM parameters (``params`` with the trial's values on top); [] without tuning."""
        tuning = self.tuning
        if tuning is None:
            return []
        space = tuning.plain_space()
        return generate_trials(search=tuning.search, space=space, trials=tuning.trials, seed=self.seed, base=dict(self.params))

    @field_validator("params")
    @classmethod
    def _reserved(cls, params: dict[str, Any]) -> dict[str, Any]:
        found = [
            Issue((key,), "reserved: the pipeline sets it (use model.seed; the objective follows task)", value)
            for key, value in params.items()
            if key in RESERVED_PARAMS
        ]
        if found:
            raise config_issues(found)
        return params


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
"""The taint GPU node pools carry (GKE, EKS and AKS set it); a pod asking for GPUs tolerates it unless told otherwise."""
TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})
K8S_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class KubernetesConfig(Strict):
    image: str = Field(..., min_length=1, description="Training image: airflow-mlops installed (docker/trainer.Dockerfile).")
    namespace: str = Field("default", pattern=K8S_NAME, description="Namespace of the training pod.")
    kubernetes_conn_id: str = Field("kubernetes_default", description="Airflow Kubernetes connection (cncf.kubernetes provider).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="When the node pulls the image."
    )
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets of the image registry.")
    service_account: str | None = Field(None, description="Service account of the pod (e.g. one bound to an IAM role).")
    gpus: int = Field(1, ge=0, le=16, description="nvidia.com/gpu count (a limit, as Kubernetes wants for extended resources).")
    cpu: str = Field("4", min_length=1, description="CPU request.")
    memory: str = Field("16Gi", min_length=1, description="Memory request.")
    cpu_limit: str | None = Field(None, min_length=1, description="CPU limit; null: none (the pod may use idle cores).")
    memory_limit: str | None = Field(None, min_length=1, description="Memory limit; null: the request.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector labels.")
    tolerations: list[dict[str, str | int]] | None = Field(
        None,
        description="Tolerations as Kubernetes writes them (key, operator, value, effect, tolerationSeconds); "
        "null: the nvidia.com/gpu taint when gpus > 0, else none.",
    )
    affinity: dict[str, Any] | None = Field(None, description="Pod affinity as Kubernetes writes it (nodeAffinity, ...).")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations.")
    credentials_secret: str | None = Field(
        None,
        description="Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the artifact root, referenced from "
        "the pod (never copied); null: the service account's identity.",
    )
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible store, as the pod reaches it (MinIO).")
    allow_local_root: bool = Field(
        False, description="Allow a local artifact root (only where the pod mounts the same path, e.g. a one-node cluster)."
    )
    startup_timeout_minutes: float = Field(
        10, gt=0, description="Longest wait for the pod to be scheduled and start (GPU nodes and image pulls take minutes)."
    )
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "keep_pod", "delete_active_pod"] = Field(
        "delete_pod", description="What happens to the pod when it ends (KubernetesPodOperator's on_finish_action)."
    )
    deferrable: bool | None = Field(
        None, description="Wait for the pod in the triggerer; null: Airflow's [operators] default_deferrable."
    )

    @field_validator("tolerations")
    @classmethod
    def _toleration_keys(cls, tolerations: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        found = [
            Issue((i, key), f"unknown toleration field; use {', '.join(sorted(TOLERATION_KEYS))}", key)
            for i, toleration in enumerate(tolerations or [])
            for key in toleration
            if key not in TOLERATION_KEYS
        ]
        if found:
            raise config_issues(found)
        return tolerations


class ComputeConfig(Strict):
    target: Literal["local", "kubernetes"] = Field(
        "local", description="Where training runs: in the worker, or in a Kubernetes pod running `airflow-mlops train`."
    )
    kubernetes: KubernetesConfig | None = Field(None, description="Pod settings; required when target is kubernetes.")

    @model_validator(mode="after")
    def _needs_pod(self) -> ComputeConfig:
        if self.target == "kubernetes" and self.kubernetes is None:
            raise config_issues([Issue(("kubernetes",), "required when compute.target is 'kubernetes' (at least an image)")])
        return self


class FairnessConfig(Strict):
    column: str = Field(..., description="Categorical feature whose slices are compared.")
    max_gap: Fraction = Field(..., description="Largest allowed gap of the gate metric between slices.")


class EvaluationConfig(Strict):
    metric: Literal[tuple(HIGHER_IS_BETTER)] = Field(  # type: ignore[valid-type]
        ..., description="Gate metric: roc_auc, log_loss, accuracy (classification); rmse, mae (regression)."
    )
    threshold: float = Field(..., description="Minimum for roc_auc/accuracy; maximum for log_loss/rmse/mae.")
    must_beat_production_by: float = Field(0.0, ge=0.0, description="Required improvement over production; 0 means not worse.")
    slices: list[str] = Field(default_factory=list, description="Categorical features to report the metric for, per value.")
    fairness: FairnessConfig | None = Field(None, description="Limit on the metric gap between slices of one column.")

    @property
    def higher_is_better(self) -> bool:
        """True for roc_auc and accuracy (the threshold is a minimum), False for losses (the threshold is a maximum)."""
        return HIGHER_IS_BETTER[self.metric]

    @model_validator(mode="after")
    def _threshold_range(self) -> EvaluationConfig:
        if self.metric in UNIT_INTERVAL_METRICS and not 0.0 <= self.threshold <= 1.0:
            raise config_issues([Issue(("threshold",), f"must be between 0 and 1 for {self.metric}", self.threshold)])
        if self.metric not in UNIT_INTERVAL_METRICS and self.threshold < 0:
            raise config_issues(
                [Issue(("threshold",), f"must be >= 0 for {self.metric} (it is the largest loss allowed)", self.threshold)]
            )
        return self


class CanaryAnalysisConfig(Strict):
    max_error_rate_increase: Fraction = Field(0.01, description="Canary error rate may exceed production's by at most this.")
    max_p95_latency_ratio: float = Field(1.5, ge=1.0, description="Canary p95 latency / production p95 latency limit.")
    p95_latency_slack_ms: float = Field(
        2.0,
        ge=0,
        description="A canary p95 at most this many ms above production's never fails (sub-ms scoring times are noisy).",
    )
    max_prediction_divergence: Fraction = Field(0.2, description="Limit on the divergence of prediction distributions.")
    min_label_quality_ratio: Fraction = Field(
        0.98,
        description="Canary label quality / production label quality minimum, where feedback exists: the canary fails "
        "when the ratio's upper confidence bound is below it (it is worse with the configured confidence).",
    )
    min_labels: PositiveInt = Field(100, description="Labelled rows each side needs before label quality is judged.")
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Confidence of the label quality comparison (a bootstrap interval of the ratio)."
    )


class PromotionWatchConfig(Strict):
    minutes: float = Field(
        60,
        ge=0,
        description="How long a promoted model is watched against its canary-time figures (0: not watched). "
        "The limits are canary.analysis's.",
    )
    min_requests: PositiveInt = Field(100, description="Requests since promotion needed before the watch judges.")


class KServeConfig(Strict):
    image: str = Field(..., min_length=1, description="Model server image: airflow-mlops installed, its command runs `serve`.")
    namespace: str = Field(
        "default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="Namespace of the InferenceService."
    )
    name: str | None = Field(
        None,
        pattern=r"^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$",
        description="Name of the InferenceService (KServe appends -predictor-00001 to it); null: the pipeline's, - for _.",
    )
    kubernetes_conn_id: str = Field("kubernetes_default", description="Airflow Kubernetes connection (cncf.kubernetes provider).")
    service_account: str | None = Field(None, description="Service account of the server pods (e.g. one bound to an IAM role).")
    cpu: str = Field("1", description="CPU request and limit of a server pod.")
    memory: str = Field("2Gi", description="Memory request and limit of a server pod.")
    min_replicas: int = Field(
        1, ge=0, le=1000, description="Pods kept per serving revision (0: an idle revision scales to zero)."
    )
    workers: PositiveInt = Field(1, le=64, description="Server worker processes per pod (serve --workers).")
    credentials_secret: str | None = Field(
        None,
        description="Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the artifact root, referenced from "
        "the pods (never copied); null: the service account's identity.",
    )
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible store, as the pods reach it (MinIO).")


class CanaryConfig(Strict):
    target: Literal["local", "kserve"] = Field(
        "local", description="Where the model is served: the local model server, or a KServe InferenceService."
    )
    kserve: KServeConfig | None = Field(None, description="The InferenceService; required when target is kserve.")
    steps: list[Percent] = Field([10, 50], min_length=1, description="Canary traffic percent at each step (1..100, increasing).")
    bake_minutes: float = Field(10, gt=0, description="Longest wait at each step before it is judged.")
    min_requests: PositiveInt = Field(200, description="Canary requests that end a step's wait (else the bake time does).")
    check_seconds: float = Field(10.0, gt=0, le=3600, description="Time between checks of the prediction log while a step bakes.")
    analysis: CanaryAnalysisConfig = Field(default_factory=CanaryAnalysisConfig, description="Promotion criteria.")
    watch: PromotionWatchConfig = Field(
        default_factory=PromotionWatchConfig,
        description="After promotion: revert to the replaced model when the new one breaches its canary-time figures.",
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        found = [
            Issue((i,), f"steps must increase; this one follows {steps[i - 1]}", steps[i])
            for i in range(1, len(steps))
            if steps[i] <= steps[i - 1]
        ]
        if found:
            raise config_issues(found)
        return steps

    @model_validator(mode="after")
    def _needs_service(self) -> CanaryConfig:
        if self.target == "kserve" and self.kserve is None:
            raise config_issues([Issue(("kserve",), "required when canary.target is 'kserve' (at least an image)")])
        return self


class DriftConfig(Strict):
    method: Literal["psi", "ks"] = Field(
        "psi", description="Per-column drift score against the reference profile: psi, or ks (approximate for discrete columns)."
    )
    column_threshold: Fraction = Field(0.2, description="A column drifts when its score passes this.")
    share_threshold: Fraction = Field(0.3, description="The data drifts when this share of columns drifts.")


class MonitorConfig(Strict):
    schedule: str = Field("@hourly", description="Schedule of the monitor DAG: cron expression or preset.")
    min_rows: PositiveInt = Field(500, description="New logged predictions needed before a drift check.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift thresholds.")
    cooldown_hours: float = Field(24, ge=0, description="Minimum time between two retrain requests.")
    request_max_open_hours: float = Field(
        72,
        gt=0,
        description="A retrain request still open this long after it was filed is closed as expired (its run was lost).",
    )
    check_seconds: float = Field(30.0, gt=0, le=3600, description="Time between counts of new logged predictions.")
    approval: Literal["auto", "manual"] = Field(
        "auto",
        description="auto: a drift's retrain request starts training at once; manual: it waits, pending, until an "
        "operator approves it in the ops UI (or dismisses it).",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str | None:
        return check_schedule(value)


STAGES = ("data", "features", "training", "evaluation", "registry", "deploy", "monitor")
"""The task groups of the training DAG, and the monitor DAG: what ``operations.stages`` may set apart."""
EVENTS = ("failure", "retry", "success", "deadline", "retrain_request", "gate_rejected", "rollback", "revert")
"""What a notification may be sent on: a task failing or retried, a run succeeding or missing its deadline, and
the lifecycle's decisions."""
NOTIFY_CONN = {"email": "smtp_default", "slack": "slack_default", "webhook": "http_default"}
"""Each notification kind's default Airflow connection."""


class TaskDefaultsConfig(Strict):
    retries: int | None = Field(None, ge=0, le=100, description="Retries of a failed task (Airflow's default: 0).")
    retry_delay_minutes: float | None = Field(None, gt=0, description="Wait before a retry.")
    retry_exponential_backoff: bool | None = Field(None, description="Double the wait before each further retry.")
    execution_timeout_minutes: float | None = Field(None, gt=0, description="A task running longer fails (and may retry).")


class NotifyConfig(Strict):
    kind: Literal["email", "slack", "webhook"] = Field(
        ..., description="email (SMTP connection), slack (the Slack provider's webhook connection), webhook (HTTP POST of JSON)."
    )
    conn_id: str | None = Field(None, description="Airflow connection (default: smtp_default, slack_default, http_default).")
    to: list[str] = Field(default_factory=list, description="email: the recipients.")
    endpoint: str = Field("", description="webhook: the path on the connection's host the JSON is posted to.")
    on: list[Literal[EVENTS]] = Field(["failure"], min_length=1, description=f"When to notify: {', '.join(EVENTS)}.")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _complete(self) -> NotifyConfig:
        if self.kind == "email" and not self.to:
            raise config_issues([Issue(("to",), "an email notification needs at least one recipient", NO_INPUT)])
        if self.kind == "slack" and importlib.util.find_spec("airflow.providers.slack") is None:
            message = "needs apache-airflow-providers-slack, which is not installed; use email or webhook"
            raise config_issues([Issue(("kind",), message, self.kind)])
        return self

    @property
    def connection(self) -> str:
        return self.conn_id or NOTIFY_CONN[self.kind]


class OperationsConfig(TaskDefaultsConfig):
    stages: dict[Literal[STAGES], TaskDefaultsConfig] = Field(  # type: ignore[valid-type]
        default_factory=dict, description=f"Per stage ({', '.join(STAGES)}), over the pipeline's: e.g. training: {{retries: 2}}."
    )
    notify: list[NotifyConfig] = Field(default_factory=list, description="Notifications, each with its kind, target and events.")
    deadline_minutes: float | None = Field(
        None,
        gt=0,
        description="A run still going this long after it was queued notifies the 'deadline' targets (Airflow's deadline alerts).",
    )

    @model_validator(mode="after")
    def _deadline_has_targets(self) -> OperationsConfig:
        if self.deadline_minutes is not None and not any("deadline" in n.on for n in self.notify):
            message = "a deadline needs a notify entry with 'deadline' in its 'on' (nobody would hear of it)"
            raise config_issues([Issue(("deadline_minutes",), message, self.deadline_minutes)])
        return self

    def task_defaults(self, stage: str | None = None) -> dict[str, Any]:
        """Airflow ``default_args`` for the pipeline's tasks (``stage``: of one stage, over the pipeline's)."""
        layers = [self, *([self.stages[stage]] if stage in self.stages else [])]
        out: dict[str, Any] = {}
        for layer in layers:
            for name, value in ((n, getattr(layer, n)) for n in TaskDefaultsConfig.model_fields):
                if value is None:
                    continue
                if name.endswith("_minutes"):
                    out[name.removesuffix("_minutes")] = dt.timedelta(minutes=value)
                else:
                    out[name] = value
        return out


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
    task: Literal["classification", "regression"] = Field(..., description="Binary classification or regression.")
    features: FeaturesConfig = Field(..., description="Feature columns by kind.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Data validation thresholds.")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig, description="Beam preprocessing settings.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model and its parameters.")
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="Where training runs.")
    evaluation: EvaluationConfig | None = Field(None, description="The evaluation gate.")
    canary: CanaryConfig | None = Field(None, description="Canary deployment; needs an evaluation gate.")
    monitor: MonitorConfig | None = Field(None, description="Drift monitoring.")
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

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineConfig:
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
    for loc, metric in (
        (("evaluation", "metric"), _mapping(evaluation).get("metric")),
        (("model", "tuning", "metric"), tuning.get("metric")),
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


def _not_categorical(categorical: set[str]) -> str:
    return f"not a categorical feature (declared: {', '.join(sorted(categorical)) or 'none'})"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> list[str | None]:
    """The items of a list, None for items that are not strings (positions are kept for key paths)."""
    if not isinstance(value, list):
        return []
    return [v if isinstance(v, str) else None for v in value]
