"""Pipeline config -> Airflow DAG objects. Imported at DAG parse time: nothing heavy here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, AssetAny, TaskGroup

from airflow_mlops.config.base import dag_id
from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.monitoring import monitor_tasks
from airflow_mlops.ml.metrics import DEFAULT_METRIC
from airflow_mlops.notifications import PipelineNotifier
from airflow_mlops.operators.base import LINEAGE, followed_asset, lineage_asset
from airflow_mlops.operators.data import DataAcquisitionOperator, DataValidationOperator
from airflow_mlops.operators.deployment import CanaryBranchOperator, CanaryDeployOperator, CanaryResolveOperator
from airflow_mlops.operators.evaluation import EvaluationGateOperator, ModelEvaluationOperator, ModelRegistrationOperator
from airflow_mlops.operators.preprocessing import BeamPreprocessOperator
from airflow_mlops.operators.retraining import RetrainRequestCloseOperator, retrain_asset
from airflow_mlops.operators.training import ModelTrainingOperator
from airflow_mlops.operators.tuning import TrialSelectionOperator
from airflow_mlops.sensors.canary import CanaryAnalysisSensor, PromotionWatchSensor
from airflow_mlops.sensors.data import SourceWaitSensor

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig


def _dag_kwargs(config: PipelineConfig, *, kind: str, schedule: Any) -> dict[str, Any]:
    start = config.start_date
    default_args = {"owner": config.owner, **config.operations.task_defaults("monitor" if kind == "monitor" else None)}
    for event, callback in (("failure", "on_failure_callback"), ("retry", "on_retry_callback")):
        if notifiers := _notifiers(config, event):
            default_args[callback] = notifiers
    return {
        "on_success_callback": _notifiers(config, "success") or None,
        "deadline": _deadline(config) if kind == "training" else None,
        "dag_id": dag_id(config.pipeline, kind),
        "schedule": schedule,
        "start_date": datetime(start.year, start.month, start.day, tzinfo=UTC),
        "catchup": config.catchup,
        "tags": sorted({"mlops", f"pipeline:{config.pipeline}", kind, *config.tags}),
        "default_args": default_args,
        "max_active_runs": 1,
        "description": config.description or f"{kind.title()} pipeline for {config.pipeline}",
    }


def _notifiers(config: PipelineConfig, event: str) -> list[Any]:
    """The pipeline's notifier for ``event``, as a callback list (empty when no ``operations.notify`` entry has it)."""
    targets = [
        {"kind": n.kind, "connection": n.connection, "to": list(n.to), "endpoint": n.endpoint}
        for n in config.operations.notify
        if event in n.on
    ]
    return [PipelineNotifier(event=event, targets=targets)] if targets else []


def _deadline(config: PipelineConfig) -> Any:
    """Airflow's deadline alert for ``operations.deadline_minutes`` after a training run was queued, or None."""
    minutes = config.operations.deadline_minutes
    if minutes is None:
        return None
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    from airflow_mlops.notifications import deadline_missed

    targets = _notifiers(config, "deadline")[0].targets
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(deadline_missed, kwargs={"targets": targets, "minutes": minutes}),
    )


def _stage(config: PipelineConfig, group_id: str, tooltip: str) -> TaskGroup:
    """A stage's task group, with its own ``operations.stages`` task defaults."""
    return TaskGroup(group_id, tooltip=tooltip, default_args=config.operations.task_defaults(group_id))


def _store_kwargs(config: PipelineConfig) -> dict[str, Any]:
    """The pipeline and its artifact store, as every operator and sensor takes them."""
    artifacts = config.artifacts
    return {
        "pipeline": config.pipeline,
        "artifact_root": artifacts.root,
        "aws_conn_id": artifacts.aws_conn_id,
        "mlops_conn_id": artifacts.conn_id,
    }


def build_training_dag(config: PipelineConfig) -> DAG:
    """The training DAG: acquire -> validate -> preprocess (Beam) -> train -> evaluate -> gate -> bless | reject.

    With ``model.tuning``, train is a mapped ``trial`` task (one training per trial) and ``select``, the best trial."""
    common = _store_kwargs(config)
    columns = {
        "label_column": config.label,
        "problem_type": config.task,
        "numeric": list(config.features.numeric),
        "categorical": list(config.features.categorical),
    }
    gate = config.evaluation
    assets = {kind: lineage_asset(config.pipeline, kind) for kind in LINEAGE}  # Airflow's Asset views: data -> model
    with DAG(**_dag_kwargs(config, kind="training", schedule=_training_schedule(config)), doc_md=_doc(config)) as dag:
        with _stage(config, "data", "Snapshot the source and check it against the schema"):
            source = {"source_uri": config.source.uri, "source_aws_conn_id": config.source.aws_conn_id}
            sql = {"source_sql": config.source.sql, "source_conn_id": config.source.conn_id} if config.source.sql else {}
            if config.source.wait is not None:  # late data: wait for it, deferred
                wait = SourceWaitSensor(
                    task_id="wait_for_source",
                    poke_interval=config.source.wait.poke_seconds,
                    timeout=config.source.wait.timeout_minutes * 60,
                    **source,
                    **common,
                )
            acquire = DataAcquisitionOperator(
                task_id="acquire",
                source_format=config.source.format,
                source_asset=config.source.asset,
                outlets=[assets["dataset"]],
                **source,
                **sql,
                **common,
            )
            if config.source.wait is not None:
                wait >> acquire
            validate = DataValidationOperator(
                task_id="validate",
                dataset_id=acquire.output["dataset_id"],
                thresholds=dict(config.validation),
                **columns,
                **common,
            )
        with _stage(config, "features", "Fit the transform and profile with Beam, split train/eval"):
            preprocess = BeamPreprocessOperator(
                task_id="preprocess",
                dataset_id=acquire.output["dataset_id"],
                eval_fraction=config.preprocess.eval_fraction,
                histogram_bins=config.preprocess.histogram_bins,
                runner=config.preprocess.runner,
                pipeline_options=config.preprocess.beam_options(),
                inlets=[assets["dataset"]],
                outlets=[assets["features"]],
                **columns,
                **common,
            )
        with _stage(config, "training", "LightGBM, deterministic"):
            trainer, train_kwargs = _trainer(config, common)
            features_id = preprocess.output["features_id"]
            tuning = config.model.tuning
            if tuning is None:
                train = trainer(task_id="train", features_id=features_id, inlets=[assets["features"]], **train_kwargs)
            else:  # one mapped training per trial (each cached by content), then the best on the eval split
                trial_params = config.model.trial_params()
                del train_kwargs["model_params"]
                trials = trainer.partial(
                    task_id="trial",
                    features_id=features_id,
                    inlets=[assets["features"]],
                    max_active_tis_per_dagrun=tuning.parallelism,
                    **train_kwargs,
                ).expand(model_params=trial_params)
                train = TrialSelectionOperator(  # returns what a training task returns: downstream reads it the same
                    task_id="select",
                    trials=trials.output,
                    trial_params=trial_params,
                    features_id=features_id,
                    metric=tuning.metric or (gate.metric if gate else DEFAULT_METRIC[config.task]),
                    **common,
                )
        with _stage(config, "evaluation", "Holdout metrics vs production, then the gate"):
            evaluate = ModelEvaluationOperator(
                task_id="evaluate",
                model_version=train.output["model_version"],
                features_id=preprocess.output["features_id"],
                metric=gate.metric if gate else DEFAULT_METRIC[config.task],
                threshold=gate.threshold if gate else None,
                must_beat_production_by=gate.must_beat_production_by if gate else 0.0,
                slices=list(gate.slices) if gate else [],
                fairness_column=gate.fairness.column if gate and gate.fairness else None,
                fairness_max_gap=gate.fairness.max_gap if gate and gate.fairness else None,
                tuning=train.output["tuning"] if tuning else None,
                **common,
            )
            gate_branch = EvaluationGateOperator(
                task_id="gate",
                result=evaluate.output,
                true_task_id="registry.bless",
                false_task_id="registry.reject",
            )
        with _stage(config, "registry", "Record the decision with lineage"):
            lineage = {
                "dataset_id": acquire.output["dataset_id"],
                "source": acquire.output["source"],
                "features_id": preprocess.output["features_id"],
                "transform_hash": preprocess.output["transform_hash"],
                "params": train.output["params"] if tuning else dict(config.model.params),  # tuning: the chosen trial's
                "num_boost_round": config.model.num_boost_round,
                "seed": config.model.seed,
            }
            if tuning:
                lineage["tuning"] = train.output["tuning"]  # every trial's params and metric
            bless = ModelRegistrationOperator(
                task_id="bless",
                evaluation=evaluate.output,
                lineage=lineage,
                promote=config.canary is None,
                inlets=[assets["features"]],
                outlets=[assets["model"]],
                **common,
            )
            reject = ModelRegistrationOperator(
                task_id="reject",
                evaluation=evaluate.output,
                lineage=lineage,
                on_success_callback=_notifiers(config, "gate_rejected") or None,
                **common,
            )
        validate >> preprocess
        gate_branch >> [bless, reject]
        ends = [bless, reject]
        if config.canary is not None:
            ends = [reject, *_canary_group(config, common, train.output["model_version"], upstream=bless)]
        if config.monitor is not None:
            with _stage(config, "outcome", "Close the retrain requests this run answered, with the outcome"):
                close = RetrainRequestCloseOperator(
                    task_id="close_request",
                    registration_task_ids=["registry.bless", "registry.reject"],
                    decision_task_ids=_decision_task_ids(config),
                    **common,
                )
            ends >> close
    return dag


def _trainer(config: PipelineConfig, common: dict[str, Any]) -> tuple[type, dict[str, Any]]:
    """The training operator class for ``compute.target`` and its arguments (all but task_id, features_id, inlets)."""
    model = config.model
    kwargs = {
        "model_params": dict(model.params),
        "num_boost_round": model.num_boost_round,
        "seed": model.seed,
        "early_stopping_rounds": model.early_stopping_rounds,
        "device": model.device,
        "allow_cpu_fallback": model.allow_cpu_fallback,
        **common,
    }
    pod = config.compute.kubernetes
    if config.compute.target != "kubernetes" or pod is None:
        return ModelTrainingOperator, kwargs
    from airflow_mlops.operators.training import KubernetesTrainingOperator  # imports the Kubernetes client

    kwargs |= {
        "kubernetes_conn_id": pod.kubernetes_conn_id,
        "namespace": pod.namespace,
        "image": pod.image,
        "image_pull_policy": pod.image_pull_policy,
        "image_pull_secrets": list(pod.image_pull_secrets),
        "service_account_name": pod.service_account,
        "gpus": pod.gpus,
        "cpu": pod.cpu,
        "memory": pod.memory,
        "cpu_limit": pod.cpu_limit,
        "memory_limit": pod.memory_limit,
        "node_selector": dict(pod.node_selector),
        "tolerations": pod.tolerations,
        "affinity": pod.affinity,
        "labels": dict(pod.labels),
        "annotations": dict(pod.annotations),
        "credentials_secret": pod.credentials_secret,
        "s3_endpoint_url": pod.s3_endpoint_url,
        "allow_local_root": pod.allow_local_root,
        "startup_timeout_seconds": max(1, round(pod.startup_timeout_minutes * 60)),
        "on_finish_action": pod.on_finish_action,
    }
    if pod.deferrable is not None:
        kwargs["deferrable"] = pod.deferrable
    return KubernetesTrainingOperator, kwargs


def _training_schedule(config: PipelineConfig) -> Any:
    """The cron schedule, OR an event of the Asset the source follows (``source.asset``), OR the pipeline's
    retrain-request Asset when a monitor can request retraining."""
    assets = [followed_asset(config.source.asset)] if config.source.asset else []
    assets += [retrain_asset(config.pipeline)] if config.monitor is not None else []
    if not assets:
        return config.schedule
    if config.schedule is None:
        return assets if len(assets) == 1 else AssetAny(*assets)
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    timetable = CronTriggerTimetable(config.schedule, timezone="UTC")
    return AssetOrTimeSchedule(timetable=timetable, assets=assets[0] if len(assets) == 1 else AssetAny(*assets))


def build_monitor_dag(config: PipelineConfig) -> DAG:
    """The monitor DAG: wait for new logged predictions -> drift check -> retrain request (governed) | done;
    beside the branch (the decision waits for neither) the check's evidently report and the log's compaction.
    With ``monitor.labels`` (or ``monitor.performance``) also labels ingest -> performance check, and the one
    retrain request decides on both checks' results (see :func:`airflow_mlops.factories.monitoring.monitor_tasks`)."""
    monitor = config.monitor
    if monitor is None:
        raise ConfigError(f"{config.config_path}: monitor: the pipeline has no 'monitor' section.")
    with DAG(**_dag_kwargs(config, kind="monitor", schedule=monitor.schedule)) as dag:
        monitor_tasks(config, _store_kwargs(config), notifiers=lambda event: _notifiers(config, event))
    return dag


def _canary_group(config: PipelineConfig, common: dict[str, Any], model_version: Any, *, upstream: Any) -> list[Any]:
    """deploy (first share) -> analysis through every share -> promote | rollback -> the promoted model's watch
    (when ``canary.watch.minutes``); returns the tasks that end it."""
    canary = config.canary
    serving = {"target": canary.target, "kserve": canary.kserve.model_dump() if canary.kserve else None}
    with _stage(config, "deploy", "Canary on the model server, then promote or roll back"):
        deploy = CanaryDeployOperator(task_id="canary", model_version=model_version, percent=canary.steps[0], **serving, **common)
        analysis = CanaryAnalysisSensor(
            task_id="analysis",
            steps=list(canary.steps),
            problem_type=config.task,
            min_requests=canary.min_requests,
            bake_minutes=canary.bake_minutes,
            criteria=dict(canary.analysis),
            poke_interval=canary.check_seconds,
            **serving,
            **common,
        )
        decide = CanaryBranchOperator(
            task_id="decide", result=analysis.output, true_task_id="deploy.promote", false_task_id="deploy.rollback"
        )
        promote = CanaryResolveOperator(
            task_id="promote",
            decision="promote",
            analysis=analysis.output,
            holdback_percent=canary.watch.holdback_percent if canary.watch.minutes else 0,  # the watch ends it
            **serving,
            **common,
        )
        rollback = CanaryResolveOperator(
            task_id="rollback",
            decision="rollback",
            analysis=analysis.output,
            **serving,
            on_success_callback=_notifiers(config, "rollback") or None,
            **common,
        )
        upstream >> deploy >> analysis >> decide >> [promote, rollback]
        if not canary.watch.minutes:
            return [promote, rollback]
        watch = PromotionWatchSensor(
            task_id="watch",
            promotion=promote.output,
            problem_type=config.task,
            watch_minutes=canary.watch.minutes,
            min_requests=canary.watch.min_requests,
            criteria=dict(canary.analysis),
            poke_interval=canary.check_seconds,
            on_success_callback=_notifiers(config, "revert") or None,
            **serving,
            **common,
        )
        promote >> watch
    return [watch, promote, rollback]


def _decision_task_ids(config: PipelineConfig) -> list[str] | None:
    """The deploy tasks whose result is a retrain request's outcome, the last to decide first."""
    if config.canary is None:
        return None
    return ["deploy.watch"] * bool(config.canary.watch.minutes) + ["deploy.promote", "deploy.rollback"]


def _doc(config: PipelineConfig) -> str:
    return (
        f"### ML pipeline `{config.pipeline}` (training)\n\n"
        f"Built by airflow-mlops from `{config.config_path}`.\n\n"
        f"* source: `{config.source.uri or (f'sql on {config.source.conn_id}' if config.source.sql else f'asset {config.source.asset}')}`\n* label: `{config.label}` ({config.task})\n"
        f"* features: {len(config.features.numeric)} numeric, {len(config.features.categorical)} categorical\n"
        f"* artifacts: `{config.artifacts.location}`\n"
    )
