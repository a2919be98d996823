#!/usr/bin/env bash
# The 10,000-query scale check of docs/operating.md: experiment=smoke over query
# documents cut from the embedded corpus (benchmarks/scale_queries.py); the driver's
# process group is SIGKILLed once KILL_AT queries are committed, the same command is
# rerun to completion, then once more (nothing left to do). Prints wall times, the
# driver's peak RSS (/usr/bin/time -v), the result files and an exactly-once check.
#
#   bash benchmarks/scale_run.sh [OUT=/tmp/scale] [QUERIES=10000] [KILL_AT=4000]
#
# Run it on an otherwise idle machine: it reports wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/scale}
QUERIES=${2:-10000}
KILL_AT=${3:-4000}
PY=${PYTHON:-.venv/bin/python}
HULLFT=${HULLFT:-.venv/bin/hullft}
export HULLFT_LOG_LEVEL=${HULLFT_LOG_LEVEL:-INFO} RAY_ADDRESS=
RUN_DIR="$OUT/runs/scale"

rm -rf "$OUT" && mkdir -p "$OUT"
"$PY" benchmarks/scale_queries.py --out "$OUT/queries.jsonl"
CMD=("$HULLFT" run experiment=smoke "queries.paths=[$OUT/queries.jsonl]" queries.per_domain=100000
     "experiment.limit=$QUERIES" experiment.run_id=scale "experiment.output_dir=$OUT/runs"
     "index.dir=$OUT/index")

committed() {
  "$PY" - "$RUN_DIR" <<'PY'
import sys
from pathlib import Path
from hullft.results import read_results
print(read_results(sys.argv[1])["query_id"].nunique() if Path(sys.argv[1], "results").exists() else 0)
PY
}

t0=$(date +%s)
setsid /usr/bin/time -v -o "$OUT/time-1.txt" "${CMD[@]}" > "$OUT/run-1.log" 2>&1 &
first=$!
while kill -0 "$first" 2>/dev/null; do
  sleep 10
  n=$(committed 2>/dev/null || echo 0)
  if [ "$n" -ge "$KILL_AT" ]; then
    kill -9 -- "-$first"
    echo "first run: SIGKILL after $(( $(date +%s) - t0 )) s with $n queries committed"
    break
  fi
done
wait "$first" 2>/dev/null || true
echo "result files after the kill: $(ls "$RUN_DIR/results" | wc -l)"

for i in 2 3; do
  t=$(date +%s)
  /usr/bin/time -v -o "$OUT/time-$i.txt" "${CMD[@]}" > "$OUT/run-$i.log" 2>&1
  echo "run $i: exit 0 in $(( $(date +%s) - t )) s;" \
    "peak RSS $(awk -F': ' '/Maximum resident/ {printf "%.0f MiB", $2/1024}' "$OUT/time-$i.txt")"
  grep -h "queries with results" "$OUT/run-$i.log" || true
done
echo "result files at the end: $(ls "$RUN_DIR/results" | wc -l)"
"$PY" - "$RUN_DIR" <<'PY'
import sys
from hullft.results import read_results
df = read_results(sys.argv[1])
keys = set(zip(df["query_id"], df["method"]))
print(f"rows {len(df)}, distinct (query, method) keys {len(keys)}, queries "
      f"{df['query_id'].nunique()}, statuses {df['status'].value_counts().to_dict()}")
assert len(keys) == len(df), "a (query, method) key was written twice"
PY
