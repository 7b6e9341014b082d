#!/usr/bin/env bash
# `make demo`: the closed loop on embedded defaults, on one machine, from a clean state.
#   Airflow (SQLite, LocalExecutor: api-server, scheduler, dag-processor, triggerer) and the model
#   server run in the background; scripts/demo_loop.py drives them through Airflow's REST API and
#   real HTTP traffic, then prints a summary. Everything lives under .airflow/ and data/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True   # the sensors wait in the triggerer
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True   # local demo on 127.0.0.1: no login
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=10
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
LOGS="$AIRFLOW_HOME/demo-logs"
ARTIFACTS="$AIRFLOW_HOME/mlops"
free_port() { "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
API_PORT="${DEMO_API_PORT:-$(free_port)}"
SERVE_PORT="${DEMO_SERVE_PORT:-$(free_port)}"
export AIRFLOW__API__PORT="$API_PORT"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$API_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$API_PORT/execution/"
start=$(date +%s)

echo "==> Fresh state: Airflow home $AIRFLOW_HOME (SQLite), artifacts $ARTIFACTS"
rm -rf "$AIRFLOW_HOME/airflow.db" "$ARTIFACTS" "$AIRFLOW_HOME/logs" "$LOGS"
mkdir -p "$LOGS"
"$BIN/airflow" db migrate >"$LOGS/db-migrate.log" 2>&1 || { tail -30 "$LOGS/db-migrate.log"; exit 1; }

echo "==> Checking the pipeline configs (airflow-mlops lint dags/configs)"
"$BIN/airflow-mlops" lint dags/configs
"$BIN/airflow" providers list 2>/dev/null | grep -qE "airflow-mlops" || { echo "airflow-mlops is not registered as a provider"; exit 1; }

TODAY=$(date -u +%F)
echo "==> Today's example churn export: data/churn/$TODAY.csv"
"$BIN/airflow-mlops" example-data --out data/churn --dates "$TODAY"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
background() {  # name, command...: run in the background, output to $LOGS/<name>.log
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=($!)
}
echo "==> Starting Airflow (api-server on 127.0.0.1:$API_PORT, scheduler, dag-processor, triggerer); logs in $LOGS"
background api-server "$BIN/airflow" api-server --host 127.0.0.1 --port "$API_PORT"
background scheduler "$BIN/airflow" scheduler
background dag-processor "$BIN/airflow" dag-processor
background triggerer "$BIN/airflow" triggerer
echo "==> Starting the model server on 127.0.0.1:$SERVE_PORT (airflow-mlops serve)"
background model-server "$BIN/airflow-mlops" serve --artifact-root "file://$ARTIFACTS" --pipeline churn --port "$SERVE_PORT" \
  --poll-seconds 1 --flush-seconds 1

"$BIN/python" scripts/demo_loop.py --api "http://127.0.0.1:$API_PORT" --server "http://127.0.0.1:$SERVE_PORT" \
  --config dags/configs/churn.yaml --artifact-root "file://$ARTIFACTS" --export "data/churn/$TODAY.csv" --logs "$LOGS"
echo "==> Demo finished in $(( $(date +%s) - start ))s (Airflow and the model server are stopped now;"
echo "    AIRFLOW_HOME=$AIRFLOW_HOME .venv/bin/airflow standalone shows these runs in the UI)"
