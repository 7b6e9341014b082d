"""One pipeline's page: status and controls, retrain requests, canary, drift, performance, batch scoring, versions,
runs and events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_mlops.plugins.pages.canary import canary_section
from airflow_mlops.plugins.pages.cells import code, percent, row, run_link, short_time, state, table, version_since, when
from airflow_mlops.plugins.pages.drift import drift_section
from airflow_mlops.plugins.pages.layout import Urls, layout
from airflow_mlops.plugins.pages.performance import performance_section
from airflow_mlops.plugins.pages.scoring import scoring_section
from airflow_mlops.plugins.pages.versions import versions_section
from airflow_mlops.plugins.readers.pipelines import monitor_dag_id, training_dag_id

if TYPE_CHECKING:
    from airflow_mlops.plugins.readers.pipeline import PipelineView
    from airflow_mlops.plugins.readers.pipelines import RunState


def pipeline_page(view: PipelineView, urls: Urls) -> str:
    """One pipeline's page: status and controls, retrain requests, canary, drift, performance, versions, runs and
    events."""
    sections = [
        _status(view, urls),
        _requests(view, urls),
        canary_section(view),
        drift_section(view, urls),
        performance_section(view, urls),
        scoring_section(view, urls),
        versions_section(view, urls),
        _runs(view.runs, urls),
        _events(view, urls),
    ]
    return layout(f"ML pipeline {view.pipeline}", "".join(sections), urls, script=True)


def _status(view: PipelineView, urls: Urls) -> str:
    actions = f"{urls.pipeline(view.pipeline)}/actions"
    buttons = "".join(
        f'<button data-action="{a}" data-label="{label}" data-url="{actions}/{a}" title="{title}">{label}</button>'
        for a, label, title in (
            ("promote", "Promote canary", "Give the canary all traffic as production"),
            ("rollback", "Roll back canary", "Take the canary off; production serves alone"),
            ("pause", "Pause canary", "Keep the canary's share; the analysis stops moving it"),
            ("resume", "Resume canary", "Let the analysis move the canary again"),
        )
    )
    canary = (
        f"{code(view.canary)} at {percent(view.canary_weight)} of the traffic"
        if view.canary
        else '<span class="muted">none</span>'
    )
    if view.canary_paused:
        canary += f' <span class="bad" id="canary-paused">{escape(view.canary_paused)}</span>'
    facts = [
        ("Production", version_since(view.production, view.production_since)),
        ("Canary", canary),
        ("Previous production", code(view.previous_production) if view.previous_production else "none"),
        (
            "DAGs",
            f'<a target="_top" href="{urls.dag(training_dag_id(view.pipeline))}">{escape(training_dag_id(view.pipeline))}</a>, '
            f'<a target="_top" href="{urls.dag(monitor_dag_id(view.pipeline))}">{escape(monitor_dag_id(view.pipeline))}</a>',
        ),
        ("Config", f"<code>{escape(view.config_path)}</code>"),
    ]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    return (
        f'<section id="status"><table>{rows}</table></section>'
        f'<section id="controls"><h2>Control</h2><label>Reason <input id="action-reason" size="50" '
        f'placeholder="why (recorded in the events log)"></label> {buttons}<div id="action-result" role="status"></div></section>'
    )


def _requests(view: PipelineView, urls: Urls) -> str:
    rows = []
    for r in view.open_requests:
        buttons = "".join(
            f'<button data-action="{d}" data-request="{escape(r.request_id)}" data-label="{label} {escape(r.request_id)}" '
            f'data-url="{urls.pipeline(view.pipeline)}/requests/{quote(r.request_id, safe="")}/{d}">{label}</button>'
            for d, label in (("approve", "Approve"), ("dismiss", "Dismiss"))
            if r.pending
        )
        cells = (
            code(r.request_id),
            escape(when(r.time)),
            escape(r.status),
            escape(", ".join(r.columns)),
            escape(r.reason),
            buttons,
        )
        rows.append(row(cells, request=r.request_id))
    found = (
        table(["request", "filed", "status", "columns", "reason", ""], rows)
        if rows
        else '<p class="muted">No open retrain request.</p>'
    )
    return f'<section id="requests"><h2>Retrain requests</h2>{found}</section>'


def _runs(runs: Sequence[RunState], urls: Urls) -> str:
    rows = [
        row((escape(r.dag_id), run_link(r.dag_id, r.run_id, urls), state(r.state), escape(r.run_type), escape(when(r.run_after))))
        for r in runs
    ]
    found = table(["DAG", "run", "state", "type", "run after"], rows) if rows else '<p class="muted">No DAG run yet.</p>'
    return f'<section id="runs"><h2>DAG runs</h2>{found}</section>'


def _events(view: PipelineView, urls: Urls) -> str:
    rows = []
    for e in view.events:
        details = {k: v for k, v in e.items() if k not in ("time", "pipeline", "kind", "user", "version", "reason", "figures")}
        kind = str(e.get("kind", ""))
        run_id = _event_run(e)
        cells = (
            escape(short_time(e.get("time"))),
            escape(kind),
            escape(str(e.get("user") or "")),
            code(e.get("version")) if e.get("version") else "",
            escape(str(e.get("reason") or "")),
            run_link(monitor_dag_id(view.pipeline), run_id, urls) if run_id else "",
            f"<code>{escape(json.dumps(details, default=str)[:300])}</code>" if details else "",
        )
        rows.append(row(cells, kind=kind))
    shown = f"newest {len(rows)} of {view.events_total}" if view.events_total > len(rows) else f"{view.events_total}"
    listed = table(["time", "event", "user", "version", "reason", "run", "details"], rows) if rows else ""
    return f'<section id="events"><h2>Events ({shown}, newest first)</h2>{listed}</section>'


def _event_run(event: dict[str, Any]) -> str | None:
    """The monitor run behind a drift check or a retrain request (their ids carry it)."""
    event_id = str(event.get("event_id") or "")
    for kind, prefix in (("drift_check", "drift-"), ("retrain_request", "retrain-")):
        if event.get("kind") == kind and event_id.startswith(prefix):
            return event_id.removeprefix(prefix)
    return None
