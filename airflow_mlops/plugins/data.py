"""What the ops pages show, gathered from the pipeline configs, their stores and Airflow's runs: data only, no HTML.

Every function here reads; the control routes change the registry and events through the stage functions.
"""

from __future__ import annotations

import functools
import glob
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound, ConfigError
from airflow_mlops.store.layout import events_key, is_report_key, model_prefix, report_prefix
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.factories.schema import PipelineConfig
    from airflow_mlops.store.artifacts import ArtifactStore

EVENTS_SHOWN = 200
"""Newest events listed on a pipeline's page (the log itself keeps every one)."""
DRIFT_CHECKS_SHOWN = 100
"""Latest drift checks in the drift chart."""
CANARY_EVENTS = (
    "canary_step",
    "canary_analysis",
    "canary_pause",
    "canary_resume",
    "promote",
    "rollback",
    "revert",
    "watch_passed",
    "watch_breached",
)
"""Events of one candidate's way through the canary, in the order they happen."""


def training_dag_id(pipeline: str) -> str:
    return f"mlops_{pipeline}_training"


def monitor_dag_id(pipeline: str) -> str:
    return f"mlops_{pipeline}_monitor"


def pipeline_of_dag(dag_id: str, tags: list[str] | tuple[str, ...] = ()) -> str | None:
    """The pipeline a DAG belongs to: its ``pipeline:<name>`` tag, else its id ``mlops_<name>_<kind>``; None."""
    for tag in tags:
        if tag.startswith("pipeline:"):
            return tag.removeprefix("pipeline:")
    found = re.fullmatch(r"mlops_([a-z][a-z0-9_]*)_(training|monitor)", dag_id)
    return found.group(1) if found else None


# --- which pipelines ---------------------------------------------------------------------------------------------


def configs_pattern() -> str:
    """``[mlops] configs`` (``AIRFLOW__MLOPS__CONFIGS``): folders, files or globs of pipeline YAMLs, comma-separated;
    default every ``*.yaml`` under ``[core] dags_folder``."""
    from airflow.configuration import conf

    return conf.get("mlops", "configs", fallback="") or str(Path(conf.get("core", "dags_folder")) / "**" / "*.yaml")


def config_files(pattern: str) -> list[Path]:
    """The YAML files ``pattern`` names (see :func:`configs_pattern`), sorted, each once."""
    found: set[Path] = set()
    for part in (p.strip() for p in pattern.split(",")):
        path = Path(part).expanduser()
        if path.is_dir():
            found.update(f for suffix in ("*.yaml", "*.yml") for f in path.rglob(suffix))
        else:
            found.update(Path(f) for f in glob.glob(str(path), recursive=True))
    return sorted(f for f in found if f.is_file())


@dataclass(frozen=True)
class Pipelines:
    """The pipelines found, by name, and the files that name a pipeline but could not be loaded (with why)."""

    configs: dict[str, PipelineConfig]
    errors: list[str] = field(default_factory=list)


def load_pipelines(pattern: str) -> Pipelines:
    """Load every pipeline config ``pattern`` names; YAML files that are no pipeline config are skipped.

    :param pattern: as :func:`configs_pattern` returns it.
    """
    from airflow_mlops.factories.loader import load_pipeline_config

    configs: dict[str, PipelineConfig] = {}
    errors: list[str] = []
    for path in config_files(pattern):
        try:
            config = load_pipeline_config(path)
        except ConfigError as err:
            if _names_a_pipeline(path):
                errors.append(str(err))
            continue
        if config.pipeline in configs:
            errors.append(f"{path}: pipeline {config.pipeline!r} is also defined in {configs[config.pipeline].config_path}")
            continue
        configs[config.pipeline] = config
    return Pipelines(dict(sorted(configs.items())), errors)


def _names_a_pipeline(path: Path) -> bool:
    try:
        return re.search(r"^pipeline\s*:", path.read_text(encoding="utf-8", errors="replace"), re.MULTILINE) is not None
    except OSError:
        return False


def open_store(config: PipelineConfig) -> ArtifactStore:
    """The pipeline's artifact store, opened as its tasks open it (root, or its ``mlops_artifacts`` connection)."""
    return _store(config.artifacts.root, config.artifacts.aws_conn_id, config.artifacts.conn_id)


@functools.lru_cache(maxsize=64)
def _store(root: str | None, aws_conn_id: str | None, conn_id: str | None) -> ArtifactStore:
    from airflow_mlops.hooks.artifact_store import ArtifactStoreHook

    return ArtifactStoreHook(artifact_root=root, aws_conn_id=aws_conn_id, mlops_conn_id=conn_id).get_store()


def read_events(store: ArtifactStore, pipeline: str) -> list[dict[str, Any]]:
    """The pipeline's events log, oldest first (as ``store.events.read_events``), parsing only what was appended since
    the last call: the log only grows (every append rewrites it with one more line), and parsing 10,000 events
    costs about 100 ms a page while reading them costs 2 ms. Callers must not change the events."""
    try:
        data = store.read_bytes(events_key(pipeline))
    except ArtifactNotFound:
        data = b""
    uri = store.uri(events_key(pipeline))
    with _EVENTS_LOCK:
        known, events = _EVENTS.get(uri, (b"", []))
    if not data.startswith(known):  # rewritten otherwise than by an append: parse it all
        known, events = b"", []
    new = [json.loads(line) for line in data[len(known) :].decode().splitlines() if line.strip()]
    events = events + new if new else events
    with _EVENTS_LOCK:
        _EVENTS[uri] = (data, events)
    return events


_EVENTS: dict[str, tuple[bytes, list[dict[str, Any]]]] = {}
_EVENTS_LOCK = threading.Lock()


# --- what the pages show -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """One DAG run, as Airflow's DB has it."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    run_after: datetime | None


@dataclass(frozen=True)
class DriftPoint:
    """One drift check: its per-column scores and verdict."""

    time: datetime
    run_id: str | None
    drifted: bool
    reason: str
    rows: int | None
    scores: dict[str, float]
    report_key: str | None


@dataclass(frozen=True)
class RetrainRequest:
    """A retrain request that no outcome has closed yet."""

    request_id: str
    time: datetime
    reason: str
    status: str
    pending: bool
    columns: list[str]


@dataclass(frozen=True)
class CanaryStep:
    """One event of a candidate's canary: a traffic step, an analysis with its figures, or the decision."""

    time: datetime
    kind: str
    version: str | None
    weight: float | None
    passed: bool | None
    reason: str
    requests: int | None = None
    production_requests: int | None = None
    error_rate: float | None = None
    production_error_rate: float | None = None
    p95_ms: float | None = None
    production_p95_ms: float | None = None
    ks: float | None = None
    label_quality_ratio: float | None = None


@dataclass(frozen=True)
class VersionRow:
    """A registered model version with what was decided about it and why it was trained."""

    version: str
    status: str
    aliases: list[str]
    metric: float | None
    gate_reason: str
    canary: str
    watch: str
    dataset_id: str | None
    why: str
    registered_at: str | None
    dag_id: str | None
    run_id: str | None
    card_key: str
    evaluation_key: str | None


@dataclass(frozen=True)
class OverviewRow:
    """One pipeline on the overview."""

    pipeline: str
    production: str | None = None
    production_since: str | None = None
    canary: str | None = None
    canary_weight: float | None = None
    training: RunState | None = None
    drift: DriftPoint | None = None
    open_requests: list[RetrainRequest] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class PipelineView:
    """Everything one pipeline's page shows."""

    pipeline: str
    config_path: str
    metric_name: str | None
    production: str | None
    production_since: str | None
    canary: str | None
    canary_weight: float | None
    canary_paused: str | None
    previous_production: str | None
    versions: list[VersionRow]
    canary_version: str | None
    canary_steps: list[CanaryStep]
    drift: list[DriftPoint]
    drift_threshold: float | None
    drift_method: str | None
    events: list[dict[str, Any]]
    events_total: int
    open_requests: list[RetrainRequest]
    runs: list[RunState]


def overview_row(store: ArtifactStore, pipeline: str, training: RunState | None) -> OverviewRow:
    """The overview's row of ``pipeline`` from its registry and events.

    :param training: the latest run of the pipeline's training DAG (Airflow's DB), or None.
    """
    doc = ModelRegistry(store, pipeline).load()
    events = read_events(store, pipeline)
    production, canary = doc["aliases"].get("production") or {}, doc["aliases"].get("canary") or {}
    drift = next((_drift_point(store, e) for e in reversed(events) if e["kind"] == "drift_check"), None)
    return OverviewRow(
        pipeline=pipeline,
        production=production.get("version"),
        production_since=production.get("promoted_at"),
        canary=canary.get("version"),
        canary_weight=canary.get("weight"),
        training=training,
        drift=drift,
        open_requests=open_requests(events),
    )


def pipeline_view(
    store: ArtifactStore, config: PipelineConfig, runs: list[RunState], *, events_shown: int = EVENTS_SHOWN
) -> PipelineView:
    """One pipeline's page: versions, the canary's timeline, the drift checks, the events log and the runs.

    :param runs: the pipeline's latest DAG runs (Airflow's DB), newest first.
    :param events_shown: newest events listed.
    """
    pipeline = config.pipeline
    doc = ModelRegistry(store, pipeline).load()
    events = read_events(store, pipeline)
    aliases = doc["aliases"]
    production, canary = aliases.get("production") or {}, aliases.get("canary") or {}
    metric_name = config.evaluation.metric if config.evaluation else None
    names = {
        production.get("version"): "production",
        canary.get("version"): "canary",
        doc.get("previous_production"): "previous production",
    }
    versions = [
        _version_row(pipeline, version, entry, metric_name, [n for v, n in names.items() if v == version])
        for version, entry in sorted(doc["versions"].items(), key=lambda item: item[1].get("registered_at") or "", reverse=True)
    ]
    canary_version = canary.get("version") or next(
        (e.get("version") for e in reversed(events) if e["kind"] in ("canary_step", "canary_analysis") and e.get("version")),
        None,
    )
    drift = [_drift_point(store, e) for e in [e for e in events if e["kind"] == "drift_check"][-DRIFT_CHECKS_SHOWN:]]
    threshold, method = _drift_settings(store, config, drift)
    return PipelineView(
        pipeline=pipeline,
        config_path=config.config_path,
        metric_name=metric_name,
        production=production.get("version"),
        production_since=production.get("promoted_at"),
        canary=canary.get("version"),
        canary_weight=canary.get("weight"),
        canary_paused=_paused(canary),
        previous_production=doc.get("previous_production"),
        versions=versions,
        canary_version=canary_version,
        canary_steps=[_canary_step(e) for e in events if e["kind"] in CANARY_EVENTS and e.get("version") == canary_version],
        drift=drift,
        drift_threshold=threshold,
        drift_method=method,
        events=events[::-1][:events_shown],
        events_total=len(events),
        open_requests=open_requests(events),
        runs=runs,
    )


def open_requests(events: list[dict[str, Any]]) -> list[RetrainRequest]:
    """Retrain requests no outcome (``retrain_done``) closed yet, oldest first, with where each stands: waiting for
    an operator's approval (``monitor.approval: manual``), approved, or training."""
    done = {e.get("request_id") for e in events if e["kind"] == "retrain_done"}
    decided = {e.get("request_id"): e for e in events if e["kind"] == "retrain_decision"}
    requests = []
    for e in events:
        if e["kind"] != "retrain_request" or not e.get("event_id") or e["event_id"] in done:
            continue
        decision = decided.get(e["event_id"])
        pending = e.get("approval") == "pending" and decision is None
        if decision is not None:
            status = f"{decision.get('decision', '')}d by {decision.get('user', '')}: {decision.get('reason', '')}"
        else:
            status = "waiting for approval" if pending else "training"
        requests.append(
            RetrainRequest(
                request_id=e["event_id"],
                time=_time(e["time"]),
                reason=str(e.get("reason", "")),
                status=status,
                pending=pending,
                columns=list((e.get("details") or {}).get("columns") or []),
            )
        )
    return requests


def report_key(store: ArtifactStore, pipeline: str, uri: str | None) -> str | None:
    """The store key of a report URI when it is a report of ``pipeline`` (see ``layout.is_report_key``), else None."""
    if not uri:
        return None
    root = store.uri("x")[:-1]
    key = uri.removeprefix(root) if uri.startswith(root) else "/".join(uri.split("/")[-4:])
    return key if is_report_key(pipeline, key) else None


def _paused(canary: dict[str, Any]) -> str | None:
    """Who paused the canary, when and why; None when it is not paused."""
    paused = canary.get("paused")
    if not paused:
        return None
    return f"paused by {paused.get('user', '')} at {paused.get('at', '')}: {paused.get('reason', '')}"


def _version_row(pipeline: str, version: str, entry: dict[str, Any], metric_name: str | None, aliases: list[str]) -> VersionRow:
    lineage = entry.get("lineage") or {}
    request = lineage.get("retrain_request") or {}
    run_id = lineage.get("run_id")
    if request:
        why = f"retrain request {request.get('request_id', '')}: {request.get('reason', '')}".strip()
    elif run_id:
        why = {"scheduled": "schedule", "manual": "manual run", "asset_triggered": "asset event"}.get(
            str(run_id).split("__", 1)[0], "run " + str(run_id)
        )
    else:
        why = ""
    canary, watch = entry.get("canary") or {}, entry.get("watch") or {}
    metric = (entry.get("metrics") or {}).get(metric_name) if metric_name else None
    return VersionRow(
        version=version,
        status=str(entry.get("status", "")),
        aliases=aliases,
        metric=metric if isinstance(metric, int | float) else None,
        gate_reason=str(entry.get("reason", "")),
        canary=f"{canary['decision']}: {canary.get('reason', '')}" if canary.get("decision") else "",
        watch=f"{watch['decision']}: {watch.get('reason', '')}" if watch.get("decision") else "",
        dataset_id=lineage.get("dataset_id"),
        why=why,
        registered_at=entry.get("registered_at"),
        dag_id=lineage.get("dag_id"),
        run_id=run_id,
        card_key=f"{model_prefix(pipeline, version)}/card.html",
        evaluation_key=f"{report_prefix(pipeline, run_id)}/evaluation.html" if run_id else None,
    )


def _canary_step(event: dict[str, Any]) -> CanaryStep:
    figures = event.get("figures") or {}
    side, other = figures.get("canary") or figures.get("now") or {}, figures.get("production") or {}
    return CanaryStep(
        time=_time(event["time"]),
        kind=event["kind"],
        version=event.get("version"),
        weight=event.get("weight"),
        passed=event.get("passed"),
        reason=str(event.get("reason", "")),
        requests=side.get("requests"),
        production_requests=other.get("requests"),
        error_rate=side.get("error_rate"),
        production_error_rate=other.get("error_rate"),
        p95_ms=side.get("p95_latency_ms"),
        production_p95_ms=other.get("p95_latency_ms"),
        ks=figures.get("prediction_divergence"),
        label_quality_ratio=figures.get("label_quality_ratio"),
    )


def _drift_point(store: ArtifactStore, event: dict[str, Any]) -> DriftPoint:
    event_id = str(event.get("event_id") or "")
    return DriftPoint(
        time=_time(event["time"]),
        run_id=event_id.removeprefix("drift-") or None,
        drifted=bool(event.get("drifted")),
        reason=str(event.get("reason", "")),
        rows=event.get("rows"),
        scores={k: float(v) for k, v in (event.get("scores") or {}).items() if isinstance(v, int | float)},
        report_key=report_key(store, event["pipeline"], event.get("report_uri")),
    )


def _drift_settings(store: ArtifactStore, config: PipelineConfig, drift: list[DriftPoint]) -> tuple[float | None, str | None]:
    """The column threshold and method of the latest check (its ``drift.json``), else the config's."""
    if drift and drift[-1].run_id:
        check = store.read_json_if_exists(f"{report_prefix(config.pipeline, drift[-1].run_id)}/drift.json") or {}
        if "column_threshold" in check:
            return float(check["column_threshold"]), check.get("method")
    if config.monitor:
        return config.monitor.drift.column_threshold, config.monitor.drift.method
    return None, None


def _time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
