"""The batch scoring section of a pipeline's page, after a real scoring run through the stage functions."""

from __future__ import annotations

import re

import ops_scene
import pytest
import yaml
from churn_setup import COLUMNS, PIPELINE, production_store
from ops_scene import REPO

from airflow_mlops.config.data import ValidationConfig
from airflow_mlops.factories.loader import load_pipeline_config
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.plugins.pages.layout import Urls
from airflow_mlops.plugins.pages.pipeline import pipeline_page
from airflow_mlops.plugins.readers.pipeline import pipeline_view
from airflow_mlops.stages import data, scoring
from airflow_mlops.store.layout import report_prefix

built = ops_scene.built  # pytest fixture
URLS = Urls(app="/base/mlops", airflow="/base")
THRESHOLDS = ValidationConfig().model_dump()
RUN = "scheduled__2026-12-01T00:00:00+00:00"


def config_file(tmp_path, scoring_section: dict | None):
    config = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
    if scoring_section:
        config["scoring"] = scoring_section
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_pipeline_config(path)


def section(page: str) -> str:
    return re.search(r'<section id="scoring">(.*?)</section>', page, re.S).group(1)


@pytest.fixture
def scored(built, tmp_path):
    """A production model, its schema, and one scoring run with 10% unseen contracts, those rows skipped."""
    store = production_store(built, tmp_path)
    data.validate(store, PIPELINE, built.dataset["dataset_id"], COLUMNS, THRESHOLDS, run_id="train")
    frame = make_churn(300, seed=3).drop(columns=["churned"])
    frame.loc[frame.index % 10 == 0, "contract"] = "<lifetime>"
    path = tmp_path / "in<put>.parquet"
    frame.to_parquet(path, index=False)
    dataset_id = data.acquire(store, PIPELINE, str(path))["dataset_id"]
    version = scoring.resolve_model(store, PIPELINE)["model_version"]
    checked = scoring.validate_input(store, PIPELINE, dataset_id, THRESHOLDS, on_anomaly="skip_rows", run_id=RUN)
    result = scoring.score(store, PIPELINE, dataset_id, version, skip=checked["skip"], log_sample=0.1)
    record = scoring.publish(
        store, PIPELINE, result, run_id=RUN, source=str(path), anomalies=checked["anomalies"], report_uri=checked["report_uri"]
    )
    return store, record


class TestScoringSection:
    def test_lists_the_run_with_input_rows_version_output_and_anomalies(self, scored, tmp_path):
        store, record = scored
        view = pipeline_view(store, config_file(tmp_path, {"input": {"uri": str(tmp_path / "*.parquet")}}), [])
        [run] = view.scoring
        assert (run.run_id, run.rows, run.skipped_rows, run.anomalies) == (RUN, 270, 30, 1)
        assert (run.model_version, run.output_uri, run.dataset_id) == (
            record["model_version"],
            record["output_uri"],
            record["dataset_id"],
        )
        html = section(pipeline_page(view, URLS))
        tr = re.search(r'<tr data-run="[^"]+">(.*?)</tr>', html, re.S).group(1)
        assert "in&lt;put&gt;.parquet" in tr and "<put>" not in tr, "the input path is escaped"
        assert "<td>270</td>" in tr and record["model_version"] in tr and record["output_uri"] in tr
        assert '<span class="bad">1 anomalies, 30 rows skipped</span>' in tr
        report = f"/base/mlops/reports/churn/{report_prefix(PIPELINE, RUN)}/scoring_validation.html"
        assert f'href="{report}"' in tr and store.exists(f"{report_prefix(PIPELINE, RUN)}/scoring_validation.html")
        assert 'href="/base/dags/mlops_churn_scoring/runs/' in tr and f"<td>{record['logged_rows']}</td>" in tr

    def test_without_a_scoring_section_or_a_run_says_so(self, built, tmp_path):
        store = production_store(built, tmp_path)
        html = section(pipeline_page(pipeline_view(store, config_file(tmp_path, None), []), URLS))
        assert "its config has no scoring section" in html
        configured = config_file(tmp_path, {"input": {"uri": str(tmp_path / "*.parquet")}})
        assert "No scoring run yet." in section(pipeline_page(pipeline_view(store, configured, []), URLS))
