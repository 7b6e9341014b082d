"""The post-promotion watch of the deployment stage: judge a promoted model against the holdback on the model it
replaced (or, without one, against its canary-time figures), keep it or revert production to the replaced model."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.serving.predlog import served_rows
from airflow_mlops.serving.predlog_reader import read_log
from airflow_mlops.stages.deployment.canary import first_labels, model_classes
from airflow_mlops.store.events import append_event, read_events
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.serving.targets import ServingTarget
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def canary_baseline(store: ArtifactStore, pipeline: str, version: str) -> dict[str, Any] | None:
    """The figures of ``version``'s last passed canary step that compared it with production, or None."""
    steps = [
        e
        for e in read_events(store, pipeline)
        if e["kind"] == "canary_analysis" and e.get("version") == version and e.get("passed") and e.get("figures")
    ]
    return steps[-1]["figures"] if steps else None


def holdback_of(doc: Mapping[str, Any], version: str) -> dict[str, Any] | None:
    """The registry's holdback kept beside ``version`` (see :func:`airflow_mlops.stages.deployment.canary.hold_back`),
    or None."""
    held = doc["aliases"].get("holdback") or {}
    return held if held.get("beside") == version and held.get("weight") else None


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

    With a holdback beside it, ``version`` is compared with the held-back model over the same window of the log
    (:func:`airflow_mlops.ml.canary.watch`) once each side has ``min_requests`` requests; without one (holdback 0),
    its rows since promotion are compared with its canary-time figures
    (:func:`airflow_mlops.ml.canary.watch_against_canary_time`). Fails as soon as a comparison fails; passes when
    ``watch_seconds`` end without one, and at once when the version is no longer production or, without a
    holdback, was promoted without a canary (nothing to compare with).
    """
    from airflow_mlops.ml.canary import Criteria, Verdict, requests_of, watch, watch_against_canary_time

    doc = ModelRegistry(store, pipeline).load()
    production = doc["aliases"].get("production") or {}
    if production.get("version") != version:
        why = f"{version} is no longer production ({production.get('version')} is): nothing to watch"
        return Verdict(True, why, {}).to_dict() | {"version": version}
    limits = Criteria(**criteria)
    held = holdback_of(doc, version)
    classes = model_classes(store, pipeline, [version, held and held["version"]]) if task == "multiclass" else None
    if held:
        since = datetime.fromisoformat(production["promoted_at"]).timestamp()
        start, sides = float(held["since"]), {"now": version, "holdback": held["version"]}

        def judge(frame: Any, labels: Any) -> Verdict:
            return watch(frame, labels, version=version, holdback=held["version"], task=task, criteria=limits, classes=classes)
    else:
        baseline = canary_baseline(store, pipeline, version)
        if baseline is None:
            return Verdict(True, f"{version} has no canary-time figures to compare with", {}).to_dict() | {"version": version}
        since = datetime.fromisoformat(production["promoted_at"]).timestamp()
        start, sides = since, {"now": version}

        def judge(frame: Any, labels: Any) -> Verdict:
            rows = frame[frame["_version"] == version]
            own = classes[version] if classes else None
            return watch_against_canary_time(rows, labels, baseline=baseline, task=task, criteria=limits, classes=own)

    frame = served_rows(read_log(store, pipeline, "predictions", start))
    counts = {side: requests_of(frame[frame["_version"] == v]) for side, v in sides.items()}
    ended = now - since >= watch_seconds
    if min(counts.values()) < min_requests:
        if not ended:
            log.info(
                "Watching %s: %s of %d requests each, %.0f/%.0f s", version, counts, min_requests, now - since, watch_seconds
            )
            return None
        on_holdback = f" ({counts['holdback']} on the holdback)" if held else ""
        each = " on each side" if held else ""
        why = f"{counts['now']} requests since promotion{on_holdback}, fewer than the {min_requests} needed{each} to judge: kept"
        return Verdict(True, why, {side: {"requests": n} for side, n in counts.items()}).to_dict() | {"version": version}
    verdict = judge(frame, first_labels(store, pipeline, start))
    if verdict.passed and not ended:
        log.info("Watching %s: within limits so far (%s requests, %.0f/%.0f s)", version, counts, now - since, watch_seconds)
        return None
    return verdict.to_dict() | {"version": version}


def resolve_watch(
    store: ArtifactStore, pipeline: str, verdict: Mapping[str, Any], *, target: ServingTarget | None = None
) -> dict[str, Any]:
    """Keep the watched version, or revert production to the model it replaced in one compare-and-swap on the
    alias when the watch failed; either way the holdback beside it ends (all traffic to what is production then). The outcome is recorded on the version and in the events log; no retrain
    request is filed, and a reverted version is never deployed again
    (:func:`airflow_mlops.stages.deployment.canary.canary_deploy` refuses it).

    Idempotent: on a retry, a version already reverted (or moved off production by someone else) is left as it is.
    ``target`` (None: the local model server, which follows the aliases) is told to serve the reverted-to model alone,
    or the kept one alone.
    """
    version, now = verdict["version"], datetime.now(UTC).isoformat()
    decision = "kept" if verdict["passed"] else "reverted"

    def mutate(doc: dict[str, Any]) -> None:
        if holdback_of(doc, version):  # the watch ends, and its control with it: all traffic to production
            doc["aliases"].pop("holdback")
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
    watched = doc["versions"].get(version, {}).get("watch", {})
    decision = watched.get("decision", decision)
    if target is not None and production:  # a retry sends the same state again, which changes nothing
        if decision == "reverted":
            target.restore(production)
        elif production == version:  # kept: the holdback ends, the promoted model takes all traffic
            target.promote(version)
    if watched.get("source") == "ui":  # an operator rolled it back from the ops UI, which recorded the event
        return {
            "decision": decision,
            "version": version,
            "reason": watched["reason"],
            "production": production,
            "event_time": watched["at"],
        }
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
