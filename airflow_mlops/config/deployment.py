"""``canary``: where the model is served (local or KServe), the steps, their analysis and the post-promotion watch."""

from typing import Literal, Self

from pydantic import Field, PositiveInt, field_validator, model_validator

from airflow_mlops.config.base import Fraction, Issue, Percent, Strict, config_issues


class CanaryAnalysisConfig(Strict):
    max_error_rate_increase: Fraction = Field(0.01, description="Canary error rate may exceed production's by at most this.")
    max_p95_latency_ratio: float = Field(1.5, ge=1.0, description="Canary p95 latency / production p95 latency limit.")
    p95_latency_floor_ms: float = Field(
        50.0,
        ge=0,
        description="The latency SLO floor: a p95 at or below this many ms never fails, whatever its ratio to the other "
        "side's (scoring times of a few ms are noisy and within any online SLO); above it, max_p95_latency_ratio decides.",
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
        description="How long a promoted model is watched (0: not watched). The limits are canary.analysis's.",
    )
    min_requests: PositiveInt = Field(
        100,
        description="Requests each side (the promoted model, and the holdback when there is one) needs since "
        "promotion before the watch judges.",
    )
    holdback_percent: int = Field(
        5,
        ge=0,
        le=50,
        description="Traffic percent kept on the replaced model while the watch lasts: the promoted model is judged "
        "against it over the same window, as a canary is. 0: no holdback; the promoted model is then judged against "
        "its canary-time figures (before/after, which a change of load between the two can fool).",
    )


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
        description="After promotion: revert to the replaced model when the new one is worse than the holdback on it.",
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
