# The GPU trainer: `airflow-mlops train ...` in the training pod (`compute.target: kubernetes`), with LightGBM built
# for CUDA. No Airflow process runs in it; inputs and outputs go through the artifact store (S3).
#
#   docker build -f docker/trainer.Dockerfile -t registry.example/airflow-mlops-trainer:0.9 .
#
# The pod asks for `nvidia.com/gpu`; the node's driver must support CUDA 12.6. Two stages: the CUDA toolkit and a
# compiler build LightGBM, and only the resulting venv goes into the runtime image.
FROM nvidia/cuda:12.6.3-devel-ubuntu22.04 AS build

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Python 3.11 from Ubuntu 22.04's own archive (universe), the version the lock is compiled for; the compilers and
# CMake for LightGBM's CUDA build. Versions follow the base image's Ubuntu release, which its tag pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev gcc g++ cmake make libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv

WORKDIR /tmp/build
COPY pyproject.toml requirements.lock docker/runtime_requirements.py ./

# LightGBM from its source distribution with the CUDA tree learner (`device_type: cuda`), at the lock's version;
# the PyPI wheels are CPU-only (or OpenCL). Keep this pin equal to lightgbm in requirements.lock: the test in
# tests/unit/test_deployment_files.py checks it, and the next step's constraint would fail on a mismatch.
RUN pip install --no-cache-dir --no-binary lightgbm --config-settings=cmake.define.USE_CUDA=ON lightgbm==4.7.0

# The rest of the runtime requirements (pyproject's dependencies, no test or team extras) pinned by the lock;
# the CUDA lightgbm above already satisfies its pin and stays.
RUN python3.11 runtime_requirements.py pyproject.toml > runtime.txt \
 && pip install --no-cache-dir -r runtime.txt -c requirements.lock

COPY README.md ./
COPY airflow_mlops ./airflow_mlops
RUN pip install --no-cache-dir --no-deps .


FROM nvidia/cuda:12.6.3-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The interpreter the venv links to and the OpenMP runtime LightGBM needs; no compilers in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mlops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/mlops --create-home mlops

COPY --from=build /opt/venv /opt/venv

WORKDIR /home/mlops
# Numeric, so Kubernetes can check runAsNonRoot without a runAsUser.
USER 10001:10001
ENTRYPOINT ["airflow-mlops"]
# The training pod passes its own arguments (`train ...`); without them the image prints the commands.
CMD ["--help"]
