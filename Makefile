# Two commands: `make demo` (set up and run the pipeline end to end) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: install demo demo-team test browser quick style lint lock clean bench-serving bench-training bench-ui

$(BIN)/.installed: pyproject.toml requirements.lock
	@echo "==> Creating $(VENV) with $(PYTHON) and installing the locked dependencies (requirements.lock)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@$(BIN)/python -m compileall -q airflow_mlops > /dev/null  # bytecode even where PYTHONDONTWRITEBYTECODE is set
	@touch $@
	@echo "==> Installed airflow-mlops $$($(BIN)/python -c 'import airflow_mlops; print(airflow_mlops.__version__)') into $(VENV)"

install: $(BIN)/.installed

demo: install
	@bash scripts/demo.sh

# The same loop on a team's Airflow: PostgreSQL, CeleryExecutor + Redis, two workers, S3 (moto) via a connection.
demo-team: install
	@bash scripts/demo.sh --team

# The suite runs in TEST_WORKERS pytest-xdist processes, whole files to a worker, the longest first (tests/conftest.py).
# Most of the long tests wait on servers, schedulers and subprocesses, so more workers than cores pay off.
TEST_WORKERS ?= 3
test: install style browser
	@echo "==> Running the test suite (pytest, $(TEST_WORKERS) workers)"
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

# The ops UI's browser tests drive Debian's chromium with playwright (which never downloads a browser of its own).
browser:
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq chromium || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }; }

# The inner loop: style, then the tests not marked slow (no whole DAG runs, servers or the demo), in 2 workers.
quick: install style
	@$(BIN)/python -m pytest -q -m "not slow" -n 2

# ruff's lint rules and formatting (settings in pyproject.toml); `ruff format .` fixes the latter.
style: install
	@echo "==> ruff check and ruff format --check"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

lint: install
	@$(BIN)/airflow-mlops lint dags/configs

# The model server against MLServer 1.7.1 and a bare Starlette endpoint under wrk (benchmarks/serving.py);
# wrk comes from apt-get when missing, MLServer goes into its own venv under the system temp dir on first use.
bench-serving: install
	@command -v wrk > /dev/null || apt-get install -y wrk
	@$(BIN)/python benchmarks/serving.py

# Training overhead of the train stage and of `airflow-mlops train` against raw lgb.train on 1M rows (benchmarks/training.py).
bench-training: install
	@$(BIN)/python benchmarks/training.py

# Response time of each ops UI page with 50 model versions and 10k events (benchmarks/ui.py).
bench-ui: install
	@$(BIN)/python benchmarks/ui.py

# Re-resolve the lock file after changing dependencies in pyproject.toml.
lock:
	@$(BIN)/uv pip compile pyproject.toml --extra test --extra team --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .airflow data
