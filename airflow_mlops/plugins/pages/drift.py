"""The drift section of a pipeline's page: each column's score over the drift checks, charted against the
threshold, and the latest checks with their verdicts, runs and reports."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

from airflow_mlops.plugins.charts import PALETTE, Panel, Series, svg_chart
from airflow_mlops.plugins.pages.cells import number, row, run_link, table, when
from airflow_mlops.plugins.readers.pipelines import monitor_dag_id

if TYPE_CHECKING:
    from airflow_mlops.plugins.pages.layout import Urls
    from airflow_mlops.plugins.readers.pipeline import PipelineView


def drift_section(view: PipelineView, urls: Urls) -> str:
    """A line per column over time with the column threshold, then the newest ten checks."""
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
        x_label=lambda t: when(datetime.fromtimestamp(t, UTC)),
    )
    chart = svg_chart("drift-chart", f"Drift score per column over time ({threshold})", [panel], columns=1, panel_width=900)
    rows = [
        row(
            (
                escape(when(p.time)),
                '<span class="bad">drift</span>' if p.drifted else '<span class="good">no drift</span>',
                number(p.rows),
                escape(p.reason),
                run_link(monitor_dag_id(view.pipeline), p.run_id, urls),
                f'<a target="_blank" href="{urls.report(view.pipeline, p.report_key)}">report</a>' if p.report_key else "",
            )
        )
        for p in reversed(checks[-10:])
    ]
    listed = table(["time", "verdict", "rows", "reason", "run", ""], rows) if rows else '<p class="muted">No drift check yet.</p>'
    return f'<section id="drift"><h2>Drift</h2>{chart}{listed}</section>'
