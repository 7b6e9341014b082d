"""Data acquisition and validation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from airflow.sdk import Context

from airflow_mlops.config.base import field_default
from airflow_mlops.config.data import SourceConfig, ValidationConfig
from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.links.report import ReportLink, report_on_failure
from airflow_mlops.operators.base import ColumnsOperator, MlopsBaseOperator, SourceMixin, asset_data_uri, followed_asset

SQL_CHUNK_ROWS = 50_000
"""Rows per fetch from a SQL source: the most of a query's result held at once."""


class DataAcquisitionOperator(SourceMixin, MlopsBaseOperator):
    """Snapshot a local file, glob or S3 prefix (CSV or Parquet), or a SQL query's rows, into the store, addressed by
    content.

    Returns ``{"dataset_id", "dataset_uri", "rows", "created", "source"}`` (``source`` rendered); a retry or an unchanged source
    finds the same snapshot and writes nothing.

    :param source_uri: a local path or glob, or ``s3://bucket/prefix`` (templated, e.g. ``data/{{ ds }}.csv``; see
        :class:`~airflow_mlops.operators.base.SourceMixin` for ``ds`` in runs without a logical date).
    :param source_format: ``auto`` (from the file extension), ``csv`` or ``parquet``.
    :param source_aws_conn_id: AWS connection for an ``s3://`` source; defaults to ``aws_conn_id``.
    :param source_sql: instead of ``source_uri``, a query run on ``source_conn_id`` (templated like ``source_uri``);
        its rows are streamed in chunks (a server-side cursor on PostgreSQL) and hashed as a file's rows are.
    :param source_conn_id: the Airflow connection of ``source_sql``; its hook must be a common-sql ``DbApiHook``.
    :param chunk_rows: rows fetched from the database at a time.
    :param source_asset: with neither ``source_uri`` nor ``source_sql``: the Asset (another pipeline's output) whose
        newest event's data is read (see :func:`~airflow_mlops.operators.base.asset_data_uri`); it is made an inlet.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "source_uri", "source_sql")

    def __init__(
        self,
        *,
        source_uri: str | None = None,
        source_format: str = field_default(SourceConfig, "format"),
        source_aws_conn_id: str | None = None,
        source_sql: str | None = None,
        source_conn_id: str | None = None,
        chunk_rows: int = SQL_CHUNK_ROWS,
        source_asset: str | None = None,
        **kwargs: Any,
    ) -> None:
        if source_asset is not None and source_uri is None and source_sql is None:
            kwargs["inlets"] = [*kwargs.get("inlets", []), followed_asset(source_asset)]
        super().__init__(**kwargs)
        self.source_uri = source_uri
        self.source_format = source_format
        self.source_aws_conn_id = source_aws_conn_id or self.aws_conn_id
        self.source_sql = source_sql
        self.source_conn_id = source_conn_id
        self.chunk_rows = chunk_rows
        self.source_asset = source_asset

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.exceptions import ConfigError
        from airflow_mlops.stages.data import acquire, acquire_batches

        if self.source_uri is None and self.source_sql is None and self.source_asset is not None:
            events = context["inlet_events"][followed_asset(self.source_asset)]
            if not events:
                raise ArtifactNotFound(f"Asset {self.source_asset!r} has no event yet: nothing to read.")
            self.source_uri = asset_data_uri(self.source_asset, dict(events[-1].extra or {}))
            self.log.info("Reading the newest output of Asset %s: %s", self.source_asset, self.source_uri)
        if (self.source_uri is None) == (self.source_sql is None) or (self.source_sql and not self.source_conn_id):
            raise ConfigError(f"{self.task_id}: give source_uri, or source_sql with source_conn_id.")
        if self.source_sql is not None:
            self.log.info(
                "Acquiring the query on connection %s for pipeline %s: %s", self.source_conn_id, self.pipeline, self.source_sql
            )
            source = f"sql:{self.source_conn_id}: {self.source_sql}"
            batches = query_batches(self.source_conn_id, self.source_sql, self.chunk_rows, name=f"mlops_{self.task_id}")
            result = acquire_batches(self.store, self.pipeline, source, batches)
        else:
            self.log.info("Acquiring %s for pipeline %s", self.source_uri, self.pipeline)
            result = acquire(self.store, self.pipeline, self.source_uri, fmt=self.source_format, s3_client=self.source_client())
        self.log.info(
            "Dataset %s: %d rows (%s)",
            result["dataset_id"],
            result["rows"],
            "new snapshot" if result["created"] else "already stored",
        )
        extra = {k: result[k] for k in ("dataset_id", "dataset_uri", "rows", "source")}
        self.record_lineage(context, "dataset", extra)
        self.openlineage_io([result["source"]], [result["dataset_uri"]])
        return result


def dbapi_hook(conn_id: str) -> Any:
    """The common-sql ``DbApiHook`` of connection ``conn_id`` (any SQL provider's), or a ConfigError naming it."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    from airflow_mlops.exceptions import ConfigError

    hook = BaseHook.get_hook(conn_id)
    if not isinstance(hook, DbApiHook):
        raise ConfigError(f"Connection {conn_id!r} has a {type(hook).__name__}, not a common-sql DbApiHook: it cannot run sql.")
    return hook


def query_batches(conn_id: str, sql: str, chunk_rows: int, *, name: str) -> Iterator[Any]:
    """The rows of ``sql`` on connection ``conn_id`` as Arrow record batches of ``chunk_rows``, never the whole result
    at once: PostgreSQL (psycopg2 or psycopg 3) reads through a server-side cursor named ``name``; another DbApiHook's
    driver through ``fetchmany`` on its cursor (drivers that buffer the whole result there should be given a query
    that bounds it). Nothing of the connection but its id is logged."""
    import pyarrow as pa

    hook = dbapi_hook(conn_id)
    conn = hook.get_conn()
    try:
        server_side = getattr(hook, "conn_type", None) == "postgres"
        cursor = conn.cursor(name=name) if server_side else conn.cursor()
        if server_side:
            cursor.itersize = chunk_rows
        cursor.execute(sql)
        while rows := cursor.fetchmany(chunk_rows):
            names = [d[0] for d in cursor.description]
            columns = list(zip(*rows, strict=True))
            yield pa.RecordBatch.from_arrays([pa.array(c) for c in columns], names=names)
        cursor.close()
    finally:
        conn.close()


class DataValidationOperator(ColumnsOperator):
    """Check a dataset against the pipeline's accepted schema; infer and store the schema on the first run.

    Anomalies (missing or extra column, type change, null ratio jump, out-of-range values, unseen
    categories, too few rows, a row count far from the usual once ``min_volume_history`` datasets were
    accepted) fail the task, so nothing downstream runs; the HTML report is saved under ``reports/`` and
    linked from the task, with a note on what the volume was compared with or why it was not. In a run started by a
    retrain request that names a performance drop (concept drift), a feature's lost correlation with the label
    (``label_association``) is a warning: that run is there to learn the new relation.

    :param dataset_id: the snapshot to check (templated).
    Column roles (``label_column``, ``problem_type``, ``numeric``, ``categorical``) as in :class:`ColumnsOperator`.
    :param thresholds: ``min_rows``, ``max_null_ratio_increase``, ``max_out_of_range_share``, ``max_unseen_category_share``;
        those not given take the pipeline config's defaults (``validation`` section).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "dataset_id")
    operator_extra_links = (ReportLink(),)

    def __init__(
        self,
        *,
        dataset_id: str,
        thresholds: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset_id = dataset_id
        self.thresholds = thresholds or {}

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.data import validate

        thresholds = ValidationConfig.model_validate(self.thresholds).model_dump()
        with report_on_failure(context, self.log, "Validation failed"):
            result = validate(
                self.store,
                self.pipeline,
                self.dataset_id,
                self.columns,
                thresholds,
                run_id=context["run_id"],
                label_change=self._label_change(context),
            )
        ReportLink.persist(context, result["report_uri"])
        self.log.info("Dataset %s passed validation; report: %s", self.dataset_id, result["report_uri"])
        return result

    def _label_change(self, context: Context) -> str | None:
        """Why the label's relation to the features may have moved: the retrain request naming a performance drop
        that started this run (its realized labels changed meaning), else None."""
        from airflow_mlops.operators.retraining import retrain_requests
        from airflow_mlops.store.events import read_events

        ids = {r["request_id"] for r in retrain_requests(context)}
        if not ids:
            return None
        requests = [e for e in read_events(self.store, self.pipeline) if e["kind"] == "retrain_request" and e["event_id"] in ids]
        found = next((r for r in reversed(requests) if (r.get("details") or {}).get("performance")), None)
        return f"retrain request {found['event_id']} found a performance drop (concept drift)" if found else None
