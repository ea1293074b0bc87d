#!/usr/bin/env bash
# A two-node Ray cluster on this machine (a head and a second `ray start --address` node),
# the API (no in-process runner) and `plot scheduler`; submits one job and shows which
# node each intervention actor ran on. Stops everything it started on exit.
#
#   bash deploy/local-cluster.sh            # uses .venv/bin; VENV=/path/to/venv to change
#
# Each node runs `ray start --block` in the background and is stopped by its own pid, so
# other Ray instances on the machine are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BIN=$VENV/bin
RAY_PORT=${RAY_PORT:-6390}
API_PORT=${API_PORT:-8765}
WORK=$(mktemp -d)
export PLOT_RAY_ADDRESS=127.0.0.1:$RAY_PORT PLOT_DATA_DIR=$WORK/data PLOT_PORT=$API_PORT
export PLOT_RAY_ACTORS=2 PLOT_CACHE_DIR=${PLOT_CACHE_DIR:-$WORK/cache}
export RAY_AUTH_MODE=disabled PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the nodes import workers/ from here
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$BIN/ray" start --head --block --port "$RAY_PORT" --node-ip-address 127.0.0.1 --num-cpus 1 \
  --dashboard-port 8266 --disable-usage-stats >"$WORK/head.log" 2>&1 & PIDS+=($!)
for _ in $(seq 150); do grep -q "Ray runtime started" "$WORK/head.log" && break; sleep 0.2; done
"$BIN/ray" start --block --address "$PLOT_RAY_ADDRESS" --node-ip-address 127.0.0.1 \
  --num-cpus 1 --disable-usage-stats >"$WORK/node.log" 2>&1 & PIDS+=($!)
for _ in $(seq 150); do grep -q "Ray runtime started" "$WORK/node.log" && break; sleep 0.2; done
echo "ray: $("$BIN/python" -c "import ray; ray.init(address='$PLOT_RAY_ADDRESS', log_to_driver=False); print(len([n for n in ray.nodes() if n['Alive']]), 'nodes alive')" 2>/dev/null)"

TOKEN=$("$BIN/plot" keys create --owner demo | tail -1)
PLOT_RUN_JOBS=false "$BIN/plot" serve >"$WORK/api.log" 2>&1 & PIDS+=($!)
"$BIN/plot" scheduler >"$WORK/scheduler.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2
done

cat >"$WORK/spec.yaml" <<'SPEC'
task: {builtin: hierarchical_equality}
pairs: {fit: 400, calibration: 400, test: 400}
levels: [{granularity: layer}, {granularity: neuron}]
SPEC
"$BIN/plot" submit "$WORK/spec.yaml" --server "http://127.0.0.1:$API_PORT" --key "$TOKEN" \
  | grep -v "^  level"
echo "intervention actors by node:"
RAY_ADDRESS=http://127.0.0.1:8266 "$BIN/ray" list actors --filter "class_name=InterventionActor" \
  --detail 2>/dev/null | grep -E "node_id|state" | sed 's/^/  /' || true
