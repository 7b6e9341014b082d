# Airflow with the airflow-mlops provider: the image docker/helm/values.yaml deploys with the official Helm chart
# (scheduler, dag-processor, triggerer, api-server, Celery workers or KubernetesExecutor pods).
#
#   docker build -f docker/airflow.Dockerfile -t registry.example/airflow-mlops:0.9 .                      # dags baked in
#   docker build -f docker/airflow.Dockerfile --target provider -t registry.example/airflow-mlops:0.9 .    # dags from git-sync
#
# It extends the official image of the Airflow version in requirements.lock, so the entrypoint, the `airflow`
# user (uid 50000, gid 0) and the layout under /opt/airflow are the ones the chart expects.
FROM apache/airflow:3.3.2-python3.11 AS provider

# LightGBM's wheel links the OpenMP runtime (libgomp.so.1), which the official image does not ship. The only
# step run as root; the version follows the base image's Debian release, which the tag above pins.
USER root
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# The official image expects pip to run as `airflow` (it installs into that user's environment, next to Airflow).
USER airflow
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# The runtime requirements only (pyproject's dependencies, no test or team extras), pinned by the lock: the same
# versions as development. apache-airflow is pinned to 3.3.2 there, so the base image's Airflow stays as it is.
# This layer changes only with pyproject.toml or the lock, not with the provider's code.
COPY --chown=airflow:root pyproject.toml requirements.lock docker/runtime_requirements.py /tmp/build/
RUN python /tmp/build/runtime_requirements.py /tmp/build/pyproject.toml > /tmp/build/runtime.txt \
 && pip install --no-cache-dir -r /tmp/build/runtime.txt -c /tmp/build/requirements.lock

# The provider itself, its dependencies being in place already.
COPY --chown=airflow:root README.md /tmp/build/
COPY --chown=airflow:root airflow_mlops /tmp/build/airflow_mlops
RUN pip install --no-cache-dir --no-deps /tmp/build \
 && rm -rf /tmp/build

# The default target: the same image with dags/ (the DAG file and its YAML configs) under $AIRFLOW_HOME/dags. With
# the chart's git-sync (docker/helm/values.yaml) the synced repository is mounted over that folder instead, so
# this copy is harmless there; `--target provider` leaves it out.
FROM provider AS with-dags
COPY --chown=airflow:root dags /opt/airflow/dags
