"""The post-promotion watch: the promoted model against the holdback on the replaced model, over the same window."""

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config.deployment import CanaryAnalysisConfig
from airflow_mlops.ml.canary import Criteria, watch, watch_against_canary_time

NEW, OLD = "v2", "v1"


def window(
    *, requests: int = 3000, holdback: float = 0.05, load: float = 1.0, new_slower: float = 1.0, seed: int = 0
) -> pd.DataFrame:
    """A prediction-log window of one request per row: ``holdback`` of them on the replaced model, the rest on the
    promoted one. Latency is 1.1 ms scoring times the machine's ``load`` (from 1x in the first half to ``load``x in
    the second, the same for both sides); ``new_slower`` slows the promoted model's scoring alone."""
    rng = np.random.default_rng(seed)
    held = rng.random(requests) < holdback
    busy = np.where(np.arange(requests) < requests // 2, 1.0, load)
    scoring = rng.gamma(8.0, 1.1 / 8.0, requests) * np.where(held, 1.0, new_slower)
    return pd.DataFrame(
        {
            "_id": [f"id-{i}" for i in range(requests)],
            "_request": [f"req-{i}" for i in range(requests)],
            "_version": np.where(held, OLD, NEW),
            "_prediction": rng.random(requests),
            "_error": False,
            "_latency_ms": scoring * busy,
        }
    )


def labels(frame: pd.DataFrame, *, flipped: str | None = None, seed: int = 1) -> pd.DataFrame:
    """Labels drawn from each row's prediction (both models calibrated); on ``flipped``'s rows, their opposites."""
    rng = np.random.default_rng(seed)
    label = (rng.random(len(frame)) < frame["_prediction"].to_numpy()).astype(float)
    if flipped:
        mine = (frame["_version"] == flipped).to_numpy()
        label[mine] = 1 - label[mine]
    return pd.DataFrame({"_id": frame["_id"], "label": label})


def criteria(**limits) -> Criteria:
    return Criteria(**CanaryAnalysisConfig(**limits).model_dump())


def judge(frame, labelled=None, **limits):
    labelled = labelled if labelled is not None else pd.DataFrame({"_id": [], "label": []})
    return watch(frame, labelled, version=NEW, holdback=OLD, task="classification", criteria=criteria(**limits))


class TestWatch:
    @pytest.mark.parametrize("seed", range(3))
    def test_a_load_spike_on_both_sides_keeps_the_model(self, seed):
        # The reported case: 1.1 ms at canary time, 3.7 ms after, with no floor to hide it: the ratio decides.
        frame = window(load=3.4, seed=seed)
        verdict = judge(frame, labels(frame, seed=seed + 100), p95_latency_floor_ms=0)
        assert verdict.passed, verdict.reason
        now, held = verdict.figures["now"], verdict.figures["holdback"]
        assert now["p95_latency_ms"] > 3 and held["p95_latency_ms"] > 3, "both sides saw the load"
        assert 0.8 < now["p95_latency_ms"] / held["p95_latency_ms"] < 1.25
        assert verdict.figures["label_quality_ratio"] == pytest.approx(1.0, abs=0.1) and held["labels"] >= 100
        assert verdict.reason.startswith("within limits against the holdback over")

    def test_before_against_after_would_have_reverted_it(self):
        """The rule without a holdback, on the same rows: the machine's load reads as a slower model."""
        frame = window(load=3.4)
        rows = frame[(frame["_version"] == NEW) & (frame.index >= len(frame) // 2)]  # the busy half, since promotion
        baseline = {"canary": {"p95_latency_ms": 1.1 * 1.6, "error_rate": 0.0}, "production": {"p95_latency_ms": 1.7}}
        verdict = watch_against_canary_time(
            rows, labels(frame), baseline=baseline, task="classification", criteria=criteria(p95_latency_floor_ms=0)
        )
        assert not verdict.passed and "before promotion" in verdict.reason

    def test_labels_flipped_on_the_new_model_revert_it(self):
        frame = window(load=3.0)
        verdict = judge(frame, labels(frame, flipped=NEW))
        assert not verdict.passed, verdict.reason
        assert "label quality ratio" in verdict.reason and "vs holdback (95% interval" in verdict.reason
        assert "p95 latency" not in verdict.reason and verdict.figures["label_quality_ratio"] < 0.5

    def test_labels_gone_bad_on_both_sides_are_no_reason_to_revert(self):
        """The world changed for both models: reverting would not help; that is the performance monitor's question."""
        frame = window()
        flipped = labels(frame).assign(label=lambda f: 1 - f["label"])
        assert judge(frame, flipped).passed

    @pytest.mark.parametrize(
        ("floor", "passed"),
        [pytest.param(50.0, True, id="below-the-floor"), pytest.param(2.0, False, id="above-the-floor")],
    )
    def test_a_slower_model_fails_only_above_the_slo_floor(self, floor, passed):
        verdict = judge(window(new_slower=3.0), p95_latency_floor_ms=floor)  # about 5 ms vs 1.7 ms
        assert verdict.passed is passed, verdict.reason
        assert passed or ("p95 latency" in verdict.reason and "vs holdback" in verdict.reason)

    def test_more_errors_than_the_holdback_revert(self):
        frame = window()
        frame.loc[(frame["_version"] == NEW) & (frame.index % 10 == 0), "_error"] = True
        verdict = judge(frame)
        assert not verdict.passed and verdict.reason.startswith("error rate 0.1") and "vs holdback 0.000" in verdict.reason

    def test_too_few_holdback_labels_are_not_judged(self):
        frame = window(requests=1200)  # about 60 on the holdback: fewer than min_labels
        verdict = judge(frame, labels(frame, flipped=NEW))
        assert verdict.passed and "label_quality_ratio" not in verdict.figures
