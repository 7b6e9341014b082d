"""The ops UI mounted in Airflow's own api-server app, behind Airflow's real auth (SimpleAuthManager users, JWTs from
its ``/auth/token`` route): who may read, who may act, what the routes answer."""

from __future__ import annotations

import json
import shutil

import ops_scene
import pytest
from fastapi.testclient import TestClient
from ops_scene import MONITOR_RUNS, PIPELINE

from airflow_mlops.store.events import read_events
from airflow_mlops.store.layout import report_prefix
from airflow_mlops.store.registry import ModelRegistry

built, scene = ops_scene.built, ops_scene.scene_fixture  # pytest fixtures
PASSWORDS = {"ana": "ana-pw", "vic": "vic-pw", "ula": "ula-pw"}


@pytest.fixture(scope="module")
def store(scene, tmp_path_factory):
    """A copy of the scene for this module: the control routes change it."""
    folder = tmp_path_factory.mktemp("routes")
    shutil.copytree(scene.store.root_uri.removeprefix("file://"), folder / "store")
    config = scene.config_path.read_text().replace(scene.store.root_uri, f"file://{folder / 'store'}")
    (folder / "configs").mkdir()
    (folder / "configs" / "churn.yaml").write_text(config)
    return folder


@pytest.fixture(scope="module")
def app(airflow_db, store):
    """Airflow's api-server app (its core part, where plugins are mounted) with three users and the scene's config."""
    passwords = store / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "ana:admin,vic:viewer,ula:user")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        env.setenv("AIRFLOW__MLOPS__CONFIGS", str(store / "configs"))
        from airflow.api_fastapi.app import create_app, purge_cached_app

        yield create_app("core")
        purge_cached_app()


def client(app, user: str | None = None) -> TestClient:
    """A browser-like client: logged in as ``user`` (its JWT cookie, as Airflow's login page sets it) or anonymous."""
    web = TestClient(app, follow_redirects=False)
    if user:
        response = web.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
        assert response.status_code == 201, response.text
        web.cookies.set("_token", response.json()["access_token"])
    return web


def paused(store_root) -> dict | None:
    from airflow_mlops.store.artifacts import ArtifactStore

    doc = ModelRegistry(ArtifactStore.from_uri(str(store_root / "store")), PIPELINE).load()
    return (doc["aliases"].get("canary") or {}).get("paused")


class TestAuth:
    def test_anonymous_page_goes_to_the_login_page(self, app):
        response = client(app).get("/mlops/pipelines/churn")
        assert response.status_code == 307
        assert response.headers["location"] == "/auth/login?next=http%3A%2F%2Ftestserver%2Fmlops%2Fpipelines%2Fchurn"

    def test_anonymous_post_is_401(self, app):
        response = client(app).post("/mlops/pipelines/churn/actions/pause", json={})
        assert response.status_code == 401 and response.json() == {"detail": "Not authenticated"}

    def test_bearer_token_reads_too(self, app):
        token = client(app, "vic").cookies["_token"]
        response = TestClient(app).get("/mlops/", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and '<tr data-pipeline="churn">' in response.text

    def test_viewer_reads_but_may_not_act(self, app, store):
        viewer = client(app, "vic")
        assert viewer.get("/mlops/pipelines/churn").status_code == 200
        response = viewer.post("/mlops/pipelines/churn/actions/pause", json={"reason": "look"})
        assert response.status_code == 403 and paused(store) is None

    def test_form_posts_are_refused(self, app, store):
        response = client(app, "ana").post("/mlops/pipelines/churn/actions/pause", data={"reason": "csrf"})
        assert response.status_code == 415 and paused(store) is None


class TestPages:
    def test_overview_and_pipeline_page(self, app, scene):
        web = client(app, "vic")
        overview = web.get("/mlops/")
        assert overview.status_code == 200 and f"<code>{scene.production}</code>" in overview.text
        assert "frame-ancestors 'self'" in overview.headers["content-security-policy"]
        page = web.get("/mlops/pipelines/churn").text
        for part in ('<section id="versions">', '<svg id="canary-chart"', '<svg id="drift-chart"', '<section id="events">'):
            assert part in page

    def test_unknown_pipeline_is_404(self, app):
        response = client(app, "vic").get("/mlops/pipelines/nope")
        assert response.status_code == 404 and "No pipeline &#x27;nope&#x27;" in response.text

    @pytest.mark.parametrize(
        ("dag_id", "location"),
        [
            pytest.param("mlops_churn_monitor", "/mlops/pipelines/churn", id="pipeline-dag"),
            pytest.param("other", None, id="other"),
        ],
    )
    def test_dag_view_finds_the_pipeline(self, app, dag_id, location):
        response = client(app, "vic").get(f"/mlops/dags/{dag_id}")
        if location:
            assert response.status_code == 303 and response.headers["location"] == location
        else:
            assert response.status_code == 200 and "belongs to no ML pipeline" in response.text


class TestReports:
    def test_serves_a_report_in_a_sandbox(self, app):
        key = f"{report_prefix(PIPELINE, MONITOR_RUNS[1])}/drift.html"
        response = client(app, "vic").get(f"/mlops/reports/churn/{key}")
        assert response.status_code == 200 and response.text == "<h1>drift</h1>"
        assert response.headers["content-security-policy"].startswith("sandbox")

    def test_serves_a_model_card(self, app, scene):
        response = client(app, "vic").get(f"/mlops/reports/churn/models/churn/{scene.production}/card.html")
        assert response.status_code == 200 and "Model card" in response.text

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param("reports/churn/../../registry/churn.json", id="dotdot"),
            pytest.param("reports/churn/%2E%2E/x.html", id="encoded-dotdot"),
            pytest.param("registry/churn.json", id="registry"),
            pytest.param("models/churn/v1/model.txt", id="model-file"),
            pytest.param("reports/other/run/drift.html", id="other-pipeline"),
            pytest.param("reports/churn/run/drift.json", id="not-html"),
            pytest.param("reports/churn/nope/drift.html", id="missing"),
        ],
    )
    def test_anything_else_is_404(self, app, key):
        assert client(app, "vic").get(f"/mlops/reports/churn/{key}").status_code == 404

    def test_anonymous_report_goes_to_login(self, app, scene):
        response = client(app).get(f"/mlops/reports/churn/models/churn/{scene.production}/card.html")
        assert response.status_code == 307 and response.headers["location"].startswith("/auth/login?next=")


class TestControl:
    def test_admin_pauses_and_resumes_the_canary(self, app, store):
        admin = client(app, "ana")
        response = admin.post("/mlops/pipelines/churn/actions/pause", json={"reason": "weekend"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ok"] and body["event"]["kind"] == "canary_pause" and body["event"]["user"] == "ana"
        assert paused(store)["user"] == "ana"
        again = admin.post("/mlops/pipelines/churn/actions/pause", json={})
        assert again.status_code == 409 and "already paused by ana" in again.json()["detail"]
        assert "paused by ana" in admin.get("/mlops/pipelines/churn").text
        assert admin.post("/mlops/pipelines/churn/actions/resume", json={}).status_code == 200 and paused(store) is None

    def test_a_user_with_dag_edit_rights_may_act(self, app, store):
        response = client(app, "ula").post("/mlops/pipelines/churn/actions/pause", json={})
        assert response.status_code == 200 and paused(store)["user"] == "ula"
        client(app, "ula").post("/mlops/pipelines/churn/actions/resume", json={})

    def test_unknown_action_or_pipeline_is_404(self, app):
        admin = client(app, "ana")
        assert admin.post("/mlops/pipelines/churn/actions/explode", json={}).status_code == 404
        assert admin.post("/mlops/pipelines/nope/actions/pause", json={}).status_code == 404

    def test_bad_body_is_400(self, app):
        response = client(app, "ana").post(
            "/mlops/pipelines/churn/actions/pause", content=b"[1]", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400

    def test_dismiss_closes_a_pending_request_then_approve_is_refused(self, app, store, scene):
        from airflow_mlops.store.artifacts import ArtifactStore

        admin = client(app, "ana")
        url = f"/mlops/pipelines/churn/requests/{scene.request_id}"
        response = admin.post(f"{url}/dismiss", json={"reason": "noise"})
        assert response.status_code == 200, response.text
        assert response.json()["event"]["kind"] == "retrain_decision" and response.json()["event"]["user"] == "ana"
        events = read_events(ArtifactStore.from_uri(str(store / "store")), PIPELINE)
        assert any(
            e["kind"] == "retrain_done" and e["request_id"] == scene.request_id and e["status"] == "dismissed" for e in events
        )
        refused = admin.post(f"{url}/approve", json={})
        assert refused.status_code == 409 and "already closed" in refused.json()["detail"]
        assert client(app, "vic").post(f"{url}/approve", json={}).status_code == 403
