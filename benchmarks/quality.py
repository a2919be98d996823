"""The quality study (issue #14): kNN / SIFT / HullFT at equal steps and equal time.

    python benchmarks/quality.py run [hydra overrides]     # start, or resume: the same command
    python benchmarks/quality.py report [hydra overrides] [--out docs/results.md]

Both compose ``experiment=quality`` (hullft/configs/experiment/quality.yaml) with the
overrides, exactly as ``hullft run`` does. ``run`` runs every point of the sweep
(``hullft.quality.quality_points``) as an ordinary, resumable run through the
Ray driver; rerunning it after an interruption skips every finished
(query, method) row. ``report`` reads the finished runs and writes the report
with its plots (partial results are reported as such).

A tiny end-to-end check (seconds to minutes; no real model):

    python benchmarks/quality.py run experiment=quality model=tiny embedder=hashing \
        data.max_docs_per_domain=20 data.sequence_length=64 queries.per_domain=2 \
        queries.max_bytes=512 selection.k=32 'bench.n_values=[4,8]' \
        'bench.time_budgets_s=[0.05,0.2]' experiment.output_dir=/tmp/quality-tiny
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from actors.cli import INTERRUPTED
from actors.compose import load_config
from actors.driver import run_pipeline
from hullft.config import RunConfig
from hullft.quality import (
    finished_queries,
    point_config,
    quality_points,
    record_invocation,
    write_report,
)

log = logging.getLogger("quality")


def _config(overrides: Sequence[str]) -> RunConfig:
    has_experiment = any(o.split("=", 1)[0].lstrip("+~") == "experiment" for o in overrides)
    return load_config([*([] if has_experiment else ["experiment=quality"]), *overrides])


def run(overrides: Sequence[str]) -> int:
    cfg = _config(overrides)
    points = quality_points(cfg)
    log.info("study %s: %d points %s", cfg.experiment.name, len(points), [p.label for p in points])
    incomplete = []
    for point in points:
        pcfg = point_config(cfg, point)
        log.info("point %s (run %s)", point.title, pcfg.experiment.run_id)
        before = finished_queries(pcfg)
        t0 = time.perf_counter()
        complete = False
        try:
            complete = run_pipeline(pcfg).complete
        finally:  # an interrupted invocation's time counts too
            record_invocation(
                cfg, point, time.perf_counter() - t0, finished_queries(pcfg) - before, complete
            )
        if not complete:
            incomplete.append(point.label)
    if incomplete:
        log.error("incomplete points %s; rerun the same command to resume", incomplete)
        return 1
    return 0


def report(overrides: Sequence[str], out: Path) -> int:
    cfg = _config(overrides)
    command = "python benchmarks/quality.py run " + " ".join(shlex.quote(o) for o in overrides)
    path = write_report(cfg, out, command=command.strip())
    print(f"report: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run (or resume) every point of the study")
    run_p.add_argument("overrides", nargs="*")
    rep_p = sub.add_parser("report", help="write the report from the finished runs")
    rep_p.add_argument("overrides", nargs="*")
    rep_p.add_argument("--out", type=Path, default=Path("docs/results.md"))
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)
    if args.command == "run":
        try:
            return run(args.overrides)
        except KeyboardInterrupt:
            print(f"quality.py run: {INTERRUPTED}", file=sys.stderr)
            return 130
    return report(args.overrides, args.out)


if __name__ == "__main__":
    sys.exit(main())
