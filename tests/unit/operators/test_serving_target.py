"""The deploy and resolve operators' serving target: none for the local server, the KServe hook for ``kserve``."""

from types import SimpleNamespace

import pytest

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.hooks.kserve import KServeHook
from airflow_mlops.operators.deployment import CanaryDeployOperator, CanaryResolveOperator

KSERVE = {"image": "server:1", "namespace": "ml", "kubernetes_conn_id": "k8s_ml", "credentials_secret": "mlops-s3"}


def operator(cls, root="s3://models/mlops", **kwargs):
    extra = {"model_version": "v", "percent": 10} if cls is CanaryDeployOperator else {"decision": "promote", "analysis": {}}
    op = cls(task_id="t", pipeline="churn", artifact_root=root, **extra, **kwargs)
    op.store = SimpleNamespace(root_uri=root)  # the store as the task would open it, without reaching S3
    return op


@pytest.mark.parametrize(
    "cls", [pytest.param(CanaryDeployOperator, id="deploy"), pytest.param(CanaryResolveOperator, id="resolve")]
)
class TestServingTarget:
    def test_local_has_no_target(self, cls):
        op = operator(cls)
        assert (op.target, op.kserve, op.serving_target) == ("local", None, None)

    def test_kserve_target_is_the_hook_on_the_pipelines_inference_service(self, cls):
        op = operator(cls, target="kserve", kserve=KSERVE)
        assert op.kserve == KSERVE, "stored as given"
        hook = op.serving_target
        assert isinstance(hook, KServeHook) and hook.kubernetes_conn_id == "k8s_ml"
        assert (hook.spec.where, hook.spec.artifact_root, hook.spec.image) == (
            "InferenceService ml/churn",
            "s3://models/mlops",
            "server:1",
        )
        assert (hook.spec.cpu, hook.spec.memory, hook.spec.workers) == ("1", "2Gi", 1), "the config's defaults"

    def test_kserve_needs_an_s3_store(self, cls):
        with pytest.raises(MlopsError, match="the artifact root must be s3://"):
            _ = operator(cls, root="/srv/mlops", target="kserve", kserve=KSERVE).serving_target

    def test_kserve_needs_its_settings(self, cls):
        with pytest.raises(MlopsError, match="target 'kserve' needs"):
            _ = operator(cls, target="kserve").serving_target
