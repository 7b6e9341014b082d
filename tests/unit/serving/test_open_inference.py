"""The Open Inference Protocol v2 request reader: columns become rows with their ids; malformed requests are refused
naming the input."""

import pytest

from airflow_mlops.serving.open_inference import _contributions, _v2_rows


def v2(**inputs):
    return {"inputs": [{"name": n, "shape": [len(d)], "datatype": "FP64", "data": d} for n, d in inputs.items()]}


class TestV2Rows:
    def test_columns_become_rows_with_their_ids(self):
        body = v2(x=[1.0, 2.0], city=["a", None]) | {"parameters": {"ids": ["r1", "r2"]}}
        assert _v2_rows(body) == ([{"x": 1.0, "city": "a"}, {"x": 2.0, "city": None}], ["r1", "r2"])
        assert _v2_rows(v2(x=[1.0]))[1] == [""], "no ids: made up later"

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            pytest.param([1, 2], "'inputs' list", id="not-an-object"),
            pytest.param({"inputs": []}, "'inputs' list", id="no-inputs"),
            pytest.param({"inputs": [{"name": "x", "data": 1}]}, "inputs[0]: expected an object", id="data-not-a-list"),
            pytest.param({"inputs": [{"name": "x", "shape": [1, 2], "data": [1, 2]}]}, "shape [1, 2] does not fit", id="2-d"),
            pytest.param(v2(x=[1.0]) | {"parameters": {"ids": [""]}}, "non-empty strings", id="empty-id"),
        ],
    )
    def test_malformed_requests_are_refused_naming_the_input(self, body, message):
        response = _v2_rows(body)
        assert response.status_code == 400 and message in response.body.decode()


class TestContributions:
    def test_multiclass_rows_by_class_then_feature_and_an_unexplained_row_as_zeros(self):
        a = {
            "contributions": {"lo": {"x": 0.1, "c": -0.2}, "hi": {"x": 0.3, "c": 0.4}},
            "expected_value": {"lo": 1.0, "hi": 2.0},
        }
        out = _contributions([a, None])
        assert out["shape"] == [2, 2, 3] and out["parameters"] == {
            "features": ["x", "c", "_expected_value"],
            "classes": ["lo", "hi"],
        }
        assert out["data"] == [0.1, -0.2, 1.0, 0.3, 0.4, 2.0] + [0.0] * 6

    def test_binary_rows_and_versions_with_other_features(self):
        out = _contributions(
            [{"contributions": {"x": 0.5}, "expected_value": -1.0}, {"contributions": {"y": 2.0}, "expected_value": 0.5}]
        )
        assert out["shape"] == [2, 3] and out["parameters"] == {"features": ["x", "y", "_expected_value"]}
        assert out["data"] == [0.5, 0.0, -1.0, 0.0, 2.0, 0.5]
