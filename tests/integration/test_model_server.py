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
from airflow_mlops.serving.predlog_reader import read_log
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
def registry(trained):
    """The registry with v1 in production and no canary, as every test starts."""
    store, v1, _, _ = trained
    registry = ModelRegistry(store, PIPELINE)
    registry.set_alias("canary", None)
    registry.set_alias("production", v1)
    return registry


@pytest.fixture
def server(trained, registry, model_server):
    store, v1, v2, features = trained
    yield model_server(store.root_uri, PIPELINE), store, v1, v2, features


GOOD_ROW = {
    "tenure_months": 3,
    "monthly_charges": 99.5,
    "support_calls": 4,
    "data_usage_gb": None,
    "contract": "month-to-month",
    "payment_method": "e-check",
    "region": "north",
}


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

    def test_explanations_on_request_sum_to_the_raw_score_by_feature(self, server):
        """``explain: true`` on /predict (and ``parameters.explain`` on OIP v2) gives each row's contributions by raw
        feature and the expected value, summing to the log-odds of its probability; without it there are none."""
        client, store, v1, _, _ = server
        spec = store.read_json(f"models/{PIPELINE}/{v1}/transform.json")
        rows = [GOOD_ROW, {**GOOD_ROW, "tenure_months": float("nan"), "contract": "unseen", "region": None}]
        rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]
        plain = client.post("/predict", json={"instances": rows}).json()["predictions"]
        assert all("explanation" not in p for p in plain)
        explained = client.post("/predict", json={"instances": rows, "explain": True}).json()["predictions"]
        for p, q in zip(plain, explained, strict=True):
            assert p["prediction"] == q["prediction"] and q["version"] == v1
            found = q["explanation"]
            assert list(found["contributions"]) == spec["features"]
            margin = sum(found["contributions"].values()) + found["expected_value"]
            assert 1 / (1 + np.exp(-margin)) == pytest.approx(q["prediction"], rel=1e-9)

        features = {name: [r[name] for r in rows] for name in spec["features"]}
        numeric = set(spec["numeric"])
        inputs = [
            {"name": n, "shape": [2], "datatype": "FP64" if n in numeric else "BYTES", "data": v} for n, v in features.items()
        ]
        v2 = client.post(f"/v2/models/{PIPELINE}/infer", json={"inputs": inputs, "parameters": {"explain": True}}).json()
        contributions = next(o for o in v2["outputs"] if o["name"] == "contributions")
        assert contributions["shape"] == [2, len(spec["features"]) + 1]
        assert contributions["parameters"]["features"] == [*spec["features"], "_expected_value"]
        first = explained[0]["explanation"]
        assert contributions["data"][: len(spec["features"]) + 1] == [*first["contributions"].values(), first["expected_value"]]
        bare = client.post(f"/v2/models/{PIPELINE}/infer", json={"inputs": inputs}).json()
        assert [o["name"] for o in bare["outputs"]] == ["predict"]

    def test_single_row_logging_metrics_and_feedback(self, server):
        client, store, v1, _, _ = server
        row = {**GOOD_ROW, "id": "cust-1"}
        answer = client.post("/predict", json=row).json()["predictions"][0]
        assert answer["id"] == "cust-1" and answer["version"] == v1 and 0 <= answer["prediction"] <= 1
        assert client.post("/feedback", json={"id": "cust-1", "label": 1}).json() == {"accepted": 1, "refused": []}

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
            pytest.param({"instances": [{**GOOD_ROW, "tenure_months": 10**400}]}, 422, "beyond float range", id="huge-int"),
            pytest.param(b'{"instances": [{"x": ' + b"9" * 4400 + b"}]}", 400, "not valid JSON", id="4400-digits"),
            pytest.param(b"[" * 2000 + b"]" * 2000, 400, "not valid JSON", id="nested-2000-deep"),
            pytest.param(
                b'{"instances": [{"tenure_months": 1, "monthly_charges": 1, "support_calls": 1, "data_usage_gb": 1, '
                b'"contract": "\\ud800", "payment_method": "y", "region": "z"}]}',
                422,
                "not valid Unicode",
                id="lone-surrogate",
            ),
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


def errors(client, version) -> float:
    """The server's ``mlops_prediction_errors_total`` of ``version``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'mlops_prediction_errors_total{{version="{version}"}}'):
            return float(line.split()[-1])
    return 0.0


class TestReliability:
    def test_hostile_input_is_refused_and_costs_no_other_row_nor_a_server_error(self, server):
        client, store, v1, _, _ = server
        before = errors(client, v1)
        ok = client.post("/predict", json={"instances": [{**GOOD_ROW, "id": "calm-1"}]})
        bad = client.post("/predict", content=b'{"instances": [{"contract": "\\ud800"}]}')
        ok2 = client.post("/predict", json={"instances": [{**GOOD_ROW, "id": "calm-2"}]})
        assert (ok.status_code, bad.status_code, ok2.status_code) == (200, 422, 200)
        wait_for(lambda: {"calm-1", "calm-2"} <= set(read_log(store, PIPELINE, "predictions", 0.0)["_id"]))
        assert errors(client, v1) == before, "a refused request is not a server error"

    def test_a_model_that_cannot_load_never_takes_the_server_down(self, trained, registry, model_server):
        store, v1, _, _ = trained
        client = model_server(store.root_uri, PIPELINE)
        broken = "broken-model"
        for name in ("transform.json", "profile.json"):
            store.write_bytes(f"models/{PIPELINE}/{broken}/{name}", store.read_bytes(f"models/{PIPELINE}/{v1}/{name}"))
        text = store.read_text(f"models/{PIPELINE}/{v1}/model.txt")
        store.write_text(f"models/{PIPELINE}/{broken}/model.txt", text[: len(text) // 3])  # truncated
        registry.register(broken, status="blessed", metrics={}, lineage={}, reason="its model.txt was cut short later")
        registry.set_alias("canary", broken, weight=50)
        health = wait_for(lambda: (h := client.get("/health").json()).get("load_errors") and h)
        assert broken in health["load_errors"] and "cannot be loaded" in health["load_errors"][broken]
        assert health["production"] == v1 and health["canary"] is None, "the canary gets no traffic"
        answers = client.post("/predict", json={"instances": [{**GOOD_ROW, "id": f"u{i}"} for i in range(50)]})
        assert answers.status_code == 200 and {p["version"] for p in answers.json()["predictions"]} == {v1}
        assert f'mlops_model_load_failures_total{{version="{broken}"}} 1' in client.get("/metrics").text
        registry.set_alias("canary", None)
        registry.set_alias("production", broken)  # even as production: the last good model serves on
        wait_for(lambda: client.get("/health").json().get("canary") is None)
        time.sleep(1.0)
        assert client.get("/health").json()["production"] == v1
        assert model_server.procs[-1].poll() is None, "the server process is alive"
        registry.set_alias("production", v1)

    def test_feedback_only_for_answered_ids_first_label_wins_and_finite(self, server):
        client, store, *_ = server
        assert (
            client.post("/predict", json={"instances": [{**GOOD_ROW, "id": "fb-1"}, {**GOOD_ROW, "id": "fb-2"}]}).status_code
            == 200
        )
        first = client.post("/feedback", json=[{"id": "fb-1", "label": 1}, {"id": "forged-9", "label": 0}])
        assert first.status_code == 200 and first.json()["accepted"] == 1
        assert first.json()["refused"] == [{"id": "forged-9", "reason": "not answered by this server in the feedback window"}]
        again = client.post("/feedback", json={"id": "fb-1", "label": 0})
        assert again.status_code == 422 and again.json()["refused"][0]["reason"] == "already labelled"
        for label in (b"NaN", b"Infinity", b"-Infinity", b"1" + b"0" * 400):
            bad = client.post("/feedback", content=b'{"id": "fb-2", "label": ' + label + b"}")
            assert bad.status_code == 422 and "finite number" in bad.json()["error"]
        assert client.post("/feedback", json={"id": "fb-2", "label": 0}).json()["accepted"] == 1
        wait_for(lambda: len(read_log(store, PIPELINE, "feedback", 0.0).query("_id.str.startswith('fb-')")) == 2)
        labels = read_log(store, PIPELINE, "feedback", 0.0).set_index("_id")["label"]
        assert labels["fb-1"] == 1.0 and labels["fb-2"] == 0.0 and "forged-9" not in labels.index

    def test_bearer_tokens_guard_predict_and_feedback_apart_and_are_never_logged(self, trained, registry, model_server):
        store, _, _, _ = trained
        tokens = {"MLOPS_PREDICT_TOKENS": "p-secret-1,p-secret-2", "MLOPS_FEEDBACK_TOKENS": "f-secret"}
        client = model_server(store.root_uri, PIPELINE, env=tokens)
        row = {"instances": [{**GOOD_ROW, "id": "auth-1"}]}

        def bearer(token):
            return {"Authorization": f"Bearer {token}"}

        anonymous = client.post("/predict", json=row)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        assert client.post("/predict", json=row, headers=bearer("guess")).status_code == 403
        assert client.post("/predict", json=row, headers=bearer("p-secret-2")).status_code == 200
        label = {"id": "auth-1", "label": 1}
        assert client.post("/feedback", json=label).status_code == 401
        assert client.post("/feedback", json=label, headers=bearer("p-secret-1")).status_code == 403, "tokens are per route"
        assert client.post("/feedback", json=label, headers=bearer("f-secret")).json()["accepted"] == 1
        assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200, "open by default"
        proc = model_server.procs[-1]
        proc.terminate()
        proc.wait(timeout=30)
        log = proc.stderr.read().decode()
        assert "/metrics is open" in log and "secret" not in log


def metric(text: str, name: str, **labels) -> float:
    """A sample's value in a Prometheus text exposition (parsed by prometheus_client), 0 when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def clients_per_worker(client, workers: int) -> dict[int, httpx.Client]:
    """One keep-alive client per worker process (its connection stays with the worker that accepted it)."""
    found: dict[int, httpx.Client] = {}
    for _ in range(200):
        candidate = httpx.Client(base_url=str(client.base_url), timeout=10)
        pid = candidate.get("/health").json()["worker"]
        if pid in found:
            candidate.close()
        else:
            found[pid] = candidate
        if len(found) == workers:
            return found
    raise AssertionError(f"only {len(found)} of {workers} workers answered")


class TestWorkers:
    def test_feedback_is_taken_once_for_ids_any_worker_answered_and_metrics_sum_all_workers(
        self, trained, registry, model_server
    ):
        store, v1, _, _ = trained
        client = model_server(store.root_uri, PIPELINE, workers=2)
        first, second = clients_per_worker(client, 2).values()
        ids = {first: [f"w1-{i}" for i in range(3)], second: [f"w2-{i}" for i in range(5)]}
        for worker, names in ids.items():
            answer = worker.post("/predict", json={"instances": [{**GOOD_ROW, "id": n} for n in names]})
            assert answer.status_code == 200 and [p["id"] for p in answer.json()["predictions"]] == names
        crossed = {first: ids[second], second: ids[first]}  # each label reaches the worker that did not answer it
        for worker, names in crossed.items():
            taken = worker.post("/feedback", json=[{"id": n, "label": 1} for n in [*names, "forged-1"]]).json()
            assert taken == {
                "accepted": len(names),
                "refused": [{"id": "forged-1", "reason": "not answered by this server in the feedback window"}],
            }
        for worker, names in ids.items():  # the second label of an answer, on either worker
            again = worker.post("/feedback", json={"id": names[0], "label": 0})
            assert again.status_code == 422 and again.json()["refused"][0]["reason"] == "already labelled"
        metrics = first.get("/metrics").text
        assert metric(metrics, "mlops_predictions_total", version=v1) == 8, "both workers' rows"
        assert metric(metrics, "mlops_request_latency_seconds_count", version=v1) == 2
        assert second.get("/metrics").text.count("mlops_predictions_total{") == metrics.count("mlops_predictions_total{")

        def labels():
            frame = read_log(store, PIPELINE, "feedback", 0.0)
            return frame[frame["_id"].str.startswith("w")]

        wait_for(lambda: len(labels()) == 8)
        assert labels()["_id"].value_counts().max() == 1, "one label per answer"
        for worker in (first, second):
            worker.close()

    @pytest.mark.parametrize("workers", [pytest.param(1, id="one-worker"), pytest.param(2, id="two-workers")])
    def test_kill_9_of_the_whole_server_under_load_loses_no_answered_row(
        self, trained, registry, model_server, tmp_path, workers
    ):
        import os
        import signal

        store, _, _, _ = trained
        wal = tmp_path / "wal"
        client = model_server(store.root_uri, PIPELINE, wal_dir=wal, workers=workers)
        victim = model_server.procs[-1]
        prefix = f"kill{workers}-"
        answered: list[str] = []

        def load(thread: int):
            with httpx.Client(base_url=str(client.base_url), timeout=5) as c:
                for i in range(100_000):
                    rows = [{**GOOD_ROW, "id": f"{prefix}{thread}-{i}-{j}"} for j in range(5)]
                    try:
                        response = c.post("/predict", json={"instances": rows})
                    except httpx.TransportError:
                        return
                    if response.status_code == 200:
                        answered.extend(p["id"] for p in response.json()["predictions"])

        threads = [threading.Thread(target=load, args=(t,)) for t in range(4)]  # connections spread over the workers
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        os.killpg(victim.pid, signal.SIGKILL)  # supervisor and workers: no shutdown, no last flush
        for thread in threads:
            thread.join(timeout=30)
        victim.wait(timeout=10)
        assert len(answered) > 100
        restarted = model_server(store.root_uri, PIPELINE, wal_dir=wal, workers=workers)  # ships what the killed left
        assert restarted.get("/health").status_code == 200
        model_server.procs[-1].terminate()
        model_server.procs[-1].wait(timeout=30)
        logged = read_log(store, PIPELINE, "predictions", 0.0)
        counts = logged[logged["_id"].str.startswith(prefix)]["_id"].value_counts()
        missing = set(answered) - set(counts.index)
        assert not missing, f"{len(missing)} of {len(answered)} answered rows missing from the log"
        assert counts.max() == 1, "no row logged twice"
        assert not list(wal.rglob("*.jsonl")) and not list(wal.rglob("*.lock")), "everything shipped, every folder removed"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestOpenInferenceProtocol:
    def v2_body(
        self,
        rows: list[dict],
        ids: list[str] | None = None,
        numeric=("tenure_months", "monthly_charges", "support_calls", "data_usage_gb"),
    ):
        inputs = [
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": "FP64" if name in numeric else "BYTES",
                "data": [r[name] for r in rows],
            }
            for name in GOOD_ROW
        ]
        return {"id": "req-1", "inputs": inputs, **({"parameters": {"ids": ids}} if ids else {})}

    def test_health_metadata_and_infer_go_the_way_of_predict(self, trained, registry, model_server):
        store, v1, v2, _ = trained
        registry.set_alias("canary", v2, weight=50)
        client = model_server(store.root_uri, PIPELINE, env={"MLOPS_PREDICT_TOKENS": "p-token"})
        wait_for(lambda: client.get("/health").json()["canary"] == v2)
        token = bearer("p-token")
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").status_code == 200, "probes need no token"
        assert client.get(f"/v2/models/{PIPELINE}/ready").json() == {"name": PIPELINE, "ready": True}
        assert client.get("/v2/models/other/ready").status_code == 404
        assert client.get(f"/v2/models/{PIPELINE}").status_code == 401, "metadata takes the predict tokens"
        metadata = client.get(f"/v2/models/{PIPELINE}", headers=token).json()
        assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
            (name, "BYTES" if name in ("contract", "payment_method", "region") else "FP64") for name in GOOD_ROW
        ]
        assert metadata["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}] and set(metadata["versions"]) == {
            v1,
            v2,
        }

        rows = [{**GOOD_ROW, "tenure_months": i} for i in range(40)]
        ids = [f"v2-{i}" for i in range(40)]
        url = f"/v2/models/{PIPELINE}/infer"
        assert client.post(url, json=self.v2_body(rows, ids)).status_code == 401
        answer = client.post(url, json=self.v2_body(rows, ids), headers=token)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_name"] == PIPELINE and body["id"] == "req-1" and body["parameters"]["ids"] == ids
        assert body["outputs"][0]["shape"] == [40] and body["outputs"][0]["datatype"] == "FP64"
        assert set(body["parameters"]["versions"]) == {v1, v2}, "the canary takes its share (sticky by id)"
        same = client.post(
            "/predict", json={"instances": [{**r, "id": i} for r, i in zip(rows, ids, strict=True)]}, headers=token
        )
        predictions = same.json()["predictions"]
        assert body["outputs"][0]["data"] == [p["prediction"] for p in predictions]
        assert body["parameters"]["versions"] == [p["version"] for p in predictions], "one routing for both protocols"

        made = client.post(url, json=self.v2_body(rows[:2]), headers=token).json()["parameters"]["ids"]
        assert len(set(made)) == 2 and all(made), "ids are made up when none are given"
        assert client.post("/feedback", json={"id": made[0], "label": 1}).json()["accepted"] == 1, "v2 answers take feedback"
        nested = self.v2_body(rows[:3])
        for given in nested["inputs"]:
            given["shape"], given["data"] = [3, 1], [[v] for v in given["data"]]
        assert client.post(url, json=nested, headers=token).status_code == 200, "shape [n, 1] is taken too"

        def logged():
            frame = read_log(store, PIPELINE, "predictions", 0.0)
            return frame[frame["_id"].isin(ids)]["_id"].value_counts()

        wait_for(lambda: logged().sum() == 80)
        assert (logged() == 2).all(), "v2 rows are logged like /predict rows"

    @pytest.mark.parametrize(
        ("change", "status", "message"),
        [
            pytest.param(lambda b: b["inputs"].pop(), 422, "missing feature 'region'", id="missing-input"),
            pytest.param(
                lambda b: b["inputs"][0].update(data=["three"]), 422, "tenure_months: expected a number", id="wrong-type"
            ),
            pytest.param(lambda b: b["inputs"][0].update(shape=[2]), 400, "does not fit", id="shape-mismatch"),
            pytest.param(lambda b: b["inputs"][1].update(data=[1.0, 2.0], shape=[2]), 400, "inputs[0] has 1", id="ragged"),
            pytest.param(lambda b: b["inputs"].append(dict(b["inputs"][0])), 400, "given twice", id="duplicate-input"),
            pytest.param(lambda b: b.update(parameters={"ids": ["a", "b"]}), 400, "parameters.ids", id="ids-count"),
            pytest.param(lambda b: b.pop("inputs"), 400, "'inputs' list", id="no-inputs"),
        ],
    )
    def test_bad_infer_requests_get_a_4xx_naming_the_problem(self, server, change, status, message):
        client = server[0]
        body = self.v2_body([GOOD_ROW])
        change(body)
        response = client.post(f"/v2/models/{PIPELINE}/infer", json=body)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
        assert client.post("/v2/models/other/infer", json=self.v2_body([GOOD_ROW])).status_code == 404


class TestPinnedVersion:
    def test_a_pinned_server_serves_its_version_alone_whatever_the_registry_says(self, trained, registry, model_server):
        store, v1, v2, _ = trained
        registry.set_alias("canary", v2, weight=50)
        client = model_server(store.root_uri, PIPELINE, args=["--version", v2])
        assert client.get("/health").json() | {"worker": 0} == {
            "status": "ok",
            "production": v2,
            "canary": None,
            "canary_percent": 0.0,
            "holdback": None,
            "holdback_percent": 0.0,
            "load_errors": {},
            "worker": 0,
        }
        rows = [{**GOOD_ROW, "id": f"pin-{i}"} for i in range(50)]
        assert {p["version"] for p in client.post("/predict", json={"instances": rows}).json()["predictions"]} == {v2}
        registry.set_alias("canary", None)
        registry.set_alias("production", v1)
        time.sleep(1.0)  # a few polls of an unpinned server
        assert client.get("/health").json()["production"] == v2
        assert client.get(f"/v2/models/{PIPELINE}").json()["versions"] == [v2]

    def test_a_pinned_version_that_cannot_load_is_not_ready(self, trained, registry, model_server):
        store, *_ = trained
        client = model_server(store.root_uri, PIPELINE, args=["--version", "no-such-version"], require_model=False)
        health = client.get("/health").json()
        assert health["production"] is None and "no-such-version" in health["load_errors"]
        assert client.get("/v2/health/ready").status_code == 503 and client.get("/v2/health/live").status_code == 200
