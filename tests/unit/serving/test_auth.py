"""Which route's bearer tokens guard each path."""

import pytest

from airflow_mlops.serving.auth import _guarded_route


@pytest.mark.parametrize(
    ("path", "route"),
    [
        pytest.param("/predict", "predict", id="predict"),
        pytest.param("/feedback", "feedback", id="feedback"),
        pytest.param("/metrics", "metrics", id="metrics"),
        pytest.param("/v2/models/churn/infer", "predict", id="infer"),
        pytest.param("/v2/models/churn", "predict", id="metadata"),
        pytest.param("/v2/models/churn/ready", None, id="model-ready-probe"),
        pytest.param("/v2/health/ready", None, id="ready-probe"),
        pytest.param("/health", None, id="health"),
    ],
)
def test_the_predict_tokens_guard_the_v2_model_routes_and_not_the_probes(path, route):
    assert _guarded_route(path) == route
