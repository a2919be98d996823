#!/usr/bin/env bash
# Start a Ray head node on this machine (dashboard on 127.0.0.1 only), submit the
# same job that cluster/submit.sh sends to a real cluster, then stop the node:
#
#   cluster/local_head.sh [hydra overrides...]      e.g. experiment=smoke
#
# NUM_CPUS / NUM_GPUS size the node (NUM_GPUS>0 on a CPU box gives logical GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
# The job's `python` is resolved on the head node's PATH: put this checkout's
# virtualenv first when there is one.
if [ -x .venv/bin/python ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
RAY_BIN="${RAY_BIN:-$(command -v ray)}"
PORT="${RAY_PORT:-6390}"
DASH="${RAY_DASHBOARD_PORT:-8265}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
"$RAY_BIN" start --head --port="$PORT" --dashboard-host=127.0.0.1 --dashboard-port="$DASH" \
  --num-cpus="${NUM_CPUS:-2}" --num-gpus="${NUM_GPUS:-0}" --disable-usage-stats
trap '"$RAY_BIN" stop --force >/dev/null 2>&1 || true' EXIT
RAY_ADDRESS="http://127.0.0.1:$DASH" RAY_BIN="$RAY_BIN" cluster/submit.sh "$@"
