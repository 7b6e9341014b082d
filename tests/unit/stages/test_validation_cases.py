"""Thirty kinds of bad data, each stopped by validation before preprocessing with the column and kind named and
the report saved; and the other side: clean resamples of the same source pass with the defaults."""

import numpy as np
import pandas as pd
import pytest
from churn_setup import COLUMNS, PIPELINE

from airflow_mlops.config.data import ValidationConfig
from airflow_mlops.exceptions import DataValidationError
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages.data import acquire, validate
from airflow_mlops.store.artifacts import ArtifactStore

DEFAULTS = ValidationConfig().model_dump()
ROWS = 1000
SOURCE = make_churn(30_000, seed=40)  # the "same source" the clean resamples and corrupted batches come from


def batch(n: int = ROWS, seed: int = 0) -> pd.DataFrame:
    return SOURCE.sample(n, random_state=seed).reset_index(drop=True)


def edit(**changes):
    """A corruption that sets columns: each value a function of the batch (or a constant)."""

    def corrupt(frame):
        frame = frame.copy()
        for col, change in changes.items():
            frame[col] = change(frame) if callable(change) else change
        return frame

    return corrupt


def rows_where(frame, mask, values, col):
    frame = frame.copy()
    frame[col] = frame[col].astype(object)
    frame.loc[mask, col] = values
    return frame[col]


def label_mix(positives: float):
    def corrupt(frame):
        pos, neg = SOURCE[SOURCE.churned == 1], SOURCE[SOURCE.churned == 0]
        n = round(ROWS * positives)
        return pd.concat([pos.sample(n, random_state=1), neg.sample(ROWS - n, random_state=1)]).reset_index(drop=True)

    return corrupt


def every_nth(n):
    return lambda f: np.arange(len(f)) % n == 0


CASES = [
    # (name, corruption, expected kind, expected column, validation overrides)
    ("column dropped", lambda f: f.drop(columns="monthly_charges"), "missing_column", "monthly_charges", {}),
    ("column renamed", lambda f: f.rename(columns={"region": "Region"}), "missing_column", "region", {}),
    ("column added", edit(promo_code="SPRING"), "extra_column", "promo_code", {}),
    (
        "numbers as text",
        edit(tenure_months=lambda f: rows_where(f, every_nth(20)(f), "unknown", "tenure_months")),
        "type_change",
        "tenure_months",
        {},
    ),
    (
        "currency strings",
        edit(monthly_charges=lambda f: "$" + f.monthly_charges.astype(str)),
        "type_change",
        "monthly_charges",
        {},
    ),
    ("null spike", edit(data_usage_gb=lambda f: f.data_usage_gb.mask(every_nth(3)(f))), "null_ratio", "data_usage_gb", {}),
    ("categorical null spike", edit(contract=lambda f: f.contract.mask(every_nth(2)(f))), "null_ratio", "contract", {}),
    ("feature all null", edit(support_calls=np.nan), "all_null", "support_calls", {}),
    ("values x100", edit(monthly_charges=lambda f: f.monthly_charges * 100), "out_of_range", "monthly_charges", {}),
    ("negated", edit(tenure_months=lambda f: -f.tenure_months - 1), "out_of_range", "tenure_months", {}),
    ("GB as MB", edit(data_usage_gb=lambda f: f.data_usage_gb * 1000), "out_of_range", "data_usage_gb", {}),
    (
        "one +inf",
        edit(monthly_charges=lambda f: f.monthly_charges.where(f.index != 7, np.inf)),
        "infinite_values",
        "monthly_charges",
        {},
    ),
    (
        "one -inf",
        edit(data_usage_gb=lambda f: f.data_usage_gb.where(f.index != 3, -np.inf)),
        "infinite_values",
        "data_usage_gb",
        {},
    ),
    ("constant category", edit(region="north"), "constant_column", "region", {}),
    ("constant number", edit(support_calls=2), "constant_column", "support_calls", {}),
    (
        "category renamed",
        edit(contract=lambda f: f.contract.replace({"month-to-month": "monthly"})),
        "unseen_categories",
        "contract",
        {},
    ),
    (
        "categories upper-cased",
        edit(payment_method=lambda f: f.payment_method.str.upper()),
        "unseen_categories",
        "payment_method",
        {},
    ),
    (
        "categories as codes",
        edit(region=lambda f: f.region.map({"north": 1, "south": 2, "east": 3, "west": 4})),
        "unseen_categories",
        "region",
        {},
    ),
    ("duplicated rows", lambda f: pd.concat([f.iloc[:800], f.iloc[:200]], ignore_index=True), "duplicate_rows", "*", {}),
    # One accepted batch is no history for the volume check by default (validation.min_volume_history: 3):
    # these two ask for the second dataset to be judged by the first.
    ("98% fewer rows", lambda f: f.iloc[:20], "volume_change", "*", {"min_volume_history": 1}),
    (
        "10x the rows",
        lambda f: SOURCE.sample(10 * ROWS + 500, random_state=5),
        "volume_change",
        "*",
        {"min_volume_history": 1},
    ),
    ("too few rows", lambda f: f.iloc[:30], "empty_data", "*", {}),
    ("label 40% -> 90% positive", label_mix(0.9), "label_shift", "churned", {}),
    ("single-class label", edit(churned=0), "single_class_label", "churned", {}),
    ("NaN labels", edit(churned=lambda f: f.churned.mask(every_nth(20)(f))), "label_nulls", "churned", {}),
    ("label all null", edit(churned=np.nan), "all_null", "churned", {}),
    (
        "new label value at 0.5%",
        edit(churned=lambda f: f.churned.where(~every_nth(200)(f), 2)),
        "unseen_label_class",
        "churned",
        {},
    ),
    ("label as yes/no", edit(churned=lambda f: f.churned.map({1: "yes", 0: "no"})), "unseen_label_class", "churned", {}),
    (
        "shuffled column",
        edit(tenure_months=lambda f: f.tenure_months.sample(frac=1, random_state=3).to_numpy()),
        "label_association",
        "tenure_months",
        {},
    ),
    (
        "shuffled counts",
        edit(support_calls=lambda f: f.support_calls.sample(frac=1, random_state=4).to_numpy()),
        "label_association",
        "support_calls",
        {},
    ),
    (
        "distribution squeezed (shift as an anomaly)",
        edit(monthly_charges=lambda f: f.monthly_charges.median() + (f.monthly_charges - f.monthly_charges.median()) * 0.3),
        "distribution_shift",
        "monthly_charges",
        {"distribution_shift_action": "anomaly"},
    ),
]


@pytest.fixture
def store(tmp_path):
    """A store whose schema (and volume history) comes from one accepted batch of the source."""
    store = ArtifactStore.from_uri(str(tmp_path / "store"))
    batch(seed=0).to_csv(tmp_path / "first.csv", index=False)
    dataset_id = acquire(store, PIPELINE, str(tmp_path / "first.csv"))["dataset_id"]
    validate(store, PIPELINE, dataset_id, COLUMNS, DEFAULTS, run_id="first")
    return store


def run(store, tmp_path, frame, run_id, thresholds=DEFAULTS):
    frame.to_csv(tmp_path / f"{run_id}.csv", index=False)
    dataset_id = acquire(store, PIPELINE, str(tmp_path / f"{run_id}.csv"))["dataset_id"]
    return validate(store, PIPELINE, dataset_id, COLUMNS, thresholds, run_id=run_id)


def test_at_least_thirty_distinct_corruptions():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
    assert len({c[2] for c in CASES}) >= 17, "the cases cover most anomaly kinds"


@pytest.mark.parametrize(("name", "corrupt", "kind", "column", "overrides"), CASES, ids=[c[0] for c in CASES])
def test_corruption_is_stopped_and_named(store, tmp_path, name, corrupt, kind, column, overrides):
    with pytest.raises(DataValidationError) as raised:
        run(store, tmp_path, corrupt(batch(seed=1)), "bad", {**DEFAULTS, **overrides})
    report = store.read_json(f"reports/{PIPELINE}/bad/validation.json")
    found = {(a["kind"], a["column"]) for a in report["anomalies"]}
    assert (kind, column) in found, f"{name}: expected {kind} on {column}, got {sorted(found)}"
    assert raised.value.report_uri == store.uri(f"reports/{PIPELINE}/bad/validation.html")
    assert kind in store.read_text(f"reports/{PIPELINE}/bad/validation.html")
    assert not store.list("features") and not store.list("registry"), "nothing preprocessed or registered"


@pytest.mark.parametrize("seed", range(2, 22))
def test_clean_resamples_pass(store, tmp_path, seed):
    result = run(store, tmp_path, batch(seed=seed), f"clean-{seed}")
    assert result["anomalies"] == 0


def test_a_label_written_as_floats_then_as_integers_is_one_set_of_classes(tmp_path):
    store = ArtifactStore.from_uri(str(tmp_path / "store"))
    first = batch(seed=0).assign(churned=lambda f: f.churned.astype(float).where(f.index != 0, np.nan))  # 1.0/0.0
    first.iloc[1:].to_csv(tmp_path / "first.csv", index=False)
    dataset_id = acquire(store, PIPELINE, str(tmp_path / "first.csv"))["dataset_id"]
    validate(store, PIPELINE, dataset_id, COLUMNS, DEFAULTS, run_id="first")
    assert store.read_json(f"schemas/{PIPELINE}/schema.json")["columns"]["churned"]["domain"] == ["0", "1"]
    assert run(store, tmp_path, batch(seed=3), "integers")["anomalies"] == 0


class TestSchemaAccept:
    def config(self, store, tmp_path):
        import yaml

        path = tmp_path / "churn.yaml"
        config = {
            "pipeline": PIPELINE,
            "source": {"uri": "data.csv"},
            "label": COLUMNS.label,
            "task": COLUMNS.task,
            "features": {"numeric": COLUMNS.numeric, "categorical": COLUMNS.categorical},
            "artifacts": {"root": store.root_uri},
        }
        path.write_text(yaml.safe_dump(config))
        return str(path)

    def test_a_reviewed_change_becomes_the_next_version_with_who_and_why(self, store, tmp_path, capsys):
        from airflow_mlops.cli import main
        from airflow_mlops.store.events import read_events

        changed = batch(seed=1).assign(promo_code="SPRING")
        with pytest.raises(DataValidationError) as raised:
            run(store, tmp_path, changed, "bad")
        first = store.read_json(f"schemas/{PIPELINE}/schema.json")
        argv = ["schema", "accept", self.config(store, tmp_path), "--report", raised.value.report_uri, "--why", "promo codes"]
        assert main([*argv, "--by", "ana"]) == 0
        assert "schema version 2 of churn accepted by ana" in capsys.readouterr().out
        schema = store.read_json(f"schemas/{PIPELINE}/schema.json")
        assert schema["number"] == 2 and schema["columns"]["promo_code"]["role"] == "passthrough"
        assert schema["accepted"]["by"] == "ana" and schema["accepted"]["why"] == "promo codes"
        assert [a["kind"] for a in schema["accepted"]["anomalies"]] == ["extra_column"]
        assert store.read_json(f"schemas/{PIPELINE}/versions/1.json") == first, "every version is kept"
        assert store.read_json(f"schemas/{PIPELINE}/versions/2.json") == schema
        [event] = [e for e in read_events(store, PIPELINE) if e["kind"] == "schema_accepted"]
        assert event["number"] == 2 and event["by"] == "ana" and event["report"] == raised.value.report_uri
        assert run(store, tmp_path, changed, "again")["anomalies"] == 0, "the accepted data now passes"

    def test_a_report_of_another_pipeline_or_outside_the_store_is_refused(self, store, tmp_path, capsys):
        from airflow_mlops.cli import main

        config = self.config(store, tmp_path)
        for report in ("file:///elsewhere/validation.html", store.uri("reports/other/run/validation.html")):
            assert main(["schema", "accept", config, "--report", report, "--why", "x"]) == 1
            assert "churn.yaml: " in capsys.readouterr().err
        assert store.read_json(f"schemas/{PIPELINE}/schema.json")["number"] == 1, "validation never relearns by itself"
