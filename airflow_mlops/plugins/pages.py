"""The ops pages as HTML strings, rendered from :mod:`airflow_mlops.plugins.data`'s views.

Every value from a file or the DB goes through :func:`html.escape` (or :func:`urllib.parse.quote` in URLs); charts
are inline SVG (:mod:`airflow_mlops.plugins.charts`), and the only script posts the control actions as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from airflow_mlops.plugins.charts import PALETTE, Panel, Series, svg_chart
from airflow_mlops.plugins.data import (
    CanaryStep,
    DriftPoint,
    OverviewRow,
    PipelineView,
    RunState,
    monitor_dag_id,
    training_dag_id,
)

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1a1a1a;background:#fff}
header{padding:10px 20px;border-bottom:1px solid #ddd;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0}main{padding:12px 20px 40px}section{margin:20px 0}
h2{font-size:16px;margin:0 0 8px}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0b5cad}code{font-size:12px}.muted{color:#666}.bad{color:#b00020;font-weight:600}.good{color:#137333}
.tag{display:inline-block;padding:0 6px;border-radius:8px;background:#e8f0fe;font-size:12px;margin-right:4px}
.state-success{color:#137333}.state-failed{color:#b00020}.state-running,.state-queued{color:#b06000}
button{font:inherit;padding:4px 12px;margin:2px;border:1px solid #888;border-radius:4px;background:#f8f8f8;cursor:pointer}
button:hover{background:#eee}#action-result{margin:8px 0;min-height:1.4em}#action-result.error{color:#b00020}
svg text{font-size:11px;fill:#333}svg .chart-title{font-size:13px;font-weight:600}.errors{color:#b00020}
"""

SCRIPT = """
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-url]");
  if (!button) return;
  const out = document.getElementById("action-result");
  const reason = document.getElementById("action-reason").value;
  out.className = ""; out.textContent = button.dataset.label + "...";
  try {
    const response = await fetch(button.dataset.url, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify(reason ? {reason} : {})});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(response.status + ": " + (body.detail || response.statusText));
    out.textContent = button.dataset.label + ": done"; setTimeout(() => location.reload(), 600);
  } catch (err) { out.className = "error"; out.textContent = button.dataset.label + " refused: " + err.message; }
});
"""


CANARY_ROWS = 30
"""Latest canary events listed under the chart."""


@dataclass(frozen=True)
class Urls:
    """Where links point: this app's root (``.../mlops``) and Airflow's UI root (the api-server's)."""

    app: str
    airflow: str

    def pipeline(self, pipeline: str) -> str:
        return f"{self.app}/pipelines/{quote(pipeline)}"

    def report(self, pipeline: str, key: str) -> str:
        return f"{self.app}/reports/{quote(pipeline)}/{quote(key)}"

    def dag(self, dag_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id)}"

    def run(self, dag_id: str, run_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def layout(title: str, body: str, urls: Urls, *, script: bool = False) -> str:
    """A whole page: header with the way back to the overview, ``body``, and the action script when asked."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><a href="{urls.app}/">All ML pipelines</a></header>'
        f"<main>{body}</main>" + (f"<script>{SCRIPT}</script>" if script else "") + "</body></html>"
    )


def message_page(title: str, text: str, urls: Urls) -> str:
    """A page that only says something (a DAG of no pipeline, an unknown pipeline)."""
    return layout(title, f"<p>{escape(text)}</p>", urls)


# --- overview ----------------------------------------------------------------------------------------------------


def overview_page(rows: Sequence[OverviewRow], errors: Sequence[str], urls: Urls, *, source: str) -> str:
    """The pipelines overview: one row per pipeline, then the configs that could not be loaded.

    :param source: where the configs were looked for (``[mlops] configs``), shown when none was found.
    """
    head = ["pipeline", "production", "canary", "last training run", "last drift check", "open retrain request"]
    body = "".join(_overview_row(row, urls) for row in rows)
    parts = [
        f'<section id="pipelines"><table><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>'
        f"<tbody>{body}</tbody></table></section>"
    ]
    if not rows:
        parts.append(f'<p class="muted">No pipeline config found in <code>{escape(source)}</code> ([mlops] configs).</p>')
    if errors:
        items = "".join(f"<li><pre>{escape(e)}</pre></li>" for e in errors)
        parts.append(
            f'<section id="config-errors" class="errors"><h2>Configs that could not be loaded</h2><ul>{items}</ul></section>'
        )
    return layout("ML pipelines", "".join(parts), urls)


def _overview_row(row: OverviewRow, urls: Urls) -> str:
    name = f'<a href="{urls.pipeline(row.pipeline)}">{escape(row.pipeline)}</a>'
    if row.error:
        return (
            f'<tr data-pipeline="{escape(row.pipeline)}"><td>{name}</td><td colspan="5" class="bad">{escape(row.error)}</td></tr>'
        )
    production = _version_since(row.production, row.production_since)
    canary = f"{_code(row.canary)} at {_percent(row.canary_weight)}" if row.canary else '<span class="muted">none</span>'
    requests = "<br>".join(f"{escape(r.request_id)} ({escape(r.status)})" for r in row.open_requests) or "none"
    cells = [name, production, canary, _run_state(row.training, urls), _drift_state(row.drift), requests]
    return f'<tr data-pipeline="{escape(row.pipeline)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


# --- one pipeline ------------------------------------------------------------------------------------------------


def pipeline_page(view: PipelineView, urls: Urls) -> str:
    """One pipeline's page: status and controls, retrain requests, canary, drift, versions, runs and events."""
    sections = [
        _status(view, urls),
        _requests(view, urls),
        _canary(view),
        _drift(view, urls),
        _versions(view, urls),
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
        f"{_code(view.canary)} at {_percent(view.canary_weight)} of the traffic"
        if view.canary
        else '<span class="muted">none</span>'
    )
    if view.canary_paused:
        canary += f' <span class="bad" id="canary-paused">{escape(view.canary_paused)}</span>'
    facts = [
        ("Production", _version_since(view.production, view.production_since)),
        ("Canary", canary),
        ("Previous production", _code(view.previous_production) if view.previous_production else "none"),
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


def _versions(view: PipelineView, urls: Urls) -> str:
    head = [
        "version",
        "status",
        view.metric_name or "metric",
        "gate",
        "canary",
        "watch",
        "dataset",
        "why trained",
        "run",
        "reports",
    ]
    rows = []
    for v in view.versions:
        tags = "".join(f'<span class="tag">{escape(a)}</span>' for a in v.aliases)
        run = f'<a target="_top" href="{urls.run(v.dag_id, v.run_id)}">{escape(v.run_id)}</a>' if v.dag_id and v.run_id else ""
        reports = f'<a target="_blank" href="{urls.report(view.pipeline, v.card_key)}">card</a>'
        if v.evaluation_key:
            reports += f' <a target="_blank" href="{urls.report(view.pipeline, v.evaluation_key)}">evaluation</a>'
        status = f'<span class="{"good" if v.status == "blessed" else "bad"}">{escape(v.status)}</span>'
        cells = [
            f"{_code(v.version)} {tags}<div class=muted>{escape(_short_time(v.registered_at))}</div>",
            status,
            f'<td class="num">{_number(v.metric)}</td>',
            escape(v.gate_reason),
            escape(v.canary),
            escape(v.watch),
            _code(v.dataset_id[:12]) if v.dataset_id else "",
            escape(v.why),
            run,
            reports,
        ]
        rows.append(
            f'<tr data-version="{escape(v.version)}">'
            + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    table = _table(head, rows) if rows else '<p class="muted">No model registered yet.</p>'
    return f'<section id="versions"><h2>Model versions</h2>{table}</section>'


def _canary(view: PipelineView) -> str:
    steps = view.canary_steps
    title = f"Canary of {view.canary_version}" if view.canary_version else "Canary"
    analyses = [s for s in steps if s.kind == "canary_analysis"]
    head = [
        "time",
        "event",
        "share",
        "requests (canary / production)",
        "error rate",
        "p95 ms",
        "KS",
        "label quality ratio",
        "reason",
    ]
    rows = [
        "<tr>"
        + "".join(
            f"<td>{c}</td>"
            for c in (
                escape(_when(s.time)),
                _step_kind(s),
                _percent(s.weight),
                _pair(s.requests, s.production_requests, "{:d}"),
                _pair(s.error_rate, s.production_error_rate, "{:.2%}"),
                _pair(s.p95_ms, s.production_p95_ms, "{:.1f}"),
                _number(s.ks),
                _number(s.label_quality_ratio),
                escape(s.reason),
            )
        )
        + "</tr>"
        for s in steps
    ]
    x = list(range(1, len(analyses) + 1))

    def series(name: str, values: Iterable[float | None], color: str, dashed: bool = False) -> Series:
        return Series(name, list(zip(x, values, strict=True)), color, dashed)

    step_label = {i: f"step {i} ({_percent(s.weight)})" for i, s in zip(x, analyses, strict=True)}

    def label(value: float) -> str:
        return step_label.get(round(value), f"{value:g}")

    panels = [
        Panel(
            "Error rate",
            [
                series("canary", (s.error_rate for s in analyses), PALETTE[0]),
                series("production", (s.production_error_rate for s in analyses), PALETTE[1], True),
            ],
            x_label=label,
            y_label=lambda y: f"{y:.1%}",
        ),
        Panel(
            "p95 latency (ms)",
            [
                series("canary", (s.p95_ms for s in analyses), PALETTE[0]),
                series("production", (s.production_p95_ms for s in analyses), PALETTE[1], True),
            ],
            x_label=label,
            y_label=lambda y: f"{y:.1f}",
        ),
        Panel("Prediction divergence (KS)", [series("KS", (s.ks for s in analyses), PALETTE[2])], x_label=label),
        Panel(
            "Label quality, canary / production",
            [series("ratio", (s.label_quality_ratio for s in analyses), PALETTE[3])],
            limit=1.0,
            limit_label="equal quality",
            x_label=label,
        ),
    ]
    chart = svg_chart("canary-chart", f"{title}: figures at each analysed step", panels)
    table = _table(head, rows[-CANARY_ROWS:]) if rows else '<p class="muted">No canary has run yet.</p>'
    return f'<section id="canary"><h2>{escape(title)}</h2>{chart}{table}</section>'


def _drift(view: PipelineView, urls: Urls) -> str:
    checks = view.drift
    columns = sorted({c for p in checks for c in p.scores})
    series = [
        Series(c, [(p.time.timestamp(), p.scores.get(c)) for p in checks], PALETTE[i % len(PALETTE)])
        for i, c in enumerate(columns)
    ]
    method = (view.drift_method or "score").upper()
    threshold = f"threshold {view.drift_threshold:g}" if view.drift_threshold is not None else ""
    panel = Panel(
        f"{method} per column at each drift check",
        series,
        limit=view.drift_threshold,
        limit_label=threshold,
        x_label=lambda t: _when(datetime.fromtimestamp(t, UTC)),
    )
    chart = svg_chart("drift-chart", f"Drift score per column over time ({threshold})", [panel], columns=1, panel_width=900)
    rows = [
        "<tr>"
        + "".join(
            f"<td>{c}</td>"
            for c in (
                escape(_when(p.time)),
                '<span class="bad">drift</span>' if p.drifted else '<span class="good">no drift</span>',
                _number(p.rows),
                escape(p.reason),
                _run_link(monitor_dag_id(view.pipeline), p.run_id, urls),
                f'<a target="_blank" href="{urls.report(view.pipeline, p.report_key)}">report</a>' if p.report_key else "",
            )
        )
        + "</tr>"
        for p in reversed(checks[-10:])
    ]
    table = _table(["time", "verdict", "rows", "reason", "run", ""], rows) if rows else '<p class="muted">No drift check yet.</p>'
    return f'<section id="drift"><h2>Drift</h2>{chart}{table}</section>'


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
            _code(r.request_id),
            escape(_when(r.time)),
            escape(r.status),
            escape(", ".join(r.columns)),
            escape(r.reason),
            buttons,
        )
        rows.append(f'<tr data-request="{escape(r.request_id)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = (
        _table(["request", "filed", "status", "columns", "reason", ""], rows)
        if rows
        else '<p class="muted">No open retrain request.</p>'
    )
    return f'<section id="requests"><h2>Retrain requests</h2>{table}</section>'


def _runs(runs: Sequence[RunState], urls: Urls) -> str:
    rows = [
        "<tr>"
        + "".join(
            f"<td>{c}</td>"
            for c in (
                escape(r.dag_id),
                _run_link(r.dag_id, r.run_id, urls),
                _state(r.state),
                escape(r.run_type),
                escape(_when(r.run_after)),
            )
        )
        + "</tr>"
        for r in runs
    ]
    table = _table(["DAG", "run", "state", "type", "run after"], rows) if rows else '<p class="muted">No DAG run yet.</p>'
    return f'<section id="runs"><h2>DAG runs</h2>{table}</section>'


def _events(view: PipelineView, urls: Urls) -> str:
    rows = []
    for e in view.events:
        details = {k: v for k, v in e.items() if k not in ("time", "pipeline", "kind", "user", "version", "reason", "figures")}
        kind = str(e.get("kind", ""))
        run_id = _event_run(e)
        cells = (
            escape(_short_time(e.get("time"))),
            escape(kind),
            escape(str(e.get("user") or "")),
            _code(e.get("version")) if e.get("version") else "",
            escape(str(e.get("reason") or "")),
            _run_link(monitor_dag_id(view.pipeline), run_id, urls) if run_id else "",
            f"<code>{escape(json.dumps(details, default=str)[:300])}</code>" if details else "",
        )
        rows.append(f'<tr data-kind="{escape(kind)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    shown = f"newest {len(rows)} of {view.events_total}" if view.events_total > len(rows) else f"{view.events_total}"
    table = _table(["time", "event", "user", "version", "reason", "run", "details"], rows) if rows else ""
    return f'<section id="events"><h2>Events ({shown}, newest first)</h2>{table}</section>'


# --- small pieces ------------------------------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    return (
        f"<table><thead><tr>{''.join(f'<th>{escape(h)}</th>' for h in head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _code(value: Any) -> str:
    return f"<code>{escape(str(value))}</code>" if value is not None else ""


def _version_since(version: str | None, since: str | None) -> str:
    if not version:
        return '<span class="muted">none</span>'
    return f'{_code(version)} <span class="muted">since {escape(_short_time(since))}</span>' if since else _code(version)


def _run_state(run: RunState | None, urls: Urls) -> str:
    if run is None:
        return '<span class="muted">never run</span>'
    return (
        f"{_state(run.state)} {_run_link(run.dag_id, run.run_id, urls)} <span class=muted>{escape(_when(run.run_after))}</span>"
    )


def _drift_state(point: DriftPoint | None) -> str:
    if point is None:
        return '<span class="muted">none yet</span>'
    verdict = '<span class="bad">drift</span>' if point.drifted else '<span class="good">no drift</span>'
    return f"{verdict} <span class=muted>{escape(_when(point.time))}</span>"


def _run_link(dag_id: str, run_id: str | None, urls: Urls) -> str:
    return f'<a target="_top" href="{urls.run(dag_id, run_id)}">{escape(run_id)}</a>' if run_id else ""


def _state(state: str) -> str:
    return f'<span class="state-{escape(state)}">{escape(state)}</span>'


def _step_kind(step: CanaryStep) -> str:
    if step.kind == "canary_analysis":
        return '<span class="good">passed</span>' if step.passed else '<span class="bad">failed</span>'
    return escape(step.kind.replace("_", " "))


def _event_run(event: dict[str, Any]) -> str | None:
    """The monitor run behind a drift check or a retrain request (their ids carry it)."""
    event_id = str(event.get("event_id") or "")
    for kind, prefix in (("drift_check", "drift-"), ("retrain_request", "retrain-")):
        if event.get("kind") == kind and event_id.startswith(prefix):
            return event_id.removeprefix(prefix)
    return None


def _pair(a: float | None, b: float | None, fmt: str) -> str:
    def one(v: float | None) -> str:
        return "–" if v is None else escape(fmt.format(v))

    return f"{one(a)} / {one(b)}" if a is not None or b is not None else ""


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return escape(f"{value:d}" if isinstance(value, int) else f"{value:.4g}")


def _percent(weight: float | None) -> str:
    return "" if weight is None else escape(f"{weight:g}%")


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def _short_time(value: str | None) -> str:
    if not value:
        return ""
    try:
        return _when(datetime.fromisoformat(value))
    except ValueError:
        return value
