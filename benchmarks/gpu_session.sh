#!/usr/bin/env bash
# The engine's GPU checks (issue #12) as one command for a borrowed GPU machine that
# has PyTorch and transformers but no internet, no Ray and no FAISS (docs/ttft.md,
# "On a GPU machine").
#
#   bash benchmarks/gpu_session.sh prepare   # here, once: builds .gpu/ (9 MB, git-ignored)
#   bash benchmarks/gpu_session.sh run       # there, from the repository root, with .gpu/
#
# `prepare` puts in .gpu/ the wheels for what that machine lacks (hydra-core,
# omegaconf, antlr4 for the test configuration; zstandard for the corpus reader), and
# SmolLM2-135M's config and tokenizer files without its weights. The 98 MB weights
# do not fit the working tree a device call may carry, and speed does not depend on
# them, so the GPU timing runs SmolLM2's architecture with random weights
# (`--model smollm2-shape`).
#
# `run` writes its logs to $OUT (default /tmp/gpu-session), one file per step, each
# step under its own time limit so that one hang cannot take the rest (9.5 minutes
# at most in all, so that a 10-minute limit on the whole command holds):
#   1. nvidia-smi and the versions;
#   2. bench_batched.py on SmolLM2's shape at the issue's setting (N = 50,
#      L = 1024): jobs/s, trained tokens/s and MFU at B = 1, 4, 16, with a profile;
#   3. pytest -m gpu: the sequential and batched engines under bf16, fused kernels
#      and torch.compile, batched against sequential;
#   4. bench_batched.py on the tiny model (B up to 64);
#   5. bench_ttft.py on SmolLM2's shape: hullft's engine against the published
#      procedure.
set -uo pipefail
KIT=.gpu
PY=${PYTHON:-.venv/bin/python}

ver() { "$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1"; }

prepare() {  # the versions this checkout's environment runs
  set -e
  rm -rf "$KIT"
  mkdir -p "$KIT/whl" "$KIT/smollm2-shape"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$KIT/whl" "zstandard==$(ver zstandard)"
  "$PY" -m pip download -q --no-deps -d "$KIT/whl" "hydra-core==$(ver hydra-core)" "omegaconf==$(ver omegaconf)"
  "$PY" -m pip wheel -q --no-deps -w "$KIT/whl" "antlr4-python3-runtime==$(ver antlr4-python3-runtime)"  # an sdist
  "$PY" - "$KIT/smollm2-shape" <<'EOF'
import shutil, sys
from pathlib import Path
from hullft.models import embedded_model_dir
src = embedded_model_dir()
for f in src.iterdir():
    if f.suffix != ".safetensors" and f.name != "COMPLETE":
        shutil.copy2(f, Path(sys.argv[1]) / f.name)
EOF
  du -sh "$KIT"
  echo "ready: run 'bash benchmarks/gpu_session.sh run' on the GPU machine, carrying .gpu"
}

step() {  # step NAME SECONDS COMMAND...: one log per step in $OUT, never fatal
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*" | tee "$OUT/$name.log"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/$name.log"
}

run() {
  OUT=${OUT:-/tmp/gpu-session}
  mkdir -p "$OUT"
  if [ ! -d "$KIT/whl" ] || [ ! -f "$KIT/smollm2-shape/config.json" ]; then
    echo "no complete $KIT/ here: run 'bash benchmarks/gpu_session.sh prepare' where pip works, then carry $KIT" >&2
    exit 2
  fi
  if ! python3 -c 'import hydra, omegaconf, zstandard' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$KIT"/whl/*.whl || exit 2
  fi
  export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
  local shape=(--model smollm2-shape --shape-dir "$KIT/smollm2-shape")
  step env 30 bash -c 'nvidia-smi; python3 -c "import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__, torch.cuda.get_device_name())"'
  step bench-batched-smollm2 240 python3 benchmarks/bench_batched.py "${shape[@]}" \
    --seq-len 1024 --n 50 --queries 8 --batch 1 4 16 --repeats 1 --peak-flops 989e12 --profile
  step pytest-gpu 150 python3 -m pytest -q -p no:cacheprovider -m gpu -o addopts="" \
    tests/test_ttft_gpu.py tests/test_ttft_batched_gpu.py
  step bench-batched-tiny 60 python3 benchmarks/bench_batched.py --model tiny \
    --queries 32 --n 50 --batch 1 4 16 64 --repeats 1
  step bench-ttft-smollm2 90 python3 benchmarks/bench_ttft.py "${shape[@]}" \
    --seq-len 1024 --n 50 --queries 2 --repeats 1 --peak-flops 989e12
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash benchmarks/gpu_session.sh prepare|run" >&2; exit 2 ;;
esac
