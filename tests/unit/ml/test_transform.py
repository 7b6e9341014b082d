import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_mlops.ml import transform as tf
from airflow_mlops.store.artifacts import digest


def fitted(rows, numeric=("x",), categorical=("c",)):
    stats = tf.add_frame(tf.new_stats(list(numeric), list(categorical)), pd.DataFrame(rows))
    return tf.fit(stats, label="y", task="classification")


class TestFit:
    def test_standardizes_and_builds_vocabulary_by_frequency(self):
        spec = fitted([{"x": 1.0, "c": "b"}, {"x": 3.0, "c": "a"}, {"x": None, "c": "b"}])
        assert spec["numeric"]["x"] == {"mean": 2.0, "std": 1.0}
        assert spec["categorical"]["c"]["vocabulary"] == ["b", "a"]
        assert spec["features"] == ["x", "c"]

    def test_merge_equals_single_pass(self):
        rows = pd.DataFrame({"x": [float(i) for i in range(30)], "c": ["abc"[i % 3] for i in range(30)]})
        whole = tf.add_frame(tf.new_stats(["x"], ["c"]), rows)
        parts = [tf.add_frame(tf.new_stats(["x"], ["c"]), chunk) for chunk in (rows[:7], rows[7:19], rows[19:])]
        assert tf.fit(tf.merge_stats(parts), label="y", task="classification") == tf.fit(whole, label="y", task="classification")

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.one_of(st.floats(-1e300, 1e300), st.just(math.nan)), min_size=1, max_size=60), st.randoms())
    def test_sums_are_exact_whatever_the_batches_and_order(self, values, rand):
        frame = pd.DataFrame({"x": values, "c": [str(v)[:3] for v in values]})
        whole = tf.add_frame(tf.new_stats(["x"], ["c"]), frame)
        shuffled = frame.sample(frac=1.0, random_state=rand.randint(0, 1000))
        cuts = sorted(rand.randint(0, len(frame)) for _ in range(3))
        bounds = [0, *cuts, len(frame)]
        chunks = [shuffled.iloc[a:b] for a, b in itertools.pairwise(bounds)]
        parts = [tf.add_frame(tf.new_stats(["x"], ["c"]), chunk) for chunk in chunks]
        merged = tf.merge_stats(parts)
        assert merged == whole
        present = [v for v in values if v == v]
        assert tf.moments(whole["numeric"]["x"])[0] == (math.fsum(present) / len(present) if present else None)

    def test_constant_column_gets_unit_std(self):
        assert fitted([{"x": 5, "c": "a"}] * 3)["numeric"]["x"]["std"] == 1.0


class TestFeatureTransform:
    @pytest.mark.parametrize(
        ("row", "expected"),
        [
            pytest.param({"x": 3.0, "c": "a"}, [1.0, 2.0], id="known-values"),
            pytest.param({"x": None, "c": None}, [0.0, 0.0], id="nulls-impute-mean-and-oov"),
            pytest.param({"x": math.nan, "c": "zzz"}, [0.0, 0.0], id="nan-and-unseen-category"),
            pytest.param({"c": "b"}, [0.0, 1.0], id="missing-key"),
            pytest.param({"x": "3", "c": "a"}, [1.0, 2.0], id="numeric-string"),
        ],
    )
    def test_apply(self, row, expected):
        spec = fitted([{"x": 1.0, "c": "b"}, {"x": 3.0, "c": "a"}, {"x": 2.0, "c": "b"}])
        spec["numeric"]["x"] = {"mean": 2.0, "std": 1.0}
        assert tf.FeatureTransform(spec).apply(row) == expected

    def test_integer_like_floats_are_the_same_category(self):
        spec = fitted([{"x": 1, "c": 1}, {"x": 2, "c": 2}])
        t = tf.FeatureTransform(spec)
        assert t.apply({"x": 1, "c": 1.0}) == t.apply({"x": 1, "c": 1}) == t.apply({"x": 1, "c": "1"})

    def test_hash_changes_with_spec(self):
        spec = fitted([{"x": 1.0, "c": "a"}, {"x": 2.0, "c": "b"}])
        other = fitted([{"x": 1.0, "c": "a"}, {"x": 9.0, "c": "b"}])
        assert digest(spec) == digest(dict(reversed(spec.items()))), "key order never changes the content id"
        assert digest(spec) != digest(other)


SPEC = {
    "features": ["x", "y", "c", "d"],
    "numeric": {"x": {"mean": 1.5, "std": 2.0}, "y": {"mean": -3.0, "std": 0.25}},
    "categorical": {"c": {"vocabulary": ["a", "1", "2.5", "inf", "True", "-0"]}, "d": {"vocabulary": ["b", "0"]}},
}
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6))
NUMERIC_VALUES = st.one_of(st.none(), NUMBERS, st.sampled_from(["3.5", " 2 ", "1e3", "inf", "-inf", "nan", "abc", ""]))
CATEGORY_VALUES = st.one_of(
    st.none(),
    st.sampled_from([float("nan"), 1, 1.0, 2.5, -0.0, float("inf"), True, False, 0]),
    st.sampled_from(["a", "b", "1", "1.0", "2.5", "inf", "True", "zz", ""]),
)


def typed(values: list, kind: str) -> pd.Series:
    """The column as a typed frame column when its values allow it, else as Python objects."""
    series = pd.Series(values, dtype=object)
    if kind == "float":
        return pd.to_numeric(series, errors="coerce").astype(float)
    if kind == "string":
        return series.map(lambda v: v if v is None else str(v)).astype(object)
    return series


@st.composite
def frames(draw) -> pd.DataFrame:
    rows = draw(st.integers(0, 30))
    columns = {}
    for name, values in (("x", NUMERIC_VALUES), ("y", NUMERIC_VALUES), ("c", CATEGORY_VALUES), ("d", CATEGORY_VALUES)):
        if draw(st.booleans()) and name != "x":  # a missing column is null throughout ("x" is always there)
            continue
        kind = draw(st.sampled_from(["object", "float", "string"]))
        columns[name] = typed(draw(st.lists(values, min_size=rows, max_size=rows)), kind)
    return pd.DataFrame(columns, index=range(rows))


class TestBatchAndRowPaths:
    @settings(max_examples=300, deadline=None)
    @given(frames())
    def test_apply_frame_equals_apply_row_by_row(self, frame):
        transform = tf.FeatureTransform(SPEC)
        batch = transform.apply_frame(frame)
        rows = np.array([transform.apply(row) for row in frame.to_dict("records")], dtype=float).reshape(len(frame), 4)
        np.testing.assert_array_equal(batch, rows)  # identical floats, infinities included

    def test_typed_columns_take_no_row_loop(self, monkeypatch):
        frame = pd.DataFrame({"x": [1.0, np.nan, np.inf], "y": [1, 2, 3], "c": ["a", None, "zz"], "d": [0.0, np.nan, 2.0]})
        calls = []
        monkeypatch.setattr(tf, "to_number", lambda v: calls.append(v))
        out = tf.FeatureTransform(SPEC).apply_frame(frame)
        assert calls == [], "numbers convert as arrays"
        np.testing.assert_array_equal(out[:, 2], [1.0, 0.0, 0.0])
        np.testing.assert_array_equal(out[:, 3], [2.0, 0.0, 0.0])
