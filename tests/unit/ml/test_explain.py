"""Explanations: for random rows (NaN, +-inf, unseen categories, text numbers), each feature's contribution plus
the expected value is the model's raw margin, for binary, multiclass and regression models; global importance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_mlops.ml import explain
from airflow_mlops.ml import transform as tf

NUMERIC, CATEGORICAL = ["x", "y"], ["c"]
FEATURES = NUMERIC + CATEGORICAL
TASKS = {
    "classification": {"objective": "binary"},
    "multiclass": {"objective": "multiclass", "num_class": 3},
    "regression": {"objective": "regression"},
}


def training_frame(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(0, 1, rows), "y": rng.normal(5, 2, rows), "c": rng.choice(["a", "b", "c", "d"], rows)})
    frame.loc[rng.random(rows) < 0.1, "x"] = np.nan
    score = frame["x"].fillna(0) + 0.3 * frame["y"] + (frame["c"] == "b")
    frame["reg"] = score + rng.normal(0, 0.1, rows)
    frame["bin"] = (score > score.median()).astype(int)
    frame["multi"] = pd.cut(score, 3, labels=False).astype(int)
    return frame


@pytest.fixture(scope="module")
def models():
    """A transform fitted on the training rows and one LightGBM model per task on its output."""
    import lightgbm as lgb

    frame = training_frame()
    spec = tf.fit(tf.add_frame(tf.new_stats(NUMERIC, CATEGORICAL), frame), label="bin", task="classification")
    transform = tf.FeatureTransform(spec)
    matrix = transform.apply_frame(frame)
    labels = {"classification": frame["bin"], "multiclass": frame["multi"], "regression": frame["reg"]}
    boosters = {
        task: lgb.train(
            {**params, "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1, "seed": 1},
            lgb.Dataset(matrix, labels[task], categorical_feature=[2]),
            num_boost_round=15,
        )
        for task, params in TASKS.items()
    }
    return transform, boosters


NUMBER = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.inf, -math.inf, math.nan, "2.5", "abc"])
)
CATEGORY = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "unseen", "zz", "", 1, 2.0]))
ROWS = st.lists(st.fixed_dictionaries({"x": NUMBER, "y": NUMBER, "c": CATEGORY}), min_size=1, max_size=20)


class TestContributions:
    @pytest.mark.parametrize("task", list(TASKS))
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rows=ROWS)
    def test_contributions_plus_the_expected_value_are_the_raw_margin(self, models, task, rows):
        transform, boosters = models
        booster = boosters[task]
        matrix = np.array([transform.apply(r) for r in rows], dtype=float)
        found = explain.contributions(booster, matrix)
        margin = booster.predict(matrix, raw_score=True, num_threads=1)
        if task == "multiclass":
            assert found.shape == (len(rows), 3, len(FEATURES) + 1)
            np.testing.assert_allclose(found.sum(axis=2), margin.reshape(len(rows), 3), rtol=1e-9, atol=1e-9)
        else:
            assert found.shape == (len(rows), len(FEATURES) + 1)
            np.testing.assert_allclose(found.sum(axis=1), margin, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(
            explain.contributions(booster, transform.apply_frame(pd.DataFrame(rows, columns=FEATURES))), found
        )

    def test_named_by_feature_and_class_and_the_global_importance(self, models):
        transform, boosters = models
        matrix = transform.apply_frame(training_frame(50))
        binary = explain.contributions(boosters["classification"], matrix)
        row = explain.explanation(binary[0], FEATURES)
        assert list(row["contributions"]) == FEATURES
        assert sum(row["contributions"].values()) + row["expected_value"] == pytest.approx(binary[0].sum())
        multi = explain.explanation(explain.contributions(boosters["multiclass"], matrix)[0], FEATURES, ["lo", "mid", "hi"])
        assert list(multi["contributions"]) == ["lo", "mid", "hi"] and list(multi["expected_value"]) == ["lo", "mid", "hi"]
        importance = explain.importance(binary, FEATURES)
        assert importance == pytest.approx(dict(zip(FEATURES, np.abs(binary[:, :-1]).mean(axis=0), strict=True)))
        assert max(importance, key=importance.get) in ("x", "y") and sum(explain.shares(importance).values()) == pytest.approx(1)
        assert explain.shares({"x": 0.0}) == {"x": 0.0}
