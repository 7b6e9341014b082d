import math

import pytest

from airflow_mlops.ml import transform as tf
from airflow_mlops.store.artifacts import digest


def fitted(rows, numeric=("x",), categorical=("c",)):
    stats = tf.new_stats(list(numeric), list(categorical))
    for row in rows:
        tf.add_row(stats, row)
    return tf.fit(stats, label="y", task="classification")


class TestFit:
    def test_standardizes_and_builds_vocabulary_by_frequency(self):
        spec = fitted([{"x": 1.0, "c": "b"}, {"x": 3.0, "c": "a"}, {"x": None, "c": "b"}])
        assert spec["numeric"]["x"] == {"mean": 2.0, "std": 1.0}
        assert spec["categorical"]["c"]["vocabulary"] == ["b", "a"]
        assert spec["features"] == ["x", "c"]

    def test_merge_equals_single_pass(self):
        rows = [{"x": float(i), "c": "abc"[i % 3]} for i in range(30)]
        whole = tf.new_stats(["x"], ["c"])
        for r in rows:
            tf.add_row(whole, r)
        parts = []
        for chunk in (rows[:7], rows[7:19], rows[19:]):
            s = tf.new_stats(["x"], ["c"])
            for r in chunk:
                tf.add_row(s, r)
            parts.append(s)
        assert tf.fit(tf.merge_stats(parts), label="y", task="classification") == tf.fit(whole, label="y", task="classification")

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
