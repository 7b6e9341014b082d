"""The training sections: ``model`` and ``compute`` (local, or a Kubernetes pod and its settings)."""

from typing import Any, Literal, Self

from pydantic import Field, PositiveInt, field_validator, model_validator

from airflow_mlops.config.base import Issue, Scalar, Strict, config_issues
from airflow_mlops.config.tuning import TuningConfig
from airflow_mlops.ml.train import RESERVED_PARAMS
from airflow_mlops.ml.tuning import generate_trials


class ModelConfig(Strict):
    type: Literal["lightgbm"] = Field("lightgbm", description="Model family.")
    params: dict[str, Scalar] = Field(
        default_factory=lambda: {"num_leaves": 31, "learning_rate": 0.05, "min_data_in_leaf": 20},
        description="LightGBM parameters (seed, objective and deterministic are set by the pipeline); a file's params merge over these.",
    )
    num_boost_round: int = Field(200, ge=1, le=100_000, description="Boosting rounds.")
    early_stopping_rounds: PositiveInt | None = Field(
        None, description="Stop when a held-out tenth of the training rows stops improving."
    )
    seed: int = Field(42, description="Random seed; the same inputs and seed give a byte-identical model.")
    device: Literal["cpu", "cuda", "gpu"] = Field(
        "cpu",
        description="LightGBM's device_type: cpu (byte-identical models), cuda (a CUDA build, docker/trainer.Dockerfile) "
        "or gpu (an OpenCL build). A device that is not there fails the training.",
    )
    allow_cpu_fallback: bool = Field(False, description="Train on the CPU when the device is not there (else fail).")
    tuning: TuningConfig | None = Field(
        None, description="Hyperparameter search: train every trial (mapped tasks), keep the best on the eval split."
    )

    def trial_params(self) -> list[dict[str, Any]]:
        """Each tuning trial's full LightGBM parameters (``params`` with the trial's values on top); [] without tuning."""
        tuning = self.tuning
        if tuning is None:
            return []
        space = tuning.plain_space()
        return generate_trials(search=tuning.search, space=space, trials=tuning.trials, seed=self.seed, base=dict(self.params))

    @field_validator("params")
    @classmethod
    def _reserved(cls, params: dict[str, Any]) -> dict[str, Any]:
        found = [
            Issue((key,), "reserved: the pipeline sets it (use model.seed; the objective follows task)", value)
            for key, value in params.items()
            if key in RESERVED_PARAMS
        ]
        if found:
            raise config_issues(found)
        return params


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
"""The taint GPU node pools carry (GKE, EKS and AKS set it); a pod asking for GPUs tolerates it unless told otherwise."""
TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})
K8S_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class KubernetesConfig(Strict):
    image: str = Field(..., min_length=1, description="Training image: airflow-mlops installed (docker/trainer.Dockerfile).")
    namespace: str = Field("default", pattern=K8S_NAME, description="Namespace of the training pod.")
    kubernetes_conn_id: str = Field("kubernetes_default", description="Airflow Kubernetes connection (cncf.kubernetes provider).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="When the node pulls the image."
    )
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets of the image registry.")
    service_account: str | None = Field(None, description="Service account of the pod (e.g. one bound to an IAM role).")
    gpus: int = Field(1, ge=0, le=16, description="nvidia.com/gpu count (a limit, as Kubernetes wants for extended resources).")
    cpu: str = Field("4", min_length=1, description="CPU request.")
    memory: str = Field("16Gi", min_length=1, description="Memory request.")
    cpu_limit: str | None = Field(None, min_length=1, description="CPU limit; null: none (the pod may use idle cores).")
    memory_limit: str | None = Field(None, min_length=1, description="Memory limit; null: the request.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector labels.")
    tolerations: list[dict[str, str | int]] | None = Field(
        None,
        description="Tolerations as Kubernetes writes them (key, operator, value, effect, tolerationSeconds); "
        "null: the nvidia.com/gpu taint when gpus > 0, else none.",
    )
    affinity: dict[str, Any] | None = Field(None, description="Pod affinity as Kubernetes writes it (nodeAffinity, ...).")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations.")
    credentials_secret: str | None = Field(
        None,
        description="Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the artifact root, referenced from "
        "the pod (never copied); null: the service account's identity.",
    )
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible store, as the pod reaches it (MinIO).")
    allow_local_root: bool = Field(
        False, description="Allow a local artifact root (only where the pod mounts the same path, e.g. a one-node cluster)."
    )
    startup_timeout_minutes: float = Field(
        10, gt=0, description="Longest wait for the pod to be scheduled and start (GPU nodes and image pulls take minutes)."
    )
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "keep_pod", "delete_active_pod"] = Field(
        "delete_pod", description="What happens to the pod when it ends (KubernetesPodOperator's on_finish_action)."
    )
    deferrable: bool | None = Field(
        None, description="Wait for the pod in the triggerer; null: Airflow's [operators] default_deferrable."
    )

    @field_validator("tolerations")
    @classmethod
    def _toleration_keys(cls, tolerations: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        found = [
            Issue((i, key), f"unknown toleration field; use {', '.join(sorted(TOLERATION_KEYS))}", key)
            for i, toleration in enumerate(tolerations or [])
            for key in toleration
            if key not in TOLERATION_KEYS
        ]
        if found:
            raise config_issues(found)
        return tolerations


class ComputeConfig(Strict):
    target: Literal["local", "kubernetes"] = Field(
        "local", description="Where training runs: in the worker, or in a Kubernetes pod running `airflow-mlops train`."
    )
    kubernetes: KubernetesConfig | None = Field(None, description="Pod settings; required when target is kubernetes.")

    @model_validator(mode="after")
    def _needs_pod(self) -> Self:
        if self.target == "kubernetes" and self.kubernetes is None:
            raise config_issues([Issue(("kubernetes",), "required when compute.target is 'kubernetes' (at least an image)")])
        return self
