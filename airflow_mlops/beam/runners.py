"""How a pipeline of this package picks its Beam runner, turns the config's options into flags, logs them without
secrets and runs: one place for preprocessing (:mod:`.preprocess`) and batch scoring (:mod:`.scoring`)."""

from __future__ import annotations

import re
from typing import Any

import apache_beam as beam

_SECRET_OPTION = re.compile(r"secret|password|passwd|token|credential|private|api_?key|access_key", re.IGNORECASE)


def option_flags(options: dict[str, Any]) -> list[str]:
    """The config's ``pipeline_options`` as Beam command-line flags, each value passed through unchanged:
    ``--key=value``; ``True`` as the bare ``--key`` and ``False`` left out (Beam's switches take no value)."""
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in sorted(options.items()) if v is not False]


def shown_options(options: dict[str, Any]) -> list[str]:
    """:func:`option_flags` for the log, with the values of secret-looking keys masked."""
    return option_flags({k: "***" if _SECRET_OPTION.search(k) and not isinstance(v, bool) else v for k, v in options.items()})


def with_partitions(runner: str, options: dict[str, Any], row_groups: int) -> dict[str, Any]:
    """``options``, on the DaskRunner with one row group per partition (spread over the workers) unless they say
    how to partition."""
    if runner == "dask" and not {"dask_npartitions", "dask_partition_size"} & set(options):
        return {**options, "dask_npartitions": row_groups}
    return options


def runner_for(runner: str) -> Any:
    """The Beam runner named ``runner``: ``DirectRunner`` as its in-process engine (it would first try to download
    the Prism binary), ``dask`` as the DaskRunner (a ``dask.distributed`` cluster at ``--dask_client_address``),
    any other by its name (``FlinkRunner``, ``SparkRunner``, ``DataflowRunner``, ``PrismRunner``)."""
    if runner == "DirectRunner":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    if runner == "dask":
        from apache_beam.runners.dask.dask_runner import DaskRunner

        return DaskRunner()
    return runner


def run(pipeline: beam.Pipeline) -> None:
    """Run ``pipeline`` to the end; on the DaskRunner, then leave the cluster (close the client, not the cluster)."""
    result = pipeline.run()
    result.wait_until_finish()
    client = getattr(result, "client", None)
    if client is not None:
        client.close()
