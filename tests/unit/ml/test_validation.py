"""The volume check of ``ml/validation.py``: judged only against a real history, and the report says what was
compared with what (or why nothing was)."""

import pytest

from airflow_mlops.config.data import ValidationConfig
from airflow_mlops.ml.schema import infer_schema
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.ml.validation import Thresholds, validate
from airflow_mlops.ml.validation_report import render_report_html

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"]
CATEGORICAL = ["contract", "payment_method", "region"]


def thresholds(**given) -> Thresholds:
    """The config's validation defaults with ``given`` on top."""
    return Thresholds(**ValidationConfig(**given).model_dump())


@pytest.fixture(scope="module")
def schema():
    return infer_schema(
        make_churn(2000, seed=1), numeric=NUMERIC, categorical=CATEGORICAL, label="churned", task="classification"
    )


@pytest.fixture(scope="module")
def frame():
    return make_churn(400, seed=2)


def volume_anomalies(report):
    return [a for a in report.anomalies if a.kind == "volume_change"]


class TestVolumeHistory:
    def test_the_default_needs_three_accepted_datasets(self):
        assert ValidationConfig().min_volume_history == 3

    @pytest.mark.parametrize(
        ("history", "seen"),
        [
            pytest.param([], "no earlier accepted dataset to compare with", id="first-dataset"),
            pytest.param([1000], "only 1 earlier accepted dataset (1000 rows)", id="one-earlier"),
            pytest.param([1000, 1100], "only 2 earlier accepted datasets (1000, 1100 rows)", id="two-earlier"),
        ],
    )
    def test_a_short_history_is_not_judged_and_the_report_says_why(self, schema, frame, history, seen):
        report = validate(frame, schema, thresholds(), history_rows=history)  # 400 rows: 0.4x the first
        assert report.ok and not volume_anomalies(report)
        [note] = report.notes
        assert note.startswith("volume_change not applied: 400 rows, and ")
        assert seen in note and "validation.min_volume_history (3)" in note
        assert report.volume == {
            "rows": 400,
            "history_rows": history,
            "min_history": 3,
            "allowed": [0.5, 5.0],
            "applied": False,
        }
        page = render_report_html(report, pipeline="churn", dataset_id="d", schema_uri="s")
        assert "Notes" in page and "volume_change not applied" in page
        assert report.to_dict()["notes"] == [note] and report.to_dict()["volume"]["applied"] is False

    def test_a_real_history_still_flags_a_dataset_at_0_4x(self, schema, frame):
        report = validate(frame, schema, thresholds(), history_rows=[1000, 980, 1050])
        [anomaly] = volume_anomalies(report)
        assert anomaly.column == "*"
        assert anomaly.message == (
            "400 rows is 0.40x the median of the last 3 accepted datasets (1000; their rows: 1000, 980, 1050); allowed [0.5, 5]x"
        )
        assert report.volume["applied"] is True and report.volume["median"] == 1000
        assert report.volume["ratio"] == pytest.approx(0.4) and report.notes == []

    def test_a_usual_volume_passes_naming_what_it_was_compared_with(self, schema, frame):
        report = validate(frame, schema, thresholds(), history_rows=[380, 1_200_000, 410, 395])
        assert report.ok
        assert report.notes == [
            "volume_change passed: 400 rows is 0.99x the median of the last 4 accepted datasets (402.5; their rows: "
            "380, 1200000, 410, 395); allowed [0.5, 5]x"
        ], "counts are written as digits, never 1.2e+06"

    def test_one_accepted_dataset_is_enough_when_set_so(self, schema, frame):
        """``min_volume_history: 1`` is the rule from before the setting: the second dataset is judged by the first."""
        report = validate(frame, schema, thresholds(min_volume_history=1), history_rows=[1000])
        [anomaly] = volume_anomalies(report)
        assert anomaly.message.startswith("400 rows is 0.40x the median of the last 1 accepted datasets (1000")

    def test_no_history_given_checks_no_volume(self, schema, frame):
        report = validate(frame, schema, thresholds())
        assert report.ok and report.volume is None and report.notes == []
        assert "Notes" not in render_report_html(report, pipeline="churn", dataset_id="d", schema_uri="s")
