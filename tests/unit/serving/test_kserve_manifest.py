"""The InferenceService manifests: what each deployment step applies, checked against KServe's CRD schema."""

import copy

import pytest
from kserve_crd import crd_errors

from airflow_mlops.config.deployment import KServeConfig
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.serving.kserve import InferenceServiceSpec, manifest, rollout_pending, served

CONFIG = KServeConfig(
    image="registry.example/airflow-mlops-server:0.9",
    namespace="ml",
    service_account="mlops-server",
    credentials_secret="mlops-s3",
    s3_endpoint_url="http://minio.ml:9000",
    min_replicas=2,
).model_dump()
SPEC = InferenceServiceSpec.from_config("churn_v2", "s3://models/mlops", CONFIG)
OLD, NEW = "0a1b2c3d4e5f", "9f8e7d6c5b4a"


class TestManifest:
    @pytest.mark.parametrize(
        ("version", "percent"),
        [
            pytest.param(OLD, None, id="first-deploy-and-promote"),
            pytest.param(NEW, 10, id="canary-step-10"),
            pytest.param(NEW, 50, id="canary-step-50"),
            pytest.param(NEW, 100, id="canary-step-100"),
            pytest.param(NEW, 95, id="promoted-with-a-5-percent-holdback"),
            pytest.param(OLD, 0, id="rollback"),
        ],
    )
    def test_every_step_is_a_valid_inference_service(self, version, percent):
        obj = manifest(SPEC, version, percent)
        assert crd_errors(obj) == []
        assert served(obj) == (version, percent)
        assert ("canaryTrafficPercent" in obj["spec"]["predictor"]) is (percent is not None)

    def test_our_server_image_as_a_custom_predictor(self):
        obj = manifest(SPEC, NEW, 10)
        assert obj["apiVersion"] == "serving.kserve.io/v1beta1" and obj["kind"] == "InferenceService"
        assert obj["metadata"]["name"] == "churn-v2" and obj["metadata"]["namespace"] == "ml"
        assert obj["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Serverless"}
        predictor = obj["spec"]["predictor"]
        assert predictor["minReplicas"] == 2 and predictor["serviceAccountName"] == "mlops-server"
        assert predictor["labels"] == {"airflow-mlops/model-version": NEW}
        [container] = predictor["containers"]
        assert container["image"] == CONFIG["image"] and container["command"] == ["airflow-mlops"]
        assert container["args"] == [
            "serve",
            "--artifact-root",
            "s3://models/mlops",
            "--pipeline",
            "churn_v2",
            "--version",
            NEW,
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--workers",
            "1",
        ]
        assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
        assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}

    def test_credentials_are_secret_references_never_values(self):
        env = manifest(SPEC, NEW)["spec"]["predictor"]["containers"][0]["env"]
        assert env == [
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "mlops-s3", "key": "AWS_ACCESS_KEY_ID"}}},
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": "mlops-s3", "key": "AWS_SECRET_ACCESS_KEY"}},
            },
            {"name": "MLOPS_S3_ENDPOINT_URL", "value": "http://minio.ml:9000"},
        ]

    def test_without_a_secret_the_pods_use_their_identity(self):
        spec = InferenceServiceSpec.from_config("churn", "s3://m", KServeConfig(image="s:1").model_dump())
        obj = manifest(spec, OLD)
        assert crd_errors(obj) == []
        assert "env" not in obj["spec"]["predictor"]["containers"][0] and "serviceAccountName" not in obj["spec"]["predictor"]
        assert obj["metadata"]["name"] == "churn" and obj["metadata"]["namespace"] == "default"

    def test_only_the_version_changes_between_revisions(self):
        """Labels and annotations are copied onto KServe's revision template: they must not follow the version."""
        old, new = manifest(SPEC, OLD), manifest(SPEC, NEW, 10)
        assert old["metadata"] == new["metadata"]

    def test_a_local_artifact_root_is_refused(self):
        with pytest.raises(MlopsError, match=r"InferenceService ml/churn-v2: the artifact root must be s3://"):
            InferenceServiceSpec.from_config("churn_v2", "file:///srv/mlops", CONFIG)

    def test_the_strict_check_catches_a_misspelt_field(self):
        obj = manifest(SPEC, NEW, 10)
        obj["spec"]["predictor"]["canaryTraficPercent"] = obj["spec"]["predictor"].pop("canaryTrafficPercent")
        assert any("canaryTraficPercent" in e for e in crd_errors(obj))


def status(generation=2, observed=2, created="churn-predictor-00002", rolled_out="churn-predictor-00002"):
    components = {"predictor": {"latestCreatedRevision": created, "latestRolledoutRevision": rolled_out}}
    return {"metadata": {"generation": generation}, "status": {"observedGeneration": observed, "components": components}}


class TestRolloutPending:
    @pytest.mark.parametrize(
        ("obj", "pending"),
        [
            pytest.param(status(), False, id="rolled-out"),
            pytest.param(status(observed=1), True, id="status-behind-the-spec"),
            pytest.param(status(rolled_out="churn-predictor-00001"), True, id="new-revision-not-rolled-out"),
            pytest.param({"metadata": {"generation": 1}}, True, id="no-status-yet"),
            pytest.param({"metadata": {}}, False, id="says-nothing"),
        ],
    )
    def test_pending(self, obj, pending):
        assert rollout_pending(obj) is pending


class TestServed:
    def test_reads_version_and_canary_share(self):
        obj = copy.deepcopy(manifest(SPEC, NEW, 50))
        assert served(obj) == (NEW, 50)
        del obj["spec"]["predictor"]["canaryTrafficPercent"]
        assert served(obj) == (NEW, None)

    def test_an_object_not_ours(self):
        assert served({"spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}}}) == (None, None)
