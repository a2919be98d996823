"""The driver: streams queries through IndexActor → SelectorActor → ModelWorker and
writes every (run_id, query_id, method) row exactly once.

Flow per query: the index actor embeds and searches a batch of queries; each
query's candidates go to a selector (round robin), whose result is handed to a
model worker *by reference* (the driver never fetches selections). At most
``cluster.max_in_flight_per_worker`` queries are queued per worker. When an
attempt fails, :class:`~actors.policy.FailurePolicy` decides between a retry on
another worker and a failure row; a dead worker is replaced. A rerun with the
same run_id skips every (query, method) already written.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors import metrics
from actors.gpu_worker import ModelWorker
from actors.index_actor import IndexService
from actors.policy import Decision, Failure, FailurePolicy, WorkerPlan, plan_workers
from actors.selector import SelectorService
from hullft.config import RunConfig, config_to_dict
from hullft.pipeline import Candidates, RowContext, row_config, run_id_for
from hullft.results import BASE_METHOD, STATUS_FAILED, ResultSink, RunSummary, failure_rows
from hullft.rundir import RunDirLease, claim_run_dir

log = logging.getLogger(__name__)

SEARCH_BATCH = 16
"""Queries per IndexActor.search call."""
WORKER_START_TIMEOUT_S = 600.0
"""How long to wait for at least one worker to be scheduled before giving up."""
ACTOR_NAMESPACE = "hullft"


@dataclass
class _Task:
    query: Any  # hullft.data.queries.Query
    methods: tuple[str, ...]
    """Selection methods still to write for this query."""
    with_base: bool
    attempt: int = 1
    cands: Candidates | None = None


@dataclass
class _Worker:
    actor: Any
    worker_id: str
    ready: bool = False
    alive: bool = True
    inflight: int = 0
    ping_ref: Any = None


@dataclass
class _State:
    sink: ResultSink
    run_id: str
    k: int
    n: int
    policy: FailurePolicy
    rows_written: int = 0
    failed_rows: int = 0
    retried: set[str] = field(default_factory=set)
    processed: int = 0
    replaced: int = 0


def run_pipeline(
    cfg: RunConfig,
    *,
    demo: bool = False,
    worker_cls: type = ModelWorker,
    progress: bool = True,
    on_query_done: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run (or resume) the TTFT pipeline for ``cfg`` and write results + report.

    ``worker_cls`` lets tests swap in a worker with injected faults.
    ``on_query_done`` is called with each query id once its rows are handed to the
    sink (which writes them with the next part, see ``experiment.results_part_rows``).
    """
    from hullft.data.queries import load_queries
    from hullft.report import print_corpus_table, summarize_run

    t_start = time.perf_counter()
    run_id = run_id_for(cfg)
    run_dir = Path(cfg.experiment.output_dir).expanduser() / run_id
    _check_inputs(cfg)  # a typo in a path must not leave an empty run directory behind
    lease = _claim_run_dir(run_dir, cfg)  # held until this function returns or we die
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
    state = _State(
        sink, run_id, cfg.selection.k, cfg.selection.n, FailurePolicy(cfg.cluster.max_attempts)
    )
    message = ""
    loop_s = 0.0
    if tasks:
        started_ray = _connect_ray(cfg)
        try:
            t_loop = time.perf_counter()
            message = _process(cfg, index_dir, tasks, state, worker_cls, progress, on_query_done)
            loop_s = time.perf_counter() - t_loop
        finally:
            sink.flush()  # commit what is buffered, whatever stopped the loop
            if started_ray:
                import ray

                ray.shutdown()
    remaining = _pending_tasks(queries, cfg.selection.methods, sink.done)
    sink.close(compact=not remaining)  # a finished run keeps a few result files
    summary = RunSummary(
        run_id=run_id,
        run_dir=run_dir,
        complete=not remaining,
        queries_total=len(queries),
        queries_processed=state.processed,
        rows_written=state.rows_written,
        failed_rows=state.failed_rows,
        retried_queries=len(state.retried),
        workers_replaced=state.replaced,
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
    lease.release()
    return summary


def _claim_run_dir(run_dir: Path, cfg: RunConfig) -> RunDirLease:
    """Lock the run directory for this driver and record its config (hullft.rundir)."""
    return claim_run_dir(run_dir, config_to_dict(cfg), comparable=row_config)


def _check_inputs(cfg: RunConfig) -> None:
    """Fail on a missing corpus or query path before anything is written."""
    from hullft.data.readers import resolve_inputs

    resolve_inputs(cfg.data.paths, "train")
    resolve_inputs(cfg.queries.paths, "test")


def ensure_index(cfg: RunConfig) -> Path:
    """Build (or find) the index, through Ray Data when ``index.distributed``."""
    from hullft.index import build_index

    if cfg.index.distributed:
        from actors.ray_embed import build_index_distributed

        return Path(build_index_distributed(cfg))
    return Path(build_index(cfg))


def _pending_tasks(
    queries: list[Any], methods: tuple[str, ...], done: frozenset[tuple[str, str]]
) -> list[_Task]:
    tasks = []
    for q in queries:
        todo = tuple(m for m in methods if (q.query_id, m) not in done)
        base_todo = (q.query_id, BASE_METHOD) not in done
        if todo or base_todo:
            tasks.append(_Task(query=q, methods=todo, with_base=base_todo))
    return tasks


def _connect_ray(cfg: RunConfig) -> bool:
    """Attach to a cluster or start a local Ray. Returns True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    env_vars = {k: os.environ.get(k, "1") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env_vars["TOKENIZERS_PARALLELISM"] = "false"
    for k in ("HULLFT_CACHE", "XDG_CACHE_HOME"):
        if k in os.environ:
            env_vars[k] = os.environ[k]
    runtime_env = {"env_vars": env_vars}
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        # Inside `ray job submit`: the job's runtime env (cluster/runtime_env.yaml)
        # already applies, and Ray refuses a second one that sets the same keys.
        log.info("running as a Ray job; attaching to its cluster")
        ray.init(address=address or "auto", log_to_driver=True)
        return False
    if address:
        log.info("attaching to Ray at %s", address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        return False
    log.info(
        "starting a local Ray (num_cpus=%s, num_gpus=%s)",
        cfg.cluster.num_cpus,
        cfg.cluster.num_gpus,
    )
    ray.init(
        num_cpus=cfg.cluster.num_cpus,
        num_gpus=cfg.cluster.num_gpus,
        include_dashboard=False,
        runtime_env=runtime_env,
    )
    return True


def _process(
    cfg: RunConfig,
    index_dir: Path,
    tasks: list[_Task],
    state: _State,
    worker_cls: type,
    progress: bool,
    on_query_done: Callable[[str], None] | None,
) -> str:
    """The streaming loop. Returns an empty string, or why the run stopped early."""
    import ray
    from tqdm.auto import tqdm

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
    # Index and selector actors are light and mostly idle: they reserve no CPU so
    # that the model workers can have every core.
    index_actors: list[Any] = [
        ray.remote(num_cpus=0, max_restarts=3)(IndexService).remote(
            str(index_dir), cfg.embedder, cfg.index
        )
        for _ in range(cfg.cluster.index_replicas)
    ]
    run_id = state.run_id
    selectors: list[Any] = [
        ray.remote(num_cpus=0, max_restarts=3)(SelectorService)
        .options(name=f"{run_id}/selector{i}", namespace=ACTOR_NAMESPACE)
        .remote(str(index_dir), cfg.selection)
        for i in range(cfg.cluster.num_selectors)
    ]
    spawn = _worker_factory(cfg, index_dir, plan, worker_cls)
    workers = [spawn(f"w{i}") for i in range(plan.num_workers)]
    max_replacements = plan.num_workers * cfg.cluster.max_attempts

    to_search: deque[_Task] = deque(tasks)
    ready: deque[_Task] = deque()  # searched, waiting for a worker slot
    search_refs: dict[Any, list[_Task]] = {}
    work_refs: dict[Any, tuple[_Task, _Worker]] = {}
    rr = 0
    t0 = time.monotonic()
    bar = tqdm(total=len(tasks), desc="queries", unit="q", disable=not progress)
    capacity = cfg.cluster.max_in_flight_per_worker

    def finish(task: _Task, rows: list[Any], failed: bool = False) -> None:
        state.sink.write(rows)
        metrics.record_rows(rows, failed=failed)
        state.rows_written += len(rows)
        state.failed_rows += sum(r.status == STATUS_FAILED for r in rows)
        state.processed += 1
        bar.update(1)
        if on_query_done:
            on_query_done(task.query.query_id)

    def fail_or_retry(task: _Task, failure: Failure, error: str) -> None:
        decision = state.policy.decide(task.attempt, failure)
        log.warning(
            "query %s attempt %d failed (%s): %s → %s",
            task.query.query_id,
            task.attempt,
            failure.value,
            error.splitlines()[-1][:300] if error else "",
            decision.value,
        )
        if decision is Decision.RETRY:
            metrics.record_retry(failure.value)
            task.attempt += 1
            state.retried.add(task.query.query_id)
            (ready if task.cands is not None else to_search).appendleft(task)
            return
        methods = ((BASE_METHOD,) if task.with_base else ()) + task.methods
        finish(
            task,
            failure_rows(
                state.run_id,
                task.query.query_id,
                task.query.domain,
                methods,
                error=error[-2000:],
                attempt=task.attempt,
                k=state.k,
                n=state.n,
            ),
            failed=True,
        )

    try:
        while to_search or ready or search_refs or work_refs:
            # 1. keep the index actors busy with batches of queries
            while to_search and len(search_refs) < 2 * len(index_actors):
                batch = [to_search.popleft() for _ in range(min(SEARCH_BATCH, len(to_search)))]
                actor = index_actors[rr % len(index_actors)]
                rr += 1
                search_refs[actor.search.remote([t.query for t in batch], cfg.selection.k)] = batch
            # 2. hand searched queries to the least-loaded live worker
            live = [w for w in workers if w.alive]
            while ready:
                slots = [w for w in live if w.ready and w.inflight < capacity]
                if not slots:
                    break
                w = min(slots, key=lambda s: s.inflight)
                task = ready.popleft()
                assert task.cands is not None
                sel_ref = selectors[rr % len(selectors)].select.remote(task.cands, task.methods)
                rr += 1
                ctx = RowContext(run_id=state.run_id, attempt=task.attempt, k=state.k, n=state.n)
                ref = w.actor.run.remote(task.cands, sel_ref, ctx, task.with_base)
                w.inflight += 1
                metrics.set_in_flight(w.worker_id, w.inflight)
                work_refs[ref] = (task, w)
            if not live:
                return "every model worker died and no replacement could be started"
            if not any(w.ready for w in live) and time.monotonic() - t0 > WORKER_START_TIMEOUT_S:
                return (
                    f"no model worker could be scheduled within {WORKER_START_TIMEOUT_S:.0f}s; "
                    "check `ray status` for free GPUs/CPUs"
                )
            # 3. wait for anything to finish
            pings = {w.ping_ref: w for w in live if not w.ready and w.ping_ref is not None}
            waitable = [*search_refs, *work_refs, *pings]
            if not waitable:
                continue
            done, _ = ray.wait(waitable, num_returns=1, timeout=5.0)
            for ref in done:
                if ref in pings:
                    w = pings[ref]
                    try:
                        ray.get(ref)
                        w.ready = True
                    except ray.exceptions.RayError as exc:
                        log.warning("worker %s failed to start: %s", w.worker_id, exc)
                        w.alive = False
                elif ref in search_refs:
                    batch = search_refs.pop(ref)
                    try:
                        results = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        metrics.record_search_failed()
                        for task in batch:
                            fail_or_retry(task, _classify(exc), f"retrieval failed: {exc}")
                        continue
                    metrics.record_search(results)
                    for task, cands in zip(batch, results, strict=True):
                        task.cands = cands
                        ready.append(task)
                else:
                    task, w = work_refs.pop(ref)
                    w.inflight -= 1
                    metrics.set_in_flight(w.worker_id, w.inflight)
                    try:
                        rows = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failure = _classify(exc)
                        if failure is Failure.ACTOR_DIED and w.alive and _died(exc, w.actor):
                            w.alive = False
                            log.warning(
                                "worker %s died; %d queued queries move to other workers",
                                w.worker_id,
                                w.inflight,
                            )
                            if state.replaced < max_replacements:
                                state.replaced += 1
                                metrics.record_worker_replaced()
                                workers.append(spawn(f"w{len(workers)}"))
                        fail_or_retry(task, failure, str(exc))
                        continue
                    finish(task, rows)
    finally:
        bar.close()
    return ""


def _worker_factory(
    cfg: RunConfig, index_dir: Path, plan: WorkerPlan, worker_cls: type
) -> Callable[[str], _Worker]:
    import ray

    remote_cls: Any = ray.remote(num_gpus=plan.num_gpus, num_cpus=plan.num_cpus, max_restarts=0)(
        worker_cls
    )
    threads = max(1, int(plan.num_cpus)) if plan.num_gpus == 0 else None
    run_id = run_id_for(cfg)

    def spawn(worker_id: str) -> _Worker:
        # Named, so that operators (and the fault tests) can find a worker with
        # ray.get_actor(worker_actor_name(run_id, "w0"), namespace=ACTOR_NAMESPACE).
        actor = remote_cls.options(
            name=worker_actor_name(run_id, worker_id), namespace=ACTOR_NAMESPACE
        ).remote(str(index_dir), cfg.model, cfg.finetune, worker_id, threads)
        return _Worker(actor=actor, worker_id=worker_id, ping_ref=actor.ping.remote())

    return spawn


def _died(exc: BaseException, actor: Any) -> bool:
    """Whether ``exc`` reports the death of ``actor`` itself — not of a selector whose
    result the worker was handed by reference (unknown actor id: assume it was)."""
    dead = getattr(exc, "actor_id", None)
    return dead is None or dead == actor._actor_id.hex()


def worker_actor_name(run_id: str, worker_id: str) -> str:
    return f"{run_id}/{worker_id}"


def _classify(exc: BaseException) -> Failure:
    import ray

    if isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.NodeDiedError):
        return Failure.ACTOR_DIED
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return Failure.ACTOR_DIED
    return Failure.TASK_ERROR
