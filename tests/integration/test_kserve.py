"""The KServe target against a Kubernetes API on 127.0.0.1 (kmock's emulator): the stage functions drive the real
cncf.kubernetes hook through an Airflow connection, and the test reads back every request the API received."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import kmock as km
import pytest
from kserve_crd import crd_errors

from airflow_mlops.config.deployment import KServeConfig
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.hooks.kserve import KServeHook
from airflow_mlops.serving.kserve import InferenceServiceSpec, served
from airflow_mlops.stages.deployment.canary import canary_deploy, canary_resolve
from airflow_mlops.stages.deployment.promotion_watch import resolve_watch
from airflow_mlops.store.artifacts import LocalArtifactStore
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry

PIPELINE = "churn"
OLD, NEW, THIRD = "0a1b2c3d4e5f", "9f8e7d6c5b4a", "77aa55cc33ee"
COLLECTION = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices"
OBJECT = f"{COLLECTION}/churn"
SECRETS = {"AWS_ACCESS_KEY_ID": "AKIA-NEVER-SENT", "AWS_SECRET_ACCESS_KEY": "s3cr3t-never-sent"}
RESOURCE = km.resource("serving.kserve.io", "v1beta1", "inferenceservices")


@pytest.fixture
def store(tmp_path):
    """A registry with two blessed versions, nothing deployed."""
    store = LocalArtifactStore(tmp_path / "mlops")
    registry = ModelRegistry(store, PIPELINE)
    for version in (OLD, NEW):
        registry.register(version, status="blessed", metrics={}, lineage={}, reason="gate passed")
    return store


@pytest.fixture
def target(kmock, tmp_path, monkeypatch):
    """A KServeHook on the emulated API through the Airflow connection ``kserve_test`` (a kubeconfig file)."""
    kmock.resources[RESOURCE] = km.ResourceInfo(kind="InferenceService", namespaced=True)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
                "users": [{"name": "airflow", "user": {"token": "test-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "airflow"}}],
                "current-context": "kmock",
            }
        )
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_KSERVE_TEST", json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}})
    )
    for name, value in SECRETS.items():  # what a careless target could copy into the pods' environment
        monkeypatch.setenv(name, value)
    config = KServeConfig(image="server:1", namespace="ml", kubernetes_conn_id="kserve_test", credentials_secret="mlops-s3")
    spec = InferenceServiceSpec.from_config(PIPELINE, "s3://models/mlops", config.model_dump())
    return KServeHook(spec, kubernetes_conn_id=config.kubernetes_conn_id, rollout_timeout=5, poll_seconds=0.05)


def requests(kmock):
    """(method, path) of every request the API received, in order."""
    return [(str(r.method.value), r.url.path) for r in kmock]


def bodies(kmock):
    """The bodies of the create and patch requests, each checked against KServe's CRD schema."""
    sent = [r.data for r in kmock if r.data]
    for body in sent:
        patch = json.loads(json.dumps(body), object_hook=lambda d: {k: v for k, v in d.items() if v is not None})
        assert crd_errors(patch) == [], body
    return sent


def assert_no_secret_values(kmock):
    raw = b"".join(r.body for r in kmock)
    assert raw and not any(value.encode() in raw for value in SECRETS.values())


async def call(func, *args, **kwargs):
    """A blocking call in a thread: the emulated API serves on this test's event loop."""
    return await asyncio.to_thread(func, *args, **kwargs)


async def deploy_first_then_canary(store, target):
    await call(canary_deploy, store, PIPELINE, OLD, 10, target=target)
    await call(canary_deploy, store, PIPELINE, NEW, 10, target=target)


@pytest.mark.asyncio
class TestCanaryOnKServe:
    async def test_apply_steps_then_promote(self, kmock, store, target):
        await deploy_first_then_canary(store, target)
        await call(canary_deploy, store, PIPELINE, NEW, 50, target=target)
        verdict = {"version": NEW, "reason": "canary within limits", "figures": {}}
        result = await call(canary_resolve, store, PIPELINE, "promote", verdict, target=target)

        assert requests(kmock) == [
            ("GET", OBJECT),
            ("POST", COLLECTION),  # the first model: created, all traffic
            ("GET", OBJECT),
            ("PATCH", OBJECT),  # the candidate at 10%
            ("GET", OBJECT),
            ("PATCH", OBJECT),  # 50%
            ("GET", OBJECT),
            ("PATCH", OBJECT),  # promoted
        ]
        create, *patches = bodies(kmock)
        assert served(create) == (OLD, None) and "canaryTrafficPercent" not in create["spec"]["predictor"]
        assert [served(p) for p in patches] == [(NEW, 10), (NEW, 50), (NEW, None)]
        assert patches[-1]["spec"]["predictor"]["canaryTrafficPercent"] is None  # merge patch: null removes it
        assert all(r.headers["Content-Type"] == "application/merge-patch+json" for r in kmock if r.method.value == "PATCH")
        assert_no_secret_values(kmock)

        live = await call(target.get)
        assert served(live) == (NEW, None) and "canaryTrafficPercent" not in live["spec"]["predictor"]
        assert result["production"] == NEW and ModelRegistry(store, PIPELINE).alias("canary") is None

    async def test_rollback_restores_production_at_once(self, kmock, store, target):
        await deploy_first_then_canary(store, target)
        verdict = {"version": NEW, "reason": "error rate 4% over production's", "figures": {}}
        result = await call(canary_resolve, store, PIPELINE, "rollback", verdict, target=target)

        assert requests(kmock)[-2:] == [("GET", OBJECT), ("PATCH", OBJECT)]
        rollback = bodies(kmock)[-1]
        # the predictor goes back to production's spec; canaryTrafficPercent 0 keeps all traffic on its rolled-out
        # revision at once, while the canary's revision gets none
        assert served(rollback) == (OLD, 0)
        assert served(await call(target.get)) == (OLD, 0)
        assert result["production"] == OLD and [e["kind"] for e in read_events(store, PIPELINE)][-1] == "rollback"
        assert_no_secret_values(kmock)

    @pytest.mark.parametrize(
        ("passed", "after"),
        [pytest.param(True, (NEW, None), id="kept"), pytest.param(False, (OLD, 0), id="reverted")],
    )
    async def test_a_promotion_holds_back_the_previous_revisions_share_until_the_watch_ends(
        self, kmock, store, target, passed, after
    ):
        await deploy_first_then_canary(store, target)
        verdict = {"version": NEW, "reason": "canary within limits", "figures": {}}
        await call(canary_resolve, store, PIPELINE, "promote", verdict, target=target, holdback_percent=5)
        promoted = bodies(kmock)[-1]
        # the latest revision (NEW) takes 95%, the one rolled out before the canary (OLD's) keeps 5%: the holdback
        assert served(promoted) == (NEW, 95) and promoted["spec"]["predictor"]["canaryTrafficPercent"] == 95
        assert ModelRegistry(store, PIPELINE).load()["aliases"]["holdback"]["version"] == OLD

        watched = {"version": NEW, "passed": passed, "reason": "the watch's verdict", "figures": {}}
        await call(resolve_watch, store, PIPELINE, watched, target=target)
        assert requests(kmock)[-2:] == [("GET", OBJECT), ("PATCH", OBJECT)]
        end = bodies(kmock)[-1]
        assert served(end) == after and served(await call(target.get)) == after
        if passed:  # merge patch: null removes canaryTrafficPercent, the kept model takes all traffic
            assert "canaryTrafficPercent" in end["spec"]["predictor"] and end["spec"]["predictor"]["canaryTrafficPercent"] is None
        assert "holdback" not in ModelRegistry(store, PIPELINE).load()["aliases"]
        assert ModelRegistry(store, PIPELINE).production() == after[0]

    async def test_a_canary_after_an_unfinished_holdback_rolls_production_out_alone_first(self, kmock, store, target):
        await deploy_first_then_canary(store, target)
        verdict = {"version": NEW, "reason": "canary within limits", "figures": {}}
        await call(canary_resolve, store, PIPELINE, "promote", verdict, target=target, holdback_percent=5)
        ModelRegistry(store, PIPELINE).register(THIRD, status="blessed", metrics={}, lineage={}, reason="gate passed")
        sent = len(requests(kmock))
        await call(canary_deploy, store, PIPELINE, THIRD, 10, target=target)

        assert requests(kmock)[sent:] == [("GET", OBJECT), ("PATCH", OBJECT), ("PATCH", OBJECT)]
        alone, step = bodies(kmock)[-2:]
        assert served(alone) == (NEW, None) and served(step) == (THIRD, 10), "else OLD would take the other 90%"

    async def test_a_retried_step_changes_nothing(self, kmock, store, target):
        await deploy_first_then_canary(store, target)
        before, revision = await call(target.get), ModelRegistry(store, PIPELINE).load()["revision"]
        sent = len(requests(kmock))
        await call(canary_deploy, store, PIPELINE, NEW, 10, target=target)  # the task's retry

        assert requests(kmock)[sent:] == [("GET", OBJECT), ("PATCH", OBJECT)]
        first, again = bodies(kmock)[-2:]
        assert again == first
        assert await call(target.get) == before
        assert ModelRegistry(store, PIPELINE).load()["revision"] == revision

        verdict = {"version": NEW, "reason": "label quality below production's", "figures": {}}
        for _ in range(2):
            await call(canary_resolve, store, PIPELINE, "rollback", verdict, target=target)
        first, again = bodies(kmock)[-2:]
        assert again == first and served(again) == (OLD, 0)

    async def test_a_new_inference_service_rolls_production_out_before_the_canary(self, kmock, store, target):
        await call(canary_deploy, store, PIPELINE, OLD, 10)  # production on the local server; then target: kserve
        await call(canary_deploy, store, PIPELINE, NEW, 10, target=target)

        assert requests(kmock) == [("GET", OBJECT), ("POST", COLLECTION), ("PATCH", OBJECT)]
        create, patch = bodies(kmock)
        assert served(create) == (OLD, None) and served(patch) == (NEW, 10)

    async def test_the_canary_waits_for_production_to_roll_out(self, kmock, store, target):
        await call(canary_deploy, store, PIPELINE, OLD, 10, target=target)
        predictor = {"latestCreatedRevision": "churn-predictor-00002", "latestRolledoutRevision": "churn-predictor-00001"}
        kmock.objects[RESOURCE, "ml", "churn"].patch({"status": {"components": {"predictor": predictor}}})
        step = asyncio.create_task(call(canary_deploy, store, PIPELINE, NEW, 10, target=target))
        await asyncio.sleep(0.3)
        assert not step.done() and requests(kmock)[-1] == ("GET", OBJECT)  # polling, nothing applied yet
        predictor = {"latestRolledoutRevision": "churn-predictor-00002"}
        kmock.objects[RESOURCE, "ml", "churn"].patch({"status": {"components": {"predictor": predictor}}})
        await step
        assert requests(kmock)[-1] == ("PATCH", OBJECT) and served(bodies(kmock)[-1]) == (NEW, 10)

    async def test_a_rollout_that_never_ends_fails_naming_the_service(self, kmock, store, target):
        await call(canary_deploy, store, PIPELINE, OLD, 10, target=target)
        predictor = {"latestCreatedRevision": "churn-predictor-00002", "latestRolledoutRevision": "churn-predictor-00001"}
        kmock.objects[RESOURCE, "ml", "churn"].patch({"status": {"components": {"predictor": predictor}}})
        target.rollout_timeout = 0.2
        with pytest.raises(MlopsError, match=r"InferenceService ml/churn did not roll out 0a1b2c3d4e5f within"):
            await call(canary_deploy, store, PIPELINE, NEW, 10, target=target)
        assert requests(kmock).count(("PATCH", OBJECT)) == 0

    async def test_api_errors_name_the_service_and_the_message(self, kmock, store, target):
        await call(canary_deploy, store, PIPELINE, OLD, 10, target=target)
        kmock["patch"] << km.KubernetesError(422, "Invalid", "spec.predictor.minReplicas: Invalid value")
        with pytest.raises(MlopsError) as err:
            await call(canary_deploy, store, PIPELINE, NEW, 10, target=target)
        assert str(err.value) == (
            "InferenceService ml/churn: patch failed with HTTP 422: spec.predictor.minReplicas: Invalid value"
        )


BUILD = """
import json, sys
from airflow_mlops.factories import build_training_dag
from airflow_mlops.config.pipeline import PipelineConfig

config = PipelineConfig.model_validate(json.loads(sys.argv[1]))
dag = build_training_dag(config)
tasks = {t: dag.get_task(f"deploy.{t}") for t in ("canary", "analysis", "promote", "rollback", "watch")}
print(json.dumps({"tasks": {t: [op.target, op.kserve] for t, op in tasks.items()}, "kubernetes": "kubernetes" in sys.modules}))
"""


class TestTrainingDag:
    def test_deploy_tasks_get_the_target_and_parsing_stays_light(self, airflow_db):
        config = {
            "pipeline": PIPELINE,
            "source": {"uri": "s3://data/churn/{{ ds }}.csv"},
            "label": "churned",
            "task": "classification",
            "features": {"numeric": ["tenure"], "categorical": ["contract"]},
            "artifacts": {"root": "s3://models/mlops"},
            "evaluation": {"metric": "roc_auc", "threshold": 0.6},
            "canary": {"target": "kserve", "kserve": {"image": "server:1", "namespace": "ml"}},
        }
        out = subprocess.run([sys.executable, "-c", BUILD, json.dumps(config)], capture_output=True, text=True, check=True)
        built = json.loads(out.stdout.strip().splitlines()[-1])
        kserve = KServeConfig(image="server:1", namespace="ml").model_dump()
        tasks = ("canary", "analysis", "promote", "rollback", "watch")  # every task that moves traffic
        assert built == {"tasks": {key: ["kserve", kserve] for key in tasks}, "kubernetes": False}
