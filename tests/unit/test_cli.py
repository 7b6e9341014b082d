"""``airflow-mlops lint``: exit codes, output, and that it never imports Airflow."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airflow_mlops.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
VALID = {
    "pipeline": "churn",
    "source": {"uri": "data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract"]},
    "evaluation": {"metric": "roc_auc", "threshold": 0.7},
}
# main() in a fresh interpreter; the exit code packs main's return value and whether Airflow got imported.
RUN_MAIN = (
    "import sys; from airflow_mlops.cli import main; rc = main(sys.argv[1:]);"
    "sys.exit(rc * 10 + (1 if any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules) else 0))"
)


def write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def lint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_mlops.cli", "lint", *args], check=False, capture_output=True, text=True)


@pytest.fixture
def configs(tmp_path) -> Path:
    write(tmp_path / "good.yaml", VALID)
    write(tmp_path / "bad.yml", {**VALID, "pipeline": "other", "evaluation": {"metric": "f1", "threshold": 0.7}, "colour": "x"})
    write(tmp_path / "notes.txt", "not a config")
    return tmp_path


class TestLintCommand:
    def test_valid_file(self, configs):
        result = lint(str(configs / "good.yaml"))
        assert (result.returncode, result.stdout, result.stderr) == (0, f"OK {configs / 'good.yaml'}\n", "")

    def test_directory_reports_every_error_of_every_file(self, configs):
        result = lint(str(configs))
        assert result.returncode == 1
        assert result.stdout == f"OK {configs / 'good.yaml'}\n"
        assert result.stderr.splitlines() == [
            f"{configs / 'bad.yml'}: evaluation.metric: Input should be 'roc_auc', 'roc_auc_macro', 'roc_auc_weighted', 'log_loss', 'accuracy', 'rmse' or 'mae'. Got 'f1' instead.",
            (
                f"{configs / 'bad.yml'}: colour: unknown key (allowed here: pipeline, description, owner, schedule, start_date, catchup, "
                "tags, artifacts, source, label, task, features, validation, preprocess, model, compute, evaluation, canary, monitor, "
                "scoring, operations). "
                "Got 'x' instead."
            ),
        ]

    def test_paths_are_reported_as_given(self, configs, monkeypatch):
        result = subprocess.run(
            [sys.executable, "-m", "airflow_mlops.cli", "lint", "bad.yml"],
            check=False,
            capture_output=True,
            text=True,
            cwd=configs,
        )
        assert result.stderr.startswith("bad.yml: evaluation.metric: ")

    def test_missing_file_and_empty_directory_fail(self, tmp_path):
        (tmp_path / "empty").mkdir()
        result = lint(str(tmp_path / "nope.yaml"), str(tmp_path / "empty"))
        assert result.returncode == 1 and result.stdout == ""
        assert f"{tmp_path / 'empty'}: no *.yaml or *.yml files in this directory." in result.stderr
        assert f"{tmp_path / 'nope.yaml'}: cannot read the file: No such file or directory." in result.stderr

    def test_two_files_with_one_pipeline_name(self, tmp_path):
        write(tmp_path / "a.yaml", VALID)
        write(tmp_path / "b.yaml", VALID)
        result = lint(str(tmp_path))
        assert result.returncode == 1 and result.stdout == f"OK {tmp_path / 'a.yaml'}\n"
        assert (
            result.stderr
            == f"{tmp_path / 'b.yaml'}: pipeline: already used by {tmp_path / 'a.yaml'} (DAG ids must be unique). Got 'churn' instead.\n"
        )

    def test_same_file_twice_is_linted_once(self, configs):
        result = lint(str(configs / "good.yaml"), str(configs / "good.yaml"))
        assert result.returncode == 0 and result.stdout.count("OK") == 1

    def test_example_configs_pass(self):
        result = lint(str(REPO / "dags" / "configs"))
        assert result.returncode == 0, result.stderr
        assert f"OK {REPO / 'dags' / 'configs' / 'churn.yaml'}" in result.stdout

    @pytest.mark.parametrize(
        ("target", "expected"), [pytest.param("good.yaml", 0, id="valid"), pytest.param(".", 10, id="invalid")]
    )
    def test_main_returns_exit_code_without_importing_airflow(self, configs, target, expected):
        result = subprocess.run(
            [sys.executable, "-c", RUN_MAIN, "lint", str(configs / target)], check=False, capture_output=True, text=True
        )
        assert result.returncode == expected, (
            f"{result.returncode}: 1 in the last digit means Airflow was imported\n{result.stderr}"
        )

    def test_main_in_process(self, configs, capsys):
        assert main(["lint", str(configs / "good.yaml")]) == 0
        assert main(["lint", str(configs / "bad.yml")]) == 1
        out, err = capsys.readouterr()
        assert out == f"OK {configs / 'good.yaml'}\n" and err.count("bad.yml: ") == 2

    def test_console_script(self, tmp_path):
        bad = write(tmp_path / "bad.yaml", "pipeline: x\n")
        script = Path(sys.executable).parent / "airflow-mlops"
        if not script.exists():
            pytest.skip("package not installed with its console script")
        result = subprocess.run([str(script), "lint", str(bad)], check=False, capture_output=True, text=True)
        assert result.returncode == 1 and f"{bad}: label: required key is missing." in result.stderr


class TestParser:
    def test_lint_needs_a_path(self, capsys):
        with pytest.raises(SystemExit) as err:
            build_parser().parse_args(["lint"])
        assert err.value.code == 2

    def test_a_command_is_required(self, capsys):
        with pytest.raises(SystemExit) as err:
            main([])
        assert err.value.code == 2


def test_serve_removes_the_metrics_folders_of_killed_servers(tmp_path):
    import os

    from airflow_mlops.cli import _remove_orphaned_metrics

    dead, alive = tmp_path / "airflow-mlops-metrics-999999999-abcd", tmp_path / f"airflow-mlops-metrics-{os.getpid()}-efgh"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"x")
    _remove_orphaned_metrics(tmp_path)
    assert not dead.exists() and alive.exists()
