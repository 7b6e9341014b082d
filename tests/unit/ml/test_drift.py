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


def _whole_frame_psi(values, quantiles):
    """PSI as the drift check computed it over every row at once, before the counts were merged per file."""
    import numpy as np

    edges = np.asarray(quantiles, dtype=float)
    levels = np.linspace(0.0, 1.0, len(edges))
    values = values[~np.isnan(values)]
    unique, first = np.unique(edges, return_index=True)
    expected = np.clip(np.diff(np.concatenate([[0.0], levels[first], [1.0]])), 1e-4, None)
    actual = np.bincount(np.searchsorted(unique, values, side="right"), minlength=len(unique) + 1) / len(values)
    actual = np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class TestDriftCounts:
    @pytest.mark.parametrize("method", [pytest.param("psi", id="psi"), pytest.param("ks", id="ks")])
    def test_counts_merged_per_frame_score_as_all_rows_at_once(self, profile, method):
        from airflow_mlops.ml.drift import DriftCounts

        frame = make_churn(9000, seed=4, drift=0.5)
        counts = DriftCounts(profile, method)
        for start in (0, 1000, 1001, 4000):  # uneven pieces, one of a single row
            counts.add(frame.iloc[start : {0: 1000, 1000: 1001, 1001: 4000, 4000: 9000}[start]])
        merged = counts.result(column_threshold=0.1, share_threshold=0.3)
        whole = detect_drift(frame, profile, method=method, column_threshold=0.1, share_threshold=0.3)
        assert merged == whole  # the same scores to the bit (KS: fewer rows than the sample holds, so exact)
        assert merged.rows == 9000

    def test_merged_psi_equals_the_whole_frame_formula(self, profile):
        from airflow_mlops.ml.drift import DriftCounts

        frame = make_churn(6000, seed=8, drift=1.0)
        counts = DriftCounts(profile, "psi")
        for piece in (frame.iloc[:2500], frame.iloc[2500:]):
            counts.add(piece)
        scores = counts.scores()
        for col in NUMERIC:
            want = _whole_frame_psi(frame[col].to_numpy(dtype=float), profile["numeric"][col]["quantiles"])
            assert scores[col] == pytest.approx(want, abs=1e-12, rel=0)

    def test_a_column_some_frames_lack_counts_as_their_nulls(self, profile):
        from airflow_mlops.ml.drift import DriftCounts

        frame = make_churn(2000, seed=2)
        counts = DriftCounts(profile, "psi").add(frame.iloc[:1000].drop(columns=["region", "tenure_months"]))
        counts.add(frame.iloc[1000:])
        whole = frame.copy()
        whole.loc[:999, ["region", "tenure_months"]] = None
        assert counts.scores() == detect_drift(whole, profile, method="psi", column_threshold=0.1, share_threshold=0.3).scores
        assert list(counts.scores())[:4] == NUMERIC  # the profile's order, whichever frame had a column first

    def test_ks_on_many_rows_uses_a_bounded_sample_within_its_bound(self, profile, monkeypatch):
        import numpy as np

        from airflow_mlops.ml import drift

        monkeypatch.setattr(drift, "KS_SAMPLE_ROWS", 2000)
        frame = make_churn(40_000, seed=6, drift=0.5)
        counts = drift.DriftCounts(profile, "ks")
        for start in range(0, len(frame), 5000):
            counts.add(frame.iloc[start : start + 5000])
        assert len(counts.sample.frame) == 2000 and counts.sample.rows == 40_000
        sampled = counts.scores()
        exact = {c: drift.numeric_score(frame[c].to_numpy(dtype=float), profile["numeric"][c], "ks") for c in NUMERIC}
        bound = np.sqrt(np.log(2 / 1e-3) / (2 * 2000 * 0.98))  # DKW at 99.9%, nulls aside
        for col in NUMERIC:
            assert abs(sampled[col] - exact[col]) <= bound
        categorical = detect_drift(frame, profile, method="ks", column_threshold=0.1, share_threshold=0.3).scores
        assert all(sampled[c] == categorical[c] for c in CATEGORICAL)  # categorical KS stays exact
