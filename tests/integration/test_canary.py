"""Canary on a real model server with real HTTP traffic: a good candidate is promoted, broken ones rolled back."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
from conftest import run_dag
from test_model_server import PIPELINE, train_version
from test_training_dag import churn_config, store_of, write_day, xcom

from airflow_mlops.ml.synthetic import FEATURES, as_requests, make_churn
from airflow_mlops.sensors.canary import CanaryAnalysisSensor, PromotionWatchSensor
from airflow_mlops.stages.deployment.canary import canary_deploy, canary_resolve
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow


class Traffic:
    """Sends batches of real rows to the server from a thread until stopped; with ``labels``, each answered
    batch's true labels go to ``/feedback`` too (their opposites while ``flipped`` is set: the world changed)."""

    def __init__(self, client, seed: int = 100, labels: bool = False) -> None:
        frame = make_churn(4000, seed=seed)
        self.rows, self.truth = as_requests(frame), dict(zip(frame["customer_id"], frame["churned"], strict=True))
        self.client, self.stop, self.statuses = client, threading.Event(), []
        self.labels, self.flipped = labels, False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            batch = self.rows[i % 3980 : i % 3980 + 20]
            answer = self.client.post("/predict", json={"instances": batch})
            self.statuses.append(answer.status_code)
            if self.labels and answer.status_code == 200:
                labels = [{"id": r["id"], "label": float(self.truth[r["id"]] != self.flipped)} for r in batch]
                self.client.post("/feedback", json=labels)
            i += 20
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class TestCanaryDag:
    def test_good_candidate_goes_through_every_step_and_is_promoted(self, pipeline, tmp_path, model_server):
        config, dag = pipeline(
            churn_config(
                "churn_canary",
                tmp_path,
                evaluation={"metric": "roc_auc", "threshold": 0.5},
                validation={"max_out_of_range_share": 1.0, "max_unseen_category_share": 1.0, "max_volume_ratio": 100.0},
                canary={
                    "steps": [30, 60],
                    "min_requests": 150,
                    "bake_minutes": 2,
                    "check_seconds": 1,
                    "analysis": {"max_prediction_divergence": 0.5, "max_p95_latency_ratio": 3.0},
                    "watch": {"minutes": 0.2, "min_requests": 20},
                },
            )
        )
        write_day(tmp_path, "2026-11-01", make_churn(400, seed=1))
        write_day(tmp_path, "2026-11-02", make_churn(4000, seed=2))
        run1, states1 = run_dag(dag, "2026-11-01")
        assert run1.state == "success", states1
        store = store_of(config)
        v1 = xcom(run1, "training.train")["model_version"]
        assert ModelRegistry(store, "churn_canary").production() == v1, "the first model goes straight to production"

        client = model_server(store.root_uri, "churn_canary")
        with Traffic(client) as traffic:
            run2, states2 = run_dag(dag, "2026-11-02")
        assert run2.state == "success", states2
        v2 = xcom(run2, "training.train")["model_version"]
        assert states2["deploy.promote"] == "success" and states2["deploy.rollback"] == "skipped", states2
        assert ModelRegistry(store, "churn_canary").production() == v2
        assert states2["deploy.watch"] == "success" and xcom(run2, "deploy.watch")["decision"] == "kept"
        assert ModelRegistry(store, "churn_canary").get(v2)["watch"]["decision"] == "kept"
        assert set(traffic.statuses) == {200}
        events = read_events(store, "churn_canary")
        steps = [e for e in events if e["kind"] == "canary_analysis" and e["version"] == v2]
        assert [e["weight"] for e in steps] == [30, 60] and all(e["passed"] for e in steps)
        assert steps[0]["figures"]["canary"]["requests"] >= 150
        promoted = [e for e in events if e["kind"] == "promote" and e["version"] == v2]
        assert promoted and promoted[0]["previous_production"] == v1
        assert client.get("/health").json()["production"] == v2 or _eventually(
            lambda: client.get("/health").json()["production"] == v2
        )


def _eventually(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def broken_model(store: ArtifactStore, good: str, kind: str) -> str:
    """A blessed-looking version that errors on every request or predicts one constant."""
    import lightgbm as lgb

    version = f"broken-{kind}"
    src, dst = store.root / f"models/{PIPELINE}/{good}", store.root / f"models/{PIPELINE}/{version}"
    shutil.copytree(src, dst, dirs_exist_ok=True)
    rng = np.random.default_rng(0)
    width = 2 if kind == "errors" else len(FEATURES)  # a feature-count mismatch makes every prediction fail
    x = np.zeros((200, width)) if kind == "constant" else rng.normal(size=(200, width))
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "seed": 1}, lgb.Dataset(x, rng.integers(0, 2, 200)), num_boost_round=5
    )
    (dst / "model.txt").write_text(booster.model_to_string())
    ModelRegistry(store, PIPELINE).register(
        version, status="blessed", metrics={}, lineage={}, reason="fixture: passes no gate for real"
    )
    return version


@pytest.fixture(scope="module")
def served_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    csv = root / "data.csv"
    make_churn(1500, seed=5).to_csv(csv, index=False)
    store = ArtifactStore.from_uri(str(root / "artifacts"))
    v1, _ = train_version(store, csv, seed=1)
    ModelRegistry(store, PIPELINE).set_alias("production", v1)
    return store, v1


class TestBrokenCandidates:
    @pytest.mark.parametrize("kind", ["errors", "constant"])
    def test_rolled_back_and_never_production(self, served_store, model_server, kind):
        store, v1 = served_store
        bad = broken_model(store, v1, kind)
        client = model_server(store.root_uri, PIPELINE)
        canary_deploy(store, PIPELINE, bad, 20)
        sensor = CanaryAnalysisSensor(
            task_id="analysis",
            pipeline=PIPELINE,
            artifact_root=store.root_uri,
            steps=[20, 50],
            problem_type="classification",
            min_requests=60,
            bake_minutes=1,
            deferrable=False,
            poke_interval=0.5,
        )
        result = None
        with Traffic(client, seed=200 + len(kind)) as traffic:
            deadline = time.monotonic() + 90
            while result is None and time.monotonic() < deadline:
                time.sleep(0.5)
                poked = sensor.poke({})
                result = poked.xcom_value if poked.is_done else None
        assert result and result["decision"] == "rollback", result
        assert set(traffic.statuses) == {200}, "production answers the rows a broken canary cannot score"
        expected = "error rate" if kind == "errors" else "prediction distribution diverges"
        assert expected in result["reason"]
        resolved = canary_resolve(store, PIPELINE, "rollback", result)
        assert resolved["production"] == v1
        registry = ModelRegistry(store, PIPELINE)
        assert registry.production() == v1 and registry.alias("canary") is None
        assert registry.get(bad)["canary"]["decision"] == "rollback"
        rollback = [e for e in read_events(store, PIPELINE) if e["kind"] == "rollback" and e["version"] == bad]
        assert rollback and expected in rollback[0]["reason"] and rollback[0]["figures"]["canary"]["requests"] >= 1
        assert all(not (e["kind"] == "promote" and e["version"] == bad) for e in read_events(store, PIPELINE))


class TestPostPromotionWatch:
    def test_a_model_that_degrades_after_promotion_is_reverted_on_the_live_server(self, served_store, model_server):
        store, v1 = served_store
        v2, _ = train_version(store, store.root.parent / "data.csv", seed=3)
        client = model_server(store.root_uri, PIPELINE)
        canary_deploy(store, PIPELINE, v2, 50)
        common = {"task_id": "t", "pipeline": PIPELINE, "artifact_root": store.root_uri, "problem_type": "classification"}
        analysis = CanaryAnalysisSensor(
            steps=[50], min_requests=40, bake_minutes=1, deferrable=False, poke_interval=0.5, **common
        )
        watch = PromotionWatchSensor(
            promotion={"version": v2}, watch_minutes=5, min_requests=30, deferrable=False, poke_interval=0.5, **common
        )
        with Traffic(client, seed=300, labels=True) as traffic:
            decision = poke_until_done(analysis)
            assert decision["decision"] == "promote", decision
            assert decision["figures"]["production"]["labels"] >= 100, "the canary-time baseline has label quality"
            traffic.flipped = True  # from promotion on, the model's scores mislead
            canary_resolve(store, PIPELINE, "promote", decision)
            started = time.monotonic()
            result = poke_until_done(watch)
            took = time.monotonic() - started
        assert set(traffic.statuses) == {200}
        assert result["decision"] == "reverted" and result["production"] == v1, result
        assert took < 60, "the watch reverts as soon as it sees the breach, not when its 5 minutes end"
        registry = ModelRegistry(store, PIPELINE)
        assert registry.production() == v1 and registry.get(v2)["watch"]["decision"] == "reverted"
        [revert] = [e for e in read_events(store, PIPELINE) if e["kind"] == "revert"]
        assert revert["version"] == v2 and "label quality ratio" in revert["reason"]
        assert _eventually(lambda: client.get("/health").json()["production"] == v1), "the server follows the revert"


def poke_until_done(sensor, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        poked = sensor.poke({})
        if poked.is_done:
            return poked.xcom_value
        time.sleep(0.5)
    raise AssertionError(f"{sensor.check} gave no verdict within {timeout} s")
