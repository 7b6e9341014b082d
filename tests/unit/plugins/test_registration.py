"""The plugin as Airflow loads it: through the ``airflow.plugins`` entry point, with nothing heavy imported."""

from __future__ import annotations

import json
import subprocess
import sys

from airflow_mlops.plugins import URL_PREFIX, LazyApp, MlopsPlugin

LOAD = """
import json, sys
from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
info = [p for p in plugins_manager.get_plugin_info() if p["name"] == "airflow-mlops"]
heavy = ["pandas", "pyarrow", "lightgbm", "evidently", "apache_beam", "boto3", "kubernetes",
         "airflow_mlops.plugins.app", "airflow_mlops.plugins.pages", "airflow_mlops.plugins.readers",
         "airflow_mlops.store.registry"]
print(json.dumps({"info": info, "errors": plugins_manager.get_import_errors(),
                  "loaded": [m for m in heavy if m in sys.modules]}, default=str))
"""


def run_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


class TestRegistration:
    def test_loaded_from_the_entry_point_alone_without_heavy_imports(self, airflow_db):
        found = run_python(LOAD)
        [info] = found["info"]
        assert info["source"].startswith("$site_packages") or "airflow-mlops" in info["source"]
        assert info["fastapi_apps"] == [{"app": "airflow_mlops.plugins.LazyApp", "url_prefix": "/mlops", "name": "airflow-mlops"}]
        assert {v["destination"] for v in info["external_views"]} == {"nav", "dag"}
        assert not found["errors"], "no import error, and no 'already registered' (one registration only)"
        assert found["loaded"] == [], "loading the plugin imports neither the app nor the ML stack"

    def test_airflow_plugins_lists_it(self, airflow_db):
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "plugins", "-o", "json"], capture_output=True, text=True, check=True
        )
        listed = json.loads(done.stdout[done.stdout.index("[") :])
        assert any(p["name"] == "airflow-mlops" for p in listed)

    def test_views_point_at_the_app(self):
        nav, dag = MlopsPlugin.external_views
        assert nav["href"] == f"{URL_PREFIX}/" and nav["destination"] == "nav"
        assert dag["href"] == f"{URL_PREFIX}/dags/{{DAG_ID}}" and dag["destination"] == "dag" and dag["url_route"]
        assert not URL_PREFIX.startswith(("/api/v2", "/ui", "/execution", "/auth", "/pluginsv2"))

    def test_app_is_built_once_on_first_use(self):
        lazy = LazyApp()
        assert lazy._app is None
        assert lazy.get() is lazy.get() and lazy._app is not None
