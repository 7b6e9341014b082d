"""The scoring DAG: a table scored with the production (or a pinned) model. Imported at DAG parse time: nothing heavy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import DAG

from airflow_mlops.config.scoring import input_asset_name
from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.builders import _dag_kwargs, _stage, _store_kwargs
from airflow_mlops.operators.base import followed_asset
from airflow_mlops.operators.data import DataAcquisitionOperator
from airflow_mlops.operators.scoring import (
    BatchScoringOperator,
    ScoresPublishOperator,
    ScoresTableWriteOperator,
    ScoringModelResolveOperator,
    ScoringValidationOperator,
)
from airflow_mlops.sensors.data import SourceWaitSensor

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig


def build_scoring_dag(config: PipelineConfig) -> DAG:
    """The scoring DAG: resolve_model -> [wait_for_input] -> acquire -> validate -> score -> publish.

    The model version is resolved once, first, and every later task takes it from there; ``publish`` emits the
    ``mlops_<pipeline>_scores`` Asset (extra: rows, model version, input dataset, output). Scheduled by
    ``scoring.schedule``, or by the input's Asset when that is null."""
    scoring = config.scoring
    if scoring is None:
        raise ConfigError(f"{config.config_path}: scoring: the pipeline has no 'scoring' section.")
    common = _store_kwargs(config)
    schedule = scoring.schedule or [followed_asset(input_asset_name(config.pipeline, scoring.input.asset))]
    output = {"destination": scoring.output, "destination_aws_conn_id": scoring.output_aws_conn_id}
    with DAG(**_dag_kwargs(config, kind="scoring", schedule=schedule), doc_md=_doc(config)) as dag:
        resolve = ScoringModelResolveOperator(task_id="resolve_model", model=scoring.model, **common)
        with _stage(config, "data", "Snapshot the input and check it in serving mode"):
            source = {"source_uri": scoring.input.uri, "source_aws_conn_id": scoring.input.aws_conn_id}
            if scoring.input.sql is not None:
                source |= {"source_sql": scoring.input.sql, "source_conn_id": scoring.input.conn_id}
            followed = scoring.input.asset if scoring.input.uri is None and scoring.input.sql is None else None
            acquire = DataAcquisitionOperator(
                task_id="acquire", source_format=scoring.input.format, source_asset=followed, **source, **common
            )
            if scoring.input.wait is not None:
                wait = SourceWaitSensor(
                    task_id="wait_for_input",
                    poke_interval=scoring.input.wait.poke_seconds,
                    timeout=scoring.input.wait.timeout_minutes * 60,
                    **source,
                    **common,
                )
                resolve >> wait >> acquire
            else:
                resolve >> acquire
            validate = ScoringValidationOperator(
                task_id="validate",
                dataset_id=acquire.output["dataset_id"],
                thresholds=dict(config.validation),
                on_anomaly=scoring.on_anomaly,
                batch_rows=scoring.batch_rows,
                **common,
            )
        with _stage(config, "scoring", "Score in Arrow batches with the model's transform, then publish"):
            score = BatchScoringOperator(
                task_id="score",
                dataset_id=acquire.output["dataset_id"],
                model_version=resolve.output["model_version"],
                skip=validate.output["skip"],
                id_columns=None if scoring.id_columns is None else list(scoring.id_columns),
                batch_rows=scoring.batch_rows,
                log_sample=scoring.log_sample,
                log_max_rows=scoring.log_max_rows,
                engine=scoring.engine,
                explain=scoring.explain,
                runner=config.preprocess.runner,
                pipeline_options=config.preprocess.beam_options(),
                **output,
                **common,
            )
            publish = ScoresPublishOperator(
                task_id="publish",
                scores=score.output,
                validation=validate.output,
                source=acquire.output["source"],
                **output,
                **common,
            )
            if scoring.output_table is not None:
                table = ScoresTableWriteOperator(
                    task_id="write_table",
                    scores=score.output,
                    conn_id=scoring.output_table.conn_id,
                    table=scoring.output_table.table,
                    chunk_rows=scoring.output_table.chunk_rows,
                    **output,
                    **common,
                )
                score >> table >> publish
    return dag


def _doc(config: PipelineConfig) -> str:
    scoring = config.scoring
    return (
        f"### ML pipeline `{config.pipeline}` (scoring)\n\n"
        f"Built by airflow-mlops from `{config.config_path}`.\n\n"
        f"* input: `{scoring.input.uri or (f'sql on {scoring.input.conn_id}' if scoring.input.sql else f'asset {scoring.input.asset}')}`\n* model: `{scoring.model}`\n"
        f"* output: `{scoring.output or f'scores/{config.pipeline}/ in the artifact store'}`\n"
        f"* on anomaly: `{scoring.on_anomaly}`; prediction log sample: {scoring.log_sample:g}\n"
    )
