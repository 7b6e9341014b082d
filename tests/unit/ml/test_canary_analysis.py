import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config.deployment import CanaryAnalysisConfig
from airflow_mlops.ml.canary import Criteria, analyze, ks_statistic


def window(*, c_latency: float = 0.5, c_error: float = 0.0, c_shift: float = 0.0, rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A prediction-log window: production and canary rows scored from the same population."""
    rng = np.random.default_rng(seed)

    def side(version: str, latency: float, error: float, shift: float) -> pd.DataFrame:
        errors = rng.random(rows) < error
        return pd.DataFrame(
            {
                "_id": [f"{version}-{i}" for i in range(rows)],
                "_version": version,
                "_prediction": np.where(errors, np.nan, (rng.random(rows) + shift).clip(0, 1)),
                "_error": errors,
                "_latency_ms": rng.gamma(4.0, latency / 4.0, rows),
            }
        )

    return pd.concat([side("prod", 0.5, 0.0, 0.0), side("cand", c_latency, c_error, c_shift)], ignore_index=True)


def judge(frame: pd.DataFrame, labels: pd.DataFrame | None = None, **criteria):
    labels = labels if labels is not None else pd.DataFrame({"_id": [], "label": []})
    return analyze(
        frame,
        labels,
        canary="cand",
        production="prod",
        task="classification",
        criteria=Criteria(**CanaryAnalysisConfig(**criteria).model_dump()),
    )


class TestAnalyze:
    def test_a_canary_like_production_passes(self):
        verdict = judge(window())
        assert verdict.passed, verdict.reason
        assert verdict.figures["canary"]["requests"] == 400 and verdict.figures["prediction_divergence"] < 0.1

    def test_a_slower_canary_below_the_slo_floor_passes(self):
        # 6 ms vs 0.5 ms is a large ratio, but far below the 50 ms floor: within any online SLO.
        verdict = judge(window(c_latency=6.0))
        assert verdict.passed, verdict.reason
        assert CanaryAnalysisConfig().p95_latency_floor_ms == 50.0

    def test_a_slower_canary_above_the_floor_fails_on_p95_latency(self):
        verdict = judge(window(c_latency=6.0), p95_latency_floor_ms=1.0)
        assert not verdict.passed and "p95 latency" in verdict.reason and "vs production" in verdict.reason

    def test_above_the_floor_the_ratio_still_decides(self):
        # both above a 0.1 ms floor, 0.55 ms vs 0.5 ms: within the 1.5 ratio
        assert judge(window(c_latency=0.55), p95_latency_floor_ms=0.1).passed

    def test_p95_latency_counts_scoring_calls_not_rows(self):
        # 40 canary calls of 5 rows at 0.5 ms and one call of 60 rows that hit a 10 ms pause: by rows that
        # pause would be the p95 (23% of the rows); by calls it is one sample in 41.
        def calls(version: str, sizes_and_ms: list[tuple[int, float]]) -> pd.DataFrame:
            rows = [(f"{version}-{n}", ms) for n, (size, ms) in enumerate(sizes_and_ms) for _ in range(size)]
            return pd.DataFrame(
                {
                    "_id": [f"{version}-{i}" for i in range(len(rows))],
                    "_version": version,
                    "_prediction": np.linspace(0, 1, len(rows)),
                    "_error": False,
                    "_request": [r for r, _ in rows],
                    "_latency_ms": [ms for _, ms in rows],
                }
            )

        frame = pd.concat([calls("prod", [(20, 0.5)] * 40), calls("cand", [(5, 0.5)] * 40 + [(60, 10.0)])], ignore_index=True)
        verdict = judge(frame)
        assert verdict.figures["canary"]["p95_latency_ms"] == pytest.approx(0.5) and verdict.passed, verdict.reason

    def test_errors_fail_on_error_rate(self):
        verdict = judge(window(c_error=0.05))
        assert not verdict.passed and "error rate" in verdict.reason

    def test_shifted_predictions_fail_on_divergence(self):
        verdict = judge(window(c_shift=0.4), max_prediction_divergence=0.2)
        assert not verdict.passed and "diverges" in verdict.reason

    def test_worse_label_quality_fails(self):
        frame = window()
        truth = (frame["_prediction"].fillna(0) > 0.5).astype(int)
        # Production's predictions rank the labels perfectly; the canary's are shuffled against them.
        labels = pd.DataFrame(
            {
                "_id": frame["_id"],
                "label": np.where(frame["_version"] == "prod", truth, np.random.default_rng(1).integers(0, 2, len(frame))),
            }
        )
        verdict = judge(frame, labels)
        assert not verdict.passed and "label quality" in verdict.reason
        assert verdict.figures["label_quality_ratio"] < 0.98


def labelled(frame: pd.DataFrame, seed: int, *, canary_noise: float = 0.0) -> pd.DataFrame:
    """Labels drawn from each row's prediction (a calibrated model); the canary's scrambled on a share of rows."""
    rng = np.random.default_rng(seed)
    p = frame["_prediction"].fillna(0.5).to_numpy()
    label = (rng.random(len(frame)) < p).astype(float)
    scramble = (frame["_version"] == "cand").to_numpy() & (rng.random(len(frame)) < canary_noise)
    label[scramble] = rng.integers(0, 2, scramble.sum())
    return pd.DataFrame({"_id": frame["_id"], "label": label})


class TestLabelQuality:
    @pytest.mark.parametrize("seed", range(4))
    def test_equivalent_models_pass(self, seed):
        frame = window(rows=800, seed=seed)
        verdict = judge(frame, labelled(frame, seed))
        assert verdict.passed, verdict.reason
        low, high = verdict.figures["label_quality"]["ratio_interval"]
        assert low < 1.0 < high and verdict.figures["label_quality"]["confidence"] == 0.95

    @pytest.mark.parametrize("seed", range(4))
    def test_a_clearly_worse_model_fails(self, seed):
        frame = window(rows=800, seed=seed)
        verdict = judge(frame, labelled(frame, seed, canary_noise=0.6))
        assert not verdict.passed and "interval" in verdict.reason

    def test_too_few_labels_are_not_judged(self):
        frame = window(rows=800)
        verdict = judge(frame, labelled(frame, 0).iloc[::20])  # 40 labels each side
        assert "label_quality_ratio" not in verdict.figures and verdict.figures["canary"]["labels"] == 40

    def test_a_production_quality_of_zero_is_no_division_error(self):
        frame = window(rows=400)
        perfect = (frame["_prediction"].fillna(0) > 0.5).astype(float)
        labels = pd.DataFrame({"_id": frame["_id"], "label": np.where(frame["_version"] == "prod", 1 - perfect, perfect)})
        verdict = judge(frame, labels)  # production's AUC is 0
        assert verdict.passed and verdict.figures["label_quality_ratio"] == float("inf")

    def test_non_finite_labels_are_left_out(self):
        frame = window(rows=400)
        labels = labelled(frame, 0)
        labels.loc[::2, "label"] = np.nan
        verdict = judge(frame, labels)
        assert verdict.figures["canary"]["labels"] == 200 and verdict.figures["production"]["labels"] == 200

    def test_requests_and_rows_are_counted_apart(self):
        frame = window(rows=400).assign(_request=lambda f: f["_id"].str.split("-").str[-1].astype(int) // 10)
        canary = judge(frame).figures["canary"]
        assert (canary["requests"], canary["rows"]) == (40, 400)


@pytest.mark.parametrize(("a", "b", "expected"), [([1, 2, 3], [1, 2, 3], 0.0), ([0, 0], [1, 1], 1.0), ([], [1], 1.0)])
def test_ks_statistic(a, b, expected):
    assert ks_statistic(np.array(a, float), np.array(b, float)) == pytest.approx(expected)
