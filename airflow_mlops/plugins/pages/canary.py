"""The canary section of a pipeline's page: the candidate's figures at each analysed step, charted, and its events."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import TYPE_CHECKING

from airflow_mlops.plugins.charts import PALETTE, Panel, Series, svg_chart
from airflow_mlops.plugins.pages.cells import number, percent, row, table, when

if TYPE_CHECKING:
    from airflow_mlops.plugins.readers.canary import CanaryStep
    from airflow_mlops.plugins.readers.pipeline import PipelineView

CANARY_ROWS = 30
"""Latest canary events listed under the chart."""


def canary_section(view: PipelineView) -> str:
    """Error rate, p95 latency, prediction divergence and label quality per analysed step, then the latest events."""
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
        row(
            (
                escape(when(s.time)),
                _step_kind(s),
                percent(s.weight),
                _pair(s.requests, s.production_requests, "{:d}"),
                _pair(s.error_rate, s.production_error_rate, "{:.2%}"),
                _pair(s.p95_ms, s.production_p95_ms, "{:.1f}"),
                number(s.ks),
                number(s.label_quality_ratio),
                escape(s.reason),
            )
        )
        for s in steps
    ]
    x = list(range(1, len(analyses) + 1))

    def series(name: str, values: Iterable[float | None], color: str, dashed: bool = False) -> Series:
        return Series(name, list(zip(x, values, strict=True)), color, dashed)

    step_label = {i: f"step {i} ({percent(s.weight)})" for i, s in zip(x, analyses, strict=True)}

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
    listed = table(head, rows[-CANARY_ROWS:]) if rows else '<p class="muted">No canary has run yet.</p>'
    return f'<section id="canary"><h2>{escape(title)}</h2>{chart}{listed}</section>'


def _step_kind(step: CanaryStep) -> str:
    if step.kind == "canary_analysis":
        return '<span class="good">passed</span>' if step.passed else '<span class="bad">failed</span>'
    return escape(step.kind.replace("_", " "))


def _pair(a: float | None, b: float | None, fmt: str) -> str:
    def one(v: float | None) -> str:
        return "–" if v is None else escape(fmt.format(v))

    return f"{one(a)} / {one(b)}" if a is not None or b is not None else ""
