"""Canary deployment on the model server: put a candidate on the canary alias, judge each step, resolve."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.serving.predlog import read_log
from airflow_mlops.store.events import append_event, read_events
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.serving.targets import ServingTarget
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def canary_deploy(
    store: ArtifactStore, pipeline: str, version: str, percent: int, *, target: ServingTarget | None = None
) -> dict[str, Any]:
    """Put a blessed candidate on the canary alias with ``percent`` of the traffic (idempotent).

    The first model of a pipeline has no production to be compared with: it goes straight to production.
    ``target`` (None: the local model server, which follows the aliases by itself) is told after the registry,
    on every call, a retry's too: the registry says what should serve, the target catches up.
    """
    registry = ModelRegistry(store, pipeline)
    doc = registry.load()
    watched = ((doc["versions"].get(version) or {}).get("watch") or {}).get("decision")
    if watched in ("reverted", "breached"):  # retraining on the same data makes the same version: no loop
        raise MlopsError(f"{pipeline} model {version} failed its post-promotion watch and is not deployed again.")
    production = (doc["aliases"].get("production") or {}).get("version")
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
        if target is not None:
            target.deploy(version, percent, None)
        return {"canary": None, "weight": 0, "production": version}
    current = doc["aliases"].get("canary") or {}
    if current.get("version") == version and current.get("weight") == percent:
        result = {"canary": version, "weight": percent, "since": current["since"]}
    else:
        since = time.time()
        registry.set_alias("canary", version, weight=percent, since=since)
        append_event(store, pipeline, "canary_step", version=version, weight=percent, production=production)
        log.info("Canary %s now takes %s%% of %s traffic", version, percent, pipeline)
        result = {"canary": version, "weight": percent, "since": since}
    if target is not None:
        target.deploy(version, percent, production)
    return result


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
        verdict = analyze(
            frame,
            _first_labels(store, pipeline, canary["since"]),
            canary=canary["version"],
            production=production,
            task=task,
            criteria=Criteria(**criteria),
        )
    return verdict.to_dict() | {"version": canary["version"], "production": production, "weight": canary["weight"]}


def canary_resolve(
    store: ArtifactStore,
    pipeline: str,
    decision: str,
    verdict: Mapping[str, Any],
    *,
    target: ServingTarget | None = None,
) -> dict[str, Any]:
    """Promote the canary to production or roll it back; the decision and its figures go to the events log.

    ``target`` (None: the local model server) follows once the registry changed: the promoted canary takes all
    traffic, or production serves alone again. A retry repeats that call, which changes nothing the second time.
    """
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
    if target is not None and version:
        if decision == "promote":
            target.promote(version)
        elif previous:
            target.restore(previous)
    log.info("Canary %s of %s: %s (%s)", version, pipeline, decision.upper(), verdict["reason"])
    return {
        "decision": decision,
        "version": version,
        "reason": verdict["reason"],
        "production": registry.production(),
        "event_time": event["time"],
    }


def _first_labels(store: ArtifactStore, pipeline: str, since: float) -> Any:
    """Labels logged since ``since``: the first sent for an id counts (a later one cannot overwrite it)."""
    feedback = read_log(store, pipeline, "feedback", since).sort_values("_ts", kind="stable")
    return feedback[["_id", "label"]].drop_duplicates("_id", keep="first")


def canary_baseline(store: ArtifactStore, pipeline: str, version: str) -> dict[str, Any] | None:
    """The figures of ``version``'s last passed canary step that compared it with production, or None."""
    steps = [
        e
        for e in read_events(store, pipeline)
        if e["kind"] == "canary_analysis" and e.get("version") == version and e.get("passed") and e.get("figures")
    ]
    return steps[-1]["figures"] if steps else None


def promotion_watch_check(
    store: ArtifactStore,
    pipeline: str,
    *,
    task: str,
    version: str,
    watch_seconds: float,
    min_requests: int,
    criteria: Mapping[str, Any],
    now: float,
) -> dict[str, Any] | None:
    """The watch's verdict on a promoted ``version``, or None while it goes on watching.

    Fails as soon as the rows since promotion (at least ``min_requests`` requests) breach the canary-time
    figures (:func:`airflow_mlops.ml.canary.watch`); passes when ``watch_seconds`` end without a breach, and at
    once when the version is no longer production or was promoted without a canary (nothing to compare with).
    """
    from airflow_mlops.ml.canary import Criteria, Verdict, requests_of, watch

    production = ModelRegistry(store, pipeline).load()["aliases"].get("production") or {}
    if production.get("version") != version:
        why = f"{version} is no longer production ({production.get('version')} is): nothing to watch"
        return Verdict(True, why, {}).to_dict() | {"version": version}
    baseline = canary_baseline(store, pipeline, version)
    if baseline is None:
        return Verdict(True, f"{version} has no canary-time figures to compare with", {}).to_dict() | {"version": version}
    since = datetime.fromisoformat(production["promoted_at"]).timestamp()
    frame = read_log(store, pipeline, "predictions", since)
    rows = frame[frame["_version"] == version]
    served, ended = requests_of(rows), now - since >= watch_seconds
    if served < min_requests:
        if not ended:
            log.info("Watching %s: %d/%d requests, %.0f/%.0f s", version, served, min_requests, now - since, watch_seconds)
            return None
        why = f"{served} requests since promotion, fewer than the {min_requests} needed to judge: kept"
        return Verdict(True, why, {"now": {"requests": served}}).to_dict() | {"version": version}
    verdict = watch(rows, _first_labels(store, pipeline, since), baseline=baseline, task=task, criteria=Criteria(**criteria))
    if verdict.passed and not ended:
        log.info("Watching %s: within limits so far (%d requests, %.0f/%.0f s)", version, served, now - since, watch_seconds)
        return None
    return verdict.to_dict() | {"version": version}


def resolve_watch(
    store: ArtifactStore, pipeline: str, verdict: Mapping[str, Any], *, target: ServingTarget | None = None
) -> dict[str, Any]:
    """Keep the watched version, or revert production to the model it replaced in one compare-and-swap on the
    alias when the watch failed. The outcome is recorded on the version and in the events log; no retrain
    request is filed, and a reverted version is never deployed again (:func:`canary_deploy` refuses it).

    Idempotent: on a retry, a version already reverted (or moved off production by someone else) is left as it is.
    ``target`` (None: the local model server, which follows the alias) is told to serve the reverted-to model alone.
    """
    version, now = verdict["version"], datetime.now(UTC).isoformat()
    decision = "kept" if verdict["passed"] else "reverted"

    def mutate(doc: dict[str, Any]) -> None:
        entry = doc["versions"].get(version)
        if entry is None or "watch" in entry:
            return
        outcome, reason = decision, verdict["reason"]
        previous = doc.get("previous_production")
        if decision == "reverted":
            if (doc["aliases"].get("production") or {}).get("version") != version or not previous:
                outcome, reason = "breached", f"{reason} (not reverted: production had moved, or there is nothing to revert to)"
            else:
                doc["aliases"]["production"] = {
                    "version": previous,
                    "promoted_at": now,
                    "reason": f"{version} reverted: {reason}",
                }
                doc["previous_production"] = version
        entry["watch"] = {"decision": outcome, "reason": reason, "at": now}

    doc = ModelRegistry(store, pipeline).update(mutate)
    production = (doc["aliases"].get("production") or {}).get("version")
    decision = doc["versions"].get(version, {}).get("watch", {}).get("decision", decision)
    if target is not None and decision == "reverted" and production:
        target.restore(production)  # a retry sends the same state again, which changes nothing
    event = append_event(
        store,
        pipeline,
        {"kept": "watch_passed", "reverted": "revert"}.get(decision, "watch_breached"),
        event_id=f"watch-{version}",
        version=version,
        production=production,
        reason=verdict["reason"],
        figures=verdict.get("figures", {}),
    )
    log.log(
        logging.INFO if decision == "kept" else logging.ERROR,
        "Post-promotion watch of %s (%s): %s (%s); production is %s",
        version,
        pipeline,
        decision.upper(),
        verdict["reason"],
        production,
    )
    reason = doc["versions"].get(version, {}).get("watch", {}).get("reason", verdict["reason"])
    return {"decision": decision, "version": version, "reason": reason, "production": production, "event_time": event["time"]}
