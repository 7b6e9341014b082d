"""The model server as a real uvicorn process on 127.0.0.1, over a store trained by the stages."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages.data import Columns, acquire
from airflow_mlops.stages.evaluation import GateSettings, evaluate, register
from airflow_mlops.stages.features import preprocess
from airflow_mlops.stages.training import TrainSettings, load_booster, train
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow
PIPELINE = "serve"
COLUMNS = Columns(
    "churned",
    "classification",
    ["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"],
    ["contract", "payment_method", "region"],
)


def train_version(store, csv: Path, seed: int) -> tuple[str, str]:
    dataset = acquire(store, PIPELINE, str(csv))["dataset_id"]
    features = preprocess(store, PIPELINE, dataset, COLUMNS, eval_fraction=0.2, histogram_bins=10, runner="DirectRunner")[
        "features_id"
    ]
    version = train(store, PIPELINE, features, TrainSettings({"num_leaves": 7}, 40, seed, None))["model_version"]
    evaluation = evaluate(
        store, PIPELINE, version, features, GateSettings("roc_auc", 0.5, 0.0, [], None, None), run_id=f"seed{seed}"
    )
    register(store, PIPELINE, evaluation, lineage={"dataset_id": dataset}, promote=False)
    return version, features


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    csv = root / "data.csv"
    make_churn(1500, seed=5).to_csv(csv, index=False)
    store = ArtifactStore.from_uri(str(root / "artifacts"))
    v1, features = train_version(store, csv, seed=1)
    v2, _ = train_version(store, csv, seed=2)
    return store, v1, v2, features


@pytest.fixture
def server(trained, model_server):
    store, v1, v2, features = trained
    registry = ModelRegistry(store, PIPELINE)
    registry.set_alias("canary", None)
    registry.set_alias("production", v1)
    yield model_server(store.root_uri, PIPELINE), store, v1, v2, features


def raw_eval_rows(store, features) -> pd.DataFrame:
    keys = [k for k in store.list(f"features/{PIPELINE}/{features}/eval_raw") if k.endswith(".parquet")]
    return pd.concat([pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in keys]).sort_values("_row_id")


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


class TestModelServer:
    def test_parity_with_the_beam_features(self, server):
        """Server predictions on raw rows equal the model on the Beam-computed features of the same rows."""
        client, store, v1, _, features = server
        raw = raw_eval_rows(store, features)
        beam = (
            pd.concat(
                [pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in store.list(f"features/{PIPELINE}/{features}/eval")]
            )
            .set_index("_row_id")
            .loc[raw["_row_id"]]
        )
        spec = store.read_json(f"models/{PIPELINE}/{v1}/transform.json")
        booster = load_booster(store, PIPELINE, v1)
        expected = booster.predict(beam[spec["features"]].to_numpy(), num_threads=1)
        rows = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items() if k in spec["features"]}
            for r in raw.to_dict("records")
        ]
        response = client.post("/predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        got = [p["prediction"] for p in response.json()["predictions"]]
        assert {p["version"] for p in response.json()["predictions"]} == {v1}
        np.testing.assert_array_equal(np.array(got), expected)

    def test_single_row_logging_metrics_and_feedback(self, server):
        client, store, v1, _, _ = server
        row = {
            "id": "cust-1",
            "tenure_months": 3,
            "monthly_charges": 99.5,
            "support_calls": 4,
            "data_usage_gb": None,
            "contract": "month-to-month",
            "payment_method": "e-check",
            "region": "north",
        }
        answer = client.post("/predict", json=row).json()["predictions"][0]
        assert answer["id"] == "cust-1" and answer["version"] == v1 and 0 <= answer["prediction"] <= 1
        assert client.post("/feedback", json={"id": "cust-1", "label": 1}).json() == {"accepted": 1}

        def logged_row():
            keys = [k for k in store.list(f"predictions/{PIPELINE}") if k.endswith(".parquet")]
            frame = (
                pd.concat([pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in keys]) if keys else pd.DataFrame({"_id": []})
            )
            match = frame[frame["_id"] == "cust-1"]
            return None if match.empty else match.iloc[0].to_dict()

        mine = wait_for(logged_row)
        assert mine["_version"] == v1 and mine["contract"] == "month-to-month" and mine["monthly_charges"] == 99.5
        assert mine["_latency_ms"] > 0
        wait_for(lambda: store.list(f"feedback/{PIPELINE}"))
        metrics = client.get("/metrics").text
        assert f'mlops_predictions_total{{version="{v1}"}}' in metrics
        assert f'mlops_request_latency_seconds_count{{version="{v1}"}}' in metrics

    @pytest.mark.parametrize(
        ("body", "status", "message"),
        [
            pytest.param({"instances": [{"tenure_months": 1}]}, 422, "missing feature 'monthly_charges'", id="missing-feature"),
            pytest.param(
                {
                    "instances": [
                        {
                            "tenure_months": "ten",
                            "monthly_charges": 1,
                            "support_calls": 1,
                            "data_usage_gb": 1,
                            "contract": "x",
                            "payment_method": "y",
                            "region": "z",
                        }
                    ]
                },
                422,
                "instances[0].tenure_months: expected a number",
                id="wrong-type",
            ),
            pytest.param(
                {
                    "instances": [
                        {
                            "tenure_months": 1,
                            "monthly_charges": 1,
                            "support_calls": 1,
                            "data_usage_gb": 1,
                            "contract": [1],
                            "payment_method": "y",
                            "region": "z",
                        }
                    ]
                },
                422,
                "instances[0].contract: expected a string",
                id="wrong-type-categorical",
            ),
            pytest.param({"instances": ["not an object"]}, 422, "expected an object", id="row-not-object"),
            pytest.param({"instances": []}, 422, "no instances", id="empty"),
            pytest.param(b"{not json", 400, "not valid JSON", id="non-json"),
            pytest.param(b"[" + b"1," * 600_000 + b"1]", 413, "at most", id="oversized-body"),
            pytest.param({"label": 1}, 422, None, id="feedback-shape-on-predict"),
        ],
    )
    def test_bad_requests_get_a_4xx_naming_the_problem(self, server, body, status, message):
        client = server[0]
        response = client.post("/predict", content=body) if isinstance(body, bytes) else client.post("/predict", json=body)
        assert response.status_code == status, response.text
        if message:
            assert message in response.json()["error"]

    def test_canary_share_is_sticky_and_models_swap_without_failing_requests(self, server):
        client, store, _v1, v2, _ = server
        registry = ModelRegistry(store, PIPELINE)
        row = {
            "tenure_months": 3,
            "monthly_charges": 50.0,
            "support_calls": 1,
            "data_usage_gb": 2.0,
            "contract": "one-year",
            "payment_method": "card",
            "region": "east",
        }
        statuses: list[int] = []
        stop = threading.Event()

        def traffic():
            with httpx.Client(base_url=str(client.base_url), timeout=10) as c:
                while not stop.is_set():
                    statuses.append(c.post("/predict", json={"instances": [row] * 20}).status_code)

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            registry.set_alias("canary", v2, weight=50)
            wait_for(lambda: client.get("/health").json()["canary"] == v2)
            rows = [{**row, "id": f"user-{i}"} for i in range(400)]
            first = client.post("/predict", json={"instances": rows}).json()["predictions"]
            again = client.post("/predict", json={"instances": rows}).json()["predictions"]
            assert [p["version"] for p in first] == [p["version"] for p in again], "the same id must reach the same model"
            share = sum(p["version"] == v2 for p in first) / len(first)
            assert 0.4 < share < 0.6
            registry.set_alias("canary", None)
            registry.set_alias("production", v2)
            wait_for(lambda: client.get("/health").json()["production"] == v2)
        finally:
            stop.set()
            thread.join()
        assert statuses and set(statuses) == {200}, "no request may fail while models are swapped"
        assert {p["version"] for p in client.post("/predict", json=row).json()["predictions"]} == {v2}
