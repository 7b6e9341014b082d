"""The data sections: ``source`` (and its wait), ``features``, ``validation`` and ``preprocess``."""

from typing import Literal, Self

from pydantic import Field, PositiveInt, model_validator

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID, Fraction, Issue, Scalar, Strict, config_issues


class SourceWaitConfig(Strict):
    timeout_minutes: float = Field(360, gt=0, description="Longest wait for the source; then the run fails naming the path.")
    poke_seconds: float = Field(60, gt=0, le=3600, description="Time between looks for the source.")


class SourceConfig(Strict):
    uri: str | None = Field(
        None,
        min_length=1,
        description="Local path or glob (relative to the YAML file) or s3://bucket/prefix; Jinja allowed, e.g. {{ ds }}. "
        "Give uri or sql.",
    )
    sql: str | None = Field(
        None,
        min_length=1,
        description="A query read through the DbApiHook of conn_id (any common-sql provider: PostgreSQL, Snowflake, "
        "BigQuery, ...), streamed in chunks; Jinja allowed, e.g. where day = '{{ ds }}'. Give uri or sql.",
    )
    conn_id: str | None = Field(None, min_length=1, description="The Airflow connection the sql query runs on.")
    asset: str | None = Field(
        None,
        min_length=1,
        description="The Airflow Asset this source follows (another pipeline's output, e.g. mlops_churn_scores or "
        "mlops_features_dataset): runs are scheduled on its events, and with neither uri nor sql its newest event's "
        "data (the extra's dataset_uri, output_uri or uri) is what is read.",
    )
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="File format; auto picks it from the extension.")
    aws_conn_id: str = Field(DEFAULT_AWS_CONN_ID, description="Airflow AWS connection for s3:// sources.")
    wait: SourceWaitConfig | None = Field(
        None, description="Wait (deferrable) for late data before acquire: a file or object at the uri. None: no wait."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.uri is None and self.sql is None and self.asset is None:
            message = "required key is missing. Or give sql and conn_id (a query), or asset (another pipeline's output)"
            raise config_issues([Issue(("uri",), message)])
        if self.uri is not None and self.sql is not None:
            raise config_issues([Issue(("uri",), "give exactly one of uri (files) and sql (a query), not both")])
        found = []
        if self.sql is not None and self.conn_id is None:
            found.append(Issue(("conn_id",), "required with sql: the Airflow connection the query runs on"))
        if self.sql is None and self.conn_id is not None:
            found.append(Issue(("conn_id",), "only for a sql source"))
        if self.uri is None and self.wait is not None:
            found.append(Issue(("wait",), "only for a uri source (a query or an Asset's output has no file to wait for)"))
        if found:
            raise config_issues(found)
        return self


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
    min_volume_history: int = Field(
        3,
        ge=1,
        le=10,  # stages.data.VOLUME_HISTORY, the accepted datasets kept (not imported: DAG parse stays light)
        description="Accepted datasets needed before the volume ratios apply; with fewer, the row count is not judged "
        "and the report says so. 1 compares the second dataset with the first; the median covers the last 10.",
    )
    allow_extra_columns: bool = Field(False, description="Accept columns the schema does not have.")
    distribution_shift_threshold: float = Field(
        0.25, gt=0.0, description="PSI of a numeric column against the schema's quantiles above which it has shifted."
    )
    distribution_shift_action: Literal["off", "warn", "anomaly"] = Field(
        "warn", description="What a shifted numeric column is: nothing, a warning in the report, or an anomaly."
    )


class DaskConfig(Strict):
    scheduler_address: str = Field(
        ...,
        pattern=r"^(tcp|tls|ws|wss|ucx)://[^\s/]+:\d+$",
        description="The dask.distributed scheduler the DaskRunner submits to, e.g. tcp://dask-scheduler:8786 "
        "(Beam's --dask_client_address). Its workers need airflow-mlops installed and must reach the artifact store.",
    )
    npartitions: PositiveInt | None = Field(
        None, description="Dask partitions per pipeline (Beam's --dask_npartitions). None: one per row group of the snapshot."
    )


DASK_ADDRESS_OPTIONS = ("dask_client_address", "dask_scheduler_file")
"""Beam options that also name the Dask cluster (instead of ``preprocess.dask``)."""


class PreprocessConfig(Strict):
    eval_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of rows in the eval split (split by row content).")
    runner: Literal["DirectRunner", "PrismRunner", "FlinkRunner", "SparkRunner", "DataflowRunner", "dask"] = Field(
        "DirectRunner",
        description="Apache Beam runner; dask: Beam's DaskRunner on the dask.distributed cluster of preprocess.dask.",
    )
    dask: DaskConfig | None = Field(
        None, description="The Dask cluster of runner: dask (or give dask_client_address in pipeline_options)."
    )
    pipeline_options: dict[str, Scalar] = Field(default_factory=dict, description="Beam pipeline options, passed as --key=value.")
    histogram_bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric column in the reference profile.")

    @model_validator(mode="after")
    def _dask_cluster(self) -> Self:
        named = [k for k in DASK_ADDRESS_OPTIONS if k in self.pipeline_options]
        if self.runner == "dask" and self.dask is None and not named:
            message = "required when runner is 'dask' (scheduler_address), unless pipeline_options gives dask_client_address"
            raise config_issues([Issue(("dask",), message)])
        if self.dask is not None and self.runner != "dask":
            raise config_issues([Issue(("dask",), f"only for runner 'dask'; runner is {self.runner!r}")])
        if self.dask is not None and named:
            raise config_issues([Issue(("pipeline_options", named[0]), "give the cluster once: in dask or in pipeline_options")])
        return self

    def beam_options(self) -> dict[str, Scalar]:
        """``pipeline_options`` with the ``dask`` section as the DaskRunner's options."""
        if self.dask is None:
            return dict(self.pipeline_options)
        dask: dict[str, Scalar] = {"dask_client_address": self.dask.scheduler_address}
        if self.dask.npartitions is not None:
            dask["dask_npartitions"] = self.dask.npartitions
        return {**self.pipeline_options, **dask}
