"""``task: multiclass`` end to end on real runs: a three-class pipeline trains through the gate, is served (the class
and its probabilities on ``/predict`` and in the OIP v2 shape), goes through a canary on real HTTP traffic with
feedback, and is watched by the monitor (predicted class shares, labels of a class the model does not know)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
from conftest import run_dag
from test_training_dag import store_of, write_day, xcom

from airflow_mlops.stages.monitoring import new_logged_rows
from airflow_mlops.store.events import read_events
from airflow_mlops.store.layout import report_prefix
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow

PIPELINE = "segments"
FEATURES = {"numeric": ["x1", "x2", "x3"], "categorical": ["region"]}
CLASSES = ["0", "1", "2"]


def make_segments(rows: int, *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Three segments (0, 1, 2) driven by the features: 0 by x1, 1 by x2 and the south, 2 by -x1 and x3; ``shift``
    moves x1 (more rows look like segment 0)."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(shift, 1.0, rows), rng.normal(0.0, 1.0, rows), rng.uniform(0.0, 1.0, rows)
    region = rng.choice(["north", "south", "east"], rows)
    logits = np.column_stack([1.8 * x1, 1.8 * x2 + (region == "south"), -1.8 * x1 + 2 * x3])
    segment = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    ids = [f"s{seed}-{i}" for i in range(rows)]
    return pd.DataFrame({"customer_id": ids, "x1": x1, "x2": x2, "x3": x3, "region": region, "segment": segment})


def requests_of(frame: pd.DataFrame) -> list[dict]:
    return [
        {"id": r["customer_id"], "x1": r["x1"], "x2": r["x2"], "x3": r["x3"], "region": r["region"]}
        for r in frame.to_dict("records")
    ]


def segments_config(tmp_path) -> dict:
    return {
        "pipeline": PIPELINE,
        "schedule": "@daily",
        "artifacts": {"root": str(tmp_path / "artifacts")},
        "source": {"uri": str(tmp_path / "data" / "{{ ds }}.csv")},
        "label": "segment",
        "task": "multiclass",
        "features": FEATURES,
        "validation": {"max_out_of_range_share": 1.0, "max_volume_ratio": 100.0, "max_label_shift": 0.5},
        "model": {"num_boost_round": 40, "params": {"num_leaves": 7}},
        "evaluation": {
            "metric": "roc_auc_macro",
            "threshold": 0.7,
            "slices": ["region"],
            "fairness": {"column": "region", "max_gap": 0.3},
        },
        "canary": {
            "steps": [50],
            "min_requests": 60,
            "bake_minutes": 1,
            "check_seconds": 1,
            "analysis": {"max_prediction_divergence": 0.3, "max_p95_latency_ratio": 5.0, "min_labels": 60},
            "watch": {"minutes": 0.1, "min_requests": 10},
        },
        "monitor": {
            "min_rows": 300,
            "check_seconds": 0.5,
            "cooldown_hours": 1,
            "drift": {"column_threshold": 0.2, "share_threshold": 0.9},
            "labels": {"uri": str(tmp_path / "labels" / "*.csv"), "id_column": "customer_id", "label_column": "segment"},
            "performance": {"metric": "log_loss", "max_drop": 0.5, "min_labels": 50, "estimated": "off"},
        },
    }


class Traffic:
    """Batches of real rows sent to ``/predict`` from a thread until stopped, each answered batch's true labels to
    ``/feedback``."""

    def __init__(self, client, frame: pd.DataFrame) -> None:
        self.rows, self.truth = requests_of(frame), dict(zip(frame["customer_id"], frame["segment"], strict=True))
        self.client, self.stop, self.statuses = client, threading.Event(), []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            batch = self.rows[i % (len(self.rows) - 20) : i % (len(self.rows) - 20) + 20]
            answer = self.client.post("/predict", json={"instances": batch})
            self.statuses.append(answer.status_code)
            if answer.status_code == 200:
                self.client.post("/feedback", json=[{"id": r["id"], "label": float(self.truth[r["id"]])} for r in batch])
            i += 20
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def send(client, frame: pd.DataFrame) -> None:
    records = requests_of(frame)
    for i in range(0, len(records), 100):
        assert client.post("/predict", json={"instances": records[i : i + 100]}).status_code == 200


def wait_logged(store, rows: int) -> None:
    deadline = time.monotonic() + 20
    while new_logged_rows(store, PIPELINE) < rows:
        assert time.monotonic() < deadline, "predictions were not logged"
        time.sleep(0.3)


class TestMulticlassLoop:
    def test_gate_server_canary_and_monitor(self, pipeline, tmp_path, model_server):
        config, dag = pipeline(segments_config(tmp_path))
        monitor = pipeline.monitor
        write_day(tmp_path, "2026-11-01", make_segments(1500, seed=1))
        write_day(tmp_path, "2026-11-02", make_segments(3000, seed=2))

        # Day 1: through the gate, straight to production (the first model).
        run1, states1 = run_dag(dag, "2026-11-01")
        assert run1.state == "success", states1
        store = store_of(config)
        v1 = xcom(run1, "training.train")["model_version"]
        assert ModelRegistry(store, PIPELINE).production() == v1
        spec = store.read_json(f"models/{PIPELINE}/{v1}/transform.json")
        assert spec["classes"] == CLASSES and spec["task"] == "multiclass"
        assert "num_class=3" in store.read_text(f"models/{PIPELINE}/{v1}/model.txt")
        evaluation = xcom(run1, "evaluation.evaluate")
        metrics = evaluation["metrics"]
        assert {"roc_auc_macro", "roc_auc_weighted", "log_loss", "accuracy"} <= set(metrics)
        assert metrics["roc_auc_macro"] > 0.8 and 0 < metrics["log_loss"] < np.log(3)
        assert all(0 < metrics[f"recall:{c}"] <= 1 for c in CLASSES)
        assert set(evaluation["slices"]["region"]) == {"north", "south", "east"}
        assert evaluation["fairness_gap"] is not None and evaluation["blessed"], evaluation["reason"]
        shares = store.read_json(f"models/{PIPELINE}/{v1}/metrics.json")["predicted_class_shares"]
        assert set(shares) == set(CLASSES) and abs(sum(shares.values()) - 1) < 1e-9

        # The server: the class and its probabilities, on /predict and in the OIP v2 shape.
        client = model_server(store.root_uri, PIPELINE)
        row = requests_of(make_segments(1, seed=9))[0]
        [answer] = client.post("/predict", json={"instances": [row]}).json()["predictions"]
        assert set(answer["probabilities"]) == set(CLASSES) and abs(sum(answer["probabilities"].values()) - 1) < 1e-9
        assert answer["prediction"] == max(answer["probabilities"], key=answer["probabilities"].get)
        inputs = [{"name": k, "shape": [1], "datatype": "FP64", "data": [row[k]]} for k in ("x1", "x2", "x3")]
        inputs.append({"name": "region", "shape": [1], "datatype": "BYTES", "data": [row["region"]]})
        v2_answer = client.post(f"/v2/models/{PIPELINE}/infer", json={"inputs": inputs}).json()
        predict, probabilities = v2_answer["outputs"]
        assert predict["data"] == [answer["prediction"]] and probabilities["shape"] == [1, 3]
        assert probabilities["parameters"]["classes"] == CLASSES
        assert probabilities["data"] == pytest.approx([answer["probabilities"][c] for c in CLASSES])
        outputs = client.get(f"/v2/models/{PIPELINE}").json()["outputs"]
        assert [o["name"] for o in outputs] == ["predict", "probabilities"] and outputs[1]["shape"] == [-1, 3]

        # Day 2: a retrained model goes through the gate and a canary on real traffic with feedback, and is promoted.
        with Traffic(client, make_segments(3000, seed=100)) as traffic:
            run2, states2 = run_dag(dag, "2026-11-02")
        assert run2.state == "success", states2
        v2 = xcom(run2, "training.train")["model_version"]
        assert states2["deploy.promote"] == "success" and states2["deploy.rollback"] == "skipped", states2
        assert ModelRegistry(store, PIPELINE).production() == v2 and set(traffic.statuses) == {200}
        [step] = [e for e in read_events(store, PIPELINE) if e["kind"] == "canary_analysis" and e["version"] == v2]
        figures = step["figures"]
        assert step["passed"] and "JS" in step["reason"], step["reason"]
        assert 0 <= figures["prediction_divergence"] < 0.3
        assert set(figures["canary"]["mean_probabilities"]) == set(CLASSES)
        assert figures["label_quality"]["canary"] > 0.8, "label quality: macro ROC AUC of the logged probabilities"

        # The monitor: traffic like the training data first (no class-share drift), then shifted traffic whose
        # predicted class shares move; labels of a class the model does not know are counted.
        time.sleep(1.0)  # the rows of the watch are logged before the first check
        like_training = make_segments(600, seed=11)
        send(client, like_training)
        wait_logged(store, 600)
        (tmp_path / "labels").mkdir()
        like_training[["customer_id", "segment"]].iloc[:200].to_csv(tmp_path / "labels" / "calm.csv", index=False)
        calm, states = run_dag(monitor, "2026-11-03")
        assert calm.state == "success", states
        judged = xcom(calm, "performance_check")  # realized log loss of the logged probabilities against the labels
        assert judged["dropped"] is False and judged["window_count"] >= 1, judged
        [window] = store.read_json(f"{report_prefix(PIPELINE, calm.run_id)}/performance.json")["windows"]
        assert window["judged"] and window["production_labels"] >= 200, window
        assert window["realized"]["value"] == pytest.approx(window["reference"]["value"], abs=0.25)
        first = xcom(calm, "drift_check")["predicted_class_drift"]
        assert first["drifted"] is False and first["psi"] < 0.1, first

        shifted = make_segments(600, seed=12, shift=2.5)
        send(client, shifted)
        wait_logged(store, 600)
        labels = shifted[["customer_id", "segment"]].iloc[:200].copy()
        labels.loc[labels.index[:30], "segment"] = 3  # a segment the model never saw
        labels.to_csv(tmp_path / "labels" / "day.csv", index=False)
        drifted, states = run_dag(monitor, "2026-11-04")
        check = xcom(drifted, "drift_check")
        second = check["predicted_class_drift"]
        assert second["drifted"] is True and second["psi"] > 0.2, second
        assert second["shares"]["0"] > second["reference"]["0"] + 0.2, "more rows look like segment 0"
        assert check["drifted"] and "predicted class shares drifted" in check["reason"]
        assert states["request_retrain"] == "success", states
        ingest = xcom(drifted, "ingest_labels")
        assert ingest["joined"] == 200 and ingest["unseen_label_classes"] == {"3": 30}, ingest
        performance = xcom(drifted, "performance_check")
        assert performance["metric"] == "log_loss" and "not judged" not in performance["reason"], performance["reason"]
