import pytest
from churn_setup import COLUMNS, GATE, PIPELINE, built, copy_store, log_predictions, production_store  # noqa: F401 (pytest fixtures)

from airflow_mlops.config.monitoring import DriftConfig
from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.serving.predlog_reader import read_log
from airflow_mlops.stages.evaluation import score_raw
from airflow_mlops.stages.monitoring import drift_check, drift_report, last_drift_check, new_logged_rows
from airflow_mlops.store.events import read_events

DRIFT = DriftConfig().model_dump()  # psi, column 0.2, share 0.3


@pytest.fixture
def store(built, tmp_path):
    """A copy of the pipeline store with its first model in production (lineage naming its features)."""
    return production_store(built, tmp_path)


@pytest.fixture
def serve(store, built):
    """Log ``rows`` as scored by the production model."""
    version = built.model["model_version"]

    def log(rows):
        log_predictions(store, version, rows, score_raw(store, PIPELINE, version, rows))

    return log


def check(store, run_id, **overrides):
    return drift_check(store, PIPELINE, **{**DRIFT, **overrides}, run_id=run_id)


class TestNewLoggedRows:
    def test_counts_rows_logged_since_the_last_check(self, store, serve):
        assert new_logged_rows(store, PIPELINE) == 0 and last_drift_check(store, PIPELINE) == 0.0
        serve(make_churn(120, seed=11))
        serve(make_churn(80, seed=12))
        assert new_logged_rows(store, PIPELINE) == 200
        result = check(store, "monitor-1")
        assert last_drift_check(store, PIPELINE) == result["checked_until"]
        assert new_logged_rows(store, PIPELINE) == 0
        serve(make_churn(50, seed=13))
        assert new_logged_rows(store, PIPELINE) == 50


class TestDriftCheck:
    def test_a_retried_check_returns_its_recorded_result(self, store, serve):
        serve(make_churn(300, seed=21, drift=0.8))
        first = check(store, "monitor-1")
        assert first["drifted"]
        again = check(store, "monitor-1")
        assert again == first, "the retry neither re-checks nor flips the branch"
        assert [e["event_id"] for e in read_events(store, PIPELINE) if e["kind"] == "drift_check"] == ["drift-monitor-1"]

    def test_rows_like_the_training_data_do_not_drift(self, store, serve, built):
        serve(make_churn(300, seed=11))
        logged = read_log(store, PIPELINE, "predictions", 0.0)
        result = check(store, "scheduled__2026-01-02T00:00:00+00:00")
        assert result["drifted"] is False and result["drifted_columns"] == [] and result["rows"] == 300
        assert result["reason"] == "0/7 columns drifted (psi): none" and result["method"] == "psi"
        assert set(result["scores"]) == set(built.frame.columns) - {"customer_id", "churned"}
        assert max(result["scores"].values()) < DRIFT["column_threshold"]
        assert result["production_version"] == built.model["model_version"]
        assert result["checked_from"] == 0.0 and result["checked_until"] == logged["_ts"].max()
        prefix = f"reports/{PIPELINE}/scheduled__2026-01-02T00_00_00_00_00"
        assert result["report_uri"] == store.uri(f"{prefix}/drift.html")
        assert store.read_json(f"{prefix}/drift.json") == result
        assert not store.exists(f"{prefix}/drift.html"), "the report is rendered off the decision's path"
        report = drift_report(store, PIPELINE, run_id="scheduled__2026-01-02T00:00:00+00:00")
        assert report == {"report_uri": result["report_uri"], "rows": 300, "cached": False}
        html = store.read_text(f"{prefix}/drift.html")
        assert "Data Drift" in html and all(col in html for col in result["scores"]), "evidently's report over every column"

    @pytest.mark.parametrize("method", [pytest.param("psi", id="psi"), pytest.param("ks", id="ks")])
    def test_shifted_rows_drift_and_name_their_columns(self, store, serve, method):
        serve(make_churn(300, seed=12, drift=0.8))
        result = check(store, "monitor-1", method=method)
        assert result["drifted"] is True and result["share"] > DRIFT["share_threshold"]
        assert {"monthly_charges", "tenure_months"} <= set(result["drifted_columns"])
        assert "payment_method" not in result["drifted_columns"], "payment methods are not shifted"
        assert result["drifted_columns"] == sorted(result["drifted_columns"], key=lambda c: -result["scores"][c])
        assert f"columns drifted ({method}): " in result["reason"] and "monthly_charges=" in result["reason"]
        [event] = [e for e in read_events(store, PIPELINE) if e["kind"] == "drift_check"]
        assert event["event_id"] == "drift-monitor-1" and event["drifted"] is True and event["rows"] == 300
        assert event["checked_until"] == result["checked_until"] and event["report_uri"] == result["report_uri"]
        assert event["scores"] == result["scores"]
        drift_report(store, PIPELINE, run_id="monitor-1")
        html = store.read_text(f"reports/{PIPELINE}/monitor-1/drift.html")
        assert f"{method.upper()} vs the reference profile" in html, "the report tests each column with the verdict's method"
        score = result["scores"]["monthly_charges"]
        assert any(f"{score:.{d}f}" in html for d in (3, 4)), "and shows the verdict's own score"
        assert store.exists(f"reports/{PIPELINE}/monitor-1/drift.json")
        assert new_logged_rows(store, PIPELINE) == 0

    def test_each_check_sees_only_the_rows_logged_after_the_last(self, store, serve):
        serve(make_churn(300, seed=11))
        first = check(store, "monitor-1")
        serve(make_churn(300, seed=12, drift=0.8))
        second = check(store, "monitor-2")
        assert first["drifted"] is False and second["drifted"] is True
        assert second["rows"] == 300 and second["checked_from"] == first["checked_until"] < second["checked_until"]
        assert [e["event_id"] for e in read_events(store, PIPELINE) if e["kind"] == "drift_check"] == [
            "drift-monitor-1",
            "drift-monitor-2",
        ]

    def test_the_report_reads_only_the_rows_its_check_read_and_renders_once(self, store, serve):
        serve(make_churn(300, seed=11))
        check(store, "monitor-1")
        serve(make_churn(200, seed=12, drift=0.8))  # logged after the check: the next check's rows
        assert drift_report(store, PIPELINE, run_id="monitor-1")["rows"] == 300
        before = store.local_path(f"reports/{PIPELINE}/monitor-1/drift.html").stat().st_mtime_ns
        assert drift_report(store, PIPELINE, run_id="monitor-1")["cached"] is True
        assert store.local_path(f"reports/{PIPELINE}/monitor-1/drift.html").stat().st_mtime_ns == before

    def test_a_report_needs_its_check(self, store):
        with pytest.raises(ArtifactNotFound, match=r"drift\.json"):
            drift_report(store, PIPELINE, run_id="monitor-9")

    def test_request_quality_is_reported_beside_the_verdict_even_without_drift(self, store, serve, built):
        from airflow_mlops.config.data import ValidationConfig
        from airflow_mlops.stages.data import validate

        quality = ValidationConfig().model_dump()
        validate(store, PIPELINE, built.dataset["dataset_id"], COLUMNS, quality, run_id="train")  # the accepted schema
        rows = make_churn(300, seed=11)
        rows.loc[rows.index % 2 == 0, "data_usage_gb"] = None  # half the requests stop sending usage
        serve(rows)
        result = check(store, "monitor-q", quality=quality)
        assert result["drifted"] is False
        assert [(a["column"], a["kind"]) for a in result["data_quality"]] == [("data_usage_gb", "null_ratio")]
        assert "data quality: 1 issue(s) in requests (data_usage_gb: null_ratio)" in result["reason"]
        html = store.read_text(f"reports/{PIPELINE}/monitor-q/traffic_quality.html")
        assert "data_usage_gb" in html and "null_ratio" in html
        [event] = [e for e in read_events(store, PIPELINE) if e["kind"] == "drift_check"]
        assert event["data_quality"] == result["data_quality"]

    def test_clean_requests_have_no_quality_issues(self, store, serve, built):
        from airflow_mlops.config.data import ValidationConfig
        from airflow_mlops.stages.data import validate

        quality = ValidationConfig().model_dump()
        validate(store, PIPELINE, built.dataset["dataset_id"], COLUMNS, quality, run_id="train")
        serve(make_churn(300, seed=11))
        assert check(store, "monitor-q", quality=quality)["data_quality"] == []

    def test_thresholds_decide(self, store, serve):
        serve(make_churn(300, seed=12, drift=0.8))
        result = check(store, "monitor-1", column_threshold=1.0, share_threshold=1.0)
        assert result["drifted"] is False and result["drifted_columns"] == [] and result["rows"] == 300

    def test_needs_a_production_model(self, built, tmp_path):
        store = copy_store(built, tmp_path)
        with pytest.raises(ArtifactNotFound, match="churn has no production model"):
            check(store, "monitor-1")


class TestDriftCheckMemory:
    """The check reads the log one file at a time, only the profiled columns, into counts merged per file."""

    def test_each_log_file_is_read_once_with_only_the_profiled_columns(self, store, serve, built, monkeypatch):
        from airflow_mlops.config.data import ValidationConfig
        from airflow_mlops.ml import drift
        from airflow_mlops.ml.validation import Thresholds, check_traffic
        from airflow_mlops.serving import predlog_reader
        from airflow_mlops.stages.data import validate
        from airflow_mlops.store.layout import model_prefix, schema_key

        quality = ValidationConfig().model_dump()
        validate(store, PIPELINE, built.dataset["dataset_id"], COLUMNS, quality, run_id="train")
        batches = [make_churn(250, seed=31, drift=0.8), make_churn(120, seed=32), make_churn(310, seed=33, drift=0.4)]
        batches[1].loc[batches[1].index % 2 == 0, "data_usage_gb"] = None
        for rows in batches:
            serve(rows)
        whole = read_log(store, PIPELINE, "predictions", 0.0)
        reads, added = [], []
        real_read, real_add = predlog_reader.read_file, drift.DriftCounts.add

        def read_file(store_, key, columns=None):
            reads.append((key, columns))
            return real_read(store_, key, columns)

        def add(self, frame):
            added.append(len(frame))
            return real_add(self, frame)

        monkeypatch.setattr(predlog_reader, "read_file", read_file)
        monkeypatch.setattr(drift.DriftCounts, "add", add)
        result = check(store, "monitor-m", quality=quality)

        profile = store.read_json(f"{model_prefix(PIPELINE, built.model['model_version'])}/profile.json")
        assert len(reads) == len(batches) == len({k for k, _ in reads})
        assert all(columns == ["_ts", *profile["numeric"], *profile["categorical"], "_version", "_error"] for _, columns in reads)
        assert sorted(added) == sorted(len(b) for b in batches)  # one file's rows at a time, never all of them
        thresholds = {k: DRIFT[k] for k in ("column_threshold", "share_threshold")}
        expected = drift.detect_drift(whole, profile, method=DRIFT["method"], **thresholds)
        assert result["scores"] == expected.scores and result["drifted_columns"] == expected.drifted_columns
        assert result["rows"] == len(whole) and result["checked_until"] == whole["_ts"].max()
        traffic = check_traffic(whole, store.read_json(schema_key(PIPELINE)), Thresholds(**quality))
        assert [(a["column"], a["kind"], a["message"]) for a in result["data_quality"]] == [
            (a.column, a.kind, a.message) for a in traffic.anomalies
        ]

    def test_attribution_drift_names_the_features_whose_share_of_importance_moved(self, store, serve, built):
        calm = make_churn(400, seed=51)
        serve(calm)
        first = check(store, "monitor-a1")["attribution_drift"]
        reference = store.read_json(f"models/{PIPELINE}/{built.model['model_version']}/metrics.json")["importance"]["shares"]
        assert first["rows"] == 400 and {f: v["reference"] for f, v in first["features"].items()} == reference
        assert sum(v["live"] for v in first["features"].values()) == pytest.approx(1.0)
        shifted = make_churn(400, seed=52).assign(tenure_months=24.0)  # the strongest feature stops telling rows apart
        serve(shifted)
        second = check(store, "monitor-a2")
        moved = second["attribution_drift"]
        assert moved["shifted"] == ["tenure_months", "contract"], moved["features"]  # its share went to contract
        assert moved["features"]["tenure_months"]["change"] < -0.1 < 0.1 < moved["features"]["contract"]["change"]
        assert "feature attributions shifted (tenure_months: share 0.41 -> 0.26" in second["reason"]

    def test_the_report_samples_the_rows_while_reading_file_by_file(self, store, serve, monkeypatch):
        from airflow_mlops.stages import monitoring

        for seed in (41, 42, 43):
            serve(make_churn(200, seed=seed))
        check(store, "monitor-r")
        monkeypatch.setattr(monitoring, "REPORT_SAMPLE_ROWS", 150)
        seen = []
        real = monitoring._drift_html

        def drift_html(store_, pipeline, production, current, result, **kwargs):
            seen.append(len(current))
            return real(store_, pipeline, production, current, result, **kwargs)

        monkeypatch.setattr(monitoring, "_drift_html", drift_html)
        assert drift_report(store, PIPELINE, run_id="monitor-r")["rows"] == 600
        assert seen == [150]
