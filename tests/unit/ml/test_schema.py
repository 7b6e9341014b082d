import numpy as np
import pandas as pd
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


def corrupt(kind: str) -> pd.DataFrame:
    frame = make_churn(1000, seed=2)
    rng = np.random.default_rng(0)
    if kind == "missing_column":
        return frame.drop(columns=["monthly_charges"])
    if kind == "extra_column":
        return frame.assign(promo_code="X")
    if kind == "type_change":
        return frame.assign(tenure_months=frame["tenure_months"].astype(str) + " months")
    if kind == "null_ratio":
        return frame.assign(monthly_charges=frame["monthly_charges"].mask(rng.random(len(frame)) < 0.4))
    if kind == "out_of_range":
        return frame.assign(monthly_charges=frame["monthly_charges"] * 100)
    if kind == "unseen_categories":
        return frame.assign(contract=np.where(rng.random(len(frame)) < 0.3, "lifetime", frame["contract"]))
    if kind == "empty_data":
        return frame.iloc[:0]
    raise AssertionError(kind)


class TestValidate:
    def test_schema_records_types_ranges_domains(self, schema):
        cols = schema["columns"]
        assert cols["contract"]["domain"] == ["month-to-month", "one-year", "two-year"]
        assert cols["tenure_months"]["role"] == "numeric" and cols["tenure_months"]["min"] == 0.0
        assert cols["customer_id"]["role"] == "passthrough"
        assert cols["churned"]["domain"] == ["0", "1"]

    def test_fresh_data_from_the_same_distribution_passes(self, schema):
        report = validate(make_churn(1000, seed=5), schema, thresholds(max_out_of_range_share=0.02))
        assert report.ok, report.anomalies

    @pytest.mark.parametrize(
        "kind",
        ["missing_column", "extra_column", "type_change", "null_ratio", "out_of_range", "unseen_categories", "empty_data"],
    )
    def test_each_corruption_is_caught(self, schema, kind):
        report = validate(corrupt(kind), schema, thresholds(min_rows=50))
        assert kind in {a.kind for a in report.anomalies}, report.anomalies
        html = render_report_html(report, pipeline="churn", dataset_id="abc", schema_uri="file:///s")
        assert "FAILED" in html and kind in html
