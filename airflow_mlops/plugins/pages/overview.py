"""The overview page: one row per pipeline, then the configs that could not be loaded."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from airflow_mlops.plugins.pages.cells import code, percent, row, run_link, state, version_since, when
from airflow_mlops.plugins.pages.layout import Urls, layout

if TYPE_CHECKING:
    from airflow_mlops.plugins.readers.drift import DriftPoint
    from airflow_mlops.plugins.readers.overview import OverviewRow
    from airflow_mlops.plugins.readers.pipelines import RunState


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


def _overview_row(entry: OverviewRow, urls: Urls) -> str:
    name = f'<a href="{urls.pipeline(entry.pipeline)}">{escape(entry.pipeline)}</a>'
    if entry.error:
        return f'<tr data-pipeline="{escape(entry.pipeline)}"><td>{name}</td><td colspan="5" class="bad">{escape(entry.error)}</td></tr>'
    production = version_since(entry.production, entry.production_since)
    canary = f"{code(entry.canary)} at {percent(entry.canary_weight)}" if entry.canary else '<span class="muted">none</span>'
    requests = "<br>".join(f"{escape(r.request_id)} ({escape(r.status)})" for r in entry.open_requests) or "none"
    cells = [name, production, canary, _run_state(entry.training, urls), _drift_state(entry.drift), requests]
    return row(cells, pipeline=entry.pipeline)


def _run_state(run: RunState | None, urls: Urls) -> str:
    if run is None:
        return '<span class="muted">never run</span>'
    return f"{state(run.state)} {run_link(run.dag_id, run.run_id, urls)} <span class=muted>{escape(when(run.run_after))}</span>"


def _drift_state(point: DriftPoint | None) -> str:
    if point is None:
        return '<span class="muted">none yet</span>'
    verdict = '<span class="bad">drift</span>' if point.drifted else '<span class="good">no drift</span>'
    return f"{verdict} <span class=muted>{escape(when(point.time))}</span>"
