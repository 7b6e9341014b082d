import importlib
import json
import pkgutil
import subprocess
import sys
from importlib.metadata import entry_points
from importlib.resources import files

import yaml

import airflow_mlops
from airflow_mlops.get_provider_info import get_provider_info


def provider_yaml() -> dict:
    return yaml.safe_load(files("airflow_mlops").joinpath("provider.yaml").read_text())


class TestProviderInfo:
    def test_equals_provider_yaml_and_version(self):
        assert get_provider_info() == provider_yaml()
        assert provider_yaml()["versions"][0] == airflow_mlops.__version__

    def test_entry_point_is_registered(self):
        (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_mlops")]
        assert ep.load() is get_provider_info

    def test_valid_against_airflows_provider_schema(self):
        import jsonschema
        from airflow import providers_manager

        schema = json.loads(files(providers_manager.__package__ or "airflow").joinpath("provider_info.schema.json").read_text())
        jsonschema.validate(get_provider_info(), schema)

    def test_every_module_and_class_listed_exists(self):
        info = get_provider_info()
        for kind in ("operators", "hooks", "sensors", "triggers"):
            for entry in info[kind]:
                for module in entry["python-modules"]:
                    importlib.import_module(module)
        for dotted in info["extra-links"] + [c["hook-class-name"] for c in info["connection-types"]]:
            module, _, name = dotted.rpartition(".")
            assert hasattr(importlib.import_module(module), name), dotted

    def test_every_operator_and_hook_module_is_listed(self):
        info = get_provider_info()
        for kind in ("operators", "hooks", "sensors", "triggers"):
            listed = {m for e in info[kind] for m in e["python-modules"]}
            package = importlib.import_module(f"airflow_mlops.{kind}")
            present = {f"airflow_mlops.{kind}.{m.name}" for m in pkgutil.iter_modules(package.__path__)}
            assert present == listed, kind

    def test_airflow_lists_the_provider(self, airflow_db):
        out = subprocess.run(
            [sys.executable, "-m", "airflow", "providers", "list", "-o", "json"], capture_output=True, text=True, check=True
        )
        providers = {p["package_name"]: p["version"] for p in json.loads(out.stdout)}
        assert providers["airflow-mlops"] == airflow_mlops.__version__
