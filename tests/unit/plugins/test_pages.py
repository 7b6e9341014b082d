"""The ops pages built from a real store (no server): what each section shows, and that file values are escaped."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from html import escape

import ops_scene
import pytest
from ops_scene import FIRST_RUN, HOSTILE, MONITOR_RUNS, PIPELINE

from airflow_mlops.factories.loader import load_pipeline_config
from airflow_mlops.plugins.pages.layout import Urls
from airflow_mlops.plugins.pages.overview import overview_page
from airflow_mlops.plugins.pages.pipeline import pipeline_page
from airflow_mlops.plugins.readers.events import read_events
from airflow_mlops.plugins.readers.overview import overview_row
from airflow_mlops.plugins.readers.performance import performance_view
from airflow_mlops.plugins.readers.pipeline import pipeline_view
from airflow_mlops.plugins.readers.pipelines import RunState, find_pipelines, pipeline_of_dag
from airflow_mlops.store.layout import report_prefix

built, scene = ops_scene.built, ops_scene.scene_fixture  # pytest fixtures
URLS = Urls(app="/base/mlops", airflow="/base")
RUN = RunState(f"mlops_{PIPELINE}_training", FIRST_RUN, "success", "scheduled", datetime(2026, 11, 20, tzinfo=UTC))


@pytest.fixture(scope="module")
def view(scene):
    return pipeline_view(scene.store, load_pipeline_config(scene.config_path), [RUN])


@pytest.fixture(scope="module")
def page(view):
    return pipeline_page(view, URLS)


def section(page: str, name: str) -> str:
    return re.search(rf'<section id="{name}">(.*?)</section>', page, re.S).group(1)


class TestOverview:
    def test_row_shows_production_canary_run_drift_and_request(self, scene):
        row = overview_row(scene.store, PIPELINE, RUN)
        assert (row.production, row.canary, row.canary_weight) == (scene.production, scene.canary, 20)
        assert row.drift.drifted and row.drift.run_id == MONITOR_RUNS[1]
        assert [r.request_id for r in row.open_requests] == [scene.request_id]
        html = overview_page([row], ["bad.yaml: pipeline: <b>"], URLS, source="/dags/**/*.yaml")
        tr = re.search(r'<tr data-pipeline="churn">(.*?)</tr>', html, re.S).group(1)
        assert scene.production in tr and f"{scene.canary}</code> at 20%" in tr
        assert 'href="/base/dags/mlops_churn_training/runs/scheduled__2026-11-20T00%3A00%3A00%2B00%3A00"' in tr
        assert '<span class="bad">drift</span>' in tr and scene.request_id in tr
        assert "bad.yaml: pipeline: &lt;b&gt;" in html, "config errors are listed, escaped"

    def test_no_pipelines_says_where_it_looked(self):
        html = overview_page([], [], URLS, source="/srv/<dags>/*.yaml")
        assert "No pipeline config found in <code>/srv/&lt;dags&gt;/*.yaml</code>" in html


class TestPipelinePage:
    def test_versions_with_status_metric_and_why(self, scene, page):
        versions = section(page, "versions")
        rows = dict(re.findall(r'<tr data-version="([^"]+)">(.*?)</tr>', versions, re.S))
        assert set(rows) == {scene.production, scene.canary, scene.rejected}
        assert "production" in rows[scene.production] and "schedule" in rows[scene.production]
        assert "canary" in rows[scene.canary] and "retrain request" in rows[scene.canary]
        assert "rejected" in rows[scene.rejected] and "blessed" in rows[scene.canary]
        card = f"/base/mlops/reports/churn/models/churn/{scene.production}/card.html"
        evaluation = f"/base/mlops/reports/churn/{report_prefix(PIPELINE, FIRST_RUN)}/evaluation.html"
        assert card in rows[scene.production] and evaluation in rows[scene.production]

    def test_canary_figures_and_chart(self, scene, view, page):
        assert view.canary_version == scene.canary
        analysis = next(s for s in view.canary_steps if s.kind == "canary_analysis")
        assert analysis.requests == 20 and analysis.production_requests == 20 and analysis.ks is not None
        canary = section(page, "canary")
        assert f"{analysis.error_rate:.2%} / {analysis.production_error_rate:.2%}" in canary
        chart = re.search(r'<svg id="canary-chart".*?</svg>', canary, re.S).group(0)
        assert chart.count("<polyline") >= 5 and "p95 latency" in chart and "step 1 (20%)" in chart

    def test_drift_chart_has_a_line_per_column_and_the_threshold(self, view, page):
        assert [p.run_id for p in view.drift] == list(MONITOR_RUNS) and view.drift_threshold == 0.2
        chart = re.search(r'<svg id="drift-chart".*?</svg>', section(page, "drift"), re.S).group(0)
        columns = set(view.drift[0].scores)
        assert len(columns) == 7 and chart.count("<polyline") == len(columns)
        assert 'class="limit"' in chart and "threshold 0.2" in chart
        drift_report = f"/base/mlops/reports/churn/{report_prefix(PIPELINE, MONITOR_RUNS[1])}/drift.html"
        assert drift_report in section(page, "drift")

    def test_performance_chart_and_windows_with_band_threshold_and_request(self, scene, view, page):
        first, drop = scene.performance
        performance = section(page, "performance")
        dropped = next(w for w in view.performance.windows if w.dropped)
        assert drop["window"][0] == dropped.start.isoformat() and dropped.verdict == "drop"
        assert sum(w.judged for w in view.performance.windows) == 3, "three days of labels, each window judged"
        assert dropped.threshold == pytest.approx(drop["reference"]["value"] - 0.05)
        tr = re.search(rf'<tr data-start="{re.escape(dropped.start.isoformat())}">(.*?)</tr>', performance, re.S).group(1)
        realized, reference = drop["realized"], drop["reference"]
        assert f"{realized['value']:.4f} [{realized['interval'][0]:.4f}, {realized['interval'][1]:.4f}]" in tr
        assert f"{reference['value']:.4f} [{reference['interval'][0]:.4f}, {reference['interval'][1]:.4f}]" in tr
        assert f"{reference['value'] - 0.05:.4f}" in tr and '<span class="bad">drop</span>' in tr
        assert f"{dropped.estimated:.4f} [" in tr, "the estimate (CBPE) beside the realized figure"
        assert "above max_drop 0.05" in tr and "400" in tr
        assert first["reason"].startswith("no drop above max_drop 0.05") and '<span class="good">within</span>' in performance
        chart = re.search(r'<svg id="performance-chart".*?</svg>', performance, re.S).group(0)
        assert chart.count("<polyline") >= 2 and "realized roc_auc" in chart and "estimated roc_auc (CBPE)" in chart
        assert chart.count('class="band"') >= 2 and "reference interval" in chart
        assert 'class="limit"' in chart and f"threshold {dropped.threshold:.4f} (reference − max_drop 0.05)" in chart
        latest = re.search(r'<p id="performance-latest">(.*?)</p>', performance, re.S).group(1)
        assert '<span class="bad">drop</span>' in latest and escape(drop["reason"]) in latest
        request = re.search(r'<p id="performance-request">(.*?)</p>', performance, re.S).group(1)
        assert scene.request_id in request and "open" in request and escape(drop["reason"]) in request

    def test_performance_says_when_there_is_nothing_to_show(self, scene, view):
        empty = dataclasses.replace(view.performance, windows=[], latest=None, request=None)
        html = section(pipeline_page(dataclasses.replace(view, performance=empty), URLS), "performance")
        assert "No performance check yet." in html and "No retrain request filed for performance." in html
        config = load_pipeline_config(scene.config_path)
        unjudged = config.model_copy(update={"monitor": config.monitor.model_copy(update={"labels": None})})
        assert performance_view(unjudged, []) == dataclasses.replace(empty, configured=False)
        html = section(pipeline_page(dataclasses.replace(view, performance=performance_view(unjudged, [])), URLS), "performance")
        assert "its config has no monitor.labels or monitor.performance" in html and "<svg" not in html

    def test_open_request_has_approve_and_dismiss(self, scene, page):
        requests = section(page, "requests")
        for decision in ("approve", "dismiss"):
            assert f'data-action="{decision}" data-request="{scene.request_id}"' in requests
        assert (
            f"/base/mlops/pipelines/churn/requests/{scene.request_id.replace(':', '%3A').replace('+', '%2B')}/approve" in requests
        )

    def test_controls_and_result_area(self, page):
        for action in ("promote", "rollback", "pause", "resume"):
            assert f'data-action="{action}"' in page and f'data-url="/base/mlops/pipelines/churn/actions/{action}"' in page
        assert '<div id="action-result"' in page

    def test_events_newest_first_and_escaped(self, view, page):
        kinds = re.findall(r'<tr data-kind="([^"]+)">', section(page, "events"))
        assert kinds[0] == "note" and kinds[-1] == "promote" and len(kinds) == view.events_total
        assert HOSTILE not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page

    def test_runs_link_to_airflow(self, page):
        assert 'href="/base/dags/mlops_churn_training/runs/scheduled__2026-11-20T00%3A00%3A00%2B00%3A00"' in section(page, "runs")

    def test_events_are_capped(self, scene):
        view = pipeline_view(scene.store, load_pipeline_config(scene.config_path), [], events_shown=3)
        assert len(view.events) == 3 and view.events_total > 3
        assert f"Events (newest 3 of {view.events_total}" in pipeline_page(view, URLS)


class TestPipelinesFromConfigs:
    def test_loads_pipelines_and_names_broken_ones(self, scene, tmp_path):
        (tmp_path / "other.yaml").write_text("not_a_pipeline: true\n")
        (tmp_path / "broken.yaml").write_text("pipeline: broken\nlabel: y\n")
        found = find_pipelines(f"{scene.config_path.parent},{tmp_path}")
        assert list(found.configs) == ["churn"]
        assert len(found.errors) == 1 and "broken.yaml" in found.errors[0]

    @pytest.mark.parametrize(
        ("dag_id", "tags", "pipeline"),
        [
            pytest.param("mlops_churn_training", [], "churn", id="training"),
            pytest.param("mlops_fraud_v2_monitor", [], "fraud_v2", id="monitor"),
            pytest.param("my_dag", ["pipeline:churn"], "churn", id="tag"),
            pytest.param("my_dag", ["example"], None, id="none"),
        ],
    )
    def test_pipeline_of_dag(self, dag_id, tags, pipeline):
        assert pipeline_of_dag(dag_id, tags) == pipeline


class TestEventsCache:
    def test_parses_appends_and_rewrites_like_the_store(self, tmp_path):
        from airflow_mlops.store import events
        from airflow_mlops.store.artifacts import ArtifactStore

        store = ArtifactStore.from_uri(str(tmp_path / "store"))
        assert read_events(store, PIPELINE) == []
        events.append_event(store, PIPELINE, "one", reason="a")
        assert read_events(store, PIPELINE) == events.read_events(store, PIPELINE)
        events.append_event(store, PIPELINE, "two", reason="b")
        assert [e["kind"] for e in read_events(store, PIPELINE)] == ["one", "two"]
        store.write_text(f"events/{PIPELINE}.jsonl", '{"kind": "other", "time": "2026-11-25T00:00:00+00:00"}\n')
        assert [e["kind"] for e in read_events(store, PIPELINE)] == ["other"], "a rewritten log is parsed whole"
