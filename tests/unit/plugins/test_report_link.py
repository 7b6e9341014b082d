"""Report keys the ops UI may serve, and the task extra link that points at them."""

from __future__ import annotations

import pytest

from airflow_mlops.links.report import ReportLink, report_url
from airflow_mlops.store.layout import is_report_key, report_prefix

RUN = "scheduled__2026-11-20T00:00:00+00:00"


class TestIsReportKey:
    @pytest.mark.parametrize(
        "key",
        [
            pytest.param(f"{report_prefix('churn', RUN)}/evaluation.html", id="evaluation"),
            pytest.param("reports/churn/manual__x/traffic_quality.html", id="traffic-quality"),
            pytest.param("models/churn/1a0e2ed6ac78/card.html", id="card"),
        ],
    )
    def test_reports_and_cards(self, key):
        assert is_report_key("churn", key)

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param("reports/churn/../evaluation.html", id="dotdot"),
            pytest.param("reports/churn/./evaluation.html", id="dot"),
            pytest.param("reports/churn/run/../../x.html", id="deep"),
            pytest.param("reports/churn/run:1/evaluation.html", id="unsafe-run"),
            pytest.param("reports/fraud/run/evaluation.html", id="other-pipeline"),
            pytest.param("reports/churn/run/evaluation.json", id="json"),
            pytest.param("reports/churn/run/sub/evaluation.html", id="nested"),
            pytest.param("models/churn/v1/model.txt", id="model"),
            pytest.param("registry/churn.json", id="registry"),
            pytest.param("/reports/churn/run/evaluation.html", id="absolute"),
            pytest.param("reports//run/evaluation.html", id="empty-segment"),
        ],
    )
    def test_anything_else(self, key):
        assert not is_report_key("churn", key)


class TestReportLink:
    @pytest.mark.parametrize(
        ("uri", "url"),
        [
            pytest.param(
                "file:///srv/mlops/reports/churn/run_1/evaluation.html",
                "https://airflow.example/mlops/reports/churn/reports/churn/run_1/evaluation.html",
                id="file",
            ),
            pytest.param(
                "s3://bucket/team/mlops/reports/churn/run_1/drift.html",
                "https://airflow.example/mlops/reports/churn/reports/churn/run_1/drift.html",
                id="s3",
            ),
            pytest.param("s3://bucket/registry/churn.json", "s3://bucket/registry/churn.json", id="not-a-report"),
        ],
    )
    def test_points_at_the_ops_ui(self, uri, url):
        assert report_url(uri, "https://airflow.example/") == url

    def test_base_url_from_airflow_config(self, monkeypatch):
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080/airflow")
        uri = "file:///srv/mlops/reports/churn/run_1/validation.html"
        assert report_url(uri) == "http://127.0.0.1:8080/airflow/mlops/reports/churn/reports/churn/run_1/validation.html"

    def test_keeps_its_xcom_key(self):
        assert ReportLink.key == "mlops_report_uri" and ReportLink.name == "Report"
