"""A tuning pipeline built from YAML: four trials as mapped task instances, the best chosen, run with dag.test()."""

from __future__ import annotations

import pytest
from conftest import run_dag
from test_training_dag import churn_config, store_of, write_day, xcom

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.store.layout import report_prefix, tuning_key
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow

GRID = {"num_leaves": [3, 15], "learning_rate": [0.05, 0.3]}


def trial_instances(run) -> dict[int, str]:
    """The mapped ``training.trial`` instances of ``run``: map index -> state."""
    return {ti.map_index: ti.state for ti in run.get_task_instances() if ti.task_id == "training.trial"}


def mapped_results(run, task_id: str) -> dict[int, dict]:
    """The return values of every mapped instance of ``task_id``, by map index."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key="return_value")
        return {row.map_index: XComModel.deserialize_value(row) for row in rows}


class TestTuningDag:
    def test_four_trials_mapped_best_chosen_registered_and_cached_on_rerun(self, pipeline, tmp_path):
        model = {"num_boost_round": 15, "params": {"min_data_in_leaf": 10}}
        model["tuning"] = {"search": "grid", "space": GRID, "parallelism": 2, "metric": "log_loss"}
        config, dag = pipeline(churn_config("churn_tuning", tmp_path, model=model))
        assert {"training.trial", "training.select"} <= set(dag.task_dict) and "training.train" not in dag.task_dict
        assert dag.task_dict["training.trial"].max_active_tis_per_dagrun == 2
        write_day(tmp_path, "2026-11-01", make_churn(1200, seed=1))

        run, states = run_dag(dag, "2026-11-01")
        assert run.state == "success", states
        assert trial_instances(run) == dict.fromkeys(range(4), "success")
        trials = mapped_results(run, "training.trial")
        assert len({t["model_version"] for t in trials.values()}) == 4
        assert not any(t["cached"] for t in trials.values())

        selected = xcom(run, "training.select")
        tuning = selected["tuning"]
        params = config.model.trial_params()
        assert [t["params"] for t in tuning["trials"]] == params
        assert [t["model_version"] for t in tuning["trials"]] == [trials[i]["model_version"] for i in range(4)]
        losses = [t["metrics"]["log_loss"] for t in tuning["trials"]]
        best = losses.index(min(losses))
        assert tuning["chosen"] == selected["trial"] == best
        assert selected["model_version"] == trials[best]["model_version"] and selected["params"] == params[best]
        assert len(set(losses)) == 4, "the grid's trials are different models"

        store = store_of(config)
        assert store.read_json(tuning_key("churn_tuning", run.run_id)) == tuning
        assert selected["tuning_uri"] == store.uri(tuning_key("churn_tuning", run.run_id))
        assert xcom(run, "evaluation.evaluate")["model_version"] == selected["model_version"]
        registry = ModelRegistry(store, "churn_tuning")
        assert registry.production() == selected["model_version"]
        lineage = registry.get(selected["model_version"])["lineage"]
        assert lineage["params"] == params[best]
        assert [(t["params"], t["value"]) for t in lineage["tuning"]["trials"]] == list(zip(params, losses, strict=True))
        stored = store.read_json(f"models/churn_tuning/{selected['model_version']}/lineage.json")
        assert stored["tuning"] == lineage["tuning"] and stored["params"] == params[best]
        report = store.read_text(f"{report_prefix('churn_tuning', run.run_id)}/evaluation.html")
        assert "Tuning: 4 trials, the best by log_loss" in report
        for trial in tuning["trials"]:
            assert trial["model_version"] in report
        assert report.count("<td>chosen</td>") == 1

        # The same data again: every trial finds its model by content and is not retrained.
        rerun, states = run_dag(dag, "2026-11-01")
        assert rerun.state == "success", states
        assert trial_instances(rerun) == dict.fromkeys(range(4), "success")
        again = mapped_results(rerun, "training.trial")
        assert all(t["cached"] for t in again.values())
        assert {i: t["model_version"] for i, t in again.items()} == {i: t["model_version"] for i, t in trials.items()}
        assert xcom(rerun, "training.select")["model_version"] == selected["model_version"]
