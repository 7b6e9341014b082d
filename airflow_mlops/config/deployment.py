"""``canary``: where the model is served (local or KServe), the steps, their analysis and the post-promotion watch."""

from typing import Literal, Self

from pydantic import Field, PositiveInt, field_validator, model_validator

from airflow_mlops.config.base import Fraction, Issue, Percent, Strict, config_issues


class CanaryAnalysisConfig(Strict):
    max_error_rate_increase: Fraction = Field(0.01, description="Canary error rate may exceed production's by at most this.")
    max_p95_latency_ratio: float = Field(1.5, ge=1.0, description="Canary p95 latency / production p95 latency limit.")
    p95_latency_slack_ms: float = Field(
        2.0,
        ge=0,
        description="A canary p95 at most this many ms above production's never fails (sub-ms scoring times are noisy).",
    )
    max_prediction_divergence: Fraction = Field(0.2, description="Limit on the divergence of prediction distributions.")
    min_label_quality_ratio: Fraction = Field(
        0.98,
        description="Canary label quality / production label quality minimum, where feedback exists: the canary fails "
        "when the ratio's upper confidence bound is below it (it is worse with the configured confidence).",
    )
    min_labels: PositiveInt = Field(100, description="Labelled rows each side needs before label quality is judged.")
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Confidence of the label quality comparison (a bootstrap interval of the ratio)."
    )


class PromotionWatchConfig(Strict):
    minutes: float = Field(
        60,
        ge=0,
        description="How long a promoted model is watched against its canary-time figures (0: not watched). "
        "The limits are canary.analysis's.",
    )
    min_requests: PositiveInt = Field(100, description="Requests since promotion needed before the watch judges.")


class KServeConfig(Strict):
    image: str = Field(..., min_length=1, description="Model server image: airflow-mlops installed, its command runs `serve`.")
    namespace: str = Field(
        "default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="Namespace of the InferenceService."
    )
    name: str | None = Field(
        None,
        pattern=r"^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$",
        description="Name of the InferenceService (KServe appends -predictor-00001 to it); null: the pipeline's, - for _.",
    )
    kubernetes_conn_id: str = Field("kubernetes_default", description="Airflow Kubernetes connection (cncf.kubernetes provider).")
    service_account: str | None = Field(None, description="Service account of the server pods (e.g. one bound to an IAM role).")
    cpu: str = Field("1", description="CPU request and limit of a server pod.")
    memory: str = Field("2Gi", description="Memory request and limit of a server pod.")
    min_replicas: int = Field(
        1, ge=0, le=1000, description="Pods kept per serving revision (0: an idle revision scales to zero)."
    )
    workers: PositiveInt = Field(1, le=64, description="Server worker processes per pod (serve --workers).")
    credentials_secret: str | None = Field(
        None,
        description="Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the artifact root, referenced from "
        "the pods (never copied); null: the service account's identity.",
    )
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible store, as the pods reach it (MinIO).")


class CanaryConfig(Strict):
    target: Literal["local", "kserve"] = Field(
        "local", description="Where the model is served: the local model server, or a KServe InferenceService."
    )
    kserve: KServeConfig | None = Field(None, description="The InferenceService; required when target is kserve.")
    steps: list[Percent] = Field([10, 50], min_length=1, description="Canary traffic percent at each step (1..100, increasing).")
    bake_minutes: float = Field(10, gt=0, description="Longest wait at each step before it is judged.")
    min_requests: PositiveInt = Field(200, description="Canary requests that end a step's wait (else the bake time does).")
    check_seconds: float = Field(10.0, gt=0, le=3600, description="Time between checks of the prediction log while a step bakes.")
    analysis: CanaryAnalysisConfig = Field(default_factory=CanaryAnalysisConfig, description="Promotion criteria.")
    watch: PromotionWatchConfig = Field(
        default_factory=PromotionWatchConfig,
        description="After promotion: revert to the replaced model when the new one breaches its canary-time figures.",
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        found = [
            Issue((i,), f"steps must increase; this one follows {steps[i - 1]}", steps[i])
            for i in range(1, len(steps))
            if steps[i] <= steps[i - 1]
        ]
        if found:
            raise config_issues(found)
        return steps

    @model_validator(mode="after")
    def _needs_service(self) -> Self:
        if self.target == "kserve" and self.kserve is None:
            raise config_issues([Issue(("kserve",), "required when canary.target is 'kserve' (at least an image)")])
        return self
