"""Choosing the best tuning trial, on real models trained on the churn pipeline's features."""

import pytest
from churn_setup import CANDIDATE, CHALLENGER, GATE, MODEL, PIPELINE, built, store  # noqa: F401 (pytest fixtures)

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.evaluate import compute_metrics
from airflow_mlops.stages.evaluation import evaluate, register, score_raw
from airflow_mlops.stages.features import read_features
from airflow_mlops.stages.tuning import select_trial
from airflow_mlops.store.layout import report_prefix, tuning_key

PARAMS = [MODEL.params, CHALLENGER.params, CANDIDATE.params]


def trials_of(built):
    return [built.model, built.challenger, built.candidate]


def holdout_metrics_by_raw_rows(store, built, version) -> dict[str, float]:
    """A model's metrics on the eval rows through the batch path from raw rows: an independent check of the stage."""
    raw = read_features(store, PIPELINE, built.features["features_id"], "eval_raw")
    return compute_metrics("classification", raw["churned"].to_numpy(), score_raw(store, PIPELINE, version, raw))


class TestSelectTrial:
    @pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "accuracy"])
    def test_the_best_by_the_metric_is_chosen_and_every_trial_recorded(self, store, built, metric):
        trials = trials_of(built)
        result = select_trial(store, PIPELINE, built.features["features_id"], trials, PARAMS, metric, run_id="run-1")

        expected = [holdout_metrics_by_raw_rows(store, built, t["model_version"]) for t in trials]
        values = [m[metric] for m in expected]
        best = values.index(max(values) if metric != "log_loss" else min(values))
        assert result["trial"] == best and result["model_version"] == trials[best]["model_version"]
        assert {k: result[k] for k in trials[best]} == trials[best], "the chosen training result, as a training task gives it"
        assert result["params"] == PARAMS[best]

        doc = store.read_json(tuning_key(PIPELINE, "run-1"))
        assert doc == result["tuning"] and result["tuning_uri"] == store.uri(tuning_key(PIPELINE, "run-1"))
        assert (doc["metric"], doc["chosen"], doc["model_version"]) == (metric, best, trials[best]["model_version"])
        assert doc["higher_is_better"] is (metric != "log_loss")
        assert [t["model_version"] for t in doc["trials"]] == [t["model_version"] for t in trials]
        assert [t["params"] for t in doc["trials"]] == PARAMS
        for trial, metrics in zip(doc["trials"], expected, strict=True):
            assert trial["value"] == pytest.approx(metrics[metric], rel=1e-9)
            assert trial["metrics"] == pytest.approx(metrics, rel=1e-9)
        assert len(set(values)) == 3, "three different models"

    def test_ties_go_to_the_first_of_the_best(self, store, built):
        by_score = sorted(
            [built.model, built.challenger],
            key=lambda t: holdout_metrics_by_raw_rows(store, built, t["model_version"])["roc_auc"],
        )
        worse, better = by_score
        trials, params = [worse, better, better], [{"i": 0}, {"i": 1}, {"i": 2}]
        result = select_trial(store, PIPELINE, built.features["features_id"], trials, params, "roc_auc", run_id="r")
        assert result["tuning"]["trials"][1]["value"] == result["tuning"]["trials"][2]["value"]
        assert result["trial"] == 1 and result["params"] == {"i": 1}

    @pytest.mark.parametrize(
        ("count", "metric", "message"),
        [
            pytest.param(2, "roc_auc", "Got 3 trial results for 2 trial parameter sets", id="unpaired"),
            pytest.param(3, "rmse", "'rmse' does not apply to classification", id="metric-of-another-task"),
        ],
    )
    def test_refuses(self, store, built, count, metric, message):
        with pytest.raises(MlopsError, match=message):
            select_trial(store, PIPELINE, built.features["features_id"], trials_of(built), PARAMS[:count], metric, run_id="r")

    def test_the_report_and_the_model_card_list_every_trial(self, store, built):
        features_id = built.features["features_id"]
        chosen = select_trial(store, PIPELINE, features_id, trials_of(built), PARAMS, "roc_auc", run_id="run-2")
        result = evaluate(store, PIPELINE, chosen["model_version"], features_id, GATE, run_id="run-2", tuning=chosen["tuning"])
        assert result["tuning"] == chosen["tuning"]
        report = store.read_text(f"{report_prefix(PIPELINE, 'run-2')}/evaluation.html")
        assert "Tuning: 3 trials, the best by roc_auc on the eval split" in report
        assert all(t["model_version"] in report for t in trials_of(built))
        assert report.count("<td>chosen</td>") == 1
        for name in ("num_leaves", "learning_rate", "min_data_in_leaf"):  # the parameters that differ between trials
            assert f"<th>{name}</th>" in report

        lineage = {"params": chosen["params"], "tuning": chosen["tuning"]}
        register(store, PIPELINE, result, lineage=lineage, promote=True)
        card = store.read_text(f"models/{PIPELINE}/{chosen['model_version']}/card.html")
        assert "Tuning: 3 trials" in card and card.count("<td>chosen</td>") == 1
        stored = store.read_json(f"models/{PIPELINE}/{chosen['model_version']}/lineage.json")
        assert [t["params"] for t in stored["tuning"]["trials"]] == PARAMS

    def test_without_tuning_the_report_has_no_trials(self, store, built):
        evaluate(store, PIPELINE, built.model["model_version"], built.features["features_id"], GATE, run_id="run-3")
        assert "Tuning" not in store.read_text(f"{report_prefix(PIPELINE, 'run-3')}/evaluation.html")
