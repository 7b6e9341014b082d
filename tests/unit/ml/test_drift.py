import json

import pytest

from airflow_mlops.ml.drift import detect_drift
from airflow_mlops.ml.profile import build_profile
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.ml.transform import add_frame, new_stats

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"]
CATEGORICAL = ["contract", "payment_method", "region"]


@pytest.fixture(scope="module")
def profile():
    import numpy as np

    frame = make_churn(5000, seed=1)
    stats = add_frame(new_stats(NUMERIC, CATEGORICAL), frame)
    quantiles = {c: list(np.nanquantile(frame[c].to_numpy(float), np.linspace(0, 1, 11))) for c in NUMERIC}
    return json.loads(json.dumps(build_profile(stats, quantiles)))


class TestDetectDrift:
    def test_same_distribution_does_not_drift(self, profile):
        result = detect_drift(make_churn(1500, seed=9), profile, method="psi", column_threshold=0.2, share_threshold=0.3)
        assert not result.drifted and result.drifted_columns == []
        assert max(result.scores.values()) < 0.2

    def test_shifted_data_drifts_and_names_its_columns(self, profile):
        result = detect_drift(
            make_churn(1500, seed=9, drift=1.0), profile, method="psi", column_threshold=0.2, share_threshold=0.3
        )
        assert result.drifted
        assert {"monthly_charges", "tenure_months", "contract"} <= set(result.drifted_columns)
        assert "payment_method" not in result.drifted_columns
        assert "monthly_charges=" in result.reason

    def test_ks_method(self, profile):
        drifted = detect_drift(
            make_churn(1500, seed=9, drift=1.0), profile, method="ks", column_threshold=0.2, share_threshold=0.3
        )
        assert drifted.drifted and "monthly_charges" in drifted.drifted_columns

    def test_missing_columns_are_ignored(self, profile):
        result = detect_drift(
            make_churn(500, seed=3)[["contract"]], profile, method="psi", column_threshold=0.2, share_threshold=0.3
        )
        assert list(result.scores) == ["contract"]
