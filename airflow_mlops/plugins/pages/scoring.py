"""The scoring section of a pipeline's page: the latest batch scoring runs, each with its input, rows, model
version, output, what validation found (anomalies, rows left out, its report), its time and run."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from airflow_mlops.plugins.pages.cells import code, number, row, run_link, table, when

if TYPE_CHECKING:
    from airflow_mlops.plugins.pages.layout import Urls
    from airflow_mlops.plugins.readers.pipeline import PipelineView
    from airflow_mlops.plugins.readers.scoring import ScoringRun

NOT_CONFIGURED = "This pipeline scores no table: its config has no scoring section."


def scoring_section(view: PipelineView, urls: Urls) -> str:
    """The latest scoring runs, newest first; a line saying why there is none."""
    if not view.scoring:
        why = "No scoring run yet." if view.scoring_configured else NOT_CONFIGURED
        return f'<section id="scoring"><h2>Batch scoring</h2><p class="muted">{why}</p></section>'
    rows = [
        row(
            (
                escape(when(s.time)),
                run_link(view.scoring_dag_id, s.run_id, urls),
                _input(s),
                number(s.rows),
                code(s.model_version),
                code(s.output_uri),
                _validation(s, view.pipeline, urls),
                "" if s.logged_rows is None else number(s.logged_rows),
            ),
            run=s.run_id or "",
        )
        for s in view.scoring
    ]
    head = ["time", "run", "input", "rows", "model version", "output", "anomalies / skipped rows", "logged rows"]
    return f'<section id="scoring"><h2>Batch scoring</h2>{table(head, rows)}</section>'


def _input(run: ScoringRun) -> str:
    dataset = f' <span class="muted">snapshot {code((run.dataset_id or "")[:12])}</span>' if run.dataset_id else ""
    return code(run.source) + dataset if run.source else dataset.strip()


def _validation(run: ScoringRun, pipeline: str, urls: Urls) -> str:
    anomalies = "" if run.anomalies is None else f"{run.anomalies} anomalies"
    cls = "bad" if run.anomalies or run.skipped_rows else "good"
    text = f'<span class="{cls}">{escape(anomalies or "-")}, {run.skipped_rows} rows skipped</span>'
    if run.report_key:
        text += f' <a target="_blank" href="{urls.report(pipeline, run.report_key)}">report</a>'
    return text
