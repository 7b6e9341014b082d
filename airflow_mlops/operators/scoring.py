"""Batch scoring: resolve the model once, validate the input in serving mode, score it, publish the scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID, field_default
from airflow_mlops.config.data import PreprocessConfig
from airflow_mlops.config.scoring import ScoringConfig
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.links.report import ReportLink, report_on_failure
from airflow_mlops.operators.base import MlopsBaseOperator, lineage_asset, source_client


def scores_asset(pipeline: str) -> Any:
    """The Asset a scoring run's ``publish`` task emits: ``mlops_<pipeline>_scores``, its extra the rows, model
    version, input dataset and output folder."""
    return lineage_asset(pipeline, "scores")


class ScoringModelResolveOperator(MlopsBaseOperator):
    """Resolve the model a scoring run uses, once, at its start: the production alias's version, or a pinned one.

    Returns ``{"model_version", "model", "resolved_at"}``; the later tasks take the version from here, so a promotion
    during the run does not change it.

    :param model: ``production`` or a model version id (templated).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "model")

    def __init__(self, *, model: str = field_default(ScoringConfig, "model"), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.scoring import resolve_model

        result = resolve_model(self.store, self.pipeline, self.model)
        self.log.info("Scoring with model %s of %s (asked for %s)", result["model_version"], self.pipeline, self.model)
        return result


class ScoringValidationOperator(MlopsBaseOperator):
    """Check a scoring input against the pipeline's accepted schema in serving mode (no label needed: types, nulls,
    ranges, unseen categories), always writing ``scoring_validation.html`` (linked from the task).

    Returns ``{"anomalies", "report_uri", "skip", "skipped_rows", "rows"}``.

    :param dataset_id: the input snapshot (templated).
    :param thresholds: the config's ``validation`` fields; those not given take their defaults.
    :param on_anomaly: ``fail`` (the task fails), ``warn`` (every row is scored) or ``skip_rows`` (rows carrying an
        anomalous value are left out, returned in ``skip``).
    :param batch_rows: rows read per batch: validation holds one batch of the features at a time.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "dataset_id")
    operator_extra_links = (ReportLink(),)

    def __init__(
        self,
        *,
        dataset_id: str,
        thresholds: dict[str, Any] | None = None,
        on_anomaly: str = field_default(ScoringConfig, "on_anomaly"),
        batch_rows: int = field_default(ScoringConfig, "batch_rows"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset_id = dataset_id
        self.thresholds = thresholds or {}
        self.on_anomaly = on_anomaly
        self.batch_rows = batch_rows

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.config.data import ValidationConfig
        from airflow_mlops.stages.scoring import validate_input

        thresholds = ValidationConfig.model_validate(self.thresholds).model_dump()
        with report_on_failure(context, self.log, "Scoring input failed validation"):
            result = validate_input(
                self.store,
                self.pipeline,
                self.dataset_id,
                thresholds,
                on_anomaly=self.on_anomaly,
                run_id=context["run_id"],
                batch_rows=self.batch_rows,
            )
        ReportLink.persist(context, result["report_uri"])
        self.log.info(
            "Input %s: %d anomalies (%s), %d rows left out; report: %s",
            self.dataset_id,
            result["anomalies"],
            self.on_anomaly,
            result["skipped_rows"],
            result["report_uri"],
        )
        return result


class _DestinationMixin:
    destination: str | None
    destination_aws_conn_id: str

    def destination_client(self) -> Any:
        return source_client(self.destination, self.destination_aws_conn_id) if self.destination else None


class BatchScoringOperator(_DestinationMixin, MlopsBaseOperator):
    """Score an input snapshot with one model version in Arrow batches, through that model's transform, into
    sharded Parquet keyed by (input content, model version): a retry or a repeated run rewrites the same parts.

    Returns ``{"scoring_id", "output_uri", "parts", "rows", "skipped_rows", "model_version", "dataset_id",
    "logged_rows", "log_key"}``.

    :param dataset_id: the input snapshot (templated).
    :param model_version: the version resolved at the run's start (templated).
    :param destination: null (the store's ``scores/<pipeline>/``) or a folder, ``s3://`` or local (templated).
    :param destination_aws_conn_id: AWS connection for an ``s3://`` output.
    :param id_columns: input columns copied to every scored row (None: every non-feature, non-label column).
    :param skip: the validation's rows to leave out (templated).
    :param batch_rows: rows per batch and per part.
    :param log_sample: share of the scored rows written into the prediction log; ``log_max_rows`` at most.
    :param engine: ``local`` (this task's process) or ``beam`` (a Beam pipeline on ``runner``).
    :param explain: also write each row's per-feature contributions.
    :param runner: the Beam runner of ``engine: beam`` (the pipeline's ``preprocess.runner``).
    :param pipeline_options: its Beam pipeline options (the S3 ones of the store are added).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "dataset_id", "model_version", "destination", "skip")

    def __init__(
        self,
        *,
        dataset_id: str,
        model_version: str,
        destination: str | None = None,
        destination_aws_conn_id: str = DEFAULT_AWS_CONN_ID,
        id_columns: list[str] | None = None,
        skip: Any = None,
        batch_rows: int = field_default(ScoringConfig, "batch_rows"),
        log_sample: float = field_default(ScoringConfig, "log_sample"),
        log_max_rows: int = field_default(ScoringConfig, "log_max_rows"),
        engine: str = field_default(ScoringConfig, "engine"),
        explain: bool = field_default(ScoringConfig, "explain"),
        runner: str = field_default(PreprocessConfig, "runner"),
        pipeline_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset_id = dataset_id
        self.model_version = model_version
        self.destination = destination
        self.destination_aws_conn_id = destination_aws_conn_id
        self.id_columns = id_columns
        self.skip = skip
        self.batch_rows = batch_rows
        self.log_sample = log_sample
        self.log_max_rows = log_max_rows
        self.engine = engine
        self.explain = explain
        self.runner = runner
        self.pipeline_options = pipeline_options

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.scoring import score

        result = score(
            self.store,
            self.pipeline,
            self.dataset_id,
            self.model_version,
            output=self.destination or None,
            output_client=self.destination_client(),
            id_columns=None if self.id_columns is None else list(self.id_columns),
            skip=self.skip or None,
            batch_rows=self.batch_rows,
            log_sample=self.log_sample,
            log_max_rows=self.log_max_rows,
            engine=self.engine,
            explain=self.explain,
            runner=self.runner,
            pipeline_options=self.pipeline_options,
        )
        self.log.info("Scored %d rows with %s into %s", result["rows"], result["model_version"], result["output_uri"])
        return result


class ScoresTableWriteOperator(_DestinationMixin, MlopsBaseOperator):
    """Write a scoring's parts into a SQL table through a connection's common-sql ``DbApiHook`` (its SQLAlchemy
    engine): in one transaction, the table's rows of the same input and model version are deleted and the parts
    inserted, so a retry or a rerun leaves one copy. The table is created with the scored columns when absent.

    Returns ``{"table", "rows", "replaced_rows"}``.

    :param scores: the scoring task's result (templated).
    :param conn_id: the database's Airflow connection.
    :param table: the table, optionally ``schema.table``.
    :param chunk_rows: rows per insert batch.
    :param destination: as the scoring task had it (templated).
    :param destination_aws_conn_id: AWS connection for an ``s3://`` output.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "scores", "destination")

    def __init__(
        self,
        *,
        scores: Any,
        conn_id: str,
        table: str,
        chunk_rows: int = 10_000,
        destination: str | None = None,
        destination_aws_conn_id: str = DEFAULT_AWS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scores = scores
        self.conn_id = conn_id
        self.table = table
        self.chunk_rows = chunk_rows
        self.destination = destination
        self.destination_aws_conn_id = destination_aws_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        import sqlalchemy as sa

        from airflow_mlops.operators.data import dbapi_hook
        from airflow_mlops.stages.scoring import scored_parts

        scores = self.scores
        schema, _, name = self.table.rpartition(".")
        schema = schema or None
        parts = scored_parts(self.store, self.pipeline, scores, self.destination or None, self.destination_client())
        engine = dbapi_hook(self.conn_id).get_sqlalchemy_engine()
        rows = replaced = 0
        self.log.info("Writing %d scored rows into %s on connection %s", scores["rows"], self.table, self.conn_id)
        with engine.begin() as conn:  # one transaction: the old rows of this scoring go only if the new ones land
            if sa.inspect(conn).has_table(name, schema=schema):
                table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
                if missing := {"dataset_id", "model_version"} - set(table.c.keys()):
                    raise MlopsError(f"Table {self.table} has no {sorted(missing)} column(s): it does not hold scores.")
                matched = (table.c.dataset_id == scores["dataset_id"]) & (table.c.model_version == scores["model_version"])
                replaced = conn.execute(table.delete().where(matched)).rowcount
            for frame in parts:
                frame.to_sql(name, conn, schema=schema, if_exists="append", index=False, chunksize=self.chunk_rows)
                rows += len(frame)
        self.log.info("Wrote %d rows into %s (replaced %d of an earlier run)", rows, self.table, replaced)
        return {"table": self.table, "rows": rows, "replaced_rows": replaced}


class ScoresPublishOperator(_DestinationMixin, MlopsBaseOperator):
    """Mark a scoring complete (``_SUCCESS.json`` in its folder, ``scoring.json`` in the store, a ``batch_scored``
    event) and put its rows, model version, input and output on the ``mlops_<pipeline>_scores`` Asset event.

    :param scores: the scoring task's result (templated).
    :param validation: the validation task's result (templated): its anomalies and report are recorded.
    :param source: the input as read (templated).
    :param destination: as the scoring task had it (templated).
    :param destination_aws_conn_id: AWS connection for an ``s3://`` output.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "scores", "validation", "source", "destination")

    def __init__(
        self,
        *,
        scores: Any,
        validation: Any = None,
        source: str | None = None,
        destination: str | None = None,
        destination_aws_conn_id: str = DEFAULT_AWS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [scores_asset(kwargs["pipeline"])])
        super().__init__(**kwargs)
        self.scores = scores
        self.validation = validation
        self.source = source
        self.destination = destination
        self.destination_aws_conn_id = destination_aws_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.scoring import publish

        validation = self.validation or {}
        record = publish(
            self.store,
            self.pipeline,
            self.scores,
            run_id=context["run_id"],
            output=self.destination or None,
            output_client=self.destination_client(),
            source=self.source,
            anomalies=validation.get("anomalies"),
            report_uri=validation.get("report_uri"),
        )
        extra = {k: record[k] for k in ("rows", "model_version", "dataset_id", "output_uri", "scoring_id", "skipped_rows")}
        self.record_lineage(context, "scores", extra)
        self.openlineage_io([record["source"]] if record.get("source") else [], [record["output_uri"]])
        self.log.info("Published %d scored rows (model %s) at %s", record["rows"], record["model_version"], record["output_uri"])
        return {k: v for k, v in record.items() if k != "parts"} | {"parts": len(record["parts"])}
