"""A pipeline's KServe InferenceService: our model server image as a custom predictor, one revision per model version.

Each revision runs ``airflow-mlops serve --version V``: it serves registry version ``V`` alone (the Open Inference
Protocol v2 at ``/v2/models/<pipeline>/infer``, readiness at ``/v2/health/ready``) and logs its predictions under
the same artifact root, by version, so the canary analysis reads them as it reads the local server's.

KServe splits the traffic (serverless mode only): after a change of the predictor, ``canaryTrafficPercent: N``
sends N% to the latest revision and the rest to the last one rolled out with 100%; without the field the latest
ready revision takes all traffic. See https://kserve.github.io/website/docs/model-serving/predictive-inference/
rollout-strategies/canary (0.16). Pure: manifests and readings of the object, no client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_mlops.exceptions import MlopsError

GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
CONTAINER = "kserve-container"
PORT = 8080
READY_PATH = "/v2/health/ready"
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""Environment variables taken from the credentials Secret, each from the key of the same name."""
PIPELINE_LABEL = "airflow-mlops/pipeline"
VERSION_LABEL = "airflow-mlops/model-version"
# "Serverless" (Knative): the only mode with canary rollouts. KServe 0.15 knows this name; 0.16+ still accepts it.
DEPLOYMENT_MODE = {"serving.kserve.io/deploymentMode": "Serverless"}


def store_env(credentials_secret: str | None, s3_endpoint_url: str | None) -> list[dict[str, Any]]:
    """A pod's environment for reaching the artifact store: the credentials as references to the keys of
    ``credentials_secret`` (never values; none: the service account's identity) and the S3-compatible endpoint."""
    env: list[dict[str, Any]] = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": key}}}
        for key in CREDENTIAL_KEYS
        if credentials_secret
    ]
    if s3_endpoint_url:
        env.append({"name": "MLOPS_S3_ENDPOINT_URL", "value": s3_endpoint_url})
    return env


@dataclass(frozen=True)
class InferenceServiceSpec:
    """What the InferenceService of a pipeline is made of (the config's ``canary.kserve`` plus the store's root).

    :param pipeline: the pipeline; also the model's name in the v2 protocol.
    :param artifact_root: the ``s3://`` root the server pods read models from and log predictions to.
    :param image: an image with airflow-mlops installed (its ``airflow-mlops`` command is run).
    :param namespace: namespace of the InferenceService.
    :param name: its name; None: the pipeline's, with ``-`` for ``_``.
    :param service_account: the pods' service account (e.g. one bound to an IAM role), None for the default.
    :param cpu: CPU request and limit of a server pod.
    :param memory: memory request and limit of a server pod.
    :param min_replicas: pods kept per serving revision (0 lets an idle revision scale to zero).
    :param workers: server worker processes per pod.
    :param credentials_secret: a Secret with ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, referenced (never
        copied) into the pods' environment; None: the pods use their service account's identity.
    :param s3_endpoint_url: endpoint of an S3-compatible store (``MLOPS_S3_ENDPOINT_URL`` in the pods).
    """

    pipeline: str
    artifact_root: str
    image: str
    namespace: str
    cpu: str
    memory: str
    min_replicas: int
    workers: int
    name: str | None = None
    service_account: str | None = None
    credentials_secret: str | None = None
    s3_endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if not self.artifact_root.startswith("s3://"):
            raise MlopsError(
                f"InferenceService {self.namespace}/{self.service_name}: the artifact root must be s3:// (the server "
                f"pods cannot read a local directory). Got {self.artifact_root!r} instead."
            )

    @classmethod
    def from_config(cls, pipeline: str, artifact_root: str, kserve: Mapping[str, Any]) -> InferenceServiceSpec:
        """From the config's ``canary.kserve`` with its defaults filled in (``KServeConfig.model_dump()``); the keys
        that are not the manifest's (the connection) are left."""
        required = ("image", "namespace", "cpu", "memory", "min_replicas", "workers")
        optional = ("name", "service_account", "credentials_secret", "s3_endpoint_url")
        return cls(
            pipeline=pipeline,
            artifact_root=artifact_root,
            **{k: kserve[k] for k in required},
            **{k: kserve.get(k) for k in optional},
        )

    @property
    def service_name(self) -> str:
        return self.name or self.pipeline.replace("_", "-")

    @property
    def where(self) -> str:
        """``InferenceService <namespace>/<name>``, as messages name it."""
        return f"InferenceService {self.namespace}/{self.service_name}"


def manifest(spec: InferenceServiceSpec, version: str, canary_percent: int | None = None) -> dict[str, Any]:
    """The InferenceService serving ``version``; with ``canary_percent``, that share of the traffic (the rest stays
    on the revision rolled out before). Labels and annotations never change with the version: KServe copies them
    onto the revision template, where a change would start another revision."""
    env = store_env(spec.credentials_secret, spec.s3_endpoint_url)
    args = ["serve", "--artifact-root", spec.artifact_root, "--pipeline", spec.pipeline, "--version", version]
    args += ["--host", "0.0.0.0", "--port", str(PORT), "--workers", str(spec.workers)]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "command": ["airflow-mlops"],
        "args": args,
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": PORT}, "periodSeconds": 5},
        "resources": {
            "requests": {"cpu": spec.cpu, "memory": spec.memory},
            "limits": {"cpu": spec.cpu, "memory": spec.memory},
        },
    }
    if env:
        container["env"] = env
    predictor: dict[str, Any] = {
        "minReplicas": spec.min_replicas,
        "labels": {VERSION_LABEL: version},
        "containers": [container],
    }
    if spec.service_account:
        predictor["serviceAccountName"] = spec.service_account
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {
            "name": spec.service_name,
            "namespace": spec.namespace,
            "labels": {PIPELINE_LABEL: spec.pipeline, "app.kubernetes.io/managed-by": "airflow-mlops"},
            "annotations": dict(DEPLOYMENT_MODE),
        },
        "spec": {"predictor": predictor},
    }


def served(obj: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """The version an InferenceService's predictor runs (its ``--version``) and its ``canaryTrafficPercent`` (None when
    the latest revision takes all traffic)."""
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    containers = predictor.get("containers") or [{}]
    args = list(containers[0].get("args") or [])
    version = args[args.index("--version") + 1] if "--version" in args[:-1] else None
    return version, predictor.get("canaryTrafficPercent")


def rollout_pending(obj: Mapping[str, Any]) -> bool:
    """Whether KServe has yet to roll out the object's current spec: the status is behind its generation, or the
    predictor's latest created revision is not the one rolled out with all traffic. False where the object says
    nothing either way (no generation, no status)."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration") != generation:
        return True
    predictor = (status.get("components") or {}).get("predictor") or {}
    created = predictor.get("latestCreatedRevision")
    if generation is not None and not predictor.get("latestRolledoutRevision"):
        return True
    return bool(created) and created != predictor.get("latestRolledoutRevision")
