# The model server: `airflow-mlops serve` (Starlette on uvicorn, no Airflow process), for docker/k8s/model-server.yaml
# and as the custom predictor of a KServe InferenceService (`canary.kserve.image`).
#
#   docker build -f docker/server.Dockerfile -t registry.example/airflow-mlops-server:0.9 .
#   docker run -p 8080:8080 registry.example/airflow-mlops-server:0.9 serve --artifact-root s3://bucket/mlops --pipeline churn --host 0.0.0.0
#
# The serving path never imports Airflow, but the package declares apache-airflow among its dependencies, so the
# full runtime set is installed: a slimmer image needs a serving-only extra in pyproject.toml first.
# A patch-level tag on Debian bookworm, so a rebuild gets the same interpreter and libc.
FROM python:3.11.14-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MLOPS_WAL_DIR=/var/lib/airflow-mlops/wal

# LightGBM's OpenMP runtime; the version follows bookworm, which the tag above pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# Everything is installed as root into a venv the server cannot write to; the server runs as uid 10001.
RUN python -m venv /opt/venv \
 && groupadd --system --gid 10001 mlops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/mlops --create-home mlops \
 && mkdir -p /var/lib/airflow-mlops/wal /var/lib/airflow-mlops/artifacts \
 && chown -R 10001:10001 /var/lib/airflow-mlops

# The runtime requirements (pyproject's dependencies, no test or team extras) pinned by requirements.lock; this
# layer changes only with pyproject.toml or the lock.
WORKDIR /tmp/build
COPY pyproject.toml requirements.lock docker/runtime_requirements.py ./
RUN python runtime_requirements.py pyproject.toml > runtime.txt \
 && pip install --no-cache-dir -r runtime.txt -c requirements.lock

COPY README.md ./
COPY airflow_mlops ./airflow_mlops
RUN pip install --no-cache-dir --no-deps . \
 && python -m compileall -q /opt/venv/lib/python3.11/site-packages/airflow_mlops \
 && rm -rf /tmp/build

WORKDIR /home/mlops
# Numeric, so Kubernetes can check runAsNonRoot without a runAsUser.
USER 10001:10001
# The write-ahead folder of the prediction log (--wal-dir defaults to $MLOPS_WAL_DIR): mount a volume here that
# outlives the container, or acknowledged rows not yet shipped to the store are lost with it.
VOLUME ["/var/lib/airflow-mlops/wal"]
EXPOSE 8080

# /health answers 200 once a production model is loaded (503 before, and while the registry has none), so the
# container reads healthy only when it can answer /predict. python's urllib, as a slim image has no curl; an
# HTTP error status raises, and the command exits non-zero. The port is the CMD's: change both together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]

ENTRYPOINT ["airflow-mlops"]
# The default serves a local store mounted at /var/lib/airflow-mlops/artifacts
# (`docker run -v $PWD/.airflow/mlops:/var/lib/airflow-mlops/artifacts -p 8080:8080 IMAGE`); any other root or
# pipeline: pass the whole `serve ...` command (the Deployment in docker/k8s/ sets its own args). --workers
# defaults to the cores the container sees.
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--artifact-root", "file:///var/lib/airflow-mlops/artifacts", "--pipeline", "churn"]
