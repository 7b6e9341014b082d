"""The state the server's workers share: answered ids taken once for feedback, forgotten past the window or the cap,
and model refusals counted once per server run."""

from airflow_mlops.serving import shared_state
from airflow_mlops.serving.shared_state import NOT_ANSWERED, SharedState


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
        state.answered([f"new-{i}" for i in range(5)], shared_state.FEEDBACK_WINDOW_SECONDS + 10.0)
        state.write()
        now = shared_state.FEEDBACK_WINDOW_SECONDS + 20.0
        assert state.label(["old-1"], now) == [NOT_ANSWERED], "past the window"
        monkeypatch.setattr(shared_state, "MAX_TRACKED_IDS", 3)
        state.forget(now)
        assert state._db.execute("SELECT id FROM answered ORDER BY rowid").fetchall() == [("new-2",), ("new-3",), ("new-4",)]

    def test_a_refused_model_is_counted_once_per_server_run(self, tmp_path):
        workers = [SharedState(tmp_path / "s.sqlite3", "run-1") for _ in range(2)]
        assert [w.first_refusal("v9") for w in workers] == [True, False]
        assert SharedState(tmp_path / "s.sqlite3", "run-2").first_refusal("v9"), "a new run counts it again"
