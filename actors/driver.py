"""The driver: streams queries through IndexActor → SelectorActor → ModelWorker and
writes every (run_id, query_id, method) row exactly once.

:func:`run_pipeline` checks the inputs, claims the run directory, finds what is
left to do, connects to Ray (:mod:`actors.ray_session`), starts or reuses the
actors (:mod:`actors.pool`) and hands the queries to the event loop
(:class:`actors.scheduler.Scheduler`): the index actor embeds and searches
batches of queries, each query's candidates go to a selector whose result is
handed to a model worker *by reference*, a worker runs up to its batch size of
queries per call, and failures are decided by :mod:`actors.policy`. A rerun with
the same run_id skips every (query, method) already written.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray
from tqdm.auto import tqdm

from actors import ray_session
from actors.gpu_worker import ModelWorker
from actors.policy import RetryPolicy, WorkerPlan, plan_workers
from actors.pool import ACTOR_NAMESPACE, ActorPool, worker_actor_name
from actors.ray_embed import build_index_distributed
from actors.scheduler import Actors, Scheduler, Task
from hullft.config import RunConfig, config_to_dict
from hullft.data.queries import load_queries
from hullft.data.readers import resolve_inputs
from hullft.index import build_index
from hullft.pipeline import row_config, run_id_for
from hullft.report import print_corpus_table, summarize_run
from hullft.results import BASE_METHOD, ResultSink, RunSummary
from hullft.rundir import RunDirLease, claim_run_dir

__all__ = ["ACTOR_NAMESPACE", "RunSummary", "ensure_index", "run_pipeline", "worker_actor_name"]

log = logging.getLogger(__name__)


def run_pipeline(
    cfg: RunConfig,
    *,
    demo: bool = False,
    worker_cls: type = ModelWorker,
    progress: bool = True,
    on_query_done: Callable[[str], None] | None = None,
    pool: ActorPool | None = None,
) -> RunSummary:
    """Run (or resume) the TTFT pipeline for ``cfg`` and write results + report.

    ``worker_cls`` lets tests swap in a worker with injected faults.
    ``on_query_done`` is called with each query id once its rows are handed to the
    sink (which writes them with the next part, see ``experiment.results_part_rows``).
    ``pool`` keeps the actors for the next run in the same Ray session (the bench);
    without one they are stopped when the run ends.
    """
    t_start = time.perf_counter()
    run_id = run_id_for(cfg)
    run_dir = Path(cfg.experiment.output_dir).expanduser() / run_id
    _check_inputs(cfg)  # a typo in a path must not leave an empty run directory behind
    # The lease is held until the run ends (returns or raises) or the process dies.
    with _claim_run_dir(run_dir, cfg):
        sink = ResultSink(
            run_dir,
            part_rows=cfg.experiment.results_part_rows,
            part_seconds=cfg.experiment.results_part_s,
        )

        index_dir = ensure_index(cfg)
        if demo:
            print_corpus_table(index_dir)
        queries = load_queries(cfg.queries)
        if cfg.experiment.limit is not None:
            queries = queries[: cfg.experiment.limit]
        tasks = _pending_tasks(queries, cfg.selection.methods, sink.done)
        log.info(
            "run %s: %d queries, %d already complete, %d to do (results in %s)",
            run_id,
            len(queries),
            len(queries) - len(tasks),
            len(tasks),
            run_dir,
        )
        scheduler, message, loop_s = None, "", 0.0
        if tasks:
            with ray_session.session(cfg.cluster), _pool(pool) as actors_pool:
                t_loop = time.perf_counter()
                try:
                    scheduler, message = _process(
                        cfg,
                        index_dir,
                        tasks,
                        sink,
                        worker_cls,
                        progress,
                        on_query_done,
                        actors_pool,
                    )
                finally:
                    sink.flush()  # commit what is buffered, whatever stopped the loop
                loop_s = time.perf_counter() - t_loop
        remaining = _pending_tasks(queries, cfg.selection.methods, sink.done)
        sink.close(compact=not remaining)  # a finished run keeps a few result files
        counters = scheduler.counters if scheduler else None
        summary = RunSummary(
            run_id=run_id,
            run_dir=run_dir,
            complete=not remaining,
            queries_total=len(queries),
            queries_processed=counters.processed if counters else 0,
            rows_written=counters.rows_written if counters else 0,
            failed_rows=counters.failed_rows if counters else 0,
            retried_queries=len(counters.retried) if counters else 0,
            workers_replaced=counters.replaced if counters else 0,
            elapsed_s=time.perf_counter() - t_start,
            loop_s=loop_s,
            message=message,
        )
        summary.report = summarize_run(run_dir, cfg, summary)
        if not summary.complete:
            log.error(
                "run %s incomplete: %d queries left (%s). Rerun the same command to resume.",
                run_id,
                len(remaining),
                message or "see the log above",
            )
        return summary


@contextlib.contextmanager
def _pool(pool: ActorPool | None) -> Iterator[ActorPool]:
    """``pool``, or a pool of this run's own whose actors stop when the run ends."""
    if pool is not None:
        yield pool
        return
    own = ActorPool()
    try:
        yield own
    finally:
        own.close()


def _claim_run_dir(run_dir: Path, cfg: RunConfig) -> RunDirLease:
    """Lock the run directory for this driver and record its config (hullft.rundir)."""
    return claim_run_dir(run_dir, config_to_dict(cfg), comparable=row_config)


def _check_inputs(cfg: RunConfig) -> None:
    """Fail on a missing corpus or query path before anything is written."""
    resolve_inputs(cfg.data.paths, "train")
    resolve_inputs(cfg.queries.paths, "test")


def ensure_index(cfg: RunConfig) -> Path:
    """Build (or find) the index, through Ray Data when ``index.distributed``."""
    if cfg.index.distributed:
        return Path(build_index_distributed(cfg))
    return Path(build_index(cfg))


def _pending_tasks(
    queries: list[Any], methods: tuple[str, ...], done: frozenset[tuple[str, str]]
) -> list[Task]:
    tasks = []
    for q in queries:
        todo = tuple(m for m in methods if (q.query_id, m) not in done)
        base_todo = (q.query_id, BASE_METHOD) not in done
        if todo or base_todo:
            tasks.append(Task(query=q, methods=todo, with_base=base_todo))
    return tasks


def _process(
    cfg: RunConfig,
    index_dir: Path,
    tasks: list[Task],
    sink: ResultSink,
    worker_cls: type,
    progress: bool,
    on_query_done: Callable[[str], None] | None,
    pool: ActorPool,
) -> tuple[Scheduler, str]:
    """Start (or reuse) the actors and run the event loop. Returns the scheduler
    (its counters) and an empty string, or why the run stopped early."""
    resources = ray.cluster_resources()
    plan = plan_workers(cfg.cluster, resources.get("GPU", 0.0), resources.get("CPU", 0.0))
    log.info(
        "%d model worker(s) × (%g GPU, %g CPU), %d selector(s), %d index replica(s)",
        plan.num_workers,
        plan.num_gpus,
        plan.num_cpus,
        cfg.cluster.num_selectors,
        cfg.cluster.index_replicas,
    )
    run_id = run_id_for(cfg)
    worker_key = _worker_key(cfg, index_dir, plan, worker_cls)
    idle = pool.idle_workers(worker_key)
    if idle:
        log.info("reusing %d model worker(s) of the previous run", len(idle))
    spawn = _worker_factory(cfg, index_dir, plan, worker_cls, run_id, idle)
    actors = Actors(
        index=pool.index_actors(cfg, index_dir),
        selectors=pool.selectors(cfg, index_dir, run_id),
        spawn=spawn,
        num_workers=plan.num_workers,
        selection_cfg=cfg.selection,
    )
    bar = tqdm(total=len(tasks), desc="queries", unit="q", disable=not progress)
    scheduler = Scheduler(
        actors=actors,
        tasks=tasks,
        sink=sink,
        run_id=run_id,
        k=cfg.selection.k,
        n=cfg.selection.n,
        policy=RetryPolicy.from_config(cfg.cluster),
        max_calls_per_worker=cfg.cluster.max_in_flight_per_worker,
        attempt_timeout_s=cfg.cluster.attempt_timeout_s,
        on_query_done=on_query_done,
        on_progress=lambda: bar.update(1),
    )
    try:
        message = scheduler.run()
    finally:
        bar.close()
        # idle, ready workers serve the next run of this pool (or are stopped with it)
        pool.keep_workers(
            worker_key, [w.actor for w in scheduler.workers if w.alive and w.ready and not w.calls]
        )
    return scheduler, message


def _worker_key(cfg: RunConfig, index_dir: Path, plan: WorkerPlan, worker_cls: type) -> str:
    """What a model worker is built from: a worker is reused only for the same."""
    return repr(
        (
            str(index_dir),
            config_to_dict(cfg.model),
            config_to_dict(cfg.finetune),
            plan,
            f"{worker_cls.__module__}.{worker_cls.__qualname__}",
        )
    )


def _worker_factory(
    cfg: RunConfig,
    index_dir: Path,
    plan: WorkerPlan,
    worker_cls: type,
    run_id: str,
    idle: list[Any],
) -> Callable[[str], Any]:
    remote_cls: Any = ray.remote(num_gpus=plan.num_gpus, num_cpus=plan.num_cpus, max_restarts=0)(
        worker_cls
    )
    threads = max(1, int(plan.num_cpus)) if plan.num_gpus == 0 else None

    def spawn(worker_id: str) -> Any:
        if idle:  # built for the same model, finetuning and plan by an earlier run
            actor = idle.pop(0)
        else:
            # Named, so that operators (and the fault tests) can find a worker with
            # ray.get_actor(worker_actor_name(run_id, "w0"), namespace=ACTOR_NAMESPACE).
            actor = remote_cls.options(
                name=worker_actor_name(run_id, worker_id), namespace=ACTOR_NAMESPACE
            ).remote(str(index_dir), cfg.model, cfg.finetune, worker_id, threads)
        return actor

    return spawn
