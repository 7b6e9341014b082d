"""The ops UI's FastAPI app, mounted by Airflow's api-server under ``/mlops`` (see ``MlopsPlugin``).

A mounted app gets no authentication from Airflow: every route here declares its own. Pages need a logged-in
Airflow user who may read the pipeline's training DAG (a browser without a session is sent to Airflow's login
page); control actions need the right to edit that DAG (``PUT``, the auth manager decides), take JSON bodies only
(cookies carry no CSRF token, and a cross-site form cannot send JSON) and answer JSON.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, bearer_scheme, get_user, requires_access_dag
from airflow.models.dag import DagTag
from airflow.models.dagrun import DagRun
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.plugins import URL_PREFIX
from airflow_mlops.plugins.pages.layout import Urls, message_page
from airflow_mlops.plugins.pages.overview import overview_page
from airflow_mlops.plugins.pages.pipeline import pipeline_page
from airflow_mlops.plugins.readers.overview import OverviewRow, overview_row
from airflow_mlops.plugins.readers.pipeline import pipeline_view
from airflow_mlops.plugins.readers.pipelines import (
    RunState,
    configs_pattern,
    find_pipelines,
    monitor_dag_id,
    open_store,
    pipeline_of_dag,
    training_dag_id,
)
from airflow_mlops.store.layout import is_report_key

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig

log = logging.getLogger(__name__)

ACTIONS = ("promote", "rollback", "pause", "resume")
DECISIONS = ("approve", "dismiss")
RUNS_SHOWN = 15

PAGE_SECURITY = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
REPORT_SECURITY = {
    # Reports hold data values and scripts (evidently's): a sandbox gives them an origin of their own, so nothing
    # in one can act as the logged-in user.
    "Content-Security-Policy": "sandbox allow-scripts allow-popups; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
}
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2">'
    '<polyline points="3 17 9 11 13 15 21 7"/><polyline points="15 7 21 7 21 13"/></svg>'
)


class LoginRequired(Exception):
    """A page was asked for without a valid Airflow session."""


async def page_user(request: Request, bearer: Annotated[Any, Depends(bearer_scheme)]) -> BaseUser:
    """The logged-in user of a page request; without one the browser goes to Airflow's login page."""
    try:
        return await get_user(request, None, bearer)
    except HTTPException as err:
        if err.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):  # none, expired or invalid
            raise LoginRequired from err
        raise


PageUser = Annotated[BaseUser, Depends(page_user)]


def _to_login(request: Request, _: Exception) -> Response:
    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status.HTTP_307_TEMPORARY_REDIRECT)


def authorize(request: Request, user: BaseUser, pipeline: str, method: str) -> None:
    """403 unless ``user`` may ``method`` (``GET``: read, ``PUT``: edit) the pipeline's training DAG."""
    requires_access_dag(method, param_dag_id=training_dag_id(pipeline))(request, user)  # type: ignore[arg-type]


def allowed(request: Request, user: BaseUser, pipeline: str, method: str) -> bool:
    try:
        authorize(request, user, pipeline, method)
    except HTTPException:
        return False
    return True


def urls_of(request: Request) -> Urls:
    """Links relative to where the app is mounted (Airflow may live under a path of ``[api] base_url``)."""
    app_root = request.scope.get("root_path", "").rstrip("/") or URL_PREFIX
    return Urls(app=app_root, airflow=app_root.removesuffix(URL_PREFIX))


def html(text: str, code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, code, headers=PAGE_SECURITY)


def find(pipeline: str) -> tuple[PipelineConfig, Any]:
    """The pipeline's config and store; 404 when ``[mlops] configs`` has no such pipeline."""
    config = find_pipelines(configs_pattern()).configs.get(pipeline)
    if config is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No pipeline {pipeline!r} in [mlops] configs ({configs_pattern()}).")
    return config, open_store(config)


def run_state(run: DagRun) -> RunState:
    return RunState(run.dag_id, run.run_id, str(getattr(run.state, "value", run.state)), str(run.run_type), run.run_after)


def latest_runs(session: Any, dag_ids: list[str], limit: int) -> list[RunState]:
    """The newest runs of ``dag_ids`` in Airflow's DB, newest first."""
    query = select(DagRun).where(DagRun.dag_id.in_(dag_ids)).order_by(DagRun.run_after.desc()).limit(limit)
    return [run_state(r) for r in session.scalars(query)]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 415 for anything but ``application/json``, 400 for a body that is not an object."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json.")
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"The body is not JSON: {err}") from err
    if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str | None):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, 'Expected {"reason": "<text>"} (reason optional).')
    return body


def create_app() -> FastAPI:
    """The ops UI: pages, reports and control routes (paths relative to ``/mlops``)."""
    app = FastAPI(title="airflow-mlops ops UI", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(LoginRequired, _to_login)

    @app.get("/icon.svg", include_in_schema=False)
    def icon() -> Response:
        return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request, user: PageUser, session: SessionDep) -> HTMLResponse:
        found = find_pipelines(configs_pattern())
        rows = []
        for name, config in found.configs.items():
            if not allowed(request, user, name, "GET"):
                continue
            runs = latest_runs(session, [training_dag_id(name)], 1)
            try:
                rows.append(overview_row(open_store(config), name, runs[0] if runs else None))
            except MlopsError as err:
                rows.append(OverviewRow(name, error=str(err)))
        return html(overview_page(rows, found.errors, urls_of(request), source=configs_pattern()))

    @app.get("/pipelines/{pipeline}", response_class=HTMLResponse)
    def show_pipeline(pipeline: str, request: Request, user: PageUser, session: SessionDep) -> HTMLResponse:
        urls = urls_of(request)
        try:
            config, store = find(pipeline)
        except HTTPException as err:
            return html(message_page("Unknown pipeline", str(err.detail), urls), err.status_code)
        authorize(request, user, pipeline, "GET")
        runs = latest_runs(session, [training_dag_id(pipeline), monitor_dag_id(pipeline)], RUNS_SHOWN)
        return html(pipeline_page(pipeline_view(store, config, runs), urls))

    @app.get("/dags/{dag_id}", response_class=HTMLResponse)
    def dag_page(dag_id: str, request: Request, user: PageUser, session: SessionDep) -> Response:
        tags = list(session.scalars(select(DagTag.name).where(DagTag.dag_id == dag_id)))
        pipeline = pipeline_of_dag(dag_id, tags)
        if pipeline is None or pipeline not in find_pipelines(configs_pattern()).configs:
            text = f"The DAG {dag_id} belongs to no ML pipeline of [mlops] configs."
            return html(message_page("No ML pipeline", text, urls_of(request)))
        return RedirectResponse(urls_of(request).pipeline(pipeline), status.HTTP_303_SEE_OTHER)

    @app.get("/reports/{pipeline}/{key:path}", response_class=HTMLResponse)
    def report(pipeline: str, key: str, request: Request, user: PageUser) -> HTMLResponse:
        if not is_report_key(pipeline, key):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Not a report of this pipeline.")
        _, store = find(pipeline)
        authorize(request, user, pipeline, "GET")
        try:
            return HTMLResponse(store.read_bytes(key), headers=REPORT_SECURITY)
        except ArtifactNotFound as err:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No report {key} in the store of {pipeline}.") from err

    @app.post("/pipelines/{pipeline}/actions/{action}")
    async def act(
        pipeline: str, action: str, request: Request, user: GetUserDep, body: Annotated[dict[str, Any], Depends(json_body)]
    ) -> JSONResponse:
        if action not in ACTIONS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Unknown action {action!r}; expected one of {', '.join(ACTIONS)}.")

        def run(config: Any, store: Any) -> dict[str, Any]:
            from airflow_mlops.stages.deployment.operator_actions import operator_action

            serving = config.canary.target if config.canary else "local"  # kserve: refused, the cluster is not moved
            return operator_action(store, pipeline, action, user=user.get_name(), reason=body.get("reason"), serving=serving)

        return await control(request, user, pipeline, run)

    @app.post("/pipelines/{pipeline}/requests/{request_id}/{decision}")
    async def decide(
        pipeline: str,
        request_id: str,
        decision: str,
        request: Request,
        user: GetUserDep,
        body: Annotated[dict[str, Any], Depends(json_body)],
    ) -> JSONResponse:
        if decision not in DECISIONS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Unknown decision {decision!r}; expected approve or dismiss.")

        def run(config: Any, store: Any) -> dict[str, Any]:
            from airflow_mlops.plugins.assets import check_retrain_asset, emit_retrain_request
            from airflow_mlops.stages.retraining import decide_request, pending_request

            name = user.get_name()
            if decision == "approve":  # before deciding: an approval whose event cannot be emitted would stay stuck
                pending_request(store, pipeline, request_id)
                check_retrain_asset(pipeline)
            event = decide_request(store, pipeline, request_id, decision, user=name, reason=body.get("reason"))
            if decision == "approve":
                emit_retrain_request(pipeline, event, name)
            return event

        return await control(request, user, pipeline, run)

    return app


async def control(request: Request, user: BaseUser, pipeline: str, run: Any) -> JSONResponse:
    """Run a control action for ``user`` on ``pipeline``'s store: 404 unknown pipeline, 403 without DAG edit rights,
    409 when the stage refuses it; else ``{"ok": true, "event": ...}``."""
    from airflow_mlops.exceptions import ActionRefused

    def locate_and_run() -> dict[str, Any]:
        config, store = find(pipeline)
        authorize(request, user, pipeline, "PUT")
        return run(config, store)

    try:
        event = await run_in_threadpool(locate_and_run)
    except ActionRefused as err:
        return JSONResponse({"detail": str(err)}, status.HTTP_409_CONFLICT)
    log.info("%s: %s by %s", pipeline, event.get("kind"), user.get_name())
    return JSONResponse({"ok": True, "event": event}, headers={"Cache-Control": "no-store"})
