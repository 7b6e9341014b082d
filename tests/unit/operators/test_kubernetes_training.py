"""The training pod KubernetesTrainingOperator asks for: valid against the Kubernetes 1.31 schema (strict), running
``airflow-mlops train`` with the rendered arguments, GPUs as a limit, and credentials only as Secret references."""

from __future__ import annotations

import json
import logging

import kubernetes_validate
import pytest
from airflow.sdk import DAG

from airflow_mlops.cli import build_parser
from airflow_mlops.exceptions import MlopsError

KUBERNETES_VERSION = "1.31.0"
ACCESS_KEY, SECRET_KEY = "AKIAKPOTESTACCESSKEY", "kpo-test-secret-value-must-not-leak"
POD = {
    "image": "registry.example/mlops-trainer:0.1",
    "namespace": "ml",
    "gpus": 2,
    "cpu": "8",
    "memory": "32Gi",
    "cpu_limit": "12",
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "credentials_secret": "mlops-s3",
    "s3_endpoint_url": "http://minio.storage:9000",
    "service_account_name": "trainer",
    "image_pull_secrets": ["regcred"],
    "labels": {"team": "churn"},
    "annotations": {"owner": "ml-platform"},
}


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A kubeconfig (nothing listens: building the pod makes no call) and an AWS connection and AWS_* variables
    holding secrets that must stay out of the pod."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    extra = {"kube_config_path": str(kubeconfig), "namespace": "default"}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    aws = {"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def operator(**overrides):
    from airflow_mlops.operators.training import KubernetesTrainingOperator

    kwargs = {
        "task_id": "train",
        "features_id": "ds1-tf1",
        "model_params": {"num_leaves": 15, "learning_rate": 0.05},
        "num_boost_round": 60,
        "seed": 7,
        "early_stopping_rounds": 10,
        "device": "cuda",
        "allow_cpu_fallback": True,
        "pipeline": "churn",
        "artifact_root": "s3://mlops/team",
        **POD,
        **overrides,
    }
    with DAG("k8s_training_unit", schedule=None):
        return KubernetesTrainingOperator(**kwargs)


def pod_dict(op) -> dict:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(op.build_pod_request_obj())


def base_container(pod: dict) -> dict:
    [container] = pod["spec"]["containers"]
    assert container["name"] == "base"
    return container


class TestKubernetesTrainingOperator:
    def test_pod_is_valid_and_runs_the_train_command(self, cluster, caplog):
        caplog.set_level(logging.DEBUG)
        pod = pod_dict(operator())
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
        container = base_container(pod)
        command = [*container["command"], *container["args"]]
        assert command == [
            "airflow-mlops",
            "train",
            "--artifact-root",
            "s3://mlops/team",
            "--pipeline",
            "churn",
            "--features-id",
            "ds1-tf1",
            "--params",
            '{"learning_rate": 0.05, "num_leaves": 15}',
            "--num-boost-round",
            "60",
            "--seed",
            "7",
            "--early-stopping-rounds",
            "10",
            "--device",
            "cuda",
            "--allow-cpu-fallback",
        ]
        args = build_parser().parse_args(command[1:])  # the CLI takes it as the training task gives it
        assert (args.func.__name__, json.loads(args.params), args.early_stopping_rounds) == (
            "cmd_train",
            {"learning_rate": 0.05, "num_leaves": 15},
            10,
        )
        assert pod["metadata"]["namespace"] == "ml" and pod["spec"]["restartPolicy"] == "Never"
        assert container["image"] == POD["image"]

    def test_resources_gpus_tolerations_and_placement(self, cluster):
        pod = pod_dict(
            operator(
                affinity={
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 1,
                                "preference": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]},
                            }
                        ]
                    }
                }
            )
        )
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
        assert base_container(pod)["resources"] == {
            "requests": {"cpu": "8", "memory": "32Gi"},
            "limits": {"cpu": "12", "memory": "32Gi", "nvidia.com/gpu": "2"},
        }
        spec = pod["spec"]
        assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 1
        assert spec["serviceAccountName"] == "trainer" and spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["metadata"]["labels"]["airflow-mlops/pipeline"] == "churn" and pod["metadata"]["labels"]["team"] == "churn"
        assert pod["metadata"]["annotations"] == {"owner": "ml-platform"}

    @pytest.mark.parametrize(
        ("overrides", "tolerations", "limits"),
        [
            pytest.param({"gpus": 0, "cpu_limit": None}, [], {"memory": "32Gi"}, id="cpu-only"),
            pytest.param(
                {
                    "tolerations": [
                        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute", "tolerationSeconds": 60}
                    ]
                },
                [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute", "tolerationSeconds": 60}],
                {"cpu": "12", "memory": "32Gi", "nvidia.com/gpu": "2"},
                id="own-tolerations",
            ),
        ],
    )
    def test_tolerations_follow_the_gpus_unless_given(self, cluster, overrides, tolerations, limits):
        pod = pod_dict(operator(**overrides))
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
        assert pod["spec"].get("tolerations") == tolerations
        assert base_container(pod)["resources"]["limits"] == limits

    def test_credentials_are_secret_references_and_no_value_leaks(self, cluster, caplog):
        caplog.set_level(logging.DEBUG)
        op = operator(image_pull_policy="IfNotPresent")
        pod = pod_dict(op)
        env = {e["name"]: e for e in base_container(pod)["env"]}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "mlops-s3", "key": key}}}
        assert env["MLOPS_S3_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"
        assert base_container(pod)["imagePullPolicy"] == "IfNotPresent"
        seen = json.dumps(pod) + caplog.text
        assert ACCESS_KEY not in seen and SECRET_KEY not in seen

    def test_without_a_secret_the_pod_uses_its_service_account(self, cluster):
        env = base_container(pod_dict(operator(credentials_secret=None, s3_endpoint_url=None))).get("env")
        assert not env

    def test_a_local_root_is_refused_unless_allowed(self, cluster, tmp_path):
        with pytest.raises(MlopsError, match=r"train: the training pod cannot read the local artifact root .*use an s3:// root"):
            operator(artifact_root=str(tmp_path)).build_pod_request_obj()
        pod = pod_dict(operator(artifact_root=str(tmp_path), allow_local_root=True))
        assert base_container(pod)["args"][2] == str(tmp_path)

    def test_template_fields_render_the_command_at_execute(self, cluster):
        op = operator(features_id="{{ params.features }}", artifact_root="s3://mlops/{{ params.team }}")
        assert {"features_id", "artifact_root", "image", "namespace"} <= set(op.template_fields)
        op.render_template_fields({"params": {"features": "abc-def", "team": "churn"}})
        args = base_container(pod_dict(op))["args"]
        assert (
            args[args.index("--features-id") + 1] == "abc-def" and args[args.index("--artifact-root") + 1] == "s3://mlops/churn"
        )

    def test_mapped_over_model_params_like_the_local_operator(self, cluster):
        from airflow_mlops.operators.training import KubernetesTrainingOperator, ModelTrainingOperator

        common = {"task_id": "trial", "features_id": "f", "pipeline": "churn", "artifact_root": "s3://mlops/team"}
        with DAG("k8s_training_mapped", schedule=None):
            mapped = KubernetesTrainingOperator.partial(image="t:1", **common).expand(
                model_params=[{"num_leaves": 7}, {"num_leaves": 31}]
            )
            local = ModelTrainingOperator.partial(**{**common, "task_id": "local_trial"}).expand(model_params=[{"num_leaves": 7}])
        assert mapped.expand_input.value == {"model_params": [{"num_leaves": 7}, {"num_leaves": 31}]}
        assert local.expand_input.value == {"model_params": [{"num_leaves": 7}]}

    def test_the_pod_has_no_xcom_sidecar(self, cluster):
        op = operator()
        assert [c["name"] for c in pod_dict(op)["spec"]["containers"]] == ["base"] and op.do_xcom_push is False
