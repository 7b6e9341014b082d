"""The model versions section of a pipeline's page: status, gate metric and reasons, lineage, run and reports."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from airflow_mlops.plugins.pages.cells import code, number, short_time, table

if TYPE_CHECKING:
    from airflow_mlops.plugins.pages.layout import Urls
    from airflow_mlops.plugins.readers.pipeline import PipelineView


def versions_section(view: PipelineView, urls: Urls) -> str:
    """One row per registered version, newest first, with its aliases, decisions, why it was trained and its reports."""
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
            f"{code(v.version)} {tags}<div class=muted>{escape(short_time(v.registered_at))}</div>",
            status,
            f'<td class="num">{number(v.metric)}</td>',
            escape(v.gate_reason),
            escape(v.canary),
            escape(v.watch),
            code(v.dataset_id[:12]) if v.dataset_id else "",
            escape(v.why),
            run,
            reports,
        ]
        rows.append(
            f'<tr data-version="{escape(v.version)}">'
            + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    listed = table(head, rows) if rows else '<p class="muted">No model registered yet.</p>'
    return f'<section id="versions"><h2>Model versions</h2>{listed}</section>'
