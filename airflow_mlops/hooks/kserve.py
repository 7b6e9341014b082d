"""The KServe serving target: a pipeline's InferenceService, applied through the cncf.kubernetes provider's hook."""

from __future__ import annotations

import json
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.serving.kserve import API_VERSION, GROUP, PLURAL, InferenceServiceSpec, manifest, rollout_pending, served

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

DEFAULT_KUBERNETES_CONN_ID = "kubernetes_default"


class KServeHook(BaseHook):
    """Make a pipeline's InferenceService follow the registry (a :class:`~airflow_mlops.serving.targets.ServingTarget`).

    Each call reads the object, then creates it (POST) when it is absent or sends the whole desired object as a JSON
    merge patch (RFC 7386): the same patch again changes nothing, and fields we stop setting are sent as null, which
    removes them (``canaryTrafficPercent`` on promotion). A canary is only started on top of production rolled out
    alone: when the cluster serves something else (a new InferenceService, a revert still rolling out) production
    is applied first and its rollout awaited, or KServe would give the remainder to another revision.

    :param spec: the InferenceService's parts (see :class:`~airflow_mlops.serving.kserve.InferenceServiceSpec`).
    :param kubernetes_conn_id: the cncf.kubernetes provider's connection to the cluster.
    :param rollout_timeout: longest wait, in seconds, for production to roll out before a canary starts.
    :param poll_seconds: time between reads of the object while waiting.
    """

    def __init__(
        self,
        spec: InferenceServiceSpec,
        kubernetes_conn_id: str = DEFAULT_KUBERNETES_CONN_ID,
        *,
        rollout_timeout: float = 600.0,
        poll_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.kubernetes_conn_id = kubernetes_conn_id
        self.rollout_timeout = rollout_timeout
        self.poll_seconds = poll_seconds

    @cached_property
    def kubernetes(self) -> KubernetesHook:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.kubernetes_conn_id)

    # -- the serving target ------------------------------------------------------------------------------------

    def deploy(self, version: str, percent: int, production: str | None) -> None:
        """``version`` on a canary revision with ``percent`` of the traffic beside ``production``'s, or alone."""
        current = self.get()
        if production in (None, version):
            self._apply(manifest(self.spec, version), current)
            return
        on, canary = served(current) if current is not None else (None, None)
        held = bool(canary) and on == production  # a post-promotion holdback still beside production
        if current is None or (canary is None and on != production) or held:
            self.log.warning("%s serves %s, not production %s alone: rolling it out first", self.spec.where, on, production)
            current = self._wait_rolled_out(self._apply(manifest(self.spec, production), current))
        elif canary is None and rollout_pending(current):
            current = self._wait_rolled_out(current)
        self._apply(manifest(self.spec, version, percent), current)
        self.log.info("%s: %s takes %s%% of the traffic beside %s", self.spec.where, version, percent, production)

    def promote(self, version: str, holdback: int = 0) -> None:
        """``version`` takes all traffic (``canaryTrafficPercent`` removed), or all but ``holdback`` percent
        (``canaryTrafficPercent: 100 - holdback``), which stays on the revision rolled out before the canary: the
        replaced model's, held back while the post-promotion watch lasts."""
        self._apply(manifest(self.spec, version, 100 - holdback if holdback else None), self.get())
        if holdback:
            self.log.info("%s: %s takes %s%% of the traffic, the rest held back", self.spec.where, version, 100 - holdback)
        else:
            self.log.info("%s: %s takes all traffic", self.spec.where, version)

    def restore(self, version: str) -> None:
        """``version`` alone again. While a canary (or a holdback) is on, the predictor goes back to ``version`` with
        ``canaryTrafficPercent: 0``: the revision rolled out before the canary (``version``'s) takes all traffic at
        once, with no new pods to wait for. After a promotion, ``version`` is rolled out again with all traffic."""
        current = self.get()
        canary = served(current)[1] if current is not None else None
        self._apply(manifest(self.spec, version, 0 if canary is not None else None), current)
        self.log.info("%s: %s serves all traffic again", self.spec.where, version)

    # -- the object ----------------------------------------------------------------------------------------------

    def get(self) -> dict[str, Any] | None:
        """The InferenceService as the API returns it, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.kubernetes.get_custom_object(GROUP, API_VERSION, PLURAL, self.spec.service_name, self.spec.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise self._error("read", err) from err

    def _apply(self, body: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Create ``body``, or merge-patch the existing object to it; returns the object the API answered with."""
        from kubernetes.client.exceptions import ApiException

        if current is None:
            try:
                created = self.kubernetes.create_custom_object(GROUP, API_VERSION, PLURAL, body, self.spec.namespace)
                return body if created is None else created  # None: an answer other than 201, without the object
            except ApiException as err:
                if err.status != 409:  # 409: created meanwhile (a concurrent try): patch it below
                    raise self._error("create", err) from err
        predictor = body["spec"]["predictor"]
        patch = {**body, "spec": {"predictor": {"canaryTrafficPercent": None, "serviceAccountName": None, **predictor}}}
        try:
            return self.kubernetes.custom_object_client.patch_namespaced_custom_object(
                GROUP, API_VERSION, self.spec.namespace, PLURAL, self.spec.service_name, patch
            )
        except ApiException as err:
            raise self._error("patch", err) from err

    def _wait_rolled_out(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` read again until KServe has rolled its spec out; fails after ``rollout_timeout`` seconds."""
        deadline = time.monotonic() + self.rollout_timeout
        while rollout_pending(obj):
            if time.monotonic() > deadline:
                predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
                raise MlopsError(
                    f"{self.spec.where} did not roll out {served(obj)[0]} within {self.rollout_timeout:.0f} s "
                    f"(latest created revision {predictor.get('latestCreatedRevision')}, rolled out "
                    f"{predictor.get('latestRolledoutRevision')}); the canary was not started."
                )
            time.sleep(self.poll_seconds)
            obj = self.get() or obj
        return obj

    def _error(self, action: str, err: Any) -> MlopsError:
        try:
            message = json.loads(err.body or "{}").get("message") or err.reason
        except (TypeError, ValueError, AttributeError):
            message = err.reason
        return MlopsError(f"{self.spec.where}: {action} failed with HTTP {err.status}: {message}")
