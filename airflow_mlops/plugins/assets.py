"""The retrain Asset event of an approved request, emitted by the api-server the way Airflow's own REST route
``POST /api/v2/assets/events`` emits a manual asset event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_mlops.exceptions import ActionRefused


def emit_retrain_request(pipeline: str, request: Mapping[str, Any], user: str) -> dict[str, Any]:
    """Emit the pipeline's retrain Asset event for an approved request: the training DAG scheduled on the Asset runs
    and closes the request, as it does for one the monitor DAG emitted (the event carries the same extra).

    :param pipeline: pipeline name.
    :param request: the approval (:func:`airflow_mlops.stages.retraining.decide_request`'s result): its
        ``request_id`` and ``request_reason``.
    :param user: who approved, added to the event's extra as ``approved_by``.
    :raises ActionRefused: the Asset is unknown to Airflow (no DAG using it was parsed yet).
    :returns: the Asset event's id, asset name and extra.
    """
    from airflow.assets.manager import asset_manager
    from airflow.utils.session import create_session

    extra = {"request_id": request["request_id"], "reason": request["request_reason"], "approved_by": user}
    with create_session() as session:
        asset = _active_asset(session, pipeline)
        name = asset.name
        event = asset_manager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)
        if event is None:
            raise ActionRefused(f"Airflow did not record an event for asset {name!r}.")
        session.flush()
        return {"id": event.id, "asset": name, "extra": extra}


def check_retrain_asset(pipeline: str) -> None:
    """Refuse (before an approval is recorded) when the pipeline's retrain Asset is unknown to Airflow.

    :raises ActionRefused: no active Asset of that name (no DAG using it was parsed yet).
    """
    from airflow.utils.session import create_session

    with create_session() as session:
        _active_asset(session, pipeline)


def _active_asset(session: Any, pipeline: str) -> Any:
    """The pipeline's active retrain ``AssetModel``, or ActionRefused."""
    from airflow.models.asset import AssetModel
    from sqlalchemy import select

    from airflow_mlops.operators.retraining import retrain_asset

    name = retrain_asset(pipeline).name
    asset = session.scalar(select(AssetModel).where(AssetModel.name == name, AssetModel.active.has()).limit(1))
    if asset is None:
        raise ActionRefused(f"Airflow knows no active asset {name!r}: is the training DAG of {pipeline} parsed?")
    return asset
