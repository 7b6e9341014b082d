import dataclasses

import numpy as np
import pytest
from churn_setup import COLUMNS, GATE, PIPELINE, built, store  # noqa: F401 (pytest fixtures)

from airflow_mlops.ml.transform import ROW_ID
from airflow_mlops.stages.evaluation import evaluate, register, score_raw
from airflow_mlops.stages.features import read_features
from airflow_mlops.stages.training import load_booster
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry


def evaluation(version: str, blessed: bool = True) -> dict:
    return {"model_version": version, "blessed": blessed, "metrics": {"roc_auc": 0.8}, "reason": "test"}


def run_evaluate(store, built, version, gate=GATE, run_id="run-1"):
    return evaluate(store, PIPELINE, version, built.features["features_id"], gate, run_id=run_id)


class TestRegister:
    def test_promotes_blessed_and_never_rolls_back_to_an_older_model(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        assert register(store, "p", evaluation("v1"), lineage={}, promote=True)["production"] == "v1"
        assert register(store, "p", evaluation("v2"), lineage={}, promote=True)["production"] == "v2"
        again = register(store, "p", evaluation("v1"), lineage={}, promote=True)
        assert again == {"model_version": "v1", "status": "blessed", "reason": again["reason"], "production": "v2", "revision": 4}
        assert ModelRegistry(store, "p").load()["revision"] == 4, "re-registering writes nothing"

    def test_rejected_never_promoted_and_card_written(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        result = register(store, "p", evaluation("v1", blessed=False), lineage={"dataset_id": "d"}, promote=True)
        assert result["status"] == "rejected" and result["production"] is None
        assert "REJECTED" in store.read_text("models/p/v1/card.html")
        assert store.read_json("models/p/v1/lineage.json")["dataset_id"] == "d"

    def test_without_promote_production_is_untouched(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        assert register(store, "p", evaluation("v1"), lineage={}, promote=False)["production"] is None


class TestScoreRaw:
    def test_raw_rows_through_the_models_transform_match_the_beam_features(self, built, store):
        features_id, version = built.features["features_id"], built.model["model_version"]
        raw = read_features(store, PIPELINE, features_id, "eval_raw")
        features = read_features(store, PIPELINE, features_id, "eval").set_index(ROW_ID).loc[raw[ROW_ID]]
        expected = load_booster(store, PIPELINE, version).predict(features[COLUMNS.features], num_threads=1)
        np.testing.assert_allclose(score_raw(store, PIPELINE, version, raw), expected, rtol=1e-12)


class TestEvaluate:
    def test_blesses_a_decent_model_and_writes_its_reports(self, built, store):
        version = built.model["model_version"]
        result = run_evaluate(store, built, version, run_id="manual__2026-01-02T00:00:00+00:00")
        assert result["blessed"] is True and result["model_version"] == version
        assert result["reason"].endswith("meets the minimum 0.6; no production model to beat")
        assert 0.6 < result["metrics"]["roc_auc"] <= 1.0 and result["metrics"]["rows"] == built.features["eval_rows"]
        assert set(result["metrics"]) == {"roc_auc", "log_loss", "accuracy", "rows"}
        assert result["production_version"] is None and result["production_metrics"] is None
        prefix = f"reports/{PIPELINE}/manual__2026-01-02T00_00_00_00_00"
        assert result["report_uri"] == store.uri(f"{prefix}/evaluation.html")
        assert "BLESSED" in store.read_text(f"{prefix}/evaluation.html")
        assert store.read_json(f"{prefix}/evaluation.json") == {k: v for k, v in result.items() if k != "report_uri"}
        metrics = store.read_json(f"models/{PIPELINE}/{version}/metrics.json")
        importance = result["importance"]
        assert metrics == {
            "eval_rows": built.features["eval_rows"],
            "metrics": result["metrics"],
            "slices": {},
            "importance": importance,
        }
        assert importance["rows"] == built.features["eval_rows"] and sum(importance["shares"].values()) == pytest.approx(1)
        assert (
            list(importance["mean_abs_contribution"])
            == store.read_json(f"models/{PIPELINE}/{version}/transform.json")["features"]
        )
        assert "Global importance" in store.read_text(f"{prefix}/evaluation.html")

    def test_global_importance_overall_and_per_slice_is_the_mean_absolute_contribution(self, built, store):
        from airflow_mlops.ml.explain import contributions
        from airflow_mlops.stages.evaluation import read_holdout

        version = built.model["model_version"]
        gate = dataclasses.replace(GATE, slices=["contract"])
        importance = run_evaluate(store, built, version, gate)["importance"]
        spec, features = read_holdout(store, PIPELINE, built.features["features_id"])
        found = contributions(load_booster(store, PIPELINE, version), features[spec["features"]].to_numpy(dtype=float))
        expected = np.abs(found[:, :-1]).mean(axis=0)
        np.testing.assert_allclose(list(importance["mean_abs_contribution"].values()), expected, rtol=1e-12)
        raw = read_features(store, PIPELINE, built.features["features_id"], "eval_raw").set_index(ROW_ID).loc[features[ROW_ID]]
        month = (raw["contract"].astype(str) == "month-to-month").to_numpy()
        by_contract = importance["slices"]["contract"]["month-to-month"]
        np.testing.assert_allclose(list(by_contract.values()), np.abs(found[month, :-1]).mean(axis=0), rtol=1e-12)

    @pytest.mark.parametrize(
        ("metric", "threshold", "reason"),
        [
            pytest.param("roc_auc", 0.999, "misses the minimum 0.999", id="roc_auc"),
            pytest.param("accuracy", 0.999, "misses the minimum 0.999", id="accuracy"),
            pytest.param("log_loss", 0.01, "misses the maximum 0.01", id="log_loss"),
        ],
    )
    def test_rejects_against_an_impossible_threshold(self, built, store, metric, threshold, reason):
        gate = dataclasses.replace(GATE, metric=metric, threshold=threshold)
        result = run_evaluate(store, built, built.model["model_version"], gate)
        assert result["blessed"] is False and result["metric"] == metric
        assert result["reason"] == f"{metric}={result['metrics'][metric]:.4f} {reason}"
        assert "REJECTED" in store.read_text(f"reports/{PIPELINE}/run-1/evaluation.html")

    def test_production_is_scored_on_the_same_rows(self, built, store):
        alone = run_evaluate(store, built, built.model["model_version"], run_id="run-0")
        register(store, PIPELINE, alone, lineage={"features_id": built.features["features_id"]}, promote=True)
        result = run_evaluate(store, built, built.challenger["model_version"])
        assert result["production_version"] == built.model["model_version"]
        # production is scored from the raw eval rows through its own transform: the same figures as its own evaluation
        assert result["production_metrics"] == pytest.approx(alone["metrics"], rel=1e-9)
        assert result["metrics"] != result["production_metrics"]
        better = result["metrics"]["roc_auc"] >= alone["metrics"]["roc_auc"]
        assert result["blessed"] is better and "vs production" in result["reason"]
        assert f"production {built.model['model_version']}" in store.read_text(f"reports/{PIPELINE}/run-1/evaluation.html")

    def test_must_beat_production_by_a_margin(self, built, store):
        register(store, PIPELINE, run_evaluate(store, built, built.model["model_version"]), lineage={}, promote=True)
        margin = dataclasses.replace(GATE, must_beat_production_by=0.5)
        result = run_evaluate(store, built, built.challenger["model_version"], margin)
        assert result["blessed"] is False and result["reason"].endswith("< required 0.5")
        assert register(store, PIPELINE, result, lineage={}, promote=True)["production"] == built.model["model_version"]

    def test_the_production_model_itself_has_nothing_to_beat(self, built, store):
        register(store, PIPELINE, run_evaluate(store, built, built.model["model_version"]), lineage={}, promote=True)
        again = run_evaluate(store, built, built.model["model_version"], run_id="run-2")
        assert again["production_version"] is None and again["production_metrics"] is None and again["blessed"] is True

    def test_slices_and_fairness_gap(self, built, store):
        gate = dataclasses.replace(GATE, slices=["contract", "region"], fairness_column="region", fairness_max_gap=0.0)
        result = run_evaluate(store, built, built.model["model_version"], gate)
        raw = read_features(store, PIPELINE, built.features["features_id"], "eval_raw")
        assert set(result["slices"]) == {"contract", "region"}
        assert set(result["slices"]["contract"]) == set(raw["contract"]) and set(result["slices"]["region"]) == set(raw["region"])
        region = result["slices"]["region"].values()
        assert result["fairness_gap"] == pytest.approx(max(region) - min(region)) and result["fairness_gap"] > 0
        assert result["blessed"] is False and "exceeds the fairness limit 0.0" in result["reason"]
        loose_gate = dataclasses.replace(gate, fairness_max_gap=1.0)
        loose = run_evaluate(store, built, built.model["model_version"], loose_gate, run_id="run-2")
        assert loose["blessed"] is True and loose["fairness_gap"] == result["fairness_gap"]

    def test_fairness_column_need_not_be_a_slice(self, built, store):
        gate = dataclasses.replace(GATE, fairness_column="payment_method", fairness_max_gap=1.0)
        result = run_evaluate(store, built, built.model["model_version"], gate)
        assert result["slices"] == {} and 0 < result["fairness_gap"] < 1

    def test_metrics_file_written_once(self, built, store):
        version = built.model["model_version"]
        run_evaluate(store, built, version, run_id="run-1")
        before = store.local_path(f"models/{PIPELINE}/{version}/metrics.json").stat().st_ino
        run_evaluate(store, built, version, dataclasses.replace(GATE, slices=["region"]), run_id="run-2")
        assert store.local_path(f"models/{PIPELINE}/{version}/metrics.json").stat().st_ino == before
        assert store.read_json(f"models/{PIPELINE}/{version}/metrics.json")["slices"] == {}
        assert store.exists(f"reports/{PIPELINE}/run-1/evaluation.json")
        assert store.exists(f"reports/{PIPELINE}/run-2/evaluation.json")
