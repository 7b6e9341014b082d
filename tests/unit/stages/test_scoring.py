"""Batch scoring over the store: the model resolved once, serving-mode validation, sharded idempotent output, the
prediction log sample, and scores equal to the model server's."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from churn_setup import COLUMNS, PIPELINE, built, production_store, versions  # noqa: F401 (pytest fixtures)

from airflow_mlops.config.data import ValidationConfig
from airflow_mlops.exceptions import DataValidationError, MlopsError
from airflow_mlops.ml.synthetic import FEATURES, make_churn
from airflow_mlops.stages import data, scoring
from airflow_mlops.stages.evaluation import score_raw
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry

THRESHOLDS = ValidationConfig().model_dump()


@pytest.fixture
def store(built, tmp_path):
    """The first model in production, and the accepted schema of the training data."""
    store = production_store(built, tmp_path)
    data.validate(store, PIPELINE, built.dataset["dataset_id"], COLUMNS, THRESHOLDS, run_id="train")
    return store


def unlabelled(tmp_path, rows: int = 900, seed: int = 11, **changes) -> tuple[str, pd.DataFrame]:
    """A scoring input: churn rows without the label, as parquet; ``changes`` replace whole columns."""
    frame = make_churn(rows, seed=seed).drop(columns=["churned"])
    for column, values in changes.items():
        frame[column] = values
    path = tmp_path / f"input-{seed}.parquet"
    frame.to_parquet(path, index=False)
    return str(path), frame


def acquired(store, path: str) -> str:
    return data.acquire(store, PIPELINE, path)["dataset_id"]


def read_parts(target_store, prefix: str) -> pd.DataFrame:
    keys = [k for k in target_store.list(prefix) if k.rsplit("/", 1)[-1].startswith("part-")]
    return pd.concat([pd.read_parquet(io.BytesIO(target_store.read_bytes(k))) for k in keys], ignore_index=True)


class TestResolveModel:
    def test_production_then_pinned_then_none(self, store, built, versions):
        production, _, challenger = versions
        assert scoring.resolve_model(store, PIPELINE)["model_version"] == production
        pinned = scoring.resolve_model(store, PIPELINE, challenger)
        assert (pinned["model_version"], pinned["model"]) == (challenger, challenger)
        with pytest.raises(MlopsError, match="not in the store"):
            scoring.resolve_model(store, PIPELINE, "0123456789ab")
        ModelRegistry(store, PIPELINE).set_alias("production", None)
        with pytest.raises(MlopsError, match="no production model"):
            scoring.resolve_model(store, PIPELINE)


class TestScore:
    def test_scores_ids_and_a_promotion_during_the_run_keeps_its_version(self, store, tmp_path, versions):
        production, _, challenger = versions
        path, frame = unlabelled(tmp_path)
        resolved = scoring.resolve_model(store, PIPELINE)["model_version"]
        registry = ModelRegistry(store, PIPELINE)
        registry.register(challenger, status="blessed", metrics={}, lineage={}, reason="a better one")
        registry.set_alias("production", challenger)  # promoted while the run goes on
        dataset_id = acquired(store, path)
        result = scoring.score(store, PIPELINE, dataset_id, resolved, batch_rows=1024)
        assert (result["model_version"], result["rows"], result["parts"]) == (production, 900, 1)
        out = read_parts(store, f"scores/{PIPELINE}/{result['scoring_id']}")
        assert list(out.columns) == ["customer_id", "score", "class", "model_version", "dataset_id"]
        assert out["customer_id"].tolist() == frame["customer_id"].tolist()
        assert set(out["model_version"]) == {production} and set(out["dataset_id"]) == {dataset_id}
        np.testing.assert_array_equal(out["score"].to_numpy(), score_raw(store, PIPELINE, production, frame))
        assert (out["class"] == (out["score"] >= 0.5)).all()
        assert not np.array_equal(out["score"].to_numpy(), score_raw(store, PIPELINE, challenger, frame))

    def test_equal_to_the_model_servers_scores_to_the_last_bit(self, store, tmp_path, versions):
        from airflow_mlops.serving.models import ServedModel

        nulls = [None if i % 7 == 0 else v for i, v in enumerate(make_churn(1100, seed=5)["monthly_charges"])]
        path, frame = unlabelled(tmp_path, rows=1100, seed=5, monthly_charges=nulls)
        result = scoring.score(store, PIPELINE, acquired(store, path), versions[0], batch_rows=1024)  # two batches
        out = read_parts(store, f"scores/{PIPELINE}/{result['scoring_id']}")
        rows = [{k: (None if pd.isna(v) else v) for k, v in r.items() if k in FEATURES} for r in frame.to_dict("records")]
        served = ServedModel.load(store, PIPELINE, versions[0]).predict(rows)
        assert out["score"].to_numpy().tobytes() == np.array(served, dtype=float).tobytes()

    def test_a_rerun_rewrites_the_same_parts_and_log_part_never_a_second_copy(self, store, tmp_path, versions):
        path, _ = unlabelled(tmp_path, rows=2500)
        dataset_id = acquired(store, path)
        args = {"batch_rows": 1024, "log_sample": 0.1, "log_max_rows": 200}
        first = scoring.score(store, PIPELINE, dataset_id, versions[0], **args)
        prefix = f"scores/{PIPELINE}/{first['scoring_id']}"
        before = {k: store.read_bytes(k) for k in store.list(prefix)}
        logged = [k for k in store.list(f"predictions/{PIPELINE}") if k.endswith(".parquet")]
        assert first["parts"] == 3 and first["logged_rows"] == 200 and logged == [first["log_key"]]
        log_bytes = store.read_bytes(first["log_key"])
        again = scoring.score(store, PIPELINE, dataset_id, versions[0], **args)
        assert again == first
        assert {k: store.read_bytes(k) for k in store.list(prefix)} == before
        assert [k for k in store.list(f"predictions/{PIPELINE}") if k.endswith(".parquet")] == logged
        assert store.read_bytes(first["log_key"]) == log_bytes
        sample = pd.read_parquet(io.BytesIO(log_bytes))
        assert set(sample["_version"]) == {versions[0]} and sample["_request"].str.startswith("batch-").all()
        assert sample["_id"].str.startswith("c0011-").all() and set(FEATURES) <= set(sample.columns)
        wider = scoring.score(store, PIPELINE, dataset_id, versions[0], batch_rows=4096)  # fewer shards: stale ones go
        assert wider["parts"] == 1 and [k.rsplit("/", 1)[-1] for k in store.list(prefix) if "part-" in k] == [
            "part-00000.parquet"
        ]

        record = scoring.publish(store, PIPELINE, wider, run_id="r1", input="x")
        assert record["parts"] == [f"{prefix}/part-00000.parquet"] and store.exists(f"{prefix}/_SUCCESS.json")
        scoring.publish(store, PIPELINE, wider, run_id="r1", input="x")
        assert [e["run_id"] for e in read_events(store, PIPELINE) if e["kind"] == "batch_scored"] == ["r1"]

    def test_a_destination_folder_gets_the_same_layout(self, store, tmp_path, versions):
        from airflow_mlops.store.artifacts import ArtifactStore

        path, _ = unlabelled(tmp_path)
        out = tmp_path / "out"
        result = scoring.score(store, PIPELINE, acquired(store, path), versions[0], output=str(out))
        scoring.publish(store, PIPELINE, result, run_id="r2", output=str(out))
        target = ArtifactStore.from_uri(str(out))
        assert result["output_uri"] == target.uri(result["scoring_id"])
        assert len(read_parts(target, result["scoring_id"])) == 900 and target.exists(f"{result['scoring_id']}/_SUCCESS.json")
        assert store.exists(f"scores/{PIPELINE}/{result['scoring_id']}/scoring.json")


class TestValidateInput:
    def bad_input(self, store, tmp_path) -> tuple[str, pd.DataFrame]:
        frame = make_churn(900, seed=11)
        contract = frame["contract"].where(frame.index % 10 != 0, "lifetime")  # 10% unseen
        tenure = frame["tenure_months"].where(frame.index % 20 != 1, 10_000.0)  # 5% out of range
        path, frame = unlabelled(tmp_path, contract=contract, tenure_months=tenure)
        return acquired(store, path), frame

    def test_fail_stops_with_a_report(self, store, tmp_path):
        dataset_id, _ = self.bad_input(store, tmp_path)
        with pytest.raises(DataValidationError, match="unseen_categories") as err:
            scoring.validate_input(store, PIPELINE, dataset_id, THRESHOLDS, run_id="s1")
        assert err.value.report_uri.endswith("reports/churn/s1/scoring_validation.html")
        report = store.read_json("reports/churn/s1/scoring_validation.json")
        assert {a["kind"] for a in report["anomalies"]} == {"unseen_categories", "out_of_range"}

    def test_skip_rows_scores_only_the_clean_rows(self, store, tmp_path, versions):
        dataset_id, frame = self.bad_input(store, tmp_path)
        checked = scoring.validate_input(store, PIPELINE, dataset_id, THRESHOLDS, on_anomaly="skip_rows", run_id="s2")
        tenure = store.read_json(f"schemas/{PIPELINE}/schema.json")["columns"]["tenure_months"]
        bad = (frame.index % 10 == 0) | ~frame["tenure_months"].between(tenure["min"], tenure["max"])  # ours and a few more
        assert bad.sum() > 90 + 45
        assert checked["skip"] == {"tenure_months": ["out_of_range"], "contract": ["unseen_categories"]}
        assert (checked["anomalies"], checked["skipped_rows"]) == (2, int(bad.sum()))
        report = store.read_json("reports/churn/s2/scoring_validation.json")
        assert report["anomalies"] == [] and len(report["warnings"]) == 2 and "left out" in " ".join(report["notes"])
        result = scoring.score(store, PIPELINE, dataset_id, versions[0], skip=checked["skip"])
        out = read_parts(store, f"scores/{PIPELINE}/{result['scoring_id']}")
        assert result["skipped_rows"] == int(bad.sum()) and out["customer_id"].tolist() == frame.loc[~bad, "customer_id"].tolist()

    def test_warn_scores_every_row_and_a_missing_column_fails_even_with_skip_rows(self, store, tmp_path):
        dataset_id, _ = self.bad_input(store, tmp_path)
        warned = scoring.validate_input(store, PIPELINE, dataset_id, THRESHOLDS, on_anomaly="warn", run_id="s3")
        assert (warned["anomalies"], warned["skip"]) == (2, {})
        path, _ = unlabelled(tmp_path, seed=12)
        frame = pd.read_parquet(path).drop(columns=["region"])
        frame.to_parquet(path)
        with pytest.raises(DataValidationError, match="region: missing_column"):
            scoring.validate_input(store, PIPELINE, acquired(store, path), THRESHOLDS, on_anomaly="skip_rows", run_id="s4")

    def test_batches_report_what_the_whole_input_reports(self, store, tmp_path):
        """Validation streams the input in batches: any batch size gives the report of the whole at once, and
        skip_rows counts the rows the score stage leaves out."""
        from airflow_mlops.ml.validation import Thresholds, check_traffic

        dataset_id, _ = self.bad_input(store, tmp_path)
        schema = store.read_json(f"schemas/{PIPELINE}/schema.json")
        whole = check_traffic(pd.read_parquet(data_file(store, dataset_id)), schema, Thresholds(**THRESHOLDS)).to_dict()
        reports = []
        for i, rows in enumerate((7, 128, 100_000)):
            checked = scoring.validate_input(
                store, PIPELINE, dataset_id, THRESHOLDS, on_anomaly="skip_rows", run_id=f"b{i}", batch_rows=rows
            )
            reports.append((checked["skipped_rows"], store.read_json(f"reports/churn/b{i}/scoring_validation.json")))
        assert all(r == reports[0] for r in reports)
        report = reports[0][1]
        assert report["columns"] == whole["columns"] and report["warnings"] == whole["anomalies"]


def data_file(store, dataset_id: str):
    return store.local_path(f"datasets/{PIPELINE}/{dataset_id}/data.parquet")


class TestBeamEngine:
    def test_beam_writes_the_parts_and_log_sample_of_the_local_engine_to_the_bit(self, store, tmp_path, versions):
        """``engine: beam`` scores the snapshot's row groups with the same batch function on the DirectRunner: the
        same parts, counts and prediction-log part as in the task's process, rows left out included."""
        frame = make_churn(140_000, seed=21).drop(columns=["churned"])  # two row groups
        frame.loc[frame.index % 97 == 0, "contract"] = "lifetime"
        path = tmp_path / "big.parquet"
        frame.to_parquet(path, index=False)
        dataset_id = acquired(store, str(path))
        skip = {"contract": ["unseen_categories"]}
        args = {"skip": skip, "log_sample": 0.01, "log_max_rows": 1000}
        local = scoring.score(store, PIPELINE, dataset_id, versions[0], **args)
        prefix = f"scores/{PIPELINE}/{local['scoring_id']}"
        parts = {k: store.read_bytes(k) for k in store.list(prefix) if "part-" in k.rsplit("/", 1)[-1]}
        logged = store.read_bytes(local["log_key"])
        assert local["parts"] == 2 and local["skipped_rows"] == int((frame.index % 97 == 0).sum())
        assert local["logged_rows"] == 1000
        for key in parts:
            store.delete(key)
        beam = scoring.score(store, PIPELINE, dataset_id, versions[0], engine="beam", runner="DirectRunner", **args)
        assert beam == local
        assert {k: store.read_bytes(k) for k in store.list(prefix) if "part-" in k.rsplit("/", 1)[-1]} == parts
        assert store.read_bytes(local["log_key"]) == logged

    def test_beam_needs_the_snapshots_row_groups_as_batches(self, store, tmp_path, versions):
        path, _ = unlabelled(tmp_path)
        with pytest.raises(MlopsError, match="batch_rows must be 131072"):
            scoring.score(store, PIPELINE, acquired(store, path), versions[0], engine="beam", batch_rows=1024)


class TestExplanations:
    def test_batch_contributions_are_the_servers_and_sum_to_the_raw_score(self, store, tmp_path, versions):
        from airflow_mlops.serving.models import ServedModel

        nulls = [None if i % 5 == 0 else v for i, v in enumerate(make_churn(300, seed=8)["monthly_charges"])]
        path, frame = unlabelled(tmp_path, rows=300, seed=8, monthly_charges=nulls)
        result = scoring.score(store, PIPELINE, acquired(store, path), versions[0], explain=True)
        out = read_parts(store, f"scores/{PIPELINE}/{result['scoring_id']}")
        served = ServedModel.load(store, PIPELINE, versions[0])
        rows = [{k: (None if pd.isna(v) else v) for k, v in r.items() if k in FEATURES} for r in frame.to_dict("records")]
        expected = served.explain(rows)
        columns = [f"contribution_{name}" for name in served.features]
        assert [c for c in out.columns if c.startswith("contribution_")] == columns and "expected_value" in out
        got = out[[*columns, "expected_value"]].to_numpy()
        want = np.array([[*e["contributions"].values(), e["expected_value"]] for e in expected])
        assert got.tobytes() == want.tobytes(), "to the last bit, as /predict's explain: true gives them"
        margin = got.sum(axis=1)
        np.testing.assert_allclose(1 / (1 + np.exp(-margin)), out["score"].to_numpy(), rtol=1e-9)
        plain = scoring.score(store, PIPELINE, acquired(store, path), versions[0])
        assert not any(c.startswith("contribution_") for c in read_parts(store, f"scores/{PIPELINE}/{plain['scoring_id']}"))
