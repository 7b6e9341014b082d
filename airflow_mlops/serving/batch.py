"""Batch scoring of one input by one model version, a batch of rows at a time: the model's own transform
(``apply_frame``, proven equal to the server's ``apply``) and the same ``Booster.predict`` call on float64 rows as
the model server, so a batch score equals ``/predict``'s to the last bit. The scoring DAG's score stage runs
:class:`BatchScorer` in the task's process or on Beam workers (:mod:`airflow_mlops.beam.scoring`)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.traffic import skipped_rows
from airflow_mlops.serving.predlog import BATCH_REQUEST_PREFIX, PROBABILITIES
from airflow_mlops.store.layout import scoring_id

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SCORE_THREADS = 1
"""LightGBM threads per predict, as the server and evaluation call it."""


class BatchScorer:
    """One input scored by one model version, a batch at a time: the same function wherever a batch is scored, in
    the task's process (:func:`score`) or on a Beam worker (:mod:`airflow_mlops.beam.scoring`).

    :param spec: the model's ``transform.json``.
    :param model_text: the model's LightGBM text (``model.txt``).
    :param ids: the input columns copied to every scored row; the first is the row id in the prediction log.
    :param schema: the accepted schema, needed only with ``skip``.
    :param skip: rows to leave out (:func:`validate_input`'s ``skip``).
    :param explain: also write each row's contributions (:func:`contribution_columns`).
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        model_text: str,
        *,
        ids: list[str],
        model_version: str,
        dataset_id: str,
        schema: Mapping[str, Any] | None = None,
        skip: Mapping[str, list[str]] | None = None,
        log_sample: float = 0.0,
        log_max_rows: int = 100_000,
        explain: bool = False,
    ) -> None:
        import lightgbm as lgb

        from airflow_mlops.ml.transform import FeatureTransform

        self.spec, self.ids, self.model_version, self.dataset_id = spec, ids, model_version, dataset_id
        self.schema, self.skip, self.log_sample, self.log_max_rows = schema, skip, log_sample, log_max_rows
        self.transform = FeatureTransform(spec)
        self.booster = lgb.Booster(model_str=model_text)
        self.scoring = scoring_id(dataset_id, model_version)
        self.explain = explain

    def columns(self, names: list[str]) -> list[str]:
        """The input columns a batch is read with (of the input's ``names``): the id columns, then the features."""
        if missing := [c for c in self.ids if c not in names]:
            raise MlopsError(f"scoring.id_columns {missing} are not columns of the input (it has {names}).")
        return list(dict.fromkeys([*self.ids, *(c for c in self.transform.features if c in names)]))

    def score(self, batch: Any, index: int) -> tuple[Any, pd.DataFrame | None, int]:
        """Batch ``index`` (Arrow, :meth:`columns`) scored: ``(scored table, sampled log rows or None, rows left out)``.
        The log sample of a batch is drawn by a generator seeded with the scoring id and the batch index, so any
        engine, in any order, draws the same rows."""
        import numpy as np
        import pyarrow as pa

        frame, skipped = batch.to_pandas(), 0
        if self.skip:
            keep = ~skipped_rows(frame, self.schema, self.skip)
            skipped = int((~keep).sum())
            batch, frame = batch.filter(pa.array(keep)), frame[keep]
        features = self.transform.apply_frame(frame.reset_index(drop=True))
        scores = self.booster.predict(features, num_threads=SCORE_THREADS) if len(frame) else np.empty(0)
        classes = self.spec.get("classes")
        table = scored_table(batch.select(self.ids), scores, self.spec["task"], self.model_version, self.dataset_id, classes)
        if self.explain:
            from airflow_mlops.ml.explain import contributions

            found = contributions(self.booster, features) if len(frame) else np.empty((0, len(self.transform.features) + 1))
            for name, values in contribution_columns(found, self.transform.features, classes).items():
                table = table.append_column(name, pa.array(values, pa.float64()))
        sample = None
        if self.log_sample > 0 and len(frame):
            draw = np.random.default_rng([int(self.scoring.encode().hex()[:15], 16), index])
            picked = np.flatnonzero(draw.random(len(frame)) < self.log_sample)[: self.log_max_rows]
            if len(picked):
                sample = log_rows(frame.iloc[picked], scores[picked], self.ids, self.transform, self.model_version, index)
        return table, sample, skipped


def contribution_columns(found: np.ndarray, features: list[str], classes: list[str] | None) -> dict[str, np.ndarray]:
    """Contributions (:func:`airflow_mlops.ml.explain.contributions`) as output columns: ``contribution_<feature>``
    and ``expected_value``; for a multiclass model ``contribution_<class>_<feature>`` and ``expected_value_<class>``.
    Per row, a class's columns sum to its raw score, as ``/predict``'s explanation does."""
    if classes is None:
        columns = {f"contribution_{name}": found[:, j] for j, name in enumerate(features)}
        return {**columns, "expected_value": found[:, -1]}
    found = found.reshape(len(found), len(classes), len(features) + 1)
    columns = {}
    for k, c in enumerate(classes):
        columns |= {f"contribution_{c}_{name}": found[:, k, j] for j, name in enumerate(features)}
        columns[f"expected_value_{c}"] = found[:, k, -1]
    return columns


def input_ids(names: list[str], spec: Mapping[str, Any], id_columns: list[str] | None) -> list[str]:
    """The id columns of an input with columns ``names``: ``id_columns``, or every column neither feature nor label."""
    if id_columns is not None:
        return list(id_columns)
    return [c for c in names if c not in spec["features"] and c != spec["label"]]


def part_key(prefix: str, index: int) -> str:
    return f"{prefix}/part-{index:05d}.parquet"


def parquet_bytes(table: Any) -> bytes:
    """A scored part as the bytes of its Parquet file (pyarrow's defaults), the same on every engine."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def scored_table(
    ids: Any, scores: np.ndarray, task: str, model_version: str, dataset_id: str, classes: list[str] | None = None
) -> Any:
    """The id columns and ``score`` (and a classifier's ``class``), the model version and the dataset id. A
    multiclass model's (``classes``): ``class`` (the most probable class), ``score`` (its probability) and
    ``probabilities`` (every class's, in ``classes`` order, as the model's ``transform.json`` lists them)."""
    import numpy as np
    import pyarrow as pa

    table = pa.Table.from_batches([ids]) if isinstance(ids, pa.RecordBatch) else ids
    if classes is not None:
        scores = np.asarray(scores, dtype=float).reshape(-1, len(classes))
        best = np.argmax(scores, axis=1) if len(scores) else np.empty(0, dtype=np.int64)
        table = table.append_column("class", pa.array(np.asarray(classes, dtype=object)[best], pa.string()))
        table = table.append_column("score", pa.array(scores[np.arange(len(scores)), best], pa.float64()))
        flat = pa.array(scores.ravel(), pa.float64())
        table = table.append_column("probabilities", pa.FixedSizeListArray.from_arrays(flat, len(classes)))
        scores = best
    else:
        table = table.append_column("score", pa.array(scores, pa.float64()))
    if task == "classification":
        table = table.append_column("class", pa.array((scores >= 0.5).astype("int8")))
    n = len(scores)
    return table.append_column("model_version", pa.array([model_version] * n, pa.string())).append_column(
        "dataset_id", pa.array([dataset_id] * n, pa.string())
    )


def log_rows(frame: pd.DataFrame, scores: np.ndarray, ids: list[str], transform: Any, version: str, batch: int) -> pd.DataFrame:
    """Prediction log rows (``serving.predlog``'s columns) for sampled scored rows: the first id column is the row id
    (else ``<batch>-<row in the batch>``); features as the server logs them (numbers as floats, categories as text). A batch row
    has no request latency: ``_latency_ms`` is 0, and its ``_request`` (``batch-...``) marks it as batch traffic."""
    import pandas as pd

    from airflow_mlops.ml.transform import numbers_of

    n = len(frame)
    row_ids = frame[ids[0]].astype(str) if ids else pd.Series([f"{batch:05d}-{i}" for i in frame.index], index=frame.index)
    probabilities = None
    if getattr(scores, "ndim", 1) == 2:  # a multiclass model's: the most probable class's index, and every class's
        probabilities, scores = scores, scores.argmax(axis=1).astype(float)
    out = {
        "_id": row_ids.to_numpy(dtype=object),
        "_version": version,
        "_prediction": scores,
        "_error": False,
        "_latency_ms": 0.0,
        "_request": f"{BATCH_REQUEST_PREFIX}{batch:05d}",
    }
    if probabilities is not None:
        out[PROBABILITIES] = [row.tolist() for row in probabilities]
    numeric = set(transform.spec["numeric"])
    for name in transform.features:
        values = frame[name] if name in frame else pd.Series([None] * n, index=frame.index)
        if name in numeric:
            out[name] = numbers_of(values, n)
        else:
            out[name] = [None if v is None or v != v else str(v) for v in values.astype(object)]
    return pd.DataFrame(out)
