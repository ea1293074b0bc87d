#!/usr/bin/env bash
# The cluster topology of docker-compose.yml and deploy/k8s on one machine, without
# containers: a Ray head and a second Ray node (separate `ray start` processes), the schema
# migration, the API (`plot serve`, running no jobs) and `plot scheduler` (a Ray Client
# driver, as in the containers), on Postgres and Redis. It submits one job, follows it to
# the end, shows where the actors ran, the metrics and the job's log lines, and stops every
# process it started (by pid) on exit.
#
#   PLOT_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/plot \
#   PLOT_REDIS_URL=redis://127.0.0.1:6379/0 bash deploy/local-cluster.sh
#
# VENV (default .venv), SPEC (a job spec; default: HEQ, two levels), RAY_PORT, RAY_CLIENT_PORT,
# DASHBOARD_PORT, API_PORT and METRICS_PORT change the defaults. Each step is one command of
# deploy/README.md ("Without containers").
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PLOT_DATABASE_URL:?set PLOT_DATABASE_URL to a Postgres database (deploy/README.md)}"
: "${PLOT_REDIS_URL:?set PLOT_REDIS_URL to a Redis (deploy/README.md)}"
BIN=${VENV:-.venv}/bin
RAY_PORT=${RAY_PORT:-6390} RAY_CLIENT_PORT=${RAY_CLIENT_PORT:-10001}
DASHBOARD_PORT=${DASHBOARD_PORT:-8266} API_PORT=${API_PORT:-8765}
METRICS_PORT=${METRICS_PORT:-9109}
WORK=$(mktemp -d)
export PLOT_DATA_DIR=$WORK/data PLOT_CACHE_DIR=${PLOT_CACHE_DIR:-$WORK/cache}
export PLOT_RAY_ACTORS=2 PLOT_LOG_FORMAT=json
export RAY_AUTH_MODE=disabled PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # nodes import workers/ from here
PIDS=()
echo "work dir (logs): $WORK"

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped: ${PIDS[*]}"
}
trap cleanup EXIT

wait_for() {  # wait_for FILE TEXT: until FILE holds TEXT (2 min: a loaded machine is slow)
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "timed out waiting for '$2' in $1:" >&2; tail -5 "$1" >&2; return 1
}

# 1. the Ray head (GCS and Ray Client ports) and a second node that joins it
"$BIN/ray" start --head --block --port "$RAY_PORT" --ray-client-server-port "$RAY_CLIENT_PORT" \
  --node-ip-address 127.0.0.1 --num-cpus 1 --dashboard-port "$DASHBOARD_PORT" \
  --disable-usage-stats >"$WORK/head.log" 2>&1 & PIDS+=($!)
wait_for "$WORK/head.log" "Ray runtime started"
PLOT_RAY_ADDRESS=127.0.0.1:$RAY_PORT "$BIN/plot" worker --num-cpus 1 >"$WORK/node.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/node.log" "Ray runtime started"
echo "ray: $("$BIN/python" -c "import ray; ray.init(address='127.0.0.1:$RAY_PORT', log_to_driver=False); print(len([n for n in ray.nodes() if n['Alive']]), 'nodes alive')" 2>/dev/null)"

# 2. the schema, then the API (no runner of its own) and the scheduler (Ray Client driver)
"$BIN/plot" db upgrade 2>/dev/null
TOKEN=$("$BIN/plot" keys create --owner demo | tail -1)
PLOT_RUN_JOBS=false "$BIN/plot" serve --port "$API_PORT" >"$WORK/api.out" 2>"$WORK/api.log" &
PIDS+=($!)
PLOT_RAY_ADDRESS=ray://127.0.0.1:$RAY_CLIENT_PORT PLOT_METRICS_PORT=$METRICS_PORT \
  "$BIN/plot" scheduler >"$WORK/scheduler.out" 2>"$WORK/scheduler.log" & PIDS+=($!)
echo "pids: ${PIDS[*]}"
wait_for "$WORK/scheduler.out" "is the leader"
for _ in $(seq 600); do
  curl -fs "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2
done
echo "api: $(curl -fs "http://127.0.0.1:$API_PORT/readyz")"
echo "scheduler: $(tail -1 "$WORK/scheduler.out")"

# 3. one job, submitted over HTTP and followed on its event stream
if [ -z "${SPEC:-}" ]; then
  SPEC=$WORK/spec.yaml
  cat >"$SPEC" <<'YAML'
task: {builtin: hierarchical_equality}
pairs: {fit: 400, calibration: 400, test: 400}
levels: [{granularity: layer}, {granularity: neuron}]
YAML
fi
"$BIN/plot" submit "$SPEC" --server "http://127.0.0.1:$API_PORT" --key "$TOKEN" \
  | grep -v -E "^  level|^control: .*(done|stage)=" | tee "$WORK/submit.out"
JOB=$(awk '/^job [0-9a-f]+ queued/ {print $2; exit}' "$WORK/submit.out")
echo "status: $(curl -fs -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:$API_PORT/v1/jobs/$JOB" | "$BIN/python" -c \
  'import json, sys; job = json.load(sys.stdin); print(job["id"], job["status"], "attempt", job["attempt"])')"

# 4. where the actors ran, what the metrics say, and the job's log lines
echo "intervention actors by node:"
RAY_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT "$BIN/ray" list actors \
  --filter "class_name=InterventionActor" --detail 2>/dev/null | grep -E "node_id|state" \
  | sed 's/^/  /' || true
echo "metrics:"
curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E \
  '^plot_(jobs_finished_total|level_seconds_count|interventions_total|actor_restarts_total)' \
  | sed 's/^/  scheduler /'
curl -fs "http://127.0.0.1:$API_PORT/metrics" | grep -E '^plot_jobs\{' | sed 's/^/  api /'
echo "logs: $(grep -c "\"job_id\": \"$JOB\"" "$WORK/scheduler.log") JSON lines of the scheduler carry job_id $JOB, e.g."
grep "\"job_id\": \"$JOB\"" "$WORK/scheduler.log" | tail -1 | sed 's/^/  /'
