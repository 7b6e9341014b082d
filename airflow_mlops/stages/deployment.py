"""Canary deployment on the model server: put a candidate on the canary alias, judge each step, resolve."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.serving.predlog import read_log
from airflow_mlops.store.events import append_event
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def canary_deploy(store: ArtifactStore, pipeline: str, version: str, percent: int) -> dict[str, Any]:
    """Put a blessed candidate on the canary alias with ``percent`` of the traffic (idempotent).

    The first model of a pipeline has no production to be compared with: it goes straight to production.
    """
    registry = ModelRegistry(store, pipeline)
    production = registry.production()
    if production in (None, version):
        if production is None:
            registry.set_alias("production", version, promoted_at=datetime.now(UTC).isoformat(), reason="first model")
            append_event(
                store,
                pipeline,
                "promote",
                event_id=f"promote-{version}",
                version=version,
                reason="first model: no production to compare with",
            )
        return {"canary": None, "weight": 0, "production": version}
    current = registry.load()["aliases"].get("canary") or {}
    if current.get("version") == version and current.get("weight") == percent:
        return {"canary": version, "weight": percent, "since": current["since"]}
    since = time.time()
    registry.set_alias("canary", version, weight=percent, since=since)
    append_event(store, pipeline, "canary_step", version=version, weight=percent, production=production)
    log.info("Canary %s now takes %s%% of %s traffic", version, percent, pipeline)
    return {"canary": version, "weight": percent, "since": since}


def canary_check(
    store: ArtifactStore,
    pipeline: str,
    *,
    task: str,
    min_requests: int,
    bake_seconds: float,
    criteria: Mapping[str, Any],
    now: float,
) -> dict[str, Any] | None:
    """The verdict on the current canary step, or None while it needs more time and traffic.

    ``criteria`` holds every :class:`airflow_mlops.ml.canary.Criteria` field (the config's ``canary.analysis``).
    """
    from airflow_mlops.ml.canary import Criteria, Verdict, analyze, requests_of

    doc = ModelRegistry(store, pipeline).load()
    canary = doc["aliases"].get("canary") or {}
    production = (doc["aliases"].get("production") or {}).get("version")
    if not canary.get("version"):
        if production:  # the deploy step promoted a first model directly
            return Verdict(True, f"{production} is production; no canary step", {}).to_dict() | {
                "version": production,
                "weight": 100,
            }
        return Verdict(False, "no canary is deployed", {}).to_dict() | {"weight": None}
    if float(canary.get("weight") or 0) >= 100:  # every request is the canary's: nothing to compare it with
        verdict = Verdict(True, f"{canary['version']} took all traffic after the previous step passed", {})
        return verdict.to_dict() | {"version": canary["version"], "production": production, "weight": canary["weight"]}
    frame = read_log(store, pipeline, "predictions", canary["since"])
    served = requests_of(frame[frame["_version"] == canary["version"]])
    if served < min_requests and now - canary["since"] < bake_seconds:
        log.info(
            "Canary %s: %d/%d requests, %.0f/%.0f s baked",
            canary["version"],
            served,
            min_requests,
            now - canary["since"],
            bake_seconds,
        )
        return None
    if served == 0:
        verdict = Verdict(False, "the canary received no traffic during the bake time", {"canary": {"requests": 0}})
    else:
        # The first label sent for an id counts (a later one cannot overwrite it).
        feedback = read_log(store, pipeline, "feedback", canary["since"]).sort_values("_ts", kind="stable")
        labels = feedback[["_id", "label"]].drop_duplicates("_id", keep="first")
        verdict = analyze(
            frame, labels, canary=canary["version"], production=production, task=task, criteria=Criteria(**criteria)
        )
    return verdict.to_dict() | {"version": canary["version"], "production": production, "weight": canary["weight"]}


def canary_resolve(store: ArtifactStore, pipeline: str, decision: str, verdict: Mapping[str, Any]) -> dict[str, Any]:
    """Promote the canary to production or roll it back; the decision and its figures go to the events log."""
    registry = ModelRegistry(store, pipeline)
    version = verdict.get("version") or registry.alias("canary")
    previous = registry.production()
    if decision == "promote" and version and previous != version:
        registry.set_alias("production", version, promoted_at=datetime.now(UTC).isoformat(), reason=verdict["reason"])
    registry.set_alias("canary", None)

    def record(doc: dict[str, Any]) -> None:
        if version in doc["versions"]:
            doc["versions"][version]["canary"] = {"decision": decision, "reason": verdict["reason"]}

    registry.update(record)
    event = append_event(
        store,
        pipeline,
        decision,
        event_id=f"{decision}-{version}",
        version=version,
        previous_production=previous,
        reason=verdict["reason"],
        figures=verdict.get("figures", {}),
    )
    log.info("Canary %s of %s: %s (%s)", version, pipeline, decision.upper(), verdict["reason"])
    return {"decision": decision, "version": version, "production": registry.production(), "event_time": event["time"]}
