"""``load_pipelines``: every YAML of a folder built into DAGs; a broken file is an import error of its own in the DagBag."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories import load_pipelines
from airflow_mlops.factories.folder import config_files

GOOD = {
    "pipeline": "folder_alpha",
    "source": {"uri": "data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract"]},
    "monitor": {"schedule": "@hourly"},
}
DAG_FILE = '''"""Every pipeline in configs/: its training and monitor DAGs."""
from pathlib import Path

from airflow_mlops.factories import load_pipelines

{call}
'''
RECOMMENDED = 'globals().update(load_pipelines(Path(__file__).parent / "configs"))'


def write_config(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


@pytest.fixture
def dags(tmp_path) -> Path:
    """A DAG folder: ``pipelines.py`` calling load_pipelines on ``configs/`` with three good pipelines (the third
    without a monitor section) and a broken ``broken.yaml`` (an unknown key)."""
    folder = tmp_path / "dags"
    (folder / "configs").mkdir(parents=True)
    write_config(folder / "configs" / "alpha.yaml", GOOD)
    write_config(folder / "configs" / "beta.yml", {**GOOD, "pipeline": "folder_beta"})
    write_config(
        folder / "configs" / "gamma.yaml", {k: v for k, v in {**GOOD, "pipeline": "folder_gamma"}.items() if k != "monitor"}
    )
    write_config(
        folder / "configs" / "broken.yaml", {**GOOD, "pipeline": "folder_broken", "model": {"paramz": {"num_leaves": 7}}}
    )
    write_config(folder / "configs" / "notes.txt", "not a config")
    (folder / "pipelines.py").write_text(DAG_FILE.format(call=RECOMMENDED))
    return folder


def dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


GOOD_DAG_IDS = {
    "mlops_folder_alpha_training",
    "mlops_folder_alpha_monitor",
    "mlops_folder_beta_training",
    "mlops_folder_beta_monitor",
    "mlops_folder_gamma_training",
}


class TestLoadPipelinesInDagBag:
    def test_good_pipelines_load_and_the_broken_file_is_its_own_import_error(self, dags):
        bag = dagbag(dags)
        bad = dags / "configs" / "broken.yaml"
        assert set(bag.dag_ids) == GOOD_DAG_IDS
        assert bag.import_errors == {
            str(bad): f"{bad}: model.paramz: unknown key (did you mean 'params'?). Got {{'num_leaves': 7}} instead."
        }
        assert {bag.dags[d].fileloc for d in GOOD_DAG_IDS} == {str(dags / "pipelines.py")}

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            pytest.param(
                {**GOOD, "pipeline": "folder_broken", "evaluation": {"metric": "roc_auc", "threshold": 1.5}},
                "evaluation.threshold: must be between 0 and 1 for roc_auc. Got 1.5 instead.",
                id="bad-value",
            ),
            pytest.param(
                "pipeline: folder_broken\nsource: {uri: data.csv\nlabel: churned\n",
                "line 3, column 6: invalid YAML: ",
                id="bad-yaml-syntax",
            ),
            pytest.param(
                {**GOOD, "pipeline": "folder_broken", "monitor": {"schedule": "every hour"}},
                "monitor.schedule: not a cron expression (minute hour day month weekday) or an @preset. "
                "Got 'every hour' instead.",
                id="bad-schedule",
            ),
        ],
    )
    def test_each_kind_of_broken_file_names_the_file_and_the_place(self, dags, content, message):
        bad = write_config(dags / "configs" / "broken.yaml", content)
        bag = dagbag(dags)
        assert set(bag.dag_ids) == GOOD_DAG_IDS
        assert list(bag.import_errors) == [str(bad)]
        assert bag.import_errors[str(bad)].startswith(f"{bad}: {message}")

    def test_a_pipeline_name_used_twice_is_an_error_of_the_second_file_naming_both(self, dags):
        first, second = dags / "configs" / "alpha.yaml", dags / "configs" / "zeta.yaml"
        write_config(second, {**GOOD, "description": "the second file"})
        bag = dagbag(dags)
        assert set(bag.dag_ids) == GOOD_DAG_IDS
        assert bag.dags["mlops_folder_alpha_training"].description == "Training pipeline for folder_alpha", "the first file's"
        assert bag.import_errors[str(second)] == (
            f"{second}: pipeline: already used by {first} (DAG ids must be unique). Got 'folder_alpha' instead."
        )

    def test_a_pipeline_that_fails_to_build_loads_none_of_its_dags(self, dags, monkeypatch):
        from airflow.sdk import DAG

        from airflow_mlops.factories import builders

        def half_built(config):  # a builder bug: it raises inside its ``with DAG(...)`` block
            with DAG(f"mlops_{config.pipeline}_monitor", schedule=None):
                raise RuntimeError("builder bug")

        monkeypatch.setattr(builders, "build_monitor_dag", half_built)
        (dags / "configs" / "broken.yaml").unlink()
        bag = dagbag(dags)
        assert set(bag.dag_ids) == {"mlops_folder_gamma_training"}, "no training DAG without its monitor, no half DAG"
        assert set(bag.import_errors) == {str(dags / "configs" / n) for n in ("alpha.yaml", "beta.yml")}
        error = bag.import_errors[str(dags / "configs" / "alpha.yaml")]
        assert error.startswith(f"{dags / 'configs' / 'alpha.yaml'}: the pipeline's DAGs could not be built:\nTraceback")
        assert error.rstrip().endswith("RuntimeError: builder bug")

    def test_a_bare_call_loads_the_dags_too(self, dags):
        (dags / "pipelines.py").write_text(DAG_FILE.format(call='load_pipelines(Path(__file__).parent / "configs")'))
        bag = dagbag(dags)
        assert set(bag.dag_ids) == GOOD_DAG_IDS, "DAGs built in `with DAG(...)` register with the DAG file"
        assert list(bag.import_errors) == [str(dags / "configs" / "broken.yaml")]

    def test_a_fixed_file_leaves_the_import_errors_when_the_bag_parses_again(self, dags):
        bag = dagbag(dags)
        write_config(dags / "configs" / "broken.yaml", {**GOOD, "pipeline": "folder_broken"})
        bag.process_file(str(dags / "pipelines.py"), only_if_updated=False)
        assert bag.import_errors == {}
        assert {"mlops_folder_broken_training", "mlops_folder_broken_monitor"} <= set(bag.dag_ids)

    def test_errors_are_keyed_relative_to_the_bundle_like_dag_files(self, dags):
        from airflow.dag_processing.dagbag import BundleDagBag

        bag = BundleDagBag(dag_folder=str(dags), bundle_path=dags, bundle_name="test-bundle")
        assert list(bag.import_errors) == [os.path.join("configs", "broken.yaml")]
        assert set(bag.dag_ids) == GOOD_DAG_IDS

    def test_a_missing_folder_fails_the_dag_file(self, dags):
        shutil.rmtree(dags / "configs")
        bag = dagbag(dags)
        assert bag.dag_ids == []
        assert f"{dags / 'configs'}: no such folder of pipeline configs." in bag.import_errors[str(dags / "pipelines.py")]

    @pytest.mark.slow
    def test_the_dag_processor_stores_the_error_under_the_yaml_file(self, dags, airflow_db, tmp_path):
        """`airflow dags reserialize` (parse the bundle, write DAGs and import errors to the DB), then
        `airflow dags list-import-errors` and `airflow dags list` read the DB: one process, a copy of the test DB."""
        shutil.copy(airflow_db / "airflow.db", tmp_path / "airflow.db")
        env = {
            **os.environ,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        }
        code = (
            "import sys; from airflow.cli.cli_parser import get_parser\n"
            "for argv in (['dags', 'reserialize'], ['dags', 'list-import-errors', '-o', 'json'], ['dags', 'list', '-o', 'json']):\n"
            "    args = get_parser().parse_args(argv)\n"
            "    try: args.func(args)\n"
            "    except SystemExit: pass\n"
            "    print()\n"
        )
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        tables = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("[")]
        assert len(tables) == 2, result.stdout + result.stderr[-3000:]
        errors, listed = tables
        bad = dags / "configs" / "broken.yaml"
        assert errors == [
            {
                "bundle_name": "dags-folder",
                "filepath": "configs/broken.yaml",
                "error": f"{bad}: model.paramz: unknown key (did you mean 'params'?). Got {{'num_leaves': 7}} instead.",
            }
        ]
        ours = {d["dag_id"] for d in listed if d["dag_id"].startswith("mlops_folder_")}  # the DB copy may hold other tests' DAGs
        assert ours == GOOD_DAG_IDS, "the good DAGs are in the DB and not stale"


class TestLoadPipelinesOutsideAirflow:
    def test_returns_the_dags_by_id_and_warns_about_a_broken_file(self, dags):
        with pytest.warns(UserWarning, match=r"broken\.yaml: model\.paramz: unknown key") as caught:
            dags_by_id = load_pipelines(dags / "configs")
        assert set(dags_by_id) == GOOD_DAG_IDS
        assert all(dag.dag_id == dag_id for dag_id, dag in dags_by_id.items())
        assert [Path(w.filename).name for w in caught] == ["test_folder.py"], "the warning points at the caller"

    def test_an_empty_folder_gives_no_dags(self, tmp_path):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert load_pipelines(tmp_path) == {}

    def test_a_missing_folder_is_a_config_error(self, tmp_path):
        with pytest.raises(ConfigError, match="no such folder of pipeline configs"):
            load_pipelines(tmp_path / "nowhere")


class TestConfigFiles:
    def test_yaml_files_of_the_folder_alone_in_name_order(self, dags):
        (dags / "configs" / "sub").mkdir()
        write_config(dags / "configs" / "sub" / "inner.yaml", GOOD)
        assert [p.name for p in config_files(dags / "configs")] == ["alpha.yaml", "beta.yml", "broken.yaml", "gamma.yaml"]
