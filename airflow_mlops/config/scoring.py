"""The ``scoring`` section: the batch scoring DAG's input, output, schedule, model and the rows it logs."""

from typing import Literal, Self

from pydantic import Field, PositiveInt, field_validator, model_validator

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID, Fraction, Issue, Strict, check_schedule, config_issues
from airflow_mlops.config.data import SourceConfig

PRODUCTION = "production"
"""``scoring.model``'s default: the version the registry's production alias names when a run starts."""
BATCH_ROWS = 131_072
"""``scoring.batch_rows``' default: rows per Arrow batch, and per output shard (the snapshot's row group size)."""


def input_asset_name(pipeline: str, asset: str | None) -> str:
    """The Asset whose events start a scoring run (``scoring.schedule`` null): ``scoring.input.asset`` or the default."""
    return asset or f"mlops_{pipeline}_scoring_input"


class ScoringInputConfig(SourceConfig):
    """The table to score, written like ``source`` (files, or a query through a connection; its label may be
    absent), and the Asset that says it is new."""

    asset: str | None = Field(
        None,
        min_length=1,
        description="With scoring.schedule null: the name of the Asset whose events start a scoring run (the DAG "
        "that writes the input emits it). Null: mlops_<pipeline>_scoring_input.",
    )


class ScoresTableConfig(Strict):
    """A SQL table the scores are also written to, through a connection's common-sql ``DbApiHook``."""

    conn_id: str = Field(..., min_length=1, description="The Airflow connection of the database (its hook a DbApiHook).")
    table: str = Field(
        ...,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
        description="The table, optionally schema-qualified (analytics.churn_scores); created on the first write "
        "with the scored columns, else appended to.",
    )
    chunk_rows: int = Field(10_000, ge=100, le=1_000_000, description="Rows inserted per statement batch.")


class ScoringConfig(Strict):
    input: ScoringInputConfig = Field(..., description="The table to score (uri, format, aws_conn_id, wait, asset).")
    output: str | None = Field(
        None,
        min_length=1,
        description="Where the scores go: null, the artifact store's scores/<pipeline>/<input dataset>-<model version>/; "
        "or a folder, s3://bucket/prefix or a local path (relative to the YAML file), holding the same "
        "<input dataset>-<model version>/ folders. Jinja allowed.",
    )
    output_aws_conn_id: str = Field(DEFAULT_AWS_CONN_ID, description="Airflow AWS connection for an s3:// output.")
    output_table: ScoresTableConfig | None = Field(
        None,
        description="Also write the scores to this SQL table (conn_id, table): one transaction per run replaces the "
        "rows of the same input and model version, so a rerun never appends twice. Null: files only.",
    )
    schedule: str | None = Field(
        None,
        description="Cron expression or preset of the scoring DAG; null: a run per event of the input's Asset (scoring.input.asset).",
    )
    model: str = Field(
        PRODUCTION,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="production: the version the production alias names when the run starts (kept for the whole run, "
        "whatever is promoted meanwhile); or a pinned model version id.",
    )
    on_anomaly: Literal["fail", "warn", "skip_rows"] = Field(
        "fail",
        description="What the serving-mode validation's anomalies do: fail the run, warn and score every row, or leave "
        "out the rows that carry an anomalous value (a missing or all-null column still fails). The report is always written.",
    )
    id_columns: list[str] | None = Field(
        None,
        description="Input columns copied to every scored row; the first is the row id in the prediction log (labels "
        "join on it). Null: every input column that is neither a feature nor the label.",
    )
    log_sample: Fraction = Field(
        0.05,
        description="Share of the scored rows written into the prediction log (as batch traffic, seen by the drift and "
        "performance monitors); 0 logs none, 1 all (up to log_max_rows). The sample is drawn by row, the same on a retry.",
    )
    log_max_rows: PositiveInt = Field(100_000, description="Most rows one scoring run writes into the prediction log.")
    batch_rows: int = Field(
        BATCH_ROWS, ge=1024, le=4_194_304, description="Rows scored at a time (the memory bound), and rows per output shard."
    )
    explain: bool = Field(
        False,
        description="Also write each row's per-feature contributions (TreeSHAP, as /predict's explain: true): "
        "contribution_<feature> and expected_value columns, summing to the raw score; costs about a predict more.",
    )
    engine: Literal["local", "beam"] = Field(
        "local",
        description="local: the batches are scored in the score task's process; beam: the same batch function as a "
        "Beam pipeline on the pipeline's preprocess.runner (its pipeline_options or dask cluster), a part per row "
        "group of the input's snapshot (batch_rows stays at its default), the same parts to the bit.",
    )

    @model_validator(mode="after")
    def _beam_batches(self) -> Self:
        if self.engine == "beam" and self.batch_rows != BATCH_ROWS:
            message = f"engine beam scores the snapshot's row groups of {BATCH_ROWS} rows: leave batch_rows at {BATCH_ROWS}"
            raise config_issues([Issue(("batch_rows",), message)])
        return self

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return check_schedule(value)

    @field_validator("output")
    @classmethod
    def _output(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith(("s3://", "file://")):
            from pydantic_core import PydanticCustomError

            raise PydanticCustomError("output", "use s3://bucket/prefix, a local path or null (the artifact store)")
        return value
