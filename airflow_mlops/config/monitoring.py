"""``monitor``: the drift check, labels and realized performance, the schedule and the governed retrain requests."""

from typing import Literal, Self

from pydantic import Field, PositiveInt, field_validator, model_validator

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID, Fraction, Issue, Strict, check_schedule, config_issues
from airflow_mlops.ml.metrics import HIGHER_IS_BETTER


class DriftConfig(Strict):
    method: Literal["psi", "ks"] = Field(
        "psi", description="Per-column drift score against the reference profile: psi, or ks (approximate for discrete columns)."
    )
    column_threshold: Fraction = Field(0.2, description="A column drifts when its score passes this.")
    share_threshold: Fraction = Field(0.3, description="The data drifts when this share of columns drifts.")


class LabelsConfig(Strict):
    uri: str | None = Field(
        None,
        min_length=1,
        description="Label exports: local path or glob (relative to the YAML file) or s3://bucket/prefix; each file is "
        "read once (a file whose size or time changed is read again; first label per id wins). Give uri or sql.",
    )
    sql: str | None = Field(
        None,
        min_length=1,
        description="Instead of files, a query read through the DbApiHook of conn_id, as for source.sql; Jinja allowed "
        "(e.g. labelled_at >= '{{ data_interval_start }}'). Its result is stored by content, read once.",
    )
    conn_id: str | None = Field(None, min_length=1, description="The Airflow connection the sql query runs on.")
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="File format; auto picks it from the extension.")
    aws_conn_id: str = Field(DEFAULT_AWS_CONN_ID, description="Airflow AWS connection for s3:// label exports.")
    id_column: str = Field("id", min_length=1, description="Column with the prediction id (the id a /predict row carried).")
    label_column: str | None = Field(None, description="Column with the label; null: the pipeline's label column.")
    event_time_column: str | None = Field(
        None, description="Optional column with when the outcome happened (kept with the label, reported)."
    )
    max_delay_days: float = Field(
        30,
        gt=0,
        le=366,
        description="Predictions logged this long ago are the oldest a label is joined to; a label for an older "
        "or never logged id is counted as unknown.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.uri is None and self.sql is None:
            raise config_issues([Issue(("uri",), "required key is missing. Or give sql and conn_id: a query")])
        if self.uri is not None and self.sql is not None:
            raise config_issues([Issue(("uri",), "give exactly one of uri (label files) and sql (a query), not both")])
        if (self.sql is None) != (self.conn_id is None):
            message = "required with sql: the Airflow connection the query runs on" if self.sql else "only for a sql query"
            raise config_issues([Issue(("conn_id",), message)])
        return self


class PerformanceConfig(Strict):
    metric: Literal[tuple(HIGHER_IS_BETTER)] | None = Field(  # type: ignore[valid-type]
        None, description="Metric of realized performance; null: the evaluation gate's metric (or the task's default)."
    )
    max_drop: float = Field(
        0.05,
        gt=0,
        description="A drop of the metric from the production model's reference (absolute, in the metric's units) "
        "whose whole interval is above this files a retrain request.",
    )
    min_labels: PositiveInt = Field(200, description="Labelled predictions of one window needed before it is judged.")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence of the bootstrap intervals.")
    window_hours: float = Field(24, gt=0, le=24 * 31, description="Predictions are judged in windows of this length (UTC).")
    estimated: Literal["off", "warn", "request"] = Field(
        "warn",
        description="Estimated performance before labels (CBPE, binary classification: roc_auc, accuracy): off; "
        "warn: recorded and logged; request: an estimated drop in a window without enough labels files a request.",
    )


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

    labels: LabelsConfig | None = Field(
        None, description="Label exports joined to the prediction log by id (labels sent to /feedback count as well)."
    )
    performance: PerformanceConfig | None = Field(
        None, description="Realized (and estimated) performance vs the model's reference; on by default with labels."
    )

    @property
    def performance_check(self) -> PerformanceConfig | None:
        """The performance settings when the monitor judges performance (a labels source or a performance section)."""
        if self.performance is None and self.labels is None:
            return None
        return self.performance or PerformanceConfig()

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str | None:
        return check_schedule(value)
