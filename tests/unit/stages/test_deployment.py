import time
from datetime import datetime

import pytest
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
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages.deployment.canary import canary_check, canary_deploy, canary_resolve
from airflow_mlops.stages.deployment.operator_actions import operator_action
from airflow_mlops.stages.deployment.promotion_watch import promotion_watch_check, resolve_watch
from airflow_mlops.stages.evaluation import score_raw
from airflow_mlops.store.events import append_event, read_events
from airflow_mlops.store.registry import ModelRegistry

CRITERIA = CanaryAnalysisConfig().model_dump()
CHECK = {"task": "classification", "min_requests": 15, "bake_seconds": 600.0, "criteria": CRITERIA}  # requests of 10 rows


@pytest.fixture
def store(built, tmp_path):
    return blessed_store(built, tmp_path)


@pytest.fixture
def canary(store, versions):
    """The first model in production and the candidate on the canary alias with 10% of the traffic; returns its deploy result."""
    production, candidate, _ = versions
    canary_deploy(store, PIPELINE, production, 10)
    return canary_deploy(store, PIPELINE, candidate, 10)


@pytest.fixture(scope="module")
def traffic():
    """Requests after the canary went live: the first half served by the canary, the second by production."""
    rows = make_churn(400, seed=22)
    return rows.iloc[:200], rows.iloc[200:]


def serve(store, version, rows, **kwargs):
    """Log ``rows`` as scored by the stored model ``version``."""
    log_predictions(store, version, rows, score_raw(store, PIPELINE, version, rows), **kwargs)


def kinds(store):
    return [e["kind"] for e in read_events(store, PIPELINE)]


class TestCanaryDeploy:
    def test_first_model_goes_straight_to_production(self, store, versions):
        production = versions[0]
        assert canary_deploy(store, PIPELINE, production, 10) == {"canary": None, "weight": 0, "production": production}
        registry = ModelRegistry(store, PIPELINE).load()
        assert registry["aliases"]["production"]["version"] == production and "canary" not in registry["aliases"]
        assert registry["aliases"]["production"]["reason"] == "first model"
        [event] = read_events(store, PIPELINE)
        assert event["kind"] == "promote" and event["event_id"] == f"promote-{production}" and event["version"] == production
        assert canary_deploy(store, PIPELINE, production, 10) == {"canary": None, "weight": 0, "production": production}
        assert kinds(store) == ["promote"], "deploying the production model again changes nothing"

    def test_candidate_goes_on_the_canary_alias_with_its_weight(self, store, versions, canary):
        production, candidate, _ = versions
        assert canary["canary"] == candidate and canary["weight"] == 10
        assert time.time() - 60 < canary["since"] <= time.time()
        aliases = ModelRegistry(store, PIPELINE).load()["aliases"]
        assert aliases["canary"] == {"version": candidate, "weight": 10, "since": canary["since"]}
        assert aliases["production"]["version"] == production
        step = read_events(store, PIPELINE)[-1]
        assert (step["kind"], step["version"], step["weight"], step["production"]) == ("canary_step", candidate, 10, production)

    def test_same_step_again_is_idempotent(self, store, versions, canary):
        revision = ModelRegistry(store, PIPELINE).load()["revision"]
        again = canary_deploy(store, PIPELINE, versions[1], 10)
        assert again == canary
        assert ModelRegistry(store, PIPELINE).load()["revision"] == revision
        assert kinds(store) == ["promote", "canary_step"]

    def test_next_step_raises_the_weight(self, store, versions, canary):
        step = canary_deploy(store, PIPELINE, versions[1], 50)
        assert step["weight"] == 50 and step["since"] >= canary["since"]
        assert ModelRegistry(store, PIPELINE).load()["aliases"]["canary"]["weight"] == 50
        assert [e.get("weight") for e in read_events(store, PIPELINE)] == [None, 10, 50]

    def test_unregistered_version_is_refused(self, store, versions):
        canary_deploy(store, PIPELINE, versions[0], 10)
        with pytest.raises(MlopsError, match="not a registered, accepted version"):
            canary_deploy(store, PIPELINE, "unknown", 10)
        assert ModelRegistry(store, PIPELINE).alias("canary") is None


class TestCanaryCheck:
    def test_nothing_deployed(self, store):
        verdict = canary_check(store, PIPELINE, **CHECK, now=time.time())
        assert verdict == {"passed": False, "reason": "no canary is deployed", "figures": {}, "weight": None}

    def test_first_model_in_production_passes_without_a_canary(self, store, versions):
        canary_deploy(store, PIPELINE, versions[0], 10)
        verdict = canary_check(store, PIPELINE, **CHECK, now=time.time())
        assert verdict["passed"] is True and verdict["version"] == versions[0] and verdict["weight"] == 100
        assert verdict["reason"] == f"{versions[0]} is production; no canary step"

    def test_waits_for_more_traffic_and_time(self, store, versions, canary, traffic):
        serve(store, versions[1], traffic[0].iloc[:20])
        serve(store, versions[0], traffic[1])
        assert canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 60) is None

    def test_rows_logged_before_the_step_do_not_count(self, store, versions, traffic):
        production, candidate, _ = versions
        canary_deploy(store, PIPELINE, production, 10)
        serve(store, candidate, traffic[0])  # e.g. served in an earlier step
        step = canary_deploy(store, PIPELINE, candidate, 10)
        assert canary_check(store, PIPELINE, **CHECK, now=step["since"] + 60) is None

    def test_no_traffic_during_the_bake_time_fails(self, store, versions, canary, traffic):
        serve(store, versions[0], traffic[1])
        verdict = canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 601)
        assert verdict == {
            "passed": False,
            "reason": "the canary received no traffic during the bake time",
            "figures": {"canary": {"requests": 0}},
            "version": versions[1],
            "production": versions[0],
            "weight": 10,
        }

    def test_close_candidate_passes_on_logged_predictions_and_labels(self, store, versions, canary, traffic):
        production, candidate, _ = versions
        # Both score the same 200 rows: label quality then compares the models, not two samples of 200 rows (whose
        # AUCs differ by a few percent by chance alone, more than the 0.98 ratio allows).
        serve(store, candidate, traffic[0])
        serve(store, production, traffic[0])
        log_feedback(store, make_churn(400, seed=22))
        verdict = canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 1)  # enough requests: no need to wait
        assert verdict["passed"] is True, verdict["reason"]
        assert verdict["reason"].startswith("canary within limits over 20 requests")
        assert (verdict["version"], verdict["production"], verdict["weight"]) == (candidate, production, 10)
        figures = verdict["figures"]
        assert figures["canary"]["requests"] == 20 and figures["production"]["requests"] == 20
        assert figures["canary"]["rows"] == 200 and figures["production"]["rows"] == 200
        assert figures["canary"]["labels"] == 200 and figures["production"]["labels"] == 200
        assert figures["canary"]["error_rate"] == 0.0 and figures["canary"]["p95_latency_ms"] == 5.0
        assert figures["prediction_divergence"] < CRITERIA["max_prediction_divergence"]
        assert figures["label_quality_ratio"] >= CRITERIA["min_label_quality_ratio"]

    def test_batch_scored_rows_are_not_the_canary_analysis_traffic(self, store, versions, canary, traffic):
        """Rows a batch scoring run logs (for the monitors) during a canary were not routed by the server: they count
        on neither side, so production's figures (requests, 0 ms latency) are its served traffic alone."""
        production, candidate, _ = versions
        serve(store, candidate, traffic[0])
        serve(store, production, traffic[0])
        serve(store, production, traffic[1], latency_ms=0.0, request="batch-0123abcd-00000")
        verdict = canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 1)
        figures = verdict["figures"]["production"]
        assert (figures["requests"], figures["rows"], figures["p95_latency_ms"]) == (20, 200, 5.0), figures

    @pytest.mark.parametrize(
        ("challenger", "log_kwargs", "failure"),
        [
            pytest.param(True, {}, "prediction distribution diverges from production", id="diverging"),
            pytest.param(False, {"latency_ms": 60.0}, "p95 latency 60.0 ms vs production 5.0 ms", id="slow"),
        ],
    )
    def test_failing_canary(self, store, versions, traffic, challenger, log_kwargs, failure):
        production, candidate, diverging = versions
        version = diverging if challenger else candidate
        canary_deploy(store, PIPELINE, production, 10)
        step = canary_deploy(store, PIPELINE, version, 10)
        serve(store, version, traffic[0], **log_kwargs)
        serve(store, production, traffic[1])
        verdict = canary_check(store, PIPELINE, **CHECK, now=step["since"] + 1)
        assert verdict["passed"] is False and verdict["version"] == version
        assert failure in verdict["reason"]

    def test_failed_scoring_calls_fail_the_canary(self, store, versions, canary, traffic):
        rows = traffic[0]
        log_predictions(store, versions[1], rows, [None] * len(rows))
        serve(store, versions[0], traffic[1])
        verdict = canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 601)
        assert verdict["passed"] is False and "error rate 1.000 vs production 0.000" in verdict["reason"]
        assert verdict["figures"]["canary"]["error_rate"] == 1.0 and verdict["figures"]["canary"]["mean_prediction"] is None


PASSED = {"passed": True, "reason": "canary within limits", "figures": {"prediction_divergence": 0.05}}


class TestCanaryResolve:
    def test_promote_moves_production_and_records_the_decision(self, store, versions, canary):
        production, candidate, _ = versions
        result = canary_resolve(store, PIPELINE, "promote", {**PASSED, "version": candidate})
        doc = ModelRegistry(store, PIPELINE).load()
        assert doc["aliases"]["production"]["version"] == candidate and "canary" not in doc["aliases"]
        assert doc["previous_production"] == production
        assert doc["versions"][candidate]["canary"] == {"decision": "promote", "reason": "canary within limits"}
        event = read_events(store, PIPELINE)[-1]
        assert result == {
            "decision": "promote",
            "version": candidate,
            "reason": "canary within limits",
            "production": candidate,
            "event_time": event["time"],
        }
        assert event["kind"] == "promote" and event["event_id"] == f"promote-{candidate}"
        assert event["previous_production"] == production and event["figures"] == {"prediction_divergence": 0.05}
        again = canary_resolve(store, PIPELINE, "promote", {**PASSED, "version": candidate})
        assert again == result and kinds(store) == ["promote", "canary_step", "promote"], "resolving again adds nothing"

    def test_rollback_keeps_production(self, store, versions, canary):
        production, candidate, _ = versions
        verdict = {"passed": False, "reason": "error rate 0.5 vs production 0.0", "figures": {}}
        result = canary_resolve(store, PIPELINE, "rollback", verdict)  # no version in the verdict: the canary alias's
        assert result["decision"] == "rollback" and result["version"] == candidate and result["production"] == production
        doc = ModelRegistry(store, PIPELINE).load()
        assert doc["aliases"]["production"]["version"] == production and "canary" not in doc["aliases"]
        assert doc["versions"][candidate]["canary"]["decision"] == "rollback"
        event = read_events(store, PIPELINE)[-1]
        assert (event["kind"], event["version"], event["reason"]) == ("rollback", candidate, verdict["reason"])

    def test_a_whole_canary_from_deploy_to_promotion(self, store, versions, canary, traffic):
        production, candidate, _ = versions
        serve(store, candidate, traffic[0])
        serve(store, production, traffic[1])
        verdict = canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 1)
        result = canary_resolve(store, PIPELINE, "promote" if verdict["passed"] else "rollback", verdict)
        assert result["production"] == candidate
        assert ModelRegistry(store, PIPELINE).production() == candidate
        assert canary_check(store, PIPELINE, **CHECK, now=time.time())["reason"] == f"{candidate} is production; no canary step"


WATCH = {"task": "classification", "min_requests": 15, "criteria": CRITERIA, "watch_seconds": 600.0}


@pytest.fixture
def promoted(store, versions, canary, traffic):
    """The candidate through a passed canary step (both models on the same labelled rows) and promoted.
    Returns the promotion time (epoch seconds)."""
    production, candidate, _ = versions
    serve(store, candidate, traffic[0])
    serve(store, production, traffic[0])
    log_feedback(store, traffic[0])
    verdict = canary_check(store, PIPELINE, **CHECK, now=canary["since"] + 1)
    assert verdict["passed"] and "label_quality" in verdict["figures"]["production"], verdict
    append_event(
        store, PIPELINE, "canary_analysis", **{k: verdict[k] for k in ("version", "weight", "passed", "reason", "figures")}
    )
    time.sleep(0.01)  # the log's rows of the canary step are older than the promotion
    canary_resolve(store, PIPELINE, "promote", verdict)
    return datetime.fromisoformat(ModelRegistry(store, PIPELINE).load()["aliases"]["production"]["promoted_at"]).timestamp()


def watch_check(store, version, now):
    return promotion_watch_check(store, PIPELINE, version=version, **WATCH, now=now)


class RecordingTarget:
    """A serving target that records its calls; ``fail`` makes the next call raise (the cluster API was down)."""

    def __init__(self):
        self.calls, self.fail = [], False

    def _record(self, *call):
        if self.fail:
            self.fail = False
            raise MlopsError("the API is down")
        self.calls.append(call)

    def deploy(self, version, percent, production):
        self._record("deploy", version, percent, production)

    def promote(self, version, holdback=0):
        self._record("promote", version, holdback)

    def restore(self, version):
        self._record("restore", version)


class TestServingTarget:
    def test_each_step_is_applied_after_the_registry(self, store, versions):
        production, candidate, _ = versions
        target = RecordingTarget()
        canary_deploy(store, PIPELINE, production, 10, target=target)
        canary_deploy(store, PIPELINE, candidate, 10, target=target)
        canary_deploy(store, PIPELINE, candidate, 50, target=target)
        canary_resolve(store, PIPELINE, "promote", {**PASSED, "version": candidate}, target=target)
        assert target.calls == [
            ("deploy", production, 10, None),
            ("deploy", candidate, 10, production),
            ("deploy", candidate, 50, production),
            ("promote", candidate, 0),
        ]

    def test_rollback_restores_production(self, store, versions, canary):
        target = RecordingTarget()
        canary_resolve(store, PIPELINE, "rollback", {"passed": False, "reason": "worse", "figures": {}}, target=target)
        assert target.calls == [("restore", versions[0])]

    def test_a_retry_after_the_target_failed_applies_it_without_changing_the_registry(self, store, versions, canary):
        target = RecordingTarget()
        target.fail = True
        with pytest.raises(MlopsError, match="the API is down"):
            canary_deploy(store, PIPELINE, versions[1], 50, target=target)
        doc = ModelRegistry(store, PIPELINE).load()
        assert doc["aliases"]["canary"]["weight"] == 50, "the registry changed first"
        again = canary_deploy(store, PIPELINE, versions[1], 50, target=target)  # the task's retry
        assert target.calls == [("deploy", versions[1], 50, versions[0])]
        assert again["since"] == doc["aliases"]["canary"]["since"] and ModelRegistry(store, PIPELINE).load() == doc

    def test_redeploying_production_keeps_it_alone(self, store, versions):
        target = RecordingTarget()
        for _ in range(2):
            canary_deploy(store, PIPELINE, versions[0], 10, target=target)
        assert target.calls == [("deploy", versions[0], 10, None)] * 2


class TestPromotionWatch:
    def test_a_model_within_its_canary_figures_is_kept_when_the_watch_ends(self, store, versions, promoted):
        candidate = versions[1]
        later = make_churn(300, seed=31)
        serve(store, candidate, later)
        log_feedback(store, later)
        assert watch_check(store, candidate, promoted + 60) is None, "within limits: it goes on watching"
        verdict = watch_check(store, candidate, promoted + 601)
        assert verdict["passed"] and verdict["reason"] == "within canary-time limits over 30 requests since promotion"
        assert verdict["figures"]["now"]["labels"] == 300 and verdict["figures"]["label_quality"]["ratio"] > 0.9
        result = resolve_watch(store, PIPELINE, verdict)
        assert (result["decision"], result["production"]) == ("kept", candidate)
        assert ModelRegistry(store, PIPELINE).get(candidate)["watch"]["decision"] == "kept"
        assert kinds(store)[-1] == "watch_passed"

    def test_a_model_that_degrades_after_promotion_is_reverted_at_once(self, store, versions, promoted):
        production, candidate, _ = versions
        later = make_churn(300, seed=32)
        serve(store, candidate, later)
        log_feedback(store, later.assign(churned=1 - later["churned"]))  # the world changed: its scores now mislead
        verdict = watch_check(store, candidate, promoted + 60)  # long before the watch ends
        assert verdict["passed"] is False
        assert "label quality ratio" in verdict["reason"] and "the replaced model's canary-time figure" in verdict["reason"]
        result = resolve_watch(store, PIPELINE, verdict)
        assert (result["decision"], result["version"], result["production"]) == ("reverted", candidate, production)
        doc = ModelRegistry(store, PIPELINE).load()
        assert doc["aliases"]["production"]["version"] == production and doc["previous_production"] == candidate
        assert doc["aliases"]["production"]["reason"].startswith(f"{candidate} reverted: label quality ratio")
        assert doc["versions"][candidate]["watch"]["decision"] == "reverted"
        event = read_events(store, PIPELINE)[-1]
        assert (event["kind"], event["version"], event["production"]) == ("revert", candidate, production)
        assert event["figures"]["now"]["labels"] == 300
        target = RecordingTarget()  # on KServe: the replaced model serves alone again, on a retry too
        assert resolve_watch(store, PIPELINE, verdict, target=target) == result and kinds(store).count("revert") == 1
        assert target.calls == [("restore", production)]
        assert "retrain_request" not in kinds(store)
        with pytest.raises(MlopsError, match="failed its post-promotion watch and is not deployed again"):
            canary_deploy(store, PIPELINE, candidate, 10)

    def test_failing_calls_after_promotion_revert(self, store, versions, promoted):
        production, candidate, _ = versions
        later = make_churn(200, seed=33)
        log_predictions(store, candidate, later, [None] * len(later))
        verdict = watch_check(store, candidate, promoted + 1)
        assert verdict["passed"] is False and "error rate 1.000 vs 0.000 before promotion" in verdict["reason"]
        assert resolve_watch(store, PIPELINE, verdict)["production"] == production

    def test_too_little_traffic_to_judge_keeps_the_model_when_the_watch_ends(self, store, versions, promoted):
        candidate = versions[1]
        serve(store, candidate, make_churn(50, seed=34))
        assert watch_check(store, candidate, promoted + 60) is None
        verdict = watch_check(store, candidate, promoted + 601)
        assert verdict["passed"] and verdict["reason"].startswith("5 requests since promotion, fewer than the 15 needed")

    def test_nothing_to_watch(self, store, versions, promoted):
        production, candidate, _ = versions
        ModelRegistry(store, PIPELINE).set_alias("production", production)
        moved = watch_check(store, candidate, promoted + 1)
        assert moved["passed"] and moved["reason"] == f"{candidate} is no longer production ({production} is): nothing to watch"
        first = watch_check(store, production, promoted + 1)  # promoted as the first model: no canary figures
        assert first["passed"] and first["reason"] == f"{production} has no canary-time figures to compare with"


@pytest.fixture
def held_back(store, versions, canary):
    """The candidate promoted with 5% of the traffic held back on the model it replaced; returns the holdback alias."""
    time.sleep(0.01)  # nothing logged before the promotion is in the holdback's window
    canary_resolve(store, PIPELINE, "promote", {**PASSED, "version": versions[1]}, holdback_percent=5)
    return ModelRegistry(store, PIPELINE).load()["aliases"]["holdback"]


class TestHoldback:
    def test_a_promotion_holds_back_a_share_on_the_replaced_model(self, store, versions, canary):
        production, candidate, _ = versions
        target = RecordingTarget()
        canary_resolve(store, PIPELINE, "promote", {**PASSED, "version": candidate}, target=target, holdback_percent=5)
        aliases = ModelRegistry(store, PIPELINE).load()["aliases"]
        held = aliases["holdback"]
        assert aliases["production"]["version"] == candidate and "canary" not in aliases
        assert {k: held[k] for k in ("version", "weight", "beside")} == {"version": production, "weight": 5, "beside": candidate}
        assert time.time() - 60 < held["since"] <= time.time()
        canary_resolve(store, PIPELINE, "promote", {**PASSED, "version": candidate}, target=target, holdback_percent=5)
        assert ModelRegistry(store, PIPELINE).load()["aliases"]["holdback"] == held, "a retry keeps its window"
        assert target.calls == [("promote", candidate, 5)] * 2, "on KServe: canaryTrafficPercent 95"

    def test_no_holdback_without_a_replaced_model_or_when_rolled_back(self, store, versions, canary):
        canary_resolve(store, PIPELINE, "rollback", {**PASSED, "version": versions[1]}, holdback_percent=5)
        assert "holdback" not in ModelRegistry(store, PIPELINE).load()["aliases"]

    def test_the_watch_compares_with_the_holdback_and_keeps_a_model_as_good(self, store, versions, held_back, traffic):
        production, candidate, _ = versions
        serve(store, candidate, traffic[0], latency_ms=9.0)  # busier now than at canary time: both sides
        serve(store, production, traffic[1], latency_ms=9.0)
        log_feedback(store, traffic[0])
        log_feedback(store, traffic[1])
        assert watch_check(store, candidate, held_back["since"] + 60) is None, "within limits: it goes on watching"
        verdict = watch_check(store, candidate, held_back["since"] + 601)
        assert verdict["passed"], verdict
        assert verdict["reason"] == "within limits against the holdback over 20 requests since promotion (20 on it)"
        assert verdict["figures"]["holdback"]["labels"] == 200 and verdict["figures"]["label_quality_ratio"] > 0.9
        target = RecordingTarget()
        result = resolve_watch(store, PIPELINE, verdict, target=target)
        assert (result["decision"], result["production"]) == ("kept", candidate)
        assert "holdback" not in ModelRegistry(store, PIPELINE).load()["aliases"], "the holdback ends with the watch"
        assert target.calls == [("promote", candidate, 0)], "on KServe: all traffic to the kept model"

    def test_labels_gone_bad_on_the_new_model_alone_revert_it(self, store, versions, held_back, traffic):
        production, candidate, _ = versions
        serve(store, candidate, traffic[0])
        serve(store, production, traffic[1])
        log_feedback(store, traffic[0].assign(churned=1 - traffic[0]["churned"]))
        log_feedback(store, traffic[1])
        verdict = watch_check(store, candidate, held_back["since"] + 60)  # long before the watch ends
        assert verdict["passed"] is False and "label quality ratio" in verdict["reason"] and "vs holdback" in verdict["reason"]
        target = RecordingTarget()
        result = resolve_watch(store, PIPELINE, verdict, target=target)
        assert (result["decision"], result["production"]) == ("reverted", production)
        aliases = ModelRegistry(store, PIPELINE).load()["aliases"]
        assert aliases["production"]["version"] == production and "holdback" not in aliases
        assert target.calls == [("restore", production)]

    def test_each_side_needs_its_requests(self, store, versions, held_back, traffic):
        production, candidate, _ = versions
        serve(store, candidate, traffic[0])
        serve(store, production, traffic[1].iloc[:50])  # 5 requests on the holdback
        assert watch_check(store, candidate, held_back["since"] + 60) is None
        verdict = watch_check(store, candidate, held_back["since"] + 601)
        assert verdict["passed"] and verdict["reason"] == (
            "20 requests since promotion (5 on the holdback), fewer than the 15 needed on each side to judge: kept"
        )

    def test_a_new_canary_ends_it(self, store, versions, held_back):
        canary_deploy(store, PIPELINE, versions[2], 10)
        aliases = ModelRegistry(store, PIPELINE).load()["aliases"]
        assert aliases["canary"]["version"] == versions[2] and "holdback" not in aliases

    def test_an_operators_rollback_ends_it(self, store, versions, held_back):
        operator_action(store, PIPELINE, "rollback", user="bob", reason="not this one")
        aliases = ModelRegistry(store, PIPELINE).load()["aliases"]
        assert aliases["production"]["version"] == versions[0] and "holdback" not in aliases
