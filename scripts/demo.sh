#!/usr/bin/env bash
# `make demo`: the closed loop on embedded defaults, on one machine, from a clean state.
#   Airflow (SQLite, LocalExecutor: api-server, scheduler, dag-processor, triggerer) and the model
#   server run in the background; scripts/demo_loop.py drives them through Airflow's REST API and
#   real HTTP traffic, then prints a summary. Everything lives under .airflow/ and data/.
# `make demo-team` (scripts/demo.sh --team): the same loop on a team's Airflow: PostgreSQL (database
#   $DEMO_PG_DB, made afresh), CeleryExecutor with Redis (DB $DEMO_REDIS_DB) as the broker and two Celery
#   workers, the artifacts on S3 (a moto server on 127.0.0.1) reached through an mlops_artifacts connection.
#   Everything else lives under .airflow-team/.
# What one run writes is its own, so that runs can go on side by side (the tests do): the Airflow home ($AIRFLOW_HOME),
# the example exports ($DEMO_DATA_DIR, default data/), the model server's write-ahead folder (under the Airflow home),
# and free ports for every server, the log servers of the workers and the triggerer included.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
TEAM=0
[[ "${1:-}" == "--team" ]] && TEAM=1
if (( TEAM )); then
  export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow-team}"
  export AIRFLOW__CORE__DAGS_FOLDER="$AIRFLOW_HOME/dags"
else
  export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow}"
  export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags"
fi
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True   # the sensors wait in the triggerer
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True   # local demo on 127.0.0.1: no login
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=10
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
LOGS="$AIRFLOW_HOME/demo-logs"
ARTIFACTS="$AIRFLOW_HOME/mlops"
DATA="${DEMO_DATA_DIR:-$PWD/data}"   # the example exports: data/churn/<date>.csv
# The model server's write-ahead logs and answered ids: by default they sit in the system's temp folder under a name
# made from the artifact root, which every team demo shares (s3://mlops-demo/mlops), so one run would ship what a killed
# run left into its own fresh store, and two runs at once would take each other's feedback ids.
export MLOPS_WAL_DIR="$AIRFLOW_HOME/serving-wal"
free_port() { "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
API_PORT="${DEMO_API_PORT:-$(free_port)}"
SERVE_PORT="${DEMO_SERVE_PORT:-$(free_port)}"
# The log servers (a LocalExecutor scheduler's and each Celery worker's, the triggerer's) default to 8793 and 8794.
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$(free_port)" AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="$(free_port)"
export AIRFLOW__API__PORT="$API_PORT"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$API_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$API_PORT/execution/"
start=$(date +%s)

PIDS=()
running() {  # pid...: true while one of them has not exited (a zombie has)
  for pid in "$@"; do ps -o stat= -p "$pid" 2>/dev/null | grep -qv Z && return 0; done
  return 1
}
cleanup() {
  for pid in "${PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done  # each its own group
  for _ in $(seq 60); do running "${PIDS[@]}" || break; sleep 0.5; done  # 30 s to exit gracefully
  # Then SIGKILL: a scheduler can swallow its own SystemExit (raised by its SIGTERM handler inside a GC callback).
  for pid in "${PIDS[@]}"; do kill -9 -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
background() {  # name, command...: run in the background in a session of its own, output to $LOGS/<name>.log
  local name=$1; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=($!)
}

rm -rf "$AIRFLOW_HOME/airflow.db" "$ARTIFACTS" "$AIRFLOW_HOME/logs" "$LOGS" "$MLOPS_WAL_DIR"
mkdir -p "$LOGS"
CONFIG=dags/configs/churn.yaml
pipeline_copy() {  # the example pipeline in $AIRFLOW__CORE__DAGS_FOLDER, reading the exports in $DATA; extra YAML keys as JSON
  mkdir -p "$AIRFLOW__CORE__DAGS_FOLDER/configs"
  CONFIG="$AIRFLOW__CORE__DAGS_FOLDER/configs/churn.yaml"
  local extra="${1:-"{}"}"
  "$BIN/python" - "$CONFIG" "$DATA" "$extra" <<'PY'
import json, os, sys, yaml
config = yaml.safe_load(open("dags/configs/churn.yaml"))
config["source"]["uri"] = os.path.join(os.path.abspath(sys.argv[2]), "churn", "{{ ds }}.csv")
config.update(json.loads(sys.argv[3]))
yaml.safe_dump(config, open(sys.argv[1], "w"), sort_keys=False)
PY
  cp dags/churn.py "$AIRFLOW__CORE__DAGS_FOLDER/churn.py"
}
ARTIFACT_ROOT="file://$ARTIFACTS"
if (( TEAM )); then
  PG_DB="${DEMO_PG_DB:-airflow_mlops_demo}"
  PG="postgresql+psycopg2://postgres@127.0.0.1:5432/$PG_DB"
  echo "==> Fresh state: PostgreSQL database $PG_DB, Redis DB ${DEMO_REDIS_DB:-5} as the Celery broker, Airflow home $AIRFLOW_HOME"
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB" >/dev/null
  redis-cli -h 127.0.0.1 -n "${DEMO_REDIS_DB:-5}" flushdb >/dev/null
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="$PG"
  export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
  export AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:6379/${DEMO_REDIS_DB:-5}"
  export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql+psycopg2://postgres@127.0.0.1:5432/$PG_DB"
  export AIRFLOW__CELERY__WORKER_CONCURRENCY=2
  # A worker that dies (kill -9) stops heartbeating its tasks: after this long the scheduler fails them, to be retried.
  export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="${DEMO_HEARTBEAT_TIMEOUT:-30}"
  if [[ -n "${DEMO_S3_ENDPOINT:-}" ]]; then  # an S3 endpoint that outlives the demo (the tests read it afterwards)
    export MLOPS_S3_ENDPOINT_URL="$DEMO_S3_ENDPOINT"
  else
    S3_PORT="$(free_port)"
    export MLOPS_S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
    background s3 "$BIN/python" -m moto.server -H 127.0.0.1 -p "$S3_PORT"
  fi
  export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1
  echo "==> S3 at $MLOPS_S3_ENDPOINT_URL (moto); the artifacts live in s3://mlops-demo/mlops"
  "$BIN/python" - <<PY
import time, boto3
for _ in range(100):
    try:
        boto3.client("s3", endpoint_url="$MLOPS_S3_ENDPOINT_URL").create_bucket(Bucket="mlops-demo")
        break
    except Exception:
        time.sleep(0.2)
else:
    raise SystemExit("!! no S3 server answered at $MLOPS_S3_ENDPOINT_URL")
PY
  export AIRFLOW_CONN_MLOPS_S3="{\"conn_type\": \"aws\", \"login\": \"demo\", \"password\": \"demo\", \"extra\": {\"endpoint_url\": \"$MLOPS_S3_ENDPOINT_URL\", \"region_name\": \"us-east-1\"}}"
  export AIRFLOW_CONN_MLOPS_ARTIFACTS="{\"conn_type\": \"mlops_artifacts\", \"extra\": {\"artifact_root\": \"s3://mlops-demo/mlops\", \"aws_conn_id\": \"mlops_s3\"}}"
  ARTIFACT_ROOT="s3://mlops-demo/mlops"
  # The example pipeline, with its artifacts behind the connection (and retries a minute apart at most).
  pipeline_copy '{"artifacts": {"conn_id": "mlops_artifacts"}, "operations": {"retries": 2, "retry_delay_minutes": 0.1}}'
else
  echo "==> Fresh state: Airflow home $AIRFLOW_HOME (SQLite), artifacts $ARTIFACTS"
  if [[ "$DATA" != "$PWD/data" ]]; then  # dags/configs/churn.yaml reads data/: a copy that reads $DEMO_DATA_DIR
    export AIRFLOW__CORE__DAGS_FOLDER="$AIRFLOW_HOME/dags"
    pipeline_copy
  fi
fi
"$BIN/airflow" db migrate >"$LOGS/db-migrate.log" 2>&1 || { tail -30 "$LOGS/db-migrate.log"; exit 1; }

echo "==> Checking the pipeline config (airflow-mlops lint $CONFIG)"
"$BIN/airflow-mlops" lint "$CONFIG"
"$BIN/airflow" providers list 2>/dev/null | grep -qE "airflow-mlops" || { echo "airflow-mlops is not registered as a provider"; exit 1; }

TODAY=$(date -u +%F)
EXPORT="$DATA/churn/$TODAY.csv"
[[ "$DATA" == "$PWD/data" ]] && EXPORT="data/churn/$TODAY.csv"
echo "==> Today's example churn export: $EXPORT"
"$BIN/airflow-mlops" example-data --out "$(dirname "$EXPORT")" --dates "$TODAY"

echo "==> Starting Airflow (api-server on 127.0.0.1:$API_PORT, scheduler, dag-processor, triggerer); logs in $LOGS"
background api-server "$BIN/airflow" api-server --host 127.0.0.1 --port "$API_PORT"
background scheduler "$BIN/airflow" scheduler
background dag-processor "$BIN/airflow" dag-processor
if (( TEAM )); then  # as a team's process supervisor would (systemd, Kubernetes): a triggerer that exits starts again
  background triggerer bash -c "until \"$BIN/airflow\" triggerer; do echo '!! triggerer exited; restarting'; sleep 2; done"
else
  background triggerer "$BIN/airflow" triggerer
fi
if (( TEAM )); then
  echo "==> Starting two Celery workers (worker1, worker2; concurrency 2 each)"
  for worker in worker1 worker2; do  # a log server each, on a port of its own
    background "$worker" env AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$(free_port)" \
      "$BIN/airflow" celery worker --celery-hostname "$worker@%h"
  done
  echo "${PIDS[-2]} ${PIDS[-1]}" > "$LOGS/worker-pids"
fi
echo "==> Starting the model server on 127.0.0.1:$SERVE_PORT (airflow-mlops serve)"
background model-server "$BIN/airflow-mlops" serve --artifact-root "$ARTIFACT_ROOT" --pipeline churn --port "$SERVE_PORT" \
  --poll-seconds 1 --flush-seconds 1 --workers 1

"$BIN/python" scripts/demo_loop.py --api "http://127.0.0.1:$API_PORT" --server "http://127.0.0.1:$SERVE_PORT" \
  --config "$CONFIG" --artifact-root "$ARTIFACT_ROOT" --export "$EXPORT" --logs "$LOGS"
echo "==> Demo finished in $(( $(date +%s) - start ))s (Airflow and the model server are stopped now;"
echo "    AIRFLOW_HOME=$AIRFLOW_HOME .venv/bin/airflow standalone shows these runs in the UI)"
