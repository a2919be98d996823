#!/usr/bin/env bash
# Start a Ray head node on this machine (dashboard on 127.0.0.1 only, token
# authentication on), submit the same job that cluster/submit.sh sends to a real
# cluster, then stop that head node — and only it:
#
#   cluster/local_head.sh [hydra overrides...]      e.g. experiment=smoke
#
# NUM_CPUS / NUM_GPUS size the node (NUM_GPUS>0 on a CPU box gives logical GPUs);
# RAY_PORT / RAY_DASHBOARD_PORT / RAY_AGENT_PORT / RAY_CLIENT_PORT pick its ports
# (not Ray's defaults, so that it runs next to another Ray on the machine).
#
# Other Ray clusters on the machine are left alone: the head runs with its own
# --temp-dir under `ray start --block`, and stopping it means SIGTERM to that one
# process, which takes down the processes it started (`ray stop` would stop every
# Ray on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
# The job's `python` is resolved on the head node's PATH: put this checkout's
# virtualenv first when there is one.
if [ -x .venv/bin/python ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
RAY_BIN="${RAY_BIN:-$(command -v ray)}"
PORT="${RAY_PORT:-6390}"
DASH="${RAY_DASHBOARD_PORT:-8265}"
AGENT="${RAY_AGENT_PORT:-52375}"
CLIENT="${RAY_CLIENT_PORT:-20011}"
# Token authentication on every process of this head and for the CLI calls. Ray
# reads the token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token;
# create the last if none of them is set.
export RAY_AUTH_MODE=token
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
  "$RAY_BIN" get-auth-token --generate >/dev/null
fi
HEAD_TMP="$(mktemp -d /tmp/hullft-head.XXXXXX)"
"$RAY_BIN" start --head --block --port="$PORT" --dashboard-host=127.0.0.1 \
  --dashboard-port="$DASH" --dashboard-agent-listen-port="$AGENT" \
  --ray-client-server-port="$CLIENT" --temp-dir="$HEAD_TMP" \
  --num-cpus="${NUM_CPUS:-2}" --num-gpus="${NUM_GPUS:-0}" --disable-usage-stats \
  >"$HEAD_TMP/head.log" 2>&1 &
HEAD_PID=$!
stop_head() {
  kill -TERM "$HEAD_PID" 2>/dev/null || true
  wait "$HEAD_PID" 2>/dev/null || true
  rm -rf "$HEAD_TMP"
}
trap stop_head EXIT
# Wait until `ray start` reports the head started (what it prints before blocking).
until grep -q "Ray runtime started" "$HEAD_TMP/head.log" 2>/dev/null; do
  if ! kill -0 "$HEAD_PID" 2>/dev/null; then
    cat "$HEAD_TMP/head.log" >&2
    echo "local_head.sh: the Ray head failed to start" >&2
    exit 1
  fi
  sleep 0.5
done
# The job API answers "No available agent" until the node's agent has registered;
# that refusal comes before any job is created, so the submission is retried.
for _ in 1 2 3 4 5 6 7 8; do
  if RAY_ADDRESS="http://127.0.0.1:$DASH" RAY_BIN="$RAY_BIN" cluster/submit.sh "$@" 2>&1 |
    tee "$HEAD_TMP/submit.log"; then
    exit 0
  fi
  grep -q "No available agent" "$HEAD_TMP/submit.log" || exit 1
  sleep 5
done
exit 1
