import json
import re

import numpy as np
import pytest
from churn_setup import COLUMNS, PIPELINE, stamps

from airflow_mlops.config.data import ValidationConfig
from airflow_mlops.exceptions import ArtifactNotFound, DataValidationError
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages.data import Columns, acquire, validate
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import load_dataset

THRESHOLDS = ValidationConfig().model_dump()


@pytest.fixture
def store(tmp_path):
    return ArtifactStore.from_uri(str(tmp_path / "store"))


@pytest.fixture(scope="module")
def frame():
    return make_churn(300, seed=5)


def write_csv(frame, path):
    frame.to_csv(path, index=False)
    return str(path)


class TestAcquire:
    def test_stores_a_content_addressed_snapshot(self, store, frame, tmp_path):
        result = acquire(store, PIPELINE, write_csv(frame, tmp_path / "churn.csv"))
        dataset_id = result["dataset_id"]
        assert re.fullmatch("[0-9a-f]{64}", dataset_id), "a sha256 hex digest"
        assert result["rows"] == 300 and result["created"] is True
        assert result["source"] == str(tmp_path / "churn.csv")
        assert result["dataset_uri"] == store.uri(f"datasets/{PIPELINE}/{dataset_id}")
        manifest = store.read_json(f"datasets/{PIPELINE}/{dataset_id}/manifest.json")
        assert manifest["rows"] == 300 and manifest["hash"]["value"] == dataset_id
        assert manifest["files"] == [str(tmp_path / "churn.csv")]
        stored = load_dataset(store, PIPELINE, dataset_id)
        assert list(stored.columns) == sorted(frame.columns), "columns in name order"
        assert stored["customer_id"].tolist() == frame["customer_id"].tolist()
        np.testing.assert_allclose(stored["monthly_charges"], frame["monthly_charges"])

    def test_same_content_again_writes_nothing(self, store, frame, tmp_path):
        first = acquire(store, PIPELINE, write_csv(frame, tmp_path / "churn.csv"))
        before = stamps(store)
        again = acquire(store, PIPELINE, write_csv(frame, tmp_path / "copy.csv"))
        assert again["created"] is False and again["dataset_id"] == first["dataset_id"]
        assert stamps(store) == before, "no file written or rewritten"

    def test_same_rows_as_parquet_or_split_across_files_give_the_same_id(self, store, frame, tmp_path):
        first = acquire(store, PIPELINE, write_csv(frame, tmp_path / "churn.csv"))["dataset_id"]
        frame.to_parquet(tmp_path / "churn.parquet", index=False)
        assert acquire(store, PIPELINE, str(tmp_path / "churn.parquet"))["dataset_id"] == first
        (tmp_path / "parts").mkdir()
        write_csv(frame.iloc[:100], tmp_path / "parts" / "a.csv")
        write_csv(frame.iloc[100:], tmp_path / "parts" / "b.csv")
        split = acquire(store, PIPELINE, str(tmp_path / "parts" / "*.csv"))
        assert split["dataset_id"] == first and split["rows"] == 300 and split["created"] is False

    def test_other_content_other_id(self, store, frame, tmp_path):
        first = acquire(store, PIPELINE, write_csv(frame, tmp_path / "churn.csv"))
        changed = frame.copy()
        changed.loc[0, "monthly_charges"] += 0.01
        second = acquire(store, PIPELINE, write_csv(changed, tmp_path / "changed.csv"))
        assert second["created"] is True and second["dataset_id"] != first["dataset_id"]
        assert len(store.list(f"datasets/{PIPELINE}")) == 4, "two snapshots: data.parquet and manifest.json each"

    def test_missing_source(self, store, tmp_path):
        with pytest.raises(ArtifactNotFound, match="matched no file"):
            acquire(store, PIPELINE, str(tmp_path / "nothing-*.csv"))


def corrupt_type(frame):
    frame = frame.copy()
    frame["tenure_months"] = "long"
    return frame


def corrupt_category(frame):
    frame = frame.copy()
    frame.loc[: len(frame) // 2, "region"] = "mars"
    return frame


def corrupt_missing(frame):
    return frame.drop(columns=["contract"])


def corrupt_nulls(frame):
    frame = frame.copy()
    frame.loc[: len(frame) // 4, "monthly_charges"] = np.nan
    return frame


def corrupt_range(frame):
    frame = frame.copy()
    frame.loc[: len(frame) // 10, "monthly_charges"] = 10_000.0
    return frame


class TestValidate:
    @pytest.fixture
    def accepted(self, store, frame, tmp_path):
        """The store with the schema inferred from ``frame``; returns the first validation's result."""
        dataset_id = acquire(store, PIPELINE, write_csv(frame, tmp_path / "churn.csv"))["dataset_id"]
        return {**validate(store, PIPELINE, dataset_id, COLUMNS, THRESHOLDS, run_id="first"), "dataset_id": dataset_id}

    def check(self, store, frame, tmp_path, *, run_id="second", thresholds=THRESHOLDS, columns=COLUMNS):
        dataset_id = acquire(store, PIPELINE, write_csv(frame, tmp_path / f"{run_id}.csv"))["dataset_id"]
        return validate(store, PIPELINE, dataset_id, columns, thresholds, run_id=run_id)

    def test_first_run_infers_and_stores_the_schema(self, store, accepted, frame):
        assert accepted["schema_created"] is True and accepted["anomalies"] == 0
        schema = store.read_json(f"schemas/{PIPELINE}/schema.json")
        assert accepted["schema_uri"] == store.uri(f"schemas/{PIPELINE}/schema.json")
        assert schema["label"] == "churned" and schema["rows"] == 300
        assert schema["inferred_from"] == accepted["dataset_id"]
        assert schema["columns"]["tenure_months"]["role"] == "numeric"
        assert schema["columns"]["monthly_charges"]["max"] == frame["monthly_charges"].max()
        assert schema["columns"]["region"]["domain"] == sorted(frame["region"].unique())
        assert schema["columns"]["customer_id"]["role"] == "passthrough"
        report = store.read_json(f"reports/{PIPELINE}/first/validation.json")
        assert report["anomalies"] == [] and report["rows"] == 300
        assert "PASSED" in store.read_text(f"reports/{PIPELINE}/first/validation.html")

    def test_good_data_passes_against_the_stored_schema(self, store, accepted, tmp_path):
        schema = store.read_bytes(f"schemas/{PIPELINE}/schema.json")
        result = self.check(store, make_churn(300, seed=6), tmp_path)
        assert result["schema_created"] is False and result["anomalies"] == 0
        assert store.read_bytes(f"schemas/{PIPELINE}/schema.json") == schema, "the accepted schema is kept"

    @pytest.mark.parametrize(
        ("corrupt", "column", "kind"),
        [
            pytest.param(corrupt_type, "tenure_months", "type_change", id="new-type"),
            pytest.param(corrupt_category, "region", "unseen_categories", id="unseen-categories"),
            pytest.param(corrupt_missing, "contract", "missing_column", id="missing-column"),
            pytest.param(corrupt_nulls, "monthly_charges", "null_ratio", id="null-ratio"),
            pytest.param(corrupt_range, "monthly_charges", "out_of_range", id="out-of-range"),
            pytest.param(lambda f: f.iloc[:20], "*", "empty_data", id="too-few-rows"),
        ],
    )
    def test_corrupted_data_raises_naming_the_report(self, store, accepted, frame, tmp_path, corrupt, column, kind):
        with pytest.raises(DataValidationError) as raised:
            self.check(store, corrupt(frame), tmp_path, run_id="manual__2026-01-02T00:00:00+00:00")
        prefix = f"reports/{PIPELINE}/manual__2026-01-02T00_00_00_00_00"
        assert raised.value.report_uri == store.uri(f"{prefix}/validation.html")
        assert f"Report: {raised.value.report_uri}" in str(raised.value)
        assert f"{column}: {kind}" in str(raised.value)
        report = store.read_json(f"{prefix}/validation.json")
        assert {"column": column, "kind": kind} in [{"column": a["column"], "kind": a["kind"]} for a in report["anomalies"]]
        assert "FAILED" in store.read_text(f"{prefix}/validation.html")

    def test_min_rows_comes_from_the_thresholds(self, store, accepted, tmp_path):
        good = make_churn(300, seed=6)
        with pytest.raises(DataValidationError, match=r"300 rows; at least 1000 required"):
            self.check(store, good, tmp_path, thresholds={**THRESHOLDS, "min_rows": 1000})

    def test_configured_column_missing_from_the_schema(self, store, frame, tmp_path):
        columns = Columns(COLUMNS.label, COLUMNS.task, [*COLUMNS.numeric, "age"], COLUMNS.categorical)
        with pytest.raises(DataValidationError, match="age: missing_column: configured column is not in the accepted schema"):
            self.check(store, frame, tmp_path, run_id="first", columns=columns)
        assert "age" not in store.read_json(f"schemas/{PIPELINE}/schema.json")["columns"]
        anomalies = json.loads(store.read_text(f"reports/{PIPELINE}/first/validation.json"))["anomalies"]
        assert [a["column"] for a in anomalies] == ["age"]

    def test_a_retrain_for_a_performance_drop_warns_of_the_label_relation_it_came_to_learn(self, store, tmp_path):
        """Concept drift (month-to-month customers churn the other way now): the lost label correlations stop a run,
        but not one told the relation moved (the retrain a performance drop requested); other checks still apply."""
        self.check(store, make_churn(1500, seed=5), tmp_path, run_id="first")
        drifted = make_churn(1500, seed=6)
        drifted["churned"] = drifted["churned"].where(drifted["contract"] != "month-to-month", 1 - drifted["churned"])
        with pytest.raises(DataValidationError, match="tenure_months: label_association"):
            self.check(store, drifted, tmp_path, run_id="scheduled")
        dataset_id = acquire(store, PIPELINE, write_csv(drifted, tmp_path / "retrain.csv"))["dataset_id"]
        why = "retrain request retrain-x found a performance drop (concept drift)"
        result = validate(store, PIPELINE, dataset_id, COLUMNS, THRESHOLDS, run_id="retrain", label_change=why)
        assert result["anomalies"] == 0
        report = store.read_json(f"reports/{PIPELINE}/retrain/validation.json")
        assert "tenure_months" in {w["column"] for w in report["warnings"] if w["kind"] == "label_association"}
        assert f"label_association reported as a warning: {why}" in report["notes"]
        schema = store.read_json(f"schemas/{PIPELINE}/schema.json")
        assert (schema["number"], schema["accepted"]["by"], schema["accepted"]["why"]) == (2, "retrain", why)
        assert result["schema_accepted"]["number"] == 2
        later = make_churn(1500, seed=7)  # the next scheduled run, in the new world: judged by the new relation
        later["churned"] = later["churned"].where(later["contract"] != "month-to-month", 1 - later["churned"])
        assert self.check(store, later, tmp_path, run_id="later")["anomalies"] == 0
        again = validate(store, PIPELINE, dataset_id, COLUMNS, THRESHOLDS, run_id="retrain", label_change=why)
        assert "schema_accepted" not in again and store.read_json(f"schemas/{PIPELINE}/schema.json")["number"] == 2, "a retry"
        broken = acquire(store, PIPELINE, write_csv(corrupt_range(drifted), tmp_path / "bad.csv"))["dataset_id"]
        with pytest.raises(DataValidationError, match="monthly_charges: out_of_range"):
            validate(store, PIPELINE, broken, COLUMNS, THRESHOLDS, run_id="bad", label_change=why)


class TestVolumeHistory:
    """The volume check fails a run only against a real history (issue 21: the retrain blocked by a default)."""

    def accept(self, store, tmp_path, frame, run_id, thresholds=THRESHOLDS):
        dataset_id = acquire(store, PIPELINE, write_csv(frame, tmp_path / f"{run_id}.csv"))["dataset_id"]
        return validate(store, PIPELINE, dataset_id, COLUMNS, thresholds, run_id=run_id) | {"dataset_id": dataset_id}

    def report(self, store, run_id):
        return store.read_json(f"reports/{PIPELINE}/{run_id}/validation.json")

    def test_a_recent_export_after_one_history_export_passes_with_the_defaults(self, store, tmp_path):
        """The user's case: the first training on a 50,000-row history export, the retrain the drift monitor asked
        for on a 20,000-row recent export (0.40x); validation stopped it, so the loop could not retrain."""
        first = self.accept(store, tmp_path, make_churn(50_000, seed=11), "history")
        assert (
            "volume_change not applied: 50000 rows, and no earlier accepted dataset" in self.report(store, "history")["notes"][0]
        )
        retrain = self.accept(store, tmp_path, make_churn(20_000, seed=12), "retrain")
        assert retrain["anomalies"] == 0
        report = self.report(store, "retrain")
        assert report["notes"] == [
            "volume_change not applied: 20000 rows, and only 1 earlier accepted dataset (50000 rows) to compare with; "
            "the check needs validation.min_volume_history (3) of them"
        ]
        assert report["volume"] == {
            "rows": 20000,
            "history_rows": [50000],
            "min_history": 3,
            "allowed": [0.5, 5.0],
            "applied": False,
        }
        assert "volume_change not applied: 20000 rows" in store.read_text(f"reports/{PIPELINE}/retrain/validation.html")
        history = store.read_json(f"schemas/{PIPELINE}/volume.json")
        assert history == [
            {"dataset_id": first["dataset_id"], "rows": 50000},
            {"dataset_id": retrain["dataset_id"], "rows": 20000},
        ], "the accepted retrain joins the history the check will use"

    def test_repeated_recent_exports_become_the_usual_volume(self, store, tmp_path):
        self.accept(store, tmp_path, make_churn(5000, seed=21), "history")
        for seed in (22, 23):
            assert self.accept(store, tmp_path, make_churn(2000, seed=seed), f"recent-{seed}")["anomalies"] == 0
        assert self.accept(store, tmp_path, make_churn(2100, seed=24), "judged")["anomalies"] == 0
        assert self.report(store, "judged")["notes"] == [
            "volume_change passed: 2100 rows is 1.05x the median of the last 3 accepted datasets (2000; their rows: "
            "5000, 2000, 2000); allowed [0.5, 5]x"
        ]

    def test_after_three_similar_datasets_a_0_4x_dataset_is_still_an_anomaly(self, store, tmp_path):
        for run_id, rows in (("a", 1000), ("b", 1050), ("c", 980)):
            self.accept(store, tmp_path, make_churn(rows, seed=rows), run_id)
        with pytest.raises(DataValidationError) as raised:
            self.accept(store, tmp_path, make_churn(400, seed=31), "small")
        message = (
            "400 rows is 0.40x the median of the last 3 accepted datasets (1000; their rows: 1000, 1050, 980); allowed [0.5, 5]x"
        )
        assert f"*: volume_change: {message}" in str(raised.value)
        report = self.report(store, "small")
        assert report["anomalies"] == [{"column": "*", "kind": "volume_change", "message": message}]
        assert report["volume"]["applied"] is True and report["volume"]["ratio"] == pytest.approx(0.4)
        assert [h["rows"] for h in store.read_json(f"schemas/{PIPELINE}/volume.json")] == [1000, 1050, 980]

    def test_min_volume_history_1_judges_the_second_dataset_by_the_first(self, store, tmp_path):
        """The rule from before the setting, for a user who asks for it."""
        strict = {**THRESHOLDS, "min_volume_history": 1}
        self.accept(store, tmp_path, make_churn(1000, seed=41), "history", strict)
        with pytest.raises(DataValidationError, match=r"400 rows is 0\.40x the median of the last 1 accepted datasets"):
            self.accept(store, tmp_path, make_churn(400, seed=42), "retrain", strict)

    def test_a_rerun_of_an_accepted_dataset_says_its_volume_was_judged_then(self, store, tmp_path):
        first = self.accept(store, tmp_path, make_churn(300, seed=51), "first")
        validate(store, PIPELINE, first["dataset_id"], COLUMNS, THRESHOLDS, run_id="again")
        report = self.report(store, "again")
        assert report["volume"] is None
        assert report["notes"] == [
            f"volume_change not applied: dataset {first['dataset_id'][:12]} was accepted before (its volume was judged then)"
        ]
