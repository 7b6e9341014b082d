"""The performance section of a pipeline's page: realized and estimated performance per window, charted against
the production model's reference band and the max_drop threshold, the latest windows with their verdicts, the
newest check's reason and the retrain request a drop filed."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

from airflow_mlops.plugins.charts import PALETTE, Band, Panel, Series, svg_chart
from airflow_mlops.plugins.pages.cells import code, number, row, run_link, table, when
from airflow_mlops.plugins.readers.pipelines import monitor_dag_id

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_mlops.plugins.pages.layout import Urls
    from airflow_mlops.plugins.readers.performance import Interval, PerformanceView, PerformanceWindow
    from airflow_mlops.plugins.readers.pipeline import PipelineView

PERFORMANCE_ROWS = 10
"""Latest windows listed under the chart."""
NOT_CONFIGURED = "This pipeline judges no performance: its config has no monitor.labels or monitor.performance."
VERDICTS = {"drop": "bad", "estimated drop": "bad", "within": "good", "not judged": "muted"}


def performance_section(view: PipelineView, urls: Urls) -> str:
    """The chart of the windows, the newest check's reason, the performance request, then the latest windows."""
    performance = view.performance
    parts = [_request(performance)]
    if performance.latest is None:
        parts.insert(0, f'<p class="muted">{"No performance check yet." if performance.configured else NOT_CONFIGURED}</p>')
    else:
        latest = performance.latest
        verdict = '<span class="bad">drop</span>' if latest.dropped else '<span class="good">no drop</span>'
        if latest.estimated_warning:
            verdict += ' <span class="bad">estimated drop (warning)</span>'
        run = run_link(monitor_dag_id(view.pipeline), latest.run_id, urls)
        parts.insert(
            0,
            f'<p id="performance-latest">Latest check {escape(when(latest.time))} {run}: {verdict}: {escape(latest.reason)}</p>',
        )
        parts.insert(0, _chart(performance))
        parts.append(_table(performance.windows) if performance.windows else '<p class="muted">The check had no window.</p>')
    return f'<section id="performance"><h2>Performance</h2>{"".join(parts)}</section>'


def _chart(performance: PerformanceView) -> str:
    windows = performance.windows
    metric = next((w.metric for w in reversed(windows) if w.metric), "metric")
    mid = [(w.start.timestamp() + w.end.timestamp()) / 2 for w in windows]
    realized = Series(f"realized {metric}", list(zip(mid, (w.realized for w in windows), strict=True)), PALETTE[0])
    estimated = Series(
        f"estimated {metric} (CBPE)", list(zip(mid, (w.estimated for w in windows), strict=True)), PALETTE[3], dashed=True
    )
    spread = Band(
        "realized interval",
        [(x, *(w.realized_interval or (None, None))) for x, w in zip(mid, windows, strict=True)],
        PALETTE[0],
    )
    reference = Band("reference interval", _per_window(windows, lambda w: w.reference_interval))
    series = [realized, estimated]
    thresholds = {w.threshold for w in windows if w.threshold is not None}
    limit, limit_label = None, ""
    max_drop = next((w.max_drop for w in reversed(windows) if w.max_drop is not None), None)
    rule = f"reference − max_drop {max_drop:g}" if max_drop is not None else "reference − max_drop"
    if len(thresholds) == 1:
        limit = thresholds.pop()
        limit_label = f"threshold {limit:.4f} ({rule})"
    elif thresholds:  # the production model (and its reference) changed within the windows shown
        points = [(x, y) for x, _, y in _per_window(windows, lambda w: (w.threshold, w.threshold))]
        series.append(Series(f"threshold ({rule})", points, "#000", dashed=True))
    panel = Panel(
        f"{metric} per window: realized and estimated, reference band, threshold",
        series,
        limit=limit,
        limit_label=limit_label,
        x_label=lambda t: when(datetime.fromtimestamp(t, UTC)),
        y_label=lambda y: f"{y:.3f}",
        bands=[reference, spread],
        from_zero=False,
    )
    title = f"Realized and estimated {metric} per window against the reference band and {limit_label or 'the threshold'}"
    return svg_chart("performance-chart", title, [panel], columns=1, panel_width=900)


def _per_window(
    windows: list[PerformanceWindow], bounds: Callable[[PerformanceWindow], Interval | None]
) -> list[tuple[float, float | None, float | None]]:
    """A step over each window's span (start to end) of ``bounds``, with a gap where windows are not adjacent or
    the bounds change."""
    points: list[tuple[float, float | None, float | None]] = []
    previous = None
    for w in windows:
        low, high = bounds(w) or (None, None)
        if points and (previous is None or previous.end != w.start or bounds(previous) != (low, high)):
            points.append((w.start.timestamp(), None, None))
        points += [(w.start.timestamp(), low, high), (w.end.timestamp(), low, high)]
        previous = w
    return points


def _table(windows: list[PerformanceWindow]) -> str:
    rows = [
        row(
            (
                escape(f"{when(w.start)} to {when(w.end)}"),
                code(w.version),
                number(w.labels),
                _figure(w.realized, w.realized_interval),
                _figure(w.estimated, w.estimated_interval) or escape("not estimated" if w.estimated_why else ""),
                _figure(w.reference, w.reference_interval),
                _figure(w.threshold, None),
                f'<span class="{VERDICTS[w.verdict]}">{escape(w.verdict)}</span>',
                escape(w.reason),
            ),
            start=w.start.isoformat(),
        )
        for w in reversed(windows[-PERFORMANCE_ROWS:])
    ]
    head = ["window", "version", "labels", "realized [interval]", "estimated [interval]", "reference [interval]"]
    return table([*head, "threshold", "verdict", "reason"], rows)


def _figure(value: float | None, interval: Interval | None) -> str:
    """``0.8123 [0.7900, 0.8300]``; empty without a value."""
    if value is None:
        return ""
    if interval is None or None in interval:
        return escape(f"{value:.4f}")
    return escape(f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]")


def _request(performance: PerformanceView) -> str:
    request = performance.request
    if request is None:
        return '<p class="muted" id="performance-request">No retrain request filed for performance.</p>'
    trigger = f", {request.trigger} drop" if request.trigger else ""
    state = '<span class="bad">open</span>' if request.open else escape(request.status)
    return (
        f'<p id="performance-request">Retrain request {code(request.request_id)} ({state}, filed '
        f"{escape(when(request.time))}{escape(trigger)}): {escape(request.reason)}</p>"
    )
