"""What recording hullft's Ray metrics costs the driver per query.

    .venv/bin/python benchmarks/bench_metrics.py --queries 2000

Starts a local Ray (the metrics need a session), then times
``actors.metrics.record_rows`` on one query's rows (base + three methods, every
stage set) and the other per-query calls the driver makes (two in-flight updates,
one search record per 16 queries). Prints microseconds per query; compare with a
query's seconds in a run's report (finetuning alone takes seconds per query).
"""

from __future__ import annotations

import argparse
import time

from actors import metrics
from hullft.pipeline import Candidates
from hullft.results import ResultRow


def _rows(i: int) -> list[ResultRow]:
    common = dict(run_id="bench", query_id=f"q{i}", domain="d", worker_id=f"w{i % 2}")
    timed = dict(embed_s=0.01, search_s=0.002, evaluate_s=0.3, tokens_scored=900)
    rows = [ResultRow(method="base", **common, **timed)]  # type: ignore[arg-type]
    for m in ("knn", "sift", "hullft"):
        rows.append(
            ResultRow(
                method=m,
                select_s=0.002,
                finetune_s=2.0,
                reset_s=0.01,
                tokens_trained=12_000,
                **common,  # type: ignore[arg-type]
                **timed,  # type: ignore[arg-type]
            )
        )
    return rows


def main() -> None:
    import numpy as np
    import ray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    ray.init(address="local", num_cpus=1, include_dashboard=False)
    rows = [_rows(i) for i in range(args.queries)]
    cands = Candidates("q", "d", "", np.zeros(0), np.zeros(0), np.zeros(0), search_s=0.001)
    metrics.record_rows(rows[0])  # creates the metric objects
    t0 = time.perf_counter()
    for i, r in enumerate(rows):
        metrics.set_in_flight(r[0].worker_id, 1)
        metrics.record_rows(r)
        metrics.set_in_flight(r[0].worker_id, 0)
        if i % 16 == 0:
            metrics.record_search([cands] * 16)
    per_query_us = (time.perf_counter() - t0) / args.queries * 1e6
    ray.shutdown()
    print(f"metrics recording: {per_query_us:.1f} µs per query (4 rows)")


if __name__ == "__main__":
    main()
