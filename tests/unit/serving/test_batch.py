"""Batch scoring's contribution columns: by feature, and by class then feature for a multiclass model."""

import numpy as np

from airflow_mlops.serving.batch import contribution_columns


def test_contribution_columns_binary_and_multiclass():
    binary = contribution_columns(np.array([[0.5, -1.0, 2.0], [0.0, 1.0, 2.0]]), ["x", "c"], None)
    assert list(binary) == ["contribution_x", "contribution_c", "expected_value"]
    assert binary["contribution_c"].tolist() == [-1.0, 1.0] and binary["expected_value"].tolist() == [2.0, 2.0]
    found = np.arange(8, dtype=float).reshape(2, 4)  # pred_contrib's layout: per class, the features then the bias
    multi = contribution_columns(found, ["x"], ["lo", "hi"])
    assert list(multi) == ["contribution_lo_x", "expected_value_lo", "contribution_hi_x", "expected_value_hi"]
    assert multi["contribution_lo_x"].tolist() == [0.0, 4.0] and multi["expected_value_lo"].tolist() == [1.0, 5.0]
    assert multi["contribution_hi_x"].tolist() == [2.0, 6.0] and multi["expected_value_hi"].tolist() == [3.0, 7.0]
