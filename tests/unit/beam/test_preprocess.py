import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.beam.preprocess import PreprocessSpec, QuantileSketchFn, run_preprocess, shown_options
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.ml.transform import ROW_ID, FeatureTransform

SPEC = PreprocessSpec(
    numeric=["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"],
    categorical=["contract", "payment_method", "region"],
    label="churned",
    task="classification",
    eval_fraction=0.25,
    histogram_bins=10,
    runner="DirectRunner",
)


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    frame = make_churn(3000, seed=11)
    frame = frame[sorted(frame.columns)]
    frame.to_parquet(root / "data.parquet", index=False)
    summary = run_preprocess(str(root / "data.parquet"), root / "out", SPEC)
    return frame, root / "out", summary


def read(out, name):
    return pd.concat(pd.read_parquet(p) for p in sorted((out / name).glob("*.parquet")))


class TestRunPreprocess:
    def test_splits_every_row_once(self, output):
        _frame, out, summary = output
        train, evaluation = read(out, "train"), read(out, "eval")
        assert summary == {"rows": 3000, "train_rows": len(train), "eval_rows": len(evaluation)}
        assert len(train) + len(evaluation) == 3000
        assert 0.2 < len(evaluation) / 3000 < 0.3
        assert not set(train[ROW_ID]) & set(evaluation[ROW_ID])

    def test_transform_fitted_on_the_full_pass(self, output):
        frame, out, _ = output
        spec = json.loads((out / "transform.json").read_text())
        assert spec["numeric"]["monthly_charges"]["mean"] == pytest.approx(frame["monthly_charges"].mean())
        assert spec["numeric"]["monthly_charges"]["std"] == pytest.approx(frame["monthly_charges"].std(ddof=0))
        assert spec["numeric"]["data_usage_gb"]["mean"] == pytest.approx(frame["data_usage_gb"].mean())  # nulls skipped
        assert set(spec["categorical"]["region"]["vocabulary"]) == set(frame["region"])

    def test_profile_has_quantiles_and_counts(self, output):
        frame, out, _ = output
        profile = json.loads((out / "profile.json").read_text())
        q = profile["numeric"]["tenure_months"]["quantiles"]
        assert len(q) == SPEC.histogram_bins + 1 and q == sorted(q)
        assert q[0] == frame["tenure_months"].min() and q[-1] == frame["tenure_months"].max()
        assert profile["categorical"]["contract"]["counts"] == frame["contract"].value_counts().to_dict()
        assert profile["numeric"]["data_usage_gb"]["null_ratio"] == pytest.approx(frame["data_usage_gb"].isna().mean())

    def test_beam_features_equal_the_row_function(self, output):
        """No training/serving skew: the Beam features are what FeatureTransform.apply gives for the raw row."""
        _, out, _ = output
        spec = json.loads((out / "transform.json").read_text())
        raw = read(out, "eval_raw").set_index(ROW_ID)
        beam_features = read(out, "eval").set_index(ROW_ID).loc[raw.index, spec["features"]].to_numpy()
        transform = FeatureTransform(spec)
        row_features = np.array([transform.apply(r) for r in raw.reset_index().to_dict("records")])
        np.testing.assert_array_equal(beam_features, row_features)

    def test_split_is_deterministic(self, output, tmp_path):
        frame, out, _ = output
        frame.sample(frac=1.0, random_state=3).to_parquet(tmp_path / "shuffled.parquet", index=False)
        run_preprocess(str(tmp_path / "shuffled.parquet"), tmp_path / "out", SPEC)
        assert set(read(out, "eval")[ROW_ID]) == set(read(tmp_path / "out", "eval")[ROW_ID])
        assert json.loads((out / "transform.json").read_text()) == json.loads((tmp_path / "out" / "transform.json").read_text())


class TestQuantileSketchFn:
    @pytest.mark.parametrize("batches", [pytest.param(1, id="one-batch"), pytest.param(7, id="seven-batches")])
    def test_edges_close_to_exact_quantiles_with_exact_extremes(self, batches):
        values = np.random.default_rng(4).lognormal(0.0, 1.0, 50_000)
        fn = QuantileSketchFn(11, size=500)
        accs = [fn.add_input(fn.create_accumulator(), part) for part in np.array_split(values, batches)]
        edges = fn.extract_output(fn.merge_accumulators(accs))
        assert len(edges) == 11 and edges == sorted(edges)
        assert (edges[0], edges[-1]) == (values.min(), values.max())
        ranks = np.searchsorted(np.sort(values), edges[1:-1]) / len(values)
        np.testing.assert_allclose(ranks, np.linspace(0, 1, 11)[1:-1], atol=0.01)  # within 1% of the rank


class TestPipelineOptions:
    def test_secret_values_are_masked_in_the_log(self, tmp_path, caplog):
        options = {"s3_secret_access_key": "wJalrXUtnFEMI", "s3_access_key_id": "AKIAEXAMPLE", "direct_num_workers": 1}
        assert shown_options(options) == ["--direct_num_workers=1", "--s3_access_key_id=***", "--s3_secret_access_key=***"]
        make_churn(200, seed=1).to_parquet(tmp_path / "data.parquet", index=False)
        spec = dataclasses.replace(SPEC, pipeline_options=options)
        with caplog.at_level(logging.DEBUG):
            run_preprocess(str(tmp_path / "data.parquet"), tmp_path / "out", spec)
        assert "--s3_secret_access_key=***" in caplog.text
        assert "wJalrXUtnFEMI" not in caplog.text and "AKIAEXAMPLE" not in caplog.text

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({"flink_master": "flink:8081", "parallelism": 4}, id="FlinkRunner"),
            pytest.param({"spark_master_url": "spark://spark:7077"}, id="SparkRunner"),
            pytest.param({"project": "p", "region": "europe-west1", "temp_location": "gs://b/tmp"}, id="DataflowRunner"),
        ],
    )
    def test_runner_options_pass_through_unchanged(self, options):
        from apache_beam.options.pipeline_options import PipelineOptions

        built = PipelineOptions([f"--{k}={v}" for k, v in options.items()]).get_all_options()
        assert {k: built[k] for k in options} == options


class TestRunners:
    def test_multi_processing_gives_the_same_outputs(self, output, tmp_path):
        """``direct_running_mode: multi_processing`` runs the bundles in worker processes, with the same result."""
        frame, out, _ = output
        frame.to_parquet(tmp_path / "data.parquet", index=False)
        options = {"direct_running_mode": "multi_processing", "direct_num_workers": 2}
        summary = run_preprocess(
            str(tmp_path / "data.parquet"), tmp_path / "out", dataclasses.replace(SPEC, pipeline_options=options)
        )
        assert summary["rows"] == 3000
        for name in ("transform.json", "profile.json"):
            assert json.loads((tmp_path / "out" / name).read_text()) == json.loads((out / name).read_text())
        for split in ("train", "eval", "eval_raw"):
            ours = read(tmp_path / "out", split).sort_values(ROW_ID).reset_index(drop=True)
            pd.testing.assert_frame_equal(ours, read(out, split).sort_values(ROW_ID).reset_index(drop=True))

    @pytest.mark.parametrize(
        ("runner", "options", "view", "expected"),
        [
            (
                "FlinkRunner",
                {"flink_master": "flink-jobmanager:8081", "parallelism": 8, "environment_type": "LOOPBACK"},
                "FlinkRunnerOptions",
                {"flink_master": "flink-jobmanager:8081", "parallelism": 8},
            ),
            (
                "SparkRunner",
                {"spark_master_url": "spark://spark-master:7077", "spark_submit_uber_jar": True},
                "SparkRunnerOptions",
                {"spark_master_url": "spark://spark-master:7077", "spark_submit_uber_jar": True},
            ),
            (
                "DataflowRunner",
                {"project": "acme-ml", "region": "europe-west1", "temp_location": "gs://acme/tmp", "save_main_session": True},
                "GoogleCloudOptions",
                {"project": "acme-ml", "region": "europe-west1", "temp_location": "gs://acme/tmp"},
            ),
        ],
    )
    def test_runner_options_pass_through_unchanged(self, runner, options, view, expected):
        from apache_beam.options import pipeline_options as beam_options

        from airflow_mlops.beam.preprocess import pipeline_options

        built = pipeline_options(dataclasses.replace(SPEC, runner=runner, pipeline_options=options))
        assert {k: getattr(built.view_as(getattr(beam_options, view)), k) for k in expected} == expected
        assert built.get_all_options(drop_default=True) == options
