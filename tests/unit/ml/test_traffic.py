"""The traffic checks fed in batches: the report over any split of the rows is the report over all of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from airflow_mlops.config.data import ValidationConfig
from airflow_mlops.ml.schema import infer_schema
from airflow_mlops.ml.traffic import TrafficChecks, merged_family
from airflow_mlops.ml.validation import Thresholds, check_traffic

THRESHOLDS = Thresholds(**ValidationConfig().model_dump())


@pytest.fixture(scope="module")
def schema():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "a": rng.normal(0, 1, 500),
            "b": rng.integers(0, 10, 500),
            "c": rng.choice(["x", "y", "z"], 500),
            "d": rng.choice([1, 2, 3], 500),
            "e": rng.random(500) < 0.5,
            "y": rng.integers(0, 2, 500),
        }
    )
    return infer_schema(frame, numeric=["a", "b", "e"], categorical=["c", "d"], label="y", task="classification")


def traffic(change: str, rows: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "a": rng.normal(0, 1.5, rows),
            "b": rng.integers(-5, 20, rows),
            "c": rng.choice(list("xyzwqrst"), rows),
            "d": rng.choice([1, 2, 3, 4], rows),
            "e": rng.random(rows) < 0.5,
        }
    )
    some = rng.random(rows) < 0.3
    if change == "nan_inf":
        frame.loc[some, "a"] = np.nan
        frame.loc[rng.random(rows) < 0.05, "a"] = np.inf
    elif change == "int_nulls":
        frame["b"] = frame["b"].astype(object).where(~some, None)
    elif change == "text":
        frame["a"] = frame["a"].astype(str).where(~some, "oops")
    elif change == "bool_nulls":
        frame["e"] = frame["e"].astype(object).where(~some, None)
    elif change == "all_null":
        frame["c"] = None
    elif change == "missing":
        frame = frame.drop(columns=["d"])
    return pa.Table.from_pandas(frame, preserve_index=False).to_pandas()  # as a Parquet input reads back


class TestTrafficChecks:
    @pytest.mark.parametrize("change", ["none", "nan_inf", "int_nulls", "text", "bool_nulls", "all_null", "missing"])
    @pytest.mark.parametrize("batch", [pytest.param(1, id="rows"), pytest.param(64, id="64"), pytest.param(257, id="257")])
    def test_batches_give_the_report_of_the_whole(self, schema, change, batch):
        whole = traffic(change)
        checks = TrafficChecks(schema, THRESHOLDS)
        for part in pa.Table.from_pandas(whole, preserve_index=False).to_batches(max_chunksize=batch):
            checks.add(part.to_pandas())
        assert checks.report().to_dict() == check_traffic(whole, schema, THRESHOLDS).to_dict()

    def test_the_report_names_each_anomaly(self, schema):
        kinds = {
            c: [(a.column, a.kind) for a in check_traffic(traffic(c), schema, THRESHOLDS).anomalies] for c in ("text", "all_null")
        }
        assert ("a", "type_change") in kinds["text"] and ("c", "all_null") in kinds["all_null"]
        unseen = next(a for a in check_traffic(traffic("none"), schema, THRESHOLDS).anomalies if a.column == "c")
        assert unseen.kind == "unseen_categories" and unseen.message.endswith("e.g. ['q', 'r', 's', 't', 'w']")

    @pytest.mark.parametrize(
        ("before", "now", "whole"),
        [
            pytest.param("integer", "float", "float", id="int-with-nulls"),
            pytest.param("bool", "string", "string", id="bool-with-nulls"),
            pytest.param(None, "bool", "bool", id="first"),
        ],
    )
    def test_merged_family(self, before, now, whole):
        assert merged_family(before, now) == whole
