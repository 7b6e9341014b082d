"""The ops UI in headless chromium against a real api-server: login, the pages, a report, the control buttons
(their effect checked on the store on disk), the refusals, and the training DAG's graph in Airflow's own UI."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from airflow_mlops.stages.deployment.canary import canary_deploy
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry

from .conftest import PIPELINE, login, publish, screenshot

pytestmark = pytest.mark.slow

TRAINING_DAG = f"mlops_{PIPELINE}_training"
LIFECYCLE = ("data", "features", "training", "evaluation", "registry", "deploy", "outcome")
"""The training DAG's task groups, in the order its graph must show them."""


def registry(site) -> dict:
    return ModelRegistry(site.store, PIPELINE).load()


def last_event(site, kind: str) -> dict:
    return [e for e in read_events(site.store, PIPELINE) if e["kind"] == kind][-1]


def click_action(page, action: str, reason: str, outcome: str) -> None:
    """Type a reason, press the action's button and wait for the result line to match ``outcome``; a done action
    reloads the page, which is awaited too."""
    page.fill("#action-reason", reason)
    page.click(f'button[data-action="{action}"]')
    expect(page.locator("#action-result")).to_have_text(re.compile(outcome))
    if outcome.endswith("done"):
        page.wait_for_event("load")


class TestAnonymous:
    def test_a_page_sends_the_browser_to_the_login_page(self, new_page, api_server):
        answer = httpx.get(f"{api_server}/mlops/pipelines/{PIPELINE}", follow_redirects=False)
        assert answer.status_code in (302, 307) and "/auth/login?next=" in answer.headers["location"]
        page = new_page()
        page.goto(f"/mlops/pipelines/{PIPELINE}")
        page.wait_for_url("**/auth/login**")
        assert page.locator('input[name="username"]').is_visible()

    def test_a_control_post_is_unauthorized(self, api_server, site):
        answer = httpx.post(f"{api_server}/mlops/pipelines/{PIPELINE}/actions/promote", json={"reason": "x"})
        assert answer.status_code == 401
        assert registry(site)["aliases"]["canary"]["version"] == site.v2, "nothing changed"


class TestPages:
    def test_overview_pipeline_and_report(self, new_page, site):
        page = new_page("admin")
        row = page.locator(f'tr[data-pipeline="{PIPELINE}"]')
        assert site.v1 in row.inner_text() and site.v2 in row.inner_text()
        screenshot(page, "overview")
        row.locator(f'a[href$="/pipelines/{PIPELINE}"]').click()
        page.wait_for_url(f"**/mlops/pipelines/{PIPELINE}")
        for version in (site.v1, site.v2, site.v3):
            assert page.locator(f'#versions tr[data-version="{version}"]').count() == 1
        assert "blessed" in page.locator(f'#versions tr[data-version="{site.v1}"]').inner_text()
        canary = page.locator("svg#canary-chart")
        assert canary.count() == 1 and canary.locator("polyline, path, circle").count() > 0, "the two steps are drawn"
        assert "canary within limits over 20 requests" in page.locator("#canary").inner_text()
        drift = page.locator("svg#drift-chart")
        assert drift.count() == 1 and drift.locator("polyline, path, circle").count() > 0, "the two checks are drawn"
        assert "judges no performance" in page.locator("section#performance").inner_text(), "its config has no monitor.labels"
        assert page.locator(f'a[href*="/dags/{TRAINING_DAG}/runs/"]').count() >= 1, "links to the DAG run"
        publish(screenshot(page, "pipeline"))
        screenshot(page, "pipeline-full", full_page=True)
        link = page.locator(f'#versions tr[data-version="{site.v1}"] a', has_text="evaluation")
        with page.context.expect_page() as opened:
            link.click()
        report = opened.value
        report.wait_for_load_state()
        assert f"/mlops/reports/{PIPELINE}/reports/{PIPELINE}/" in report.url and report.url.endswith("/evaluation.html")
        assert "roc_auc" in report.content()
        screenshot(report, "evaluation-report")

    def test_a_report_outside_the_store_layout_is_not_served(self, new_page):
        page = new_page("admin")
        answer = page.request.get(f"/mlops/reports/{PIPELINE}/registry/{PIPELINE}.json")
        assert answer.status == 404

    def test_training_dag_graph(self, new_page):
        page = new_page()
        login(page, "admin", next_path=f"/dags/{TRAINING_DAG}")
        page.get_by_title("Show Graph (Press g)").click()
        page.locator(".react-flow__node").first.wait_for()
        page.wait_for_timeout(1500)  # the layout settles
        lefts = [
            page.locator(".react-flow__node", has=page.get_by_text(group, exact=True)).first.bounding_box()["x"]
            for group in LIFECYCLE
        ]
        assert lefts == sorted(lefts), (
            f"the graph reads left to right in lifecycle order: {dict(zip(LIFECYCLE, lefts, strict=True))}"
        )
        publish(screenshot(page, "training-graph"))


class TestControls:
    def test_promote_then_rollback_change_the_registry_on_disk(self, new_page, site):
        page = new_page("admin")
        page.goto(f"/mlops/pipelines/{PIPELINE}")
        click_action(page, "promote", "canary figures look fine", "Promote canary: done")
        doc = registry(site)
        assert doc["aliases"]["production"]["version"] == site.v2 and "canary" not in doc["aliases"]
        event = last_event(site, "promote")
        assert (event["user"], event["source"], event["reason"]) == ("admin", "ui", "canary figures look fine")
        canary_deploy(site.store, PIPELINE, site.v3, 20)
        page.reload()
        click_action(page, "rollback", "error spikes", "done")
        doc = registry(site)
        assert doc["aliases"]["production"]["version"] == site.v2 and "canary" not in doc["aliases"]
        assert last_event(site, "rollback")["user"] == "admin" and last_event(site, "rollback")["version"] == site.v3
        click_action(page, "pause", "", "refused: 409: .*has no canary to pause")

    def test_approving_a_retrain_request_emits_the_retrain_asset_event(self, new_page, site):
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session

        page = new_page("admin")
        page.goto(f"/mlops/pipelines/{PIPELINE}")
        page.fill("#action-reason", "drift confirmed")
        page.click(f'button[data-action="approve"][data-request="{site.request_id}"]')
        expect(page.locator("#action-result")).to_have_text(re.compile("done"))
        decision = last_event(site, "retrain_decision")
        assert (decision["request_id"], decision["decision"], decision["user"]) == (site.request_id, "approve", "admin")
        with create_session() as session:
            events = (
                session.query(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.name == f"mlops_{PIPELINE}_retrain_request")
                .all()
            )
            extras = [dict(e.extra) for e in events]
        assert {"request_id": site.request_id, "reason": "drift: monthly_charges", "approved_by": "admin"} in extras

    def test_a_viewer_is_refused(self, new_page, site):
        page = new_page("viewer")
        page.goto(f"/mlops/pipelines/{PIPELINE}")
        before = registry(site)["revision"]
        click_action(page, "rollback", "not mine to do", "refused: 403")
        answer = page.request.post(f"/mlops/pipelines/{PIPELINE}/actions/rollback", data={"reason": "x"})
        assert answer.status == 403
        assert registry(site)["revision"] == before
        screenshot(page, "viewer-refused")
