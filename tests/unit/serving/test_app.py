"""The server's pieces that need no HTTP: the state its workers share, the v2 request reader, the token map."""

import pytest

from airflow_mlops.serving import app
from airflow_mlops.serving.app import NOT_ANSWERED, SharedState, _guarded_route, _v2_rows


class TestSharedState:
    def test_a_label_is_taken_once_whichever_worker_answered(self, tmp_path):
        answering, labelling = SharedState(tmp_path / "s.sqlite3", "run"), SharedState(tmp_path / "s.sqlite3", "run")
        answering.answered(["a", "b"], 1000.0)
        assert labelling.label(["a"], 1001.0) == [NOT_ANSWERED], "not written yet: the route looks again later"
        answering.write()
        assert labelling.label(["a", "a", "b", "c"], 1001.0) == [None, "already labelled", None, NOT_ANSWERED]
        assert answering.label(["b"], 1002.0) == ["already labelled"]
        answering.answered(["a"], 1003.0)  # answered again: a new answer, a new label
        assert answering.label(["a"], 1004.0) == [None]

    def test_answers_past_the_window_or_beyond_the_cap_are_forgotten(self, tmp_path, monkeypatch):
        state = SharedState(tmp_path / "s.sqlite3", "run")
        state.answered(["old-1", "old-2"], 0.0)
        state.answered([f"new-{i}" for i in range(5)], app.FEEDBACK_WINDOW_SECONDS + 10.0)
        state.write()
        now = app.FEEDBACK_WINDOW_SECONDS + 20.0
        assert state.label(["old-1"], now) == [NOT_ANSWERED], "past the window"
        monkeypatch.setattr(app, "MAX_TRACKED_IDS", 3)
        state.forget(now)
        assert state._db.execute("SELECT id FROM answered ORDER BY rowid").fetchall() == [("new-2",), ("new-3",), ("new-4",)]

    def test_a_refused_model_is_counted_once_per_server_run(self, tmp_path):
        workers = [SharedState(tmp_path / "s.sqlite3", "run-1") for _ in range(2)]
        assert [w.first_refusal("v9") for w in workers] == [True, False]
        assert SharedState(tmp_path / "s.sqlite3", "run-2").first_refusal("v9"), "a new run counts it again"


def v2(**inputs):
    return {"inputs": [{"name": n, "shape": [len(d)], "datatype": "FP64", "data": d} for n, d in inputs.items()]}


class TestV2Rows:
    def test_columns_become_rows_with_their_ids(self):
        body = v2(x=[1.0, 2.0], city=["a", None]) | {"parameters": {"ids": ["r1", "r2"]}}
        assert _v2_rows(body) == ([{"x": 1.0, "city": "a"}, {"x": 2.0, "city": None}], ["r1", "r2"])
        assert _v2_rows(v2(x=[1.0]))[1] == [""], "no ids: made up later"

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            pytest.param([1, 2], "'inputs' list", id="not-an-object"),
            pytest.param({"inputs": []}, "'inputs' list", id="no-inputs"),
            pytest.param({"inputs": [{"name": "x", "data": 1}]}, "inputs[0]: expected an object", id="data-not-a-list"),
            pytest.param({"inputs": [{"name": "x", "shape": [1, 2], "data": [1, 2]}]}, "shape [1, 2] does not fit", id="2-d"),
            pytest.param(v2(x=[1.0]) | {"parameters": {"ids": [""]}}, "non-empty strings", id="empty-id"),
        ],
    )
    def test_malformed_requests_are_refused_naming_the_input(self, body, message):
        response = _v2_rows(body)
        assert response.status_code == 400 and message in response.body.decode()


@pytest.mark.parametrize(
    ("path", "route"),
    [
        pytest.param("/predict", "predict", id="predict"),
        pytest.param("/feedback", "feedback", id="feedback"),
        pytest.param("/metrics", "metrics", id="metrics"),
        pytest.param("/v2/models/churn/infer", "predict", id="infer"),
        pytest.param("/v2/models/churn", "predict", id="metadata"),
        pytest.param("/v2/models/churn/ready", None, id="model-ready-probe"),
        pytest.param("/v2/health/ready", None, id="ready-probe"),
        pytest.param("/health", None, id="health"),
    ],
)
def test_the_predict_tokens_guard_the_v2_model_routes_and_not_the_probes(path, route):
    assert _guarded_route(path) == route
