"""``hullft bench``: sweeps through the real Ray runtime and a report directory.

Every sweep point is a full ``run_pipeline`` call (retrieval, selection,
finetuning, scoring through the actors) in one Ray session whose actors are reused
from point to point where the config allows (:class:`actors.pool.ActorPool`);
ratios are computed from numbers measured in this one invocation. Figures, plots
and the report are written by :mod:`hullft.bench_report`. Output: ``<bench.report_dir>/<name>-<UTC time>/``
with ``report.md``, PNG plots, ``bench.json`` (every figure) and the runs' Parquet
results under ``runs/``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors import ray_session
from actors.driver import run_pipeline
from actors.policy import PlanError, plan_workers
from actors.pool import ActorPool
from hullft.bench_report import BenchPoint, figures, jsonable, ok_rows, write_plots, write_report
from hullft.config import RunConfig, config_to_dict
from hullft.data.queries import load_queries
from hullft.index import build_index, load_index
from hullft.models import load_model
from hullft.results import read_results

log = logging.getLogger(__name__)


def _with(cfg: RunConfig, **sections: dict[str, Any]) -> RunConfig:
    """A copy of ``cfg`` with fields of some sections replaced (validated again)."""
    changes = {
        name: dataclasses.replace(getattr(cfg, name), **fields) for name, fields in sections.items()
    }
    return dataclasses.replace(cfg, **changes)


def run_bench(cfg: RunConfig) -> Path:
    """Run every sweep of ``cfg.bench`` and write the report. Returns its directory."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.bench.report_dir).expanduser() / f"{cfg.experiment.name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    # Every run of this invocation writes under out/runs, so nothing resumes from
    # an earlier benchmark and every timing is fresh.
    base = _with(cfg, experiment={"output_dir": str(out / "runs")})
    b = cfg.bench
    n_max = max(b.n_values)
    # One Ray session and one actor pool for every point: the index and selector
    # actors serve them all, model workers consecutive points with the same model
    # and finetuning config (the N sweep, and r=2 after it by default).
    session = ray_session.connect(base.cluster)
    pool = ActorPool()
    measured: dict[str, tuple[BenchPoint, bool]] = {}

    def run(label: str, c: RunConfig, fresh_workers: bool = False) -> BenchPoint:
        # Points of different sweeps may be one run (r=2 is the N=n_max point by
        # default; on a CPU, workers=1 is the first N point): measured once, it serves
        # every label — unless this point needs fresh workers and that run had none.
        key = _measured_as(c)
        if key in measured and (measured[key][1] or not fresh_workers):
            same = measured[key][0]
            log.info(
                "bench: %s is the run of %s (the same config); measured once", label, same.label
            )
            return dataclasses.replace(same, label=label)
        # A run id per point, so that no point resumes the rows of another.
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
        c = _with(c, experiment={"run_id": f"{cfg.experiment.name}-{slug}"})
        log.info("bench: %s", label)
        if fresh_workers:
            pool.drop_workers()
        s = run_pipeline(c, progress=True, pool=pool)
        if not s.complete:
            raise RuntimeError(f"bench run {label} did not complete: {s.message}")
        p = BenchPoint(label, c, read_results(s.run_dir), s.loop_s, s.queries_processed)
        measured[key] = (p, fresh_workers)
        return p

    t0 = time.perf_counter()
    try:
        _start_shared_actors(pool, base)
        first_n = b.n_values[0]
        sweep_n = {
            # the first point starts its workers, as a point of the workers sweep does
            n: run(f"N={n}", _with(base, selection={"n": n}), fresh_workers=n == first_n)
            for n in b.n_values
        }
        reuse = {
            r: run(f"r={r}", _with(base, selection={"n": n_max}, finetune={"refresh_interval": r}))
            for r in b.refresh_intervals
        }
        budgets = {
            t: run(
                f"budget={t}s", _with(base, selection={"n": n_max}, finetune={"time_budget_s": t})
            )
            for t in b.time_budgets_s
        }
        # Throughput is queries over the whole loop, model loading included: every
        # worker count starts its workers afresh, so the points compare alike.
        scaling = {
            w: run(f"workers={w}", _scaling_cfg(base, w), fresh_workers=True) for w in b.workers
        }
        batching = {j: run(f"B={j}", _batch_cfg(base, j), fresh_workers=True) for j in b.batch_jobs}
    finally:
        pool.close()
        session.close()
    naive = (
        _naive_comparison(base, sweep_n[n_max]) if b.naive_baseline and b.naive_queries else None
    )
    fig = figures(cfg, sweep_n, budgets, reuse, scaling, naive, _param_count(cfg), batching)
    fig["bench_seconds"] = time.perf_counter() - t0
    write_plots(out, fig)
    write_report(out, cfg, fig)
    (out / "bench.json").write_text(json.dumps(fig, indent=2, default=jsonable), encoding="utf-8")
    print(f"\nbenchmark report: {out / 'report.md'}")
    return out


def _start_shared_actors(pool: ActorPool, cfg: RunConfig) -> None:
    """Start the index and selector actors every point shares, and wait until they
    are up, so that no point's loop time includes their start-up."""
    index_dir = _index_dir(cfg)
    actors = [
        *pool.index_actors(cfg, index_dir),
        *pool.selectors(cfg, index_dir, f"{cfg.experiment.name}-bench"),
    ]
    ray.get([a.__ray_ready__.remote() for a in actors])


def _measured_as(c: RunConfig) -> str:
    """What decides a point's rows and times: its config with the worker plan
    resolved on this cluster (``num_workers`` unset is one worker on a CPU-only
    cluster)."""
    d = config_to_dict(c)
    resources = ray.cluster_resources()
    try:
        plan = plan_workers(c.cluster, resources.get("GPU", 0.0), resources.get("CPU", 0.0))
    except PlanError:
        pass  # the run itself reports it
    else:
        d["cluster"] = {
            **d["cluster"],
            "num_workers": plan.num_workers,
            "gpus_per_worker": plan.num_gpus,
            "cpus_per_worker": plan.num_cpus,
        }
    return json.dumps(d, sort_keys=True, default=str)


def _scaling_cfg(base: RunConfig, workers: int) -> RunConfig:
    """``workers`` replicas: one GPU share each on GPU clusters, a CPU share on CPU."""
    gpus = ray.cluster_resources().get("GPU", 0.0)
    cluster: dict[str, Any] = {"num_workers": workers}
    if gpus > 0:  # several workers per GPU (fractional) where there are fewer GPUs
        cluster["gpus_per_worker"] = min(1.0, gpus / workers)
    # on CPU, plan_workers gives each worker an equal share of the cores; the
    # sweep's smallest N (throughput, not quality, is measured here)
    return _with(base, cluster=cluster, selection={"n": min(base.bench.n_values)})


def _batch_cfg(base: RunConfig, jobs: int) -> RunConfig:
    """One worker training ``jobs`` (query, method) finetunes at once, at the sweep's
    smallest N (the workers sweep's settings, so the two compare)."""
    return _with(_scaling_cfg(base, 1), finetune={"batch_jobs": jobs})


def _param_count(cfg: RunConfig) -> int | None:
    try:
        lm = load_model(cfg.model, device="cpu")
        return int(sum(p.numel() for p in lm.model.parameters()))
    except Exception as exc:  # reporting only
        log.warning("could not count parameters: %s", exc)
        return None


def _naive_comparison(cfg: RunConfig, point: BenchPoint) -> dict[str, Any]:
    """hullft's engine vs the published procedure on the same model and multisets."""
    # torch and both engines load here, in the one driver-side step that trains;
    # the rest of the bench (and `hullft --help`) never imports torch.
    import torch

    from hullft.reference import PublishedProcedure
    from hullft.ttft import TTFTEngine

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = ok_rows(point.rows)
    hull = rows[rows["method"] == "hullft"].head(cfg.bench.naive_queries)
    if hull.empty:
        return {}

    queries = {q.query_id: q.text for q in load_queries(point.cfg.queries)}
    texts = load_index(_index_dir(point.cfg)).texts
    lm = load_model(cfg.model, device=device)
    # Both sides train on sequences of at most data.sequence_length tokens (what the
    # index was cut to); the naive side pads every sequence to exactly that length,
    # as the published code pads to its max_length — never to the model's context.
    length = min(point.cfg.data.sequence_length, lm.max_length)
    ours = TTFTEngine(lm.model, lm.tokenizer, point.cfg.finetune, device, max_length=length)
    ours.warm_up()  # with finetune.compile: compiled once, as a worker does at start
    # its own copy: the naive procedure finetunes in place and reloads from the host
    naive = PublishedProcedure(
        copy.deepcopy(lm.model), lm.tokenizer, length, point.cfg.finetune, device
    )
    t_ours, t_naive = [], []
    for _, row in hull.iterrows():
        seqs = texts.get_many(np.asarray(row["support_ids"], dtype=np.int64))
        counts = [int(c) for c in row["support_counts"]]
        q = queries[row["query_id"]]
        t = time.perf_counter()
        ours.run(q, seqs, counts)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        naive.run(q, seqs, counts)
        t_naive.append(time.perf_counter() - t)
    return {
        "queries": len(t_ours),
        "hullft_s_per_query": float(np.mean(t_ours)),
        "naive_s_per_query": float(np.mean(t_naive)),
        "speedup": float(np.mean(t_naive) / np.mean(t_ours)),
    }


def _index_dir(cfg: RunConfig) -> Path:
    return Path(build_index(cfg, progress=False))
