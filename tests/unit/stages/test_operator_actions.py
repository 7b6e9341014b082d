"""Operators' control actions from the ops UI: promote, rollback, pause and resume a canary; approve or dismiss a
retrain request. Each runs on a real store and registry, and the DAG's own canary tasks must agree with it."""

import time

import pytest
import yaml
from churn_setup import (  # noqa: F401 (pytest fixtures)
    GATE,
    PIPELINE,
    blessed_store,
    built,
    copy_store,
    log_feedback,
    log_predictions,
    versions,
)

from airflow_mlops.config.deployment import CanaryAnalysisConfig
from airflow_mlops.exceptions import ActionRefused, MlopsError
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages.deployment.canary import canary_check, canary_deploy, canary_resolve
from airflow_mlops.stages.deployment.operator_actions import operator_action
from airflow_mlops.stages.deployment.promotion_watch import resolve_watch
from airflow_mlops.stages.evaluation import score_raw
from airflow_mlops.stages.retraining import close_retrain_request, decide_request, request_retrain
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry

CHECK = {"task": "classification", "min_requests": 15, "bake_seconds": 600.0, "criteria": CanaryAnalysisConfig().model_dump()}
DRIFT = {"columns": ["tenure"], "scores": {"tenure": 0.9}, "report_uri": "file:///reports/drift.html"}


@pytest.fixture
def store(built, tmp_path):
    return blessed_store(built, tmp_path)


@pytest.fixture
def canary(store, versions):
    """The first model in production, the candidate on the canary alias with 10%."""
    canary_deploy(store, PIPELINE, versions[0], 10)
    return canary_deploy(store, PIPELINE, versions[1], 10)


def act(store, action, user="alice", reason="looks good", **kwargs):
    return operator_action(store, PIPELINE, action, user=user, reason=reason, **kwargs)


def doc(store):
    return ModelRegistry(store, PIPELINE).load()


def events_of(store, kind):
    return [e for e in read_events(store, PIPELINE) if e["kind"] == kind]


def passing_traffic(store, versions):
    """Both models score the same 200 rows with their labels: a canary step that passes."""
    rows = make_churn(200, seed=22)
    for version in versions[:2]:
        log_predictions(store, version, rows, score_raw(store, PIPELINE, version, rows))
    log_feedback(store, rows)


class TestPromote:
    def test_the_canary_becomes_production_and_the_event_names_the_user(self, store, versions, canary):
        production, candidate, _ = versions
        event = act(store, "promote", reason="metrics are fine, ship it")
        assert (event["kind"], event["version"], event["previous_production"]) == ("promote", candidate, production)
        assert (event["user"], event["source"], event["reason"]) == ("alice", "ui", "metrics are fine, ship it")
        assert events_of(store, "promote")[-1] == event
        registry = doc(store)
        assert registry["aliases"]["production"]["version"] == candidate and "canary" not in registry["aliases"]
        assert registry["previous_production"] == production
        record = registry["versions"][candidate]["canary"]
        assert record["decision"] == "promote" and record["user"] == "alice" and record["source"] == "ui"

    def test_the_running_canary_analysis_ends_on_the_operators_promote(self, store, versions, canary):
        candidate = versions[1]
        act(store, "promote")
        verdict = canary_check(store, PIPELINE, **CHECK, now=time.time())
        assert verdict["passed"] is True and verdict["version"] == candidate and verdict["weight"] == 100
        assert verdict["reason"] == "promote by alice from the ops UI: looks good"
        result = canary_resolve(store, PIPELINE, "promote", verdict)
        assert result["decision"] == "promote" and result["production"] == candidate
        assert len(events_of(store, "promote")) == 2, "the first model's, then the operator's: the DAG adds none"
        assert doc(store)["versions"][candidate]["canary"]["user"] == "alice", "the operator's record is kept"

    def test_without_a_canary_it_is_refused(self, store, versions):
        canary_deploy(store, PIPELINE, versions[0], 10)
        revision = doc(store)["revision"]
        with pytest.raises(ActionRefused, match="churn has no canary to promote"):
            act(store, "promote")
        assert doc(store)["revision"] == revision and len(events_of(store, "promote")) == 1

    def test_a_kserve_pipeline_without_its_target_is_refused(self, store, canary):
        with pytest.raises(ActionRefused, match="served on kserve: promote from the ops UI applies to the local"):
            act(store, "promote", serving="kserve")
        assert doc(store)["aliases"]["canary"]["version"] == canary["canary"]

    def test_an_unknown_action_is_refused(self, store, canary):
        with pytest.raises(ActionRefused, match="Unknown action 'delete'"):
            act(store, "delete")


class TestRollback:
    def test_the_canary_is_removed_and_production_serves_alone(self, store, versions, canary):
        production, candidate, _ = versions
        event = act(store, "rollback", user="bob", reason="error spikes in the client")
        assert (event["kind"], event["version"], event["user"], event["source"]) == ("rollback", candidate, "bob", "ui")
        registry = doc(store)
        assert registry["aliases"]["production"]["version"] == production and "canary" not in registry["aliases"]
        assert registry["versions"][candidate]["canary"]["decision"] == "rollback"

    def test_the_analysis_ends_on_it_and_the_same_version_is_not_deployed_again(self, store, versions, canary):
        production, candidate, _ = versions
        act(store, "rollback")
        verdict = canary_check(store, PIPELINE, **CHECK, now=time.time())
        assert verdict["passed"] is False and verdict["version"] == candidate
        assert canary_resolve(store, PIPELINE, "rollback", verdict)["production"] == production
        assert len(events_of(store, "rollback")) == 1
        again = canary_deploy(store, PIPELINE, candidate, 10)
        assert again == {"canary": None, "weight": 0, "production": production}
        assert "canary" not in doc(store)["aliases"], "a retraining on the same data does not bring it back"
        challenger = canary_deploy(store, PIPELINE, versions[2], 10)
        assert challenger["canary"] == versions[2] and "decided_canary" not in doc(store)

    def test_without_a_canary_production_goes_back_to_the_last_blessed_before_it(self, store, versions, canary):
        production, candidate, _ = versions
        act(store, "promote")
        event = act(store, "rollback", user="bob", reason="complaints since the release")
        assert (event["kind"], event["version"], event["production"], event["user"]) == ("revert", candidate, production, "bob")
        registry = doc(store)
        assert registry["aliases"]["production"]["version"] == production
        assert registry["previous_production"] == candidate
        watch = registry["versions"][candidate]["watch"]
        assert (watch["decision"], watch["user"], watch["source"]) == ("reverted", "bob", "ui")
        with pytest.raises(MlopsError, match="failed its post-promotion watch and is not deployed again"):
            canary_deploy(store, PIPELINE, candidate, 10)
        with pytest.raises(ActionRefused, match=f"no blessed version before {production} to roll back to"):
            act(store, "rollback")

    def test_a_running_post_promotion_watch_keeps_the_operators_revert(self, store, versions, canary):
        production, candidate, _ = versions
        act(store, "promote")
        act(store, "rollback")
        verdict = {"passed": True, "reason": f"{candidate} is no longer production", "figures": {}, "version": candidate}
        result = resolve_watch(store, PIPELINE, verdict)
        assert result["decision"] == "reverted" and result["production"] == production
        assert len(events_of(store, "revert")) == 1, "only the operator's revert is in the log"

    def test_the_production_rollback_skips_reverted_and_rolled_back_versions(self, store, versions):
        production, candidate, challenger = versions
        canary_deploy(store, PIPELINE, production, 10)
        canary_deploy(store, PIPELINE, candidate, 10)
        act(store, "rollback")  # the candidate is rolled back as a canary
        canary_deploy(store, PIPELINE, challenger, 10)
        act(store, "promote")
        assert act(store, "rollback")["production"] == production


class TestPause:
    def test_a_paused_canary_keeps_its_share_and_the_analysis_waits(self, store, versions, canary):
        passing_traffic(store, versions)
        assert canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 1)["passed"] is True
        event = act(store, "pause", reason="checking a client incident")
        assert (event["kind"], event["version"], event["weight"], event["user"]) == ("canary_pause", versions[1], 10, "alice")
        alias = doc(store)["aliases"]["canary"]
        assert alias["weight"] == 10 and alias["paused"]["user"] == "alice"
        assert canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 3600) is None, "no verdict while paused"
        assert canary_deploy(store, PIPELINE, versions[1], 50)["weight"] == 10, "no next step while paused"
        with pytest.raises(ActionRefused, match="is already paused by alice"):
            act(store, "pause", user="bob")
        assert act(store, "resume", user="bob")["kind"] == "canary_resume"
        assert "paused" not in doc(store)["aliases"]["canary"]
        assert canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 1)["passed"] is True
        with pytest.raises(ActionRefused, match="is not paused"):
            act(store, "resume")

    def test_the_paused_sensor_does_not_advance(self, store, versions, canary):
        from airflow_mlops.sensors.canary import CanaryAnalysisSensor

        passing_traffic(store, versions)
        sensor = CanaryAnalysisSensor(
            task_id="analysis",
            pipeline=PIPELINE,
            artifact_root=store.root_uri,
            steps=[10, 50],
            problem_type="classification",
            min_requests=15,
            deferrable=False,
        )
        act(store, "pause")
        assert sensor.check() == (False, None)
        assert doc(store)["aliases"]["canary"]["weight"] == 10 and not events_of(store, "canary_analysis")
        act(store, "resume")
        assert sensor.check() == (False, None)
        assert doc(store)["aliases"]["canary"]["weight"] == 50, "resumed: the passed step moves to the next share"

    def test_pause_without_a_canary_is_refused(self, store, versions):
        with pytest.raises(ActionRefused, match="churn has no canary to pause"):
            act(store, "pause")


def file_request(store, run_id, approval="manual", **kwargs):
    kwargs.setdefault("cooldown_hours", 0)
    return request_retrain(store, PIPELINE, reason="drift: tenure", details=DRIFT, run_id=run_id, approval=approval, **kwargs)


def decide(store, decision, request_id="retrain-m1", user="carol", reason=None):
    return decide_request(store, PIPELINE, request_id, decision, user=user, reason=reason)


class TestRetrainApproval:
    @pytest.fixture
    def store(self, tmp_path):
        from airflow_mlops.store.artifacts import ArtifactStore

        return ArtifactStore.from_uri(str(tmp_path / "store"))

    def test_a_manual_request_is_pending_and_blocks_the_next(self, store):
        assert file_request(store, "m1") == {
            "requested": True,
            "why": "drift: tenure",
            "request_id": "retrain-m1",
            "pending": True,
        }
        assert file_request(store, "m1")["pending"] is True, "a retry of the filing run still waits"
        second = file_request(store, "m2", emitted=set())
        assert second["requested"] is False and second["why"] == "request retrain-m1 is still open"
        assert not events_of(store, "retrain_done"), "a pending request is not lost for want of an Asset event"

    def test_approve_records_the_user_and_leaves_the_request_open_for_its_training(self, store):
        file_request(store, "m1")
        event = decide(store, "approve", reason="drift confirmed by the data team")
        assert (event["kind"], event["decision"], event["request_id"], event["user"]) == (
            "retrain_decision",
            "approve",
            "retrain-m1",
            "carol",
        )
        assert event["request_reason"] == "drift: tenure" and event["source"] == "ui"
        retry = file_request(store, "m1")
        assert retry["requested"] is True and retry["pending"] is False, "approved: open until its training closes it"
        with pytest.raises(ActionRefused, match="already decided: approve by carol"):
            decide(store, "dismiss", user="dave")
        close_retrain_request(store, PIPELINE, "retrain-m1", model_version="v2", status="promoted")
        with pytest.raises(ActionRefused, match=r"already closed \(promoted\)"):
            decide(store, "approve")

    def test_an_approved_request_whose_event_never_came_is_closed_as_lost(self, store):
        file_request(store, "m1")
        decide(store, "approve")
        assert file_request(store, "m2", emitted=set())["requested"] is True
        [done] = events_of(store, "retrain_done")
        assert done["request_id"] == "retrain-m1" and done["status"] == "lost"

    def test_dismiss_closes_it_and_the_cooldown_counts_from_its_filing(self, store):
        file_request(store, "m1")
        event = decide(store, "dismiss", reason="known seasonal shift")
        assert event["decision"] == "dismiss"
        [done] = events_of(store, "retrain_done")
        assert (done["status"], done["reason"]) == ("dismissed", "dismissed by carol: known seasonal shift")
        assert file_request(store, "m2", cooldown_hours=24)["why"].startswith("cooldown: 24.0 h left after retrain-m1")
        assert file_request(store, "m3", cooldown_hours=0)["requested"] is True

    @pytest.mark.parametrize(
        ("request_id", "approval", "message"),
        [
            pytest.param("retrain-nope", "manual", "churn has no retrain request 'retrain-nope'", id="unknown"),
            pytest.param("retrain-m1", "auto", "needed no approval: its training started when it was filed", id="auto"),
        ],
    )
    def test_refused(self, store, request_id, approval, message):
        file_request(store, "m1", approval=approval)
        with pytest.raises(ActionRefused, match=message):
            decide(store, "approve", request_id=request_id)

    def test_an_unknown_decision_is_refused(self, store):
        with pytest.raises(ActionRefused, match="Unknown decision 'maybe'"):
            decide(store, "maybe")


class TestApprovalSetting:
    def test_the_monitor_dag_files_pending_requests_without_an_outlet(self, tmp_path):
        from airflow_mlops.factories import build_monitor_dag, load_pipeline_config

        config = {
            "pipeline": "churn",
            "source": {"uri": "/data/{{ ds }}.csv"},
            "label": "churned",
            "task": "classification",
            "features": {"numeric": ["tenure"], "categorical": ["contract"]},
            "monitor": {"approval": "manual"},
        }
        path = tmp_path / "churn.yaml"
        path.write_text(yaml.safe_dump(config))
        request = build_monitor_dag(load_pipeline_config(path)).get_task("request_retrain")
        assert request.approval == "manual" and not request.outlets and request.inlets
        config["monitor"]["approval"] = "auto"
        path.write_text(yaml.safe_dump(config))
        request = build_monitor_dag(load_pipeline_config(path)).get_task("request_retrain")
        assert request.approval == "auto" and [a.name for a in request.outlets] == ["mlops_churn_retrain_request"]


MANUAL_DAG = """from datetime import datetime

from airflow.sdk import DAG

from airflow_mlops.operators.retraining import RetrainRequestOperator

with DAG("mlops_manualreq_monitor", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    RetrainRequestOperator(
        task_id="request_retrain",
        pipeline="manualreq",
        artifact_root={root!r},
        drift={{"drifted_columns": ["tenure"], "scores": {{"tenure": 0.9}}, "report_uri": "r", "reason": "1/7 columns"}},
        approval="manual",
        cooldown_hours=0,
    )
"""


@pytest.mark.slow
def test_a_manual_request_emits_nothing_until_approved_then_the_asset_event(airflow_db, tmp_path):
    """The operator in a real run records a pending request and emits no Asset event; the approval emits it with the
    extra a training run reads."""
    import runpy

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from conftest import DAGS, run_dag

    from airflow_mlops.plugins.assets import emit_retrain_request
    from airflow_mlops.store.artifacts import ArtifactStore

    def asset_events():
        with create_session() as session:
            query = session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            return [dict(e.extra) for e in query.filter(AssetModel.name == "mlops_manualreq_retrain_request")]

    root = tmp_path / "store"
    dag_file = DAGS / "test_manualreq.py"
    dag_file.write_text(MANUAL_DAG.format(root=str(root)))
    try:
        run, states = run_dag(runpy.run_path(str(dag_file))["dag"], "2026-11-03")
    finally:
        dag_file.unlink()
    assert states == {"request_retrain": "success"}
    store = ArtifactStore.from_uri(str(root))
    [request] = [e for e in read_events(store, "manualreq") if e["kind"] == "retrain_request"]
    assert request["approval"] == "pending" and request["event_id"] == f"retrain-{run.run_id}"
    assert asset_events() == [], "a pending request starts no training"
    decision = decide_request(store, "manualreq", request["event_id"], "approve", user="carol", reason="go")
    emitted = emit_retrain_request("manualreq", decision, "carol")
    expected = {"request_id": request["event_id"], "reason": "drift: 1/7 columns", "approved_by": "carol"}
    assert emitted["extra"] == expected and asset_events() == [expected]
