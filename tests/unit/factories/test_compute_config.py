"""``compute``: where training runs, and the pod's settings when it is Kubernetes; errors name the file and key."""

from __future__ import annotations

import pytest
import yaml

from airflow_mlops.config.training import GPU_TOLERATION, ComputeConfig, KubernetesConfig
from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.loader import load_pipeline_config

BASE = {
    "pipeline": "churn",
    "source": {"uri": "/data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract"]},
    "artifacts": {"root": "s3://mlops/team"},
}


def write(tmp_path, compute: dict, **changes) -> str:
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump({**BASE, "compute": compute, **changes}))
    return str(path)


class TestKubernetesConfig:
    def test_defaults_follow_the_provider(self):
        pod = KubernetesConfig(image="trainer:1")
        assert (pod.kubernetes_conn_id, pod.namespace, pod.image_pull_policy, pod.on_finish_action) == (
            "kubernetes_default",
            "default",
            "IfNotPresent",
            "delete_pod",
        )
        assert (pod.gpus, pod.cpu, pod.memory, pod.cpu_limit, pod.memory_limit) == (1, "4", "16Gi", None, None)
        assert pod.tolerations is None and pod.credentials_secret is None and pod.deferrable is None
        assert pod.startup_timeout_minutes == 10 and pod.allow_local_root is False

    def test_a_full_pod_section_loads(self, tmp_path):
        pod = {
            "image": "registry.example/trainer:0.1",
            "namespace": "ml",
            "kubernetes_conn_id": "k8s_ml",
            "image_pull_policy": "Always",
            "image_pull_secrets": ["regcred"],
            "service_account": "trainer",
            "gpus": 2,
            "cpu": "8",
            "memory": "32Gi",
            "cpu_limit": "12",
            "memory_limit": "40Gi",
            "node_selector": {"pool": "gpu"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {}},
            "labels": {"team": "churn"},
            "annotations": {"owner": "ml"},
            "credentials_secret": "mlops-s3",
            "s3_endpoint_url": "http://minio:9000",
            "startup_timeout_minutes": 20,
            "on_finish_action": "keep_pod",
            "deferrable": False,
        }
        config = load_pipeline_config(write(tmp_path, {"target": "kubernetes", "kubernetes": pod}))
        assert config.compute.kubernetes.model_dump() == {**pod, "allow_local_root": False}

    @pytest.mark.parametrize(
        ("compute", "changes", "message"),
        [
            pytest.param(
                {"target": "kubernetes", "kubernetes": {"image": "t:1"}},
                {"artifacts": {"root": "/srv/mlops"}},
                "churn.yaml: artifacts.root: compute.target 'kubernetes' needs an s3:// artifact root",
                id="local-root",
            ),
            pytest.param(
                {
                    "target": "kubernetes",
                    "kubernetes": {"image": "t:1", "tolerations": [{"key": "a", "effect": "NoSchedule", "seconds": 5}]},
                },
                {},
                "churn.yaml: compute.kubernetes.tolerations[0].seconds: unknown toleration field",
                id="toleration-field",
            ),
            pytest.param(
                {"target": "kubernetes", "kubernetes": {"image": "t:1", "image_pull_policy": "Sometimes"}},
                {},
                "churn.yaml: compute.kubernetes.image_pull_policy: Input should be 'Always', 'IfNotPresent' or 'Never'",
                id="pull-policy",
            ),
            pytest.param(
                {"target": "kubernetes", "kubernetes": {"image": "t:1", "namespace": "ML_Team"}},
                {},
                "churn.yaml: compute.kubernetes.namespace: String should match pattern",
                id="namespace",
            ),
            pytest.param(
                {"target": "kubernetes", "kubernetes": {"image": "t:1", "startup_timeout_minutes": 0}},
                {},
                "churn.yaml: compute.kubernetes.startup_timeout_minutes: Input should be greater than 0",
                id="startup-timeout",
            ),
            pytest.param(
                {"target": "kubernetes", "kubernetes": {"image": "t:1", "on_finish_action": "forget"}},
                {},
                "churn.yaml: compute.kubernetes.on_finish_action: Input should be",
                id="on-finish",
            ),
        ],
    )
    def test_errors_name_the_file_and_key(self, tmp_path, compute, changes, message):
        with pytest.raises(ConfigError) as err:
            load_pipeline_config(write(tmp_path, compute, **changes))
        assert message in str(err.value)

    def test_a_local_root_can_be_allowed(self, tmp_path):
        pod = {"image": "t:1", "allow_local_root": True}
        config = load_pipeline_config(
            write(tmp_path, {"target": "kubernetes", "kubernetes": pod}, artifacts={"root": "/srv/mlops"})
        )
        assert config.compute.kubernetes.allow_local_root is True

    def test_gpu_toleration_is_the_taint_gpu_pools_carry(self):
        assert GPU_TOLERATION == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        assert ComputeConfig().target == "local" and ComputeConfig().kubernetes is None


class TestTrainerSeam:
    def test_the_kubernetes_target_builds_the_pod_operator(self, tmp_path, airflow_db):
        from airflow_mlops.factories import build_training_dag
        from airflow_mlops.operators.training import KubernetesTrainingOperator

        pod = {"image": "t:1", "namespace": "ml", "gpus": 1, "startup_timeout_minutes": 2.5, "deferrable": False}
        dag = build_training_dag(load_pipeline_config(write(tmp_path, {"target": "kubernetes", "kubernetes": pod})))
        train = dag.get_task("training.train")
        assert isinstance(train, KubernetesTrainingOperator)
        assert (train.image, train.namespace, train.gpus, train.startup_timeout_seconds, train.deferrable) == (
            "t:1",
            "ml",
            1,
            150,
            False,
        )
        assert train.pod_tolerations == [GPU_TOLERATION] and train.labels["airflow-mlops/pipeline"] == "churn"
        assert "training.train" in dag.get_task("evaluation.evaluate").upstream_task_ids

    def test_the_local_target_does_not_import_the_kubernetes_client(self, tmp_path):
        import subprocess
        import sys

        path = write(tmp_path, {"target": "local"})
        code = (
            "import sys; from airflow_mlops.factories import build_training_dag, load_pipeline_config;"
            f"build_training_dag(load_pipeline_config({path!r})); sys.exit('kubernetes' in sys.modules)"
        )
        assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
