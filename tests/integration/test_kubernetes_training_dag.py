"""The training DAG with ``compute.target: kubernetes``, run with dag.test(): KubernetesPodOperator talks HTTP to a
Kubernetes API on 127.0.0.1 (tests/kube_api.py) and the test plays the kubelet: it runs the pod's exact command and
environment (``.venv/bin/airflow-mlops train ...``, the credentials resolved from the Secret the test created through
the API) against the moto S3 server, then reports the container's exit as a kubelet would."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DAGS, run_dag
from kube_api import KubeAPI, now
from test_training_dag import CHURN_FEATURES, write_day, xcom

from airflow_mlops.hooks.artifact_store import ArtifactStoreHook
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow

NAMESPACE = "ml"
SECRET = "mlops-s3"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAPODONLY000000001", "AWS_SECRET_ACCESS_KEY": "pod-only-secret-never-logged"}
VENV_BIN = Path(sys.executable).parent
UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def kubelet(api: KubeAPI, pod: dict) -> None:
    """Start the pod's container here: its command, with its environment only (Secret keys resolved), as a
    process of the project's venv; an image tagged ``:unschedulable`` never gets a node."""
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    [container] = pod["spec"]["containers"]
    if container["image"].endswith(":unschedulable"):
        api.event(ns, name, "FailedScheduling", UNSCHEDULABLE, kind="Warning")
        api.set_status(ns, name, {"phase": "Pending", "conditions": [scheduled("False", UNSCHEDULABLE)]})
        return
    started = now()
    api.event(ns, name, "Scheduled", f"Successfully assigned {ns}/{name} to gpu-node-1")
    base = {"name": "base", "image": container["image"], "imageID": "", "restartCount": 0}
    running = {"running": {"startedAt": started}}
    api.set_status(
        ns,
        name,
        {"phase": "Running", "conditions": [scheduled("True")], "containerStatuses": [{**base, "ready": True, "state": running}]},
    )
    env = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/tmp")}
    for var in container.get("env") or []:
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        env[var["name"]] = api.secret_data(ns, ref["name"])[ref["key"]] if ref else var["value"]
    command = [*container["command"], *container["args"]]
    api.ran.append(command)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        api.log(ns, name, line)
    code = proc.wait()
    done = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started, "finishedAt": now()}
    status = {"phase": "Succeeded" if code == 0 else "Failed", "conditions": [scheduled("True")]}
    api.set_status(ns, name, {**status, "containerStatuses": [{**base, "ready": False, "state": {"terminated": done}}]})
    api.end_log(ns, name)  # after the terminated status: KPO then stops following


def scheduled(status: str, message: str = "") -> dict:
    condition = {"type": "PodScheduled", "status": status, "lastTransitionTime": now()}
    return condition | ({"reason": "Unschedulable", "message": message} if message else {})


@pytest.fixture
def kube(tmp_path, monkeypatch):
    """The API with the kubelet, the Airflow connection ``kubernetes_default`` to it, and the Secret (created
    through the API) holding the pod's S3 credentials."""
    from kubernetes import client, config

    api = KubeAPI(on_create=kubelet)
    api.ran = []
    with api.serving():
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps(api.kubeconfig()))
        extra = {"kube_config_path": str(kubeconfig)}
        monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes", "extra": extra}))
        data = {k: base64.b64encode(v.encode()).decode() for k, v in CREDENTIALS.items()}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "data": data}
        client.CoreV1Api(config.new_client_from_config(str(kubeconfig))).create_namespaced_secret(NAMESPACE, secret)
        yield api
        for thread in api.kubelets:
            thread.join(timeout=30)


def k8s_config(name: str, root: str, aws_conn_id: str, moto_url: str, tmp_path, **pod) -> dict:
    return {
        "pipeline": name,
        "schedule": None,
        "artifacts": {"root": root, "aws_conn_id": aws_conn_id},
        "source": {"uri": str(tmp_path / "data" / "{{ ds }}.csv")},
        "label": "churned",
        "task": "classification",
        "features": CHURN_FEATURES,
        "model": {"num_boost_round": 40, "params": {"num_leaves": 15}},
        "evaluation": {"metric": "roc_auc", "threshold": 0.6},
        "compute": {
            "target": "kubernetes",
            "kubernetes": {
                "image": "mlops-trainer:test",
                "namespace": NAMESPACE,
                "gpus": 0,
                "cpu": "1",
                "memory": "2Gi",
                "credentials_secret": SECRET,
                "s3_endpoint_url": moto_url,
                "startup_timeout_minutes": 0.5,
                **pod,
            },
        },
    }


@pytest.fixture
def s3(s3_bucket, aws_connection):
    """``(root, aws_conn_id, moto_url)``: a fresh s3:// artifact root on the moto server."""
    moto_url, bucket = s3_bucket
    return f"s3://{bucket}/mlops", aws_connection, moto_url


TRIALS_DAG = """from airflow.sdk import DAG

from airflow_mlops.operators.training import KubernetesTrainingOperator

with DAG("mlops_k8s_trials", schedule=None) as dag:
    KubernetesTrainingOperator.partial(task_id="trial", **{kwargs!r}).expand(model_params={trials!r})
"""


def run_trials(root: str, conn: str, moto_url: str, features_id: str, trials: list[dict]):
    """Run a DAG of one mapped KubernetesTrainingOperator, a trial per model_params."""
    from airflow.dag_processing.dagbag import DagBag

    kwargs = {
        "features_id": features_id,
        "pipeline": "churn_k8s",
        "artifact_root": root,
        "aws_conn_id": conn,
        "num_boost_round": 40,
        "image": "mlops-trainer:test",
        "namespace": NAMESPACE,
        "gpus": 0,
        "credentials_secret": SECRET,
        "s3_endpoint_url": moto_url,
    }
    trials = [{"learning_rate": 0.05, "min_data_in_leaf": 20, **t} for t in trials]
    path = DAGS / "test_k8s_trials.py"
    path.write_text(TRIALS_DAG.format(kwargs=kwargs, trials=trials))
    try:
        dag = DagBag(dag_folder=str(path)).get_dag("mlops_k8s_trials")
        return dag.test()
    finally:
        path.unlink()


def trial_results(run) -> dict[int, dict]:
    """The XCom of each mapped ``trial`` task, by map index."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id="trial", key="return_value")
        return {row.map_index: XComModel.deserialize_value(row) for row in rows}


def pod_requests(api: KubeAPI) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in api.requests if "/pods" in path and not path.endswith("/log")]


class TestKubernetesTraining:
    def test_the_pod_trains_and_the_run_registers_its_model(self, kube, s3, pipeline, tmp_path, capfd):
        root, conn, moto_url = s3
        config, dag = pipeline(k8s_config("churn_k8s", root, conn, moto_url, tmp_path))
        write_day(tmp_path, "2026-11-01", make_churn(1500, seed=1))
        run, states = run_dag(dag, "2026-11-01")
        task_log = capfd.readouterr()
        assert run.state == "success", states
        assert states["registry.bless"] == "success"

        trained = xcom(run, "training.train")
        version, features_id = trained["model_version"], xcom(run, "features.preprocess")["features_id"]
        assert trained["cached"] is False and trained["model_uri"] == f"{root}/models/churn_k8s/{version}"
        [command] = kube.ran
        assert command == [
            "airflow-mlops",
            "train",
            "--artifact-root",
            root,
            "--pipeline",
            "churn_k8s",
            "--features-id",
            features_id,
            "--params",
            json.dumps(dict(config.model.params), sort_keys=True),
            "--num-boost-round",
            "40",
            "--seed",
            "42",
            "--device",
            "cpu",
        ]
        store = ArtifactStoreHook(artifact_root=root, aws_conn_id=conn).get_store()
        assert store.read_json(f"models/churn_k8s/{version}/training.json")["device"] == "cpu"
        registry = ModelRegistry(store, "churn_k8s")
        assert registry.production() == version and registry.get(version)["status"] == "blessed"

        assert kube.pods == {}, "the pod is deleted when it ends (on_finish_action: delete_pod)"
        created = [p for p in pod_requests(kube) if p[0] == "POST"]
        assert created == [("POST", f"/api/v1/namespaces/{NAMESPACE}/pods")]
        out = task_log.out + task_log.err
        assert f"Stored model {version}" in out, "the pod's log is in the task log"
        assert out.count(f"Stored model {version}") == 1, "each line of the pod's log once"
        for value in CREDENTIALS.values():
            assert value not in out

        # The same inputs again: the stored model is reused and no pod is started.
        write_day(tmp_path, "2026-11-02", make_churn(1500, seed=1))
        run2, _ = run_dag(dag, "2026-11-02")
        assert run2.state == "success" and xcom(run2, "training.train") == {**trained, "cached": True}
        assert len(kube.ran) == 1 and [p for p in pod_requests(kube) if p[0] == "POST"] == created

        # Trials fan out over the same operator (Operator.partial(...).expand(model_params=...)): a pod per trial.
        run3 = run_trials(root, conn, moto_url, features_id, [{"num_leaves": 7}, {"num_leaves": 15}])
        assert run3.state == "success"
        results = trial_results(run3)
        assert results[1]["model_version"] == version and results[1]["cached"] is True  # the DAG's own model
        assert results[0]["cached"] is False and store.exists(f"models/churn_k8s/{results[0]['model_version']}/model.txt")
        assert len(kube.ran) == 2 and json.loads(kube.ran[1][kube.ran[1].index("--params") + 1])["num_leaves"] == 7

    def test_a_failing_pod_fails_the_task_and_one_that_never_starts_times_out(self, kube, s3, pipeline, tmp_path, capfd):
        root, conn, moto_url = s3
        # cuda on a CPU-only LightGBM: the container exits 1. Waited for in the worker (not deferred).
        config = k8s_config("churn_k8s_fail", root, conn, moto_url, tmp_path, deferrable=False)
        config["model"]["device"] = "cuda"
        _, dag = pipeline(config)
        write_day(tmp_path, "2026-11-01", make_churn(1500, seed=1))
        run, states = run_dag(dag, "2026-11-01")
        task_log = capfd.readouterr()
        out = task_log.out + task_log.err
        assert run.state == "failed" and states["training.train"] == "failed", states
        assert states["registry.bless"] != "success" and states["evaluation.evaluate"] == "upstream_failed"
        assert "airflow-mlops train: " in out and "cuda" in out, "the pod's own error is in the task log"
        assert "returned a failure" in out
        store = ArtifactStoreHook(artifact_root=root, aws_conn_id=conn).get_store()
        assert not ModelRegistry(store, "churn_k8s_fail").load().get("versions")
        assert store.list("models/churn_k8s_fail") == []
        assert kube.pods == {}
        for value in CREDENTIALS.values():
            assert value not in out

        # A pod no node can take: the task fails on the startup timeout, deferred (the default here).
        config = k8s_config("churn_k8s_fail", root, conn, moto_url, tmp_path, image="mlops-trainer:unschedulable")
        config["compute"]["kubernetes"]["startup_timeout_minutes"] = 0.05
        _, dag = pipeline(config)
        write_day(tmp_path, "2026-11-02", make_churn(1500, seed=1))
        run, states = run_dag(dag, "2026-11-02")
        out = "".join(capfd.readouterr())
        assert run.state == "failed" and states["training.train"] == "failed", states
        assert "did not start within 3 s" in out and UNSCHEDULABLE in out
        assert kube.pods == {} and len(kube.ran) == 1

        # The same, waited for in the worker.
        config["compute"]["kubernetes"]["deferrable"] = False
        _, dag = pipeline(config)
        write_day(tmp_path, "2026-11-03", make_churn(1500, seed=1))
        run, states = run_dag(dag, "2026-11-03")
        out = "".join(capfd.readouterr())
        assert run.state == "failed" and states["training.train"] == "failed", states
        assert "did not start within 3 s" in out and UNSCHEDULABLE in out
        assert kube.pods == {} and len(kube.ran) == 1
