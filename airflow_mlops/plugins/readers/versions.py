"""The registered model versions of a pipeline, with what was decided about each and why it was trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_mlops.store.layout import model_prefix, report_prefix


@dataclass(frozen=True)
class VersionRow:
    """A registered model version with what was decided about it and why it was trained."""

    version: str
    status: str
    aliases: list[str]
    metric: float | None
    gate_reason: str
    canary: str
    watch: str
    dataset_id: str | None
    why: str
    registered_at: str | None
    dag_id: str | None
    run_id: str | None
    card_key: str
    evaluation_key: str | None


def version_rows(pipeline: str, doc: dict[str, Any], metric_name: str | None) -> list[VersionRow]:
    """Every version of the registry document ``doc``, newest registered first, named by the aliases it holds.

    :param metric_name: the evaluation gate's metric, shown per version; None without a gate.
    """
    aliases = doc["aliases"]
    names = {
        (aliases.get("production") or {}).get("version"): "production",
        (aliases.get("canary") or {}).get("version"): "canary",
        doc.get("previous_production"): "previous production",
    }
    return [
        _version_row(pipeline, version, entry, metric_name, [n for v, n in names.items() if v == version])
        for version, entry in sorted(doc["versions"].items(), key=lambda item: item[1].get("registered_at") or "", reverse=True)
    ]


def _version_row(pipeline: str, version: str, entry: dict[str, Any], metric_name: str | None, aliases: list[str]) -> VersionRow:
    lineage = entry.get("lineage") or {}
    request = lineage.get("retrain_request") or {}
    run_id = lineage.get("run_id")
    if request:
        why = f"retrain request {request.get('request_id', '')}: {request.get('reason', '')}".strip()
    elif run_id:
        why = {"scheduled": "schedule", "manual": "manual run", "asset_triggered": "asset event"}.get(
            str(run_id).split("__", 1)[0], "run " + str(run_id)
        )
    else:
        why = ""
    canary, watch = entry.get("canary") or {}, entry.get("watch") or {}
    metric = (entry.get("metrics") or {}).get(metric_name) if metric_name else None
    return VersionRow(
        version=version,
        status=str(entry.get("status", "")),
        aliases=aliases,
        metric=metric if isinstance(metric, int | float) else None,
        gate_reason=str(entry.get("reason", "")),
        canary=f"{canary['decision']}: {canary.get('reason', '')}" if canary.get("decision") else "",
        watch=f"{watch['decision']}: {watch.get('reason', '')}" if watch.get("decision") else "",
        dataset_id=lineage.get("dataset_id"),
        why=why,
        registered_at=entry.get("registered_at"),
        dag_id=lineage.get("dag_id"),
        run_id=run_id,
        card_key=f"{model_prefix(pipeline, version)}/card.html",
        evaluation_key=f"{report_prefix(pipeline, run_id)}/evaluation.html" if run_id else None,
    )
