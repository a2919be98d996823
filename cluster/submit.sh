#!/usr/bin/env bash
# Submit `hullft run` to a Ray cluster as a job:
#
#   RAY_ADDRESS=http://HEAD:8265 cluster/submit.sh [hydra overrides...]
#
# Ray's token authentication stays on: CLI calls send the token from
# ~/.ray/auth_token (or $RAY_AUTH_TOKEN) because RAY_AUTH_MODE=token is set.
# Multi-node runs need index.dir and experiment.output_dir on storage that every
# node sees (NFS, a shared volume), e.g. index.dir=/shared/hullft/index.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
RAY_BIN="${RAY_BIN:-$(command -v ray || echo .venv/bin/ray)}"
exec "$RAY_BIN" job submit \
  --runtime-env cluster/runtime_env.yaml \
  -- python -m actors.cli run cluster=ray_cluster "$@"
