"""LightGBM training: in-process on the worker, or in a Kubernetes pod that runs ``airflow-mlops train``.

:class:`KubernetesTrainingOperator` subclasses the cncf.kubernetes provider's ``KubernetesPodOperator``, whose module
imports the Kubernetes client. The class is therefore built on first access of the name (PEP 562 ``__getattr__``):
DAGs that train in-process never import the client when they are parsed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID, field_default
from airflow_mlops.config.training import GPU_TOLERATION, KubernetesConfig, ModelConfig
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.operators.base import ArtifactStoreMixin, MlopsBaseOperator

if TYPE_CHECKING:
    from airflow_mlops.stages.training import TrainSettings


class TrainingArgumentsMixin:
    """What a training run is given, the same for the in-process and the pod operator."""

    pipeline: str

    def keep_training_arguments(
        self,
        features_id: str,
        model_params: dict[str, Any] | None,
        num_boost_round: int,
        seed: int,
        early_stopping_rounds: int | None,
        device: str,
        allow_cpu_fallback: bool,
    ) -> None:
        self.features_id = features_id
        self.model_params = field_default(ModelConfig, "params") if model_params is None else model_params
        self.num_boost_round = num_boost_round
        self.seed = seed
        self.early_stopping_rounds = early_stopping_rounds
        self.device = device
        self.allow_cpu_fallback = allow_cpu_fallback

    def settings(self) -> TrainSettings:
        from airflow_mlops.stages.training import TrainSettings

        return TrainSettings(
            dict(self.model_params),
            self.num_boost_round,
            self.seed,
            self.early_stopping_rounds,
            self.device,
            self.allow_cpu_fallback,
        )


class ModelTrainingOperator(TrainingArgumentsMixin, MlopsBaseOperator):
    """Train a LightGBM model on preprocessed features, with a fixed seed and deterministic settings.

    The model version is derived from the dataset, transform, parameters and code version, so the
    same inputs give the same version and a byte-identical ``model.txt``; an existing version is
    reused, not retrained. Returns ``{"model_version", "model_uri", "cached", ...}``.

    :param features_id: output of the preprocessing step (templated).
    :param model_params: LightGBM parameters (``objective``, ``seed`` and ``deterministic`` are set by us);
        None: the pipeline config's default ``model.params``.
    :param num_boost_round: boosting rounds.
    :param seed: random seed.
    :param early_stopping_rounds: stop when a held-out tenth of the training rows stops improving.
    :param device: LightGBM's ``device_type`` (``cpu``, ``cuda``, ``gpu``); one that is not there fails the task.
    :param allow_cpu_fallback: train on the CPU instead when the device is not there.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "features_id")

    def __init__(
        self,
        *,
        features_id: str,
        model_params: dict[str, Any] | None = None,
        num_boost_round: int = field_default(ModelConfig, "num_boost_round"),
        seed: int = field_default(ModelConfig, "seed"),
        early_stopping_rounds: int | None = field_default(ModelConfig, "early_stopping_rounds"),
        device: str = field_default(ModelConfig, "device"),
        allow_cpu_fallback: bool = field_default(ModelConfig, "allow_cpu_fallback"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.keep_training_arguments(
            features_id, model_params, num_boost_round, seed, early_stopping_rounds, device, allow_cpu_fallback
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.training import train
        from airflow_mlops.store.layout import features_prefix

        result = train(self.store, self.pipeline, self.features_id, self.settings())
        self.log.info(
            "Model %s %s at %s", result["model_version"], "reused" if result["cached"] else "trained", result["model_uri"]
        )
        self.openlineage_io([self.store.uri(features_prefix(self.pipeline, self.features_id))], [result["model_uri"]])
        return result


def train_command(artifact_root: str, pipeline: str, features_id: str, settings: TrainSettings) -> list[str]:
    """``airflow-mlops train ...``: the command the training pod runs, the same a user runs on a laptop."""
    command = ["airflow-mlops", "train", "--artifact-root", artifact_root, "--pipeline", pipeline]
    command += ["--features-id", features_id, "--params", json.dumps(settings.params, sort_keys=True)]
    command += ["--num-boost-round", str(settings.num_boost_round), "--seed", str(settings.seed)]
    if settings.early_stopping_rounds is not None:
        command += ["--early-stopping-rounds", str(settings.early_stopping_rounds)]
    command += ["--device", settings.device]
    if settings.allow_cpu_fallback:
        command.append("--allow-cpu-fallback")
    return command


def pod_container_settings(
    *,
    gpus: int,
    cpu: str | None,
    memory: str | None,
    cpu_limit: str | None,
    memory_limit: str | None,
    credentials_secret: str | None,
    s3_endpoint_url: str | None,
) -> dict[str, Any]:
    """The training container's ``resources`` and ``env`` as Kubernetes writes them. Credentials are references to
    the keys of ``credentials_secret`` (never values); GPUs are a limit, as Kubernetes wants for extended resources."""
    from airflow_mlops.serving.kserve import store_env

    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit or memory)) if v}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"resources": resources, "env": store_env(credentials_secret, s3_endpoint_url)}


def _chain(err: BaseException | None) -> list[BaseException]:
    """An exception and those it was raised while handling."""
    found = []
    while err is not None and err not in found:
        found.append(err)
        err = err.__context__
    return found


TOO_LONG = "took too long"
"""In the provider's message when a pod was not scheduled or started in time (and not in its execution timeout's)."""


def _kubernetes_training_operator() -> type:
    """Define :class:`KubernetesTrainingOperator` (importing the provider's KubernetesPodOperator and the client)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchTimeoutException
    from airflow.providers.common.compat.sdk import AirflowException
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from airflow_mlops.serving.kserve import PIPELINE_LABEL

    class KubernetesTrainingOperator(TrainingArgumentsMixin, ArtifactStoreMixin, KubernetesPodOperator):
        """Train in a Kubernetes pod that runs ``airflow-mlops train ...`` (the stage :class:`ModelTrainingOperator`
        runs in-process), then return the same result as that operator, read back from the artifact store.

        Inputs and outputs go through the store (an ``s3://`` root in a cluster); no XCom sidecar. A model already
        stored for these inputs is reused without starting a pod. Every ``KubernetesPodOperator`` argument is
        accepted too (``namespace``, ``image``, ``image_pull_policy``, ``service_account_name``, ``node_selector``,
        ``labels``, ``annotations``, ``startup_timeout_seconds``, ``on_finish_action``, ``deferrable``, ...).

        :param features_id: output of the preprocessing step (templated).
        :param model_params: LightGBM parameters; None: the pipeline config's default ``model.params``.
        :param num_boost_round: boosting rounds.
        :param seed: random seed.
        :param early_stopping_rounds: stop when a held-out tenth of the training rows stops improving.
        :param device: LightGBM's ``device_type`` (``cpu``, ``cuda``, ``gpu``) in the pod.
        :param allow_cpu_fallback: train on the CPU instead when the device is not there.
        :param pipeline: the pipeline name.
        :param artifact_root: ``s3://bucket/prefix`` the pod and the worker both reach (templated).
        :param aws_conn_id: Airflow AWS connection the worker reads the result with.
        :param mlops_conn_id: instead of ``artifact_root``, an ``mlops_artifacts`` connection holding the root.
        :param gpus: ``nvidia.com/gpu`` limit of the container.
        :param cpu: CPU request.
        :param memory: memory request.
        :param cpu_limit: CPU limit (None: none).
        :param memory_limit: memory limit (None: the request).
        :param tolerations: tolerations as Kubernetes writes them (``tolerationSeconds``); None: the
            ``nvidia.com/gpu`` taint when ``gpus`` > 0.
        :param affinity: pod affinity as Kubernetes writes it (``nodeAffinity``, ...).
        :param image_pull_secrets: names of the image registry's Secrets (a list or a comma-separated string).
        :param credentials_secret: a Secret with ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, referenced
            (never copied) into the pod's environment; None: the pod uses its service account's identity.
        :param s3_endpoint_url: endpoint of an S3-compatible store as the pod reaches it (``MLOPS_S3_ENDPOINT_URL``).
        :param allow_local_root: allow a local artifact root (where the pod mounts the same path).
        """

        template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "features_id", "artifact_root")
        ui_color = MlopsBaseOperator.ui_color

        def __init__(
            self,
            *,
            features_id: str,
            model_params: dict[str, Any] | None = None,
            num_boost_round: int = field_default(ModelConfig, "num_boost_round"),
            seed: int = field_default(ModelConfig, "seed"),
            early_stopping_rounds: int | None = field_default(ModelConfig, "early_stopping_rounds"),
            device: str = field_default(ModelConfig, "device"),
            allow_cpu_fallback: bool = field_default(ModelConfig, "allow_cpu_fallback"),
            pipeline: str,
            artifact_root: str | None = None,
            aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
            mlops_conn_id: str | None = None,
            gpus: int = field_default(KubernetesConfig, "gpus"),
            cpu: str | None = field_default(KubernetesConfig, "cpu"),
            memory: str | None = field_default(KubernetesConfig, "memory"),
            cpu_limit: str | None = None,
            memory_limit: str | None = None,
            tolerations: list[dict[str, Any]] | None = None,
            affinity: dict[str, Any] | None = None,
            image_pull_secrets: list[str] | str | None = None,
            credentials_secret: str | None = None,
            s3_endpoint_url: str | None = None,
            allow_local_root: bool = False,
            labels: dict[str, str] | None = None,
            **kwargs: Any,
        ) -> None:
            kwargs.setdefault("multiple_outputs", True)
            kwargs.setdefault("kubernetes_conn_id", field_default(KubernetesConfig, "kubernetes_conn_id"))
            kwargs.setdefault("startup_timeout_seconds", int(field_default(KubernetesConfig, "startup_timeout_minutes") * 60))
            if not isinstance(image_pull_secrets, str) and image_pull_secrets:
                image_pull_secrets = ",".join(image_pull_secrets)
            # No XCom sidecar: the pod writes to the store. The task's own result is pushed after the pod (see _done).
            kwargs["do_xcom_push"] = False
            super().__init__(
                labels={PIPELINE_LABEL: pipeline, **(labels or {})}, image_pull_secrets=image_pull_secrets or None, **kwargs
            )
            self.locate_store(pipeline, artifact_root, aws_conn_id, mlops_conn_id, self.task_id)
            self.keep_training_arguments(
                features_id, model_params, num_boost_round, seed, early_stopping_rounds, device, allow_cpu_fallback
            )
            self.gpus = gpus
            self.cpu = cpu
            self.memory = memory
            self.cpu_limit = cpu_limit
            self.memory_limit = memory_limit
            self.pod_tolerations = [GPU_TOLERATION] if tolerations is None and gpus else list(tolerations or [])
            self.pod_affinity = affinity
            self.credentials_secret = credentials_secret
            self.s3_endpoint_url = s3_endpoint_url
            self.allow_local_root = allow_local_root

        def pod_artifact_root(self) -> str:
            """The artifact root the pod is given: the task's, or its connection's; a local one only when allowed."""
            from airflow_mlops.hooks.artifact_store import ArtifactStoreHook

            root = ArtifactStoreHook(self.artifact_root, self.aws_conn_id, self.mlops_conn_id).location()[0]
            if not root.startswith("s3://") and not self.allow_local_root:
                raise MlopsError(
                    f"{self.task_id}: the training pod cannot read the local artifact root {root!r}: use an s3:// root "
                    "(or allow_local_root where the pod mounts the same path)."
                )
            return root

        def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> Any:
            """The pod: the provider's, with our command, resources, environment, tolerations and affinity."""
            command = train_command(self.pod_artifact_root(), self.pipeline, self.features_id, self.settings())
            self.cmds, self.arguments = command[:1], command[1:]
            container = {"name": self.base_container_name}
            container |= pod_container_settings(
                gpus=self.gpus,
                cpu=self.cpu,
                memory=self.memory,
                cpu_limit=self.cpu_limit,
                memory_limit=self.memory_limit,
                credentials_secret=self.credentials_secret,
                s3_endpoint_url=self.s3_endpoint_url,
            )
            spec: dict[str, Any] = {"containers": [container], "tolerations": self.pod_tolerations}
            if self.pod_affinity:
                spec["affinity"] = self.pod_affinity
            typed = PodGenerator.deserialize_model_dict({"spec": spec}).spec
            self.container_resources = typed.containers[0].resources
            self.env_vars = typed.containers[0].env or []
            self.tolerations = typed.tolerations or []
            self.affinity = typed.affinity or {}
            return super().build_pod_request_obj(context, dry_run=dry_run)

        def execute(self, context: Context) -> dict[str, Any] | None:
            from airflow_mlops.stages.training import expected_model, is_trained

            expected = expected_model(self.store, self.pipeline, self.features_id, self.settings())
            if is_trained(self.store, self.pipeline, expected["model_version"]):
                self.log.info(
                    "Model %s already trained from these inputs; reusing %s", expected["model_version"], expected["model_uri"]
                )
                return self._done(expected, cached=True)
            command = train_command(self.pod_artifact_root(), self.pipeline, self.features_id, self.settings())
            self.log.info("Training model %s in a pod: %s", expected["model_version"], " ".join(command))
            try:
                super().execute(context)  # deferred: returns here only when the pod was already done; else trigger_reentry
            except AirflowException as err:  # the pod's cleanup may raise its own error over the timeout
                if any(isinstance(e, PodLaunchTimeoutException) for e in _chain(err)):
                    raise self._not_started(err) from err
                raise
            return self._pod_finished()

        def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
            try:
                super().trigger_reentry(context, event)  # raises when the pod failed or never started
            except AirflowException as err:
                if event.get("status") == "timeout" and TOO_LONG in str(event.get("message")):
                    raise self._not_started(err) from err
                raise
            return self._pod_finished()

        def _not_started(self, err: Exception) -> MlopsError:
            """The startup timeout, with the pod and the warnings of its events (why no node took it, a failed pull)."""
            where, warnings = "(not created)", []
            if self.pod is not None:
                where = f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"
                with contextlib.suppress(ApiException, HTTPError):  # the message stands without them
                    events = self.pod_manager.read_pod_events(self.pod).items
                    warnings = [f"{e.reason}: {e.message}" for e in events if e.type == "Warning"]
            return MlopsError(
                f"{self.task_id}: the training pod {where} did not start within {self.startup_timeout_seconds} s "
                f"(startup_timeout_seconds; image {self.image}): {'; '.join(warnings) or err}"
            )

        def _pod_finished(self) -> dict[str, Any]:
            from airflow_mlops import __version__
            from airflow_mlops.stages.training import expected_model, is_trained

            expected = expected_model(self.store, self.pipeline, self.features_id, self.settings())
            if not is_trained(self.store, self.pipeline, expected["model_version"]):
                raise MlopsError(
                    f"{self.task_id}: the training pod succeeded but model {expected['model_version']} is not at "
                    f"{expected['model_uri']}: the image's airflow-mlops must be the worker's ({__version__}), as the "
                    "version is derived from the code version too."
                )
            self.log.info("Model %s trained in the pod, at %s", expected["model_version"], expected["model_uri"])
            return self._done(expected, cached=False)

        def _done(self, expected: dict[str, Any], *, cached: bool) -> dict[str, Any]:
            from airflow_mlops.store.layout import features_prefix

            self.do_xcom_push = True  # the pod ran without a sidecar; the result is the task's XCom, as for any operator
            self.openlineage_io([self.store.uri(features_prefix(self.pipeline, self.features_id))], [expected["model_uri"]])
            return {**expected, "cached": cached}

        openlineage_io = MlopsBaseOperator.openlineage_io
        get_openlineage_facets_on_complete = MlopsBaseOperator.get_openlineage_facets_on_complete

    KubernetesTrainingOperator.__qualname__ = "KubernetesTrainingOperator"
    return KubernetesTrainingOperator


def __getattr__(name: str) -> Any:
    if name == "KubernetesTrainingOperator":
        cls = _kubernetes_training_operator()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
