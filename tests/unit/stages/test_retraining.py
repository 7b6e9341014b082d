from datetime import UTC, datetime, timedelta

import pytest

from airflow_mlops.stages.retraining import close_retrain_request, request_retrain
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.events import append_event, read_events

PIPELINE = "churn"
DRIFT = {"columns": ["monthly_charges"], "scores": {"monthly_charges": 0.93}, "report_uri": "file:///reports/drift.html"}


@pytest.fixture
def store(tmp_path):
    return ArtifactStore.from_uri(str(tmp_path / "store"))


def request(store, run_id, *, cooldown_hours=24.0, reason="drift: 1/7 columns drifted"):
    return request_retrain(store, PIPELINE, reason=reason, details=DRIFT, cooldown_hours=cooldown_hours, run_id=run_id)


def requests(store):
    return [e for e in read_events(store, PIPELINE) if e["kind"] == "retrain_request"]


class TestRequestRetrain:
    def test_records_one_request(self, store):
        result = request(store, "monitor-1")
        assert result == {"requested": True, "why": "drift: 1/7 columns drifted", "request_id": "retrain-monitor-1"}
        [event] = read_events(store, PIPELINE)
        assert event["kind"] == "retrain_request" and event["event_id"] == "retrain-monitor-1" and event["pipeline"] == PIPELINE
        assert event["reason"] == "drift: 1/7 columns drifted" and event["details"] == DRIFT
        assert abs(datetime.fromisoformat(event["time"]) - datetime.now(UTC)) < timedelta(minutes=1)

    def test_a_retry_of_the_filing_run_gets_its_request_back(self, store):
        first = request(store, "monitor-1")
        assert request(store, "monitor-1") == first, "the retried task emits the Asset event again"
        assert len(requests(store)) == 1
        close_retrain_request(store, PIPELINE, "retrain-monitor-1", model_version="v2", status="promoted")
        assert request(store, "monitor-1")["requested"] is False, "a closed request is never filed again"

    def test_second_request_while_the_first_is_open_is_refused(self, store):
        request(store, "monitor-1")
        second = request(store, "monitor-2", cooldown_hours=0)
        assert second == {"requested": False, "why": "request retrain-monitor-1 is still open", "request_id": "retrain-monitor-1"}
        assert [r["event_id"] for r in requests(store)] == ["retrain-monitor-1"]

    def test_after_closing_the_cooldown_refuses(self, store):
        request(store, "monitor-1")
        close_retrain_request(store, PIPELINE, "retrain-monitor-1", model_version="abc123", status="rejected")
        second = request(store, "monitor-2", cooldown_hours=24)
        assert second["requested"] is False and second["request_id"] is None
        assert second["why"] == "cooldown: 24.0 h left after retrain-monitor-1"
        assert len(requests(store)) == 1

    def test_without_cooldown_a_closed_request_frees_the_next(self, store):
        request(store, "monitor-1")
        close_retrain_request(store, PIPELINE, "retrain-monitor-1", model_version=None, status="failed")
        second = request(store, "monitor-2", cooldown_hours=0, reason="drift: 3/7 columns drifted")
        assert second == {"requested": True, "why": "drift: 3/7 columns drifted", "request_id": "retrain-monitor-2"}
        assert [r["event_id"] for r in requests(store)] == ["retrain-monitor-1", "retrain-monitor-2"]
        third = request(store, "monitor-3", cooldown_hours=0)
        assert third["requested"] is False and third["why"] == "request retrain-monitor-2 is still open"

    def test_cooldown_counts_from_the_last_request(self, store):
        old = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
        append_event(store, PIPELINE, "retrain_request", event_id="retrain-old", time=old, reason="drift", details={})
        done = {"event_id": "done-retrain-old", "time": old, "request_id": "retrain-old", "status": "rejected"}
        append_event(store, PIPELINE, "retrain_done", **done)
        assert request(store, "monitor-1", cooldown_hours=24)["requested"] is True, "30 h since the last request"
        close_retrain_request(store, PIPELINE, "retrain-monitor-1", model_version=None, status="rejected")
        assert request(store, "monitor-2", cooldown_hours=24)["requested"] is False, "the new request restarts the cooldown"

    def test_other_pipelines_are_independent(self, store):
        request(store, "monitor-1")
        other = request_retrain(store, "fraud", reason="drift", details={}, cooldown_hours=24, run_id="monitor-1")
        assert other["requested"] is True
        assert len(requests(store)) == 1 and len(read_events(store, "fraud")) == 1


class TestCloseRetrainRequest:
    def test_records_the_outcome_once(self, store):
        request(store, "monitor-1")
        for _ in range(2):  # a retried task
            close_retrain_request(store, PIPELINE, "retrain-monitor-1", model_version="abc123", status="promoted")
        done = [e for e in read_events(store, PIPELINE) if e["kind"] == "retrain_done"]
        assert len(done) == 1
        assert {k: done[0][k] for k in ("event_id", "request_id", "model_version", "status")} == {
            "event_id": "done-retrain-monitor-1",
            "request_id": "retrain-monitor-1",
            "model_version": "abc123",
            "status": "promoted",
        }

    def test_closing_another_request_leaves_the_open_one_open(self, store):
        request(store, "monitor-1")
        append_event(store, PIPELINE, "retrain_done", event_id="done-retrain-other", request_id="retrain-other", status="failed")
        assert request(store, "monitor-2", cooldown_hours=0)["why"] == "request retrain-monitor-1 is still open"


class TestExpiry:
    def test_a_request_its_run_never_closed_expires_and_frees_the_next(self, store):
        request(store, "monitor-1")
        later = datetime.now(UTC) + timedelta(hours=73)

        def again(run_id, now):
            return request_retrain(
                store,
                PIPELINE,
                reason="drift: again",
                details=DRIFT,
                cooldown_hours=24.0,
                run_id=run_id,
                max_open_hours=72,
                now=now,
            )

        held = again("monitor-2", datetime.now(UTC) + timedelta(hours=71))
        assert held["requested"] is False and "still open" in held["why"], "not yet expired"
        result = again("monitor-3", later)
        assert result == {"requested": True, "why": "drift: again", "request_id": "retrain-monitor-3"}
        [expired] = [e for e in read_events(store, PIPELINE) if e["kind"] == "retrain_done"]
        assert expired["request_id"] == "retrain-monitor-1" and expired["status"] == "expired"
        assert "still open 72 h" in expired["reason"] and expired["model_version"] is None
        soon = datetime.now(UTC) + timedelta(hours=1)  # the new request was filed now (events carry the real time)
        assert again("monitor-4", soon)["requested"] is False, "the new request is open: one at a time still"


class TestLostRequests:
    """A request whose Asset event was never emitted (its task was killed in between) does not count."""

    def again(self, store, run_id, emitted):
        return request_retrain(
            store, PIPELINE, reason="drift: again", details=DRIFT, cooldown_hours=24.0, run_id=run_id, emitted=emitted
        )

    def test_an_unemitted_request_of_another_run_is_closed_as_lost_and_starts_no_cooldown(self, store):
        request(store, "killed")  # recorded; the task died before Airflow emitted its event
        result = self.again(store, "next", emitted=set())
        assert result == {"requested": True, "why": "drift: again", "request_id": "retrain-next"}
        [lost] = [e for e in read_events(store, PIPELINE) if e["kind"] == "retrain_done"]
        assert (lost["request_id"], lost["status"], lost["model_version"]) == ("retrain-killed", "lost", None)
        assert "Asset event was never emitted" in lost["reason"]
        assert self.again(store, "later", emitted={"retrain-next"})["why"] == "request retrain-next is still open"

    def test_an_emitted_request_still_blocks_and_a_retry_gets_its_own_back(self, store):
        request(store, "filed")
        assert self.again(store, "next", emitted={"retrain-filed"})["why"] == "request retrain-filed is still open"
        assert self.again(store, "filed", emitted=set())["requested"] is True, "the retried run emits its own request"
        assert [e["kind"] for e in read_events(store, PIPELINE)] == ["retrain_request"]
