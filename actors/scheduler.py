"""The driver's event loop: explicit state and one handler per event.

:class:`Scheduler` owns the queues (to search, searched and waiting for a worker),
the calls in flight and the workers. Each turn of :meth:`Scheduler.run` submits
what can be submitted, checks the clocks (backoff, hung workers, start-up), waits
for one Ray result and hands it to its handler:

- :meth:`on_worker_up` — a worker's process started (it was placed);
- :meth:`on_worker_ready` — a worker built its model and reported its batch size;
- :meth:`on_search_done` — an index actor returned candidates for a batch;
- :meth:`on_work_done` — a worker returned the rows of a call (or its error);
- :meth:`on_worker_hung` — a worker exceeded ``cluster.attempt_timeout_s``.

Every decision (why a call failed, what to do about it, which worker gets how
many queries, whether a worker is hung) is a pure function of
:mod:`actors.policy`. See docs/runtime.md.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from actors import metrics
from actors.gpu_worker import QueryWork, WorkerInfo
from actors.policy import (
    Action,
    ErrorKind,
    Failure,
    RetryPolicy,
    WorkerLoad,
    call_size,
    classify,
    is_hung,
    pick_worker,
)
from hullft.pipeline import Candidates, RowContext, queries_per_call
from hullft.results import BASE_METHOD, STATUS_FAILED, ResultRow, ResultSink, failure_rows

log = logging.getLogger(__name__)

SEARCH_BATCH = 16
"""Queries per IndexActor.search call."""
WORKER_START_TIMEOUT_S = 600.0
"""How long to wait for at least one worker to be placed (its process started)
before giving up; building the model after that has no limit."""
WAIT_S = 5.0
"""Longest single wait for a Ray result (the clocks are checked in between)."""


@dataclass
class Task:
    """One query and what is left to do for it."""

    query: Any  # hullft.data.queries.Query
    methods: tuple[str, ...]
    """Selection methods still to write for this query."""
    with_base: bool
    attempt: int = 1
    retries: int = 0
    waited_s: float = 0.0
    """Seconds waited for restarting actors (they cost no attempt)."""
    not_before: float = 0.0
    """``time.monotonic()`` before which it is not tried again (backoff)."""
    alone: bool = False
    """Run in a call of its own (it failed in a call with others)."""
    cands: Candidates | None = None


@dataclass
class Call:
    """One ``run_batch`` call in flight on a worker."""

    ref: Any
    tasks: list[Task]
    worker: Worker


@dataclass
class Worker:
    actor: Any
    worker_id: str
    ping_ref: Any
    """Answers as soon as the actor is up (placed, its process started)."""
    ready_ref: Any
    """The worker's ``prepare()`` result (its model built), until it arrives."""
    scheduled: bool = False
    """Its process is up (``ping`` answered): it may be given calls, which queue
    behind its model loading."""
    actor_id: str | None = None
    """Ray's id of the actor, as the actor reported it (errors naming it are its death)."""
    info: WorkerInfo | None = None
    alive: bool = True
    calls: deque[Call] = field(default_factory=deque)
    """In submission order: an actor runs its calls one after another, so the
    first is the one running."""
    busy_since: float = 0.0
    """When the first of :attr:`calls` started (its predecessor finished)."""

    @property
    def ready(self) -> bool:
        return self.info is not None

    @property
    def jobs_in_flight(self) -> int:
        """Queries in the calls this worker holds."""
        return sum(len(c.tasks) for c in self.calls)

    @property
    def batch_size(self) -> int:
        return self.info.batch_size if self.info else 1


@dataclass
class Counters:
    processed: int = 0
    rows_written: int = 0
    failed_rows: int = 0
    retried: set[str] = field(default_factory=set)
    replaced: int = 0


@dataclass(frozen=True)
class Actors:
    """What the scheduler calls: index actors, selectors, and how to start a worker."""

    index: list[Any]
    selectors: list[Any]
    spawn: Callable[[str], Any]
    """``spawn(worker_id) -> actor`` (new, or kept from an earlier run)."""
    num_workers: int
    selection_cfg: Any = None
    """Passed to every ``select`` call (a reused selector may have been built for
    another run's selection config)."""


class Scheduler:
    """Streams tasks through search → select → work and writes their rows once."""

    def __init__(
        self,
        *,
        actors: Actors,
        tasks: list[Task],
        sink: ResultSink,
        run_id: str,
        k: int,
        n: int,
        policy: RetryPolicy,
        max_calls_per_worker: int,
        attempt_timeout_s: float | None,
        on_query_done: Callable[[str], None] | None = None,
        on_progress: Callable[[], None] | None = None,
        ray_api: Any = ray,
    ):
        """``ray_api`` provides ``wait``, ``get`` and ``kill`` as the ``ray`` module
        does; tests pass a fake to drive the loop without a cluster."""
        self.ray = ray_api
        self.actors = actors
        self.sink = sink
        self.run_id, self.k, self.n = run_id, k, n
        self.policy = policy
        self.max_calls = max_calls_per_worker
        self.attempt_timeout_s = attempt_timeout_s
        self.on_query_done = on_query_done
        self.on_progress = on_progress
        self.counters = Counters()
        self.to_search: deque[Task] = deque(tasks)
        self.ready: deque[Task] = deque()  # searched, waiting for a worker
        self.delayed: list[Task] = []  # backing off
        self.searches: dict[Any, list[Task]] = {}
        self.calls: dict[Any, Call] = {}
        self.workers: list[Worker] = []
        self.max_replacements = actors.num_workers * policy.max_attempts
        self._rr = 0
        self._t0 = time.monotonic()
        for i in range(actors.num_workers):
            self._start_worker(f"w{i}")

    # ------------------------------------------------------------------ loop

    def run(self) -> str:
        """Process every task. Returns an empty string, or why it stopped early."""
        while self.to_search or self.ready or self.delayed or self.searches or self.calls:
            self._release_delayed()
            self._submit_searches()
            self._dispatch()
            stop = self._stop_reason()
            if stop:
                return stop
            self._check_hung()
            self._wait_one()
        return ""

    def _wait_one(self) -> None:
        pending = {w.ready_ref: w for w in self.workers if w.alive and not w.ready}
        pings = {w.ping_ref: w for w in self.workers if w.alive and not w.scheduled and not w.ready}
        # Readiness first: an actor answers in order, so when both its prepare() and
        # a call are done, the prepare() happened before.
        waitable = [*pings, *pending, *self.searches, *self.calls]
        if not waitable:
            time.sleep(min(WAIT_S, self._next_clock()))
            return
        done, _ = self.ray.wait(waitable, num_returns=1, timeout=min(WAIT_S, self._next_clock()))
        for ref in done:
            if ref in pings:
                self.on_worker_up(pings[ref], ref)
            elif ref in pending:
                self.on_worker_ready(pending[ref], ref)
            elif ref in self.searches:
                self.on_search_done(ref)
            elif ref in self.calls:
                self.on_work_done(ref)

    def _next_clock(self) -> float:
        """Seconds until a delayed task is due (at most :data:`WAIT_S`)."""
        now = time.monotonic()
        due = [t.not_before - now for t in self.delayed]
        return max(0.05, min([WAIT_S, *due]))

    # -------------------------------------------------------------- handlers

    def on_worker_up(self, w: Worker, ref: Any) -> None:
        try:
            w.actor_id = self.ray.get(ref)
        except ray.exceptions.RayError:
            return  # its prepare() fails as well: on_worker_ready reports and replaces it
        w.scheduled = True

    def on_worker_ready(self, w: Worker, ref: Any) -> None:
        try:
            w.info = self.ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._lose_worker(w, f"failed to start ({_last_line(str(exc))})", running_failed=False)
            return
        assert w.info is not None
        w.scheduled = True
        w.busy_since = time.monotonic()  # calls queued behind the model loading start now
        per_call = queries_per_call(w.info.batch_size, self._methods_per_query)
        log.info(
            "worker %s ready on %s: trains %d job(s) at once, %d quer%s per call",
            w.worker_id,
            w.info.device,
            w.info.batch_size,
            per_call,
            "y" if per_call == 1 else "ies",
        )

    def on_search_done(self, ref: Any) -> None:
        batch = self.searches.pop(ref)
        try:
            results = self.ray.get(ref)
        except ray.exceptions.RayError as exc:
            metrics.record_search_failed()
            kind, failed_id = _error_facts(exc)
            failure = classify(kind, failed_id, None, callee_restarts=True)
            for task in batch:
                self._failed(task, failure, f"retrieval failed: {exc}", call_size=1)
            return
        metrics.record_search(results)
        for task, cands in zip(batch, results, strict=True):
            task.cands = cands
            self.ready.append(task)

    def on_work_done(self, ref: Any) -> None:
        call = self.calls.pop(ref)
        w = call.worker
        running = w.calls[0] is call  # else it failed before it ran (its arguments)
        w.calls.remove(call)
        metrics.set_in_flight(w.worker_id, w.jobs_in_flight)
        if running:
            w.busy_since = time.monotonic()
        try:
            results: list[list[ResultRow]] = self.ray.get(ref)
        except ray.exceptions.RayError as exc:
            kind, failed_id = _error_facts(exc)
            failure = classify(kind, failed_id, w.actor_id, callee_restarts=False)
            if failure is Failure.WORKER_DIED:
                # The call that was running is the suspect; the rest never ran (and
                # none ran while the worker was still loading its model).
                if not running or not w.ready:
                    failure = Failure.COLLATERAL
                self._lose_worker(w, "died", running_failed=not running and w.ready)
            for task in call.tasks:
                self._failed(task, failure, str(exc), call_size=len(call.tasks))
            return
        for task, rows in zip(call.tasks, results, strict=True):
            self._finish(task, rows)

    def on_worker_hung(self, w: Worker) -> None:
        call = w.calls[0]
        log.warning(
            "worker %s made no progress for %.0f s on quer%s %s (cluster.attempt_timeout_s=%g "
            "per query): treating it as hung, killing and replacing it",
            w.worker_id,
            time.monotonic() - w.busy_since,
            "y" if len(call.tasks) == 1 else "ies",
            ", ".join(t.query.query_id for t in call.tasks),
            self.attempt_timeout_s,
        )
        self.ray.kill(w.actor, no_restart=True)
        self._lose_worker(w, "hung", running_failed=True)

    # ------------------------------------------------------------ submission

    def _release_delayed(self) -> None:
        now = time.monotonic()
        due = [t for t in self.delayed if t.not_before <= now]
        if not due:
            return
        self.delayed = [t for t in self.delayed if t.not_before > now]
        for task in due:
            (self.ready if task.cands is not None else self.to_search).appendleft(task)

    def _submit_searches(self) -> None:
        index = self.actors.index
        while self.to_search and len(self.searches) < 2 * len(index):
            n = min(SEARCH_BATCH, len(self.to_search))
            batch = [self.to_search.popleft() for _ in range(n)]
            actor = index[self._next_rr() % len(index)]
            self.searches[actor.search.remote([t.query for t in batch], self.k)] = batch

    @property
    def _methods_per_query(self) -> int:
        """Finetuning jobs a query brings (its selection methods)."""
        cfg = self.actors.selection_cfg
        return len(cfg.methods) if cfg is not None else 1

    def _dispatch(self) -> None:
        more_coming = bool(self.to_search or self.searches or self.delayed)
        while self.ready:
            loads = [WorkerLoad(w.scheduled, w.alive, len(w.calls)) for w in self.workers]
            i = pick_worker(loads, self.max_calls)
            if i is None:
                return
            w = self.workers[i]
            if self.ready[0].alone:
                size = 1
            else:
                per_call = queries_per_call(w.batch_size, self._methods_per_query)
                size = call_size(len(self.ready), per_call, len(w.calls), more_coming)
            if size == 0:
                return
            tasks: list[Task] = []
            while self.ready and len(tasks) < size and not (tasks and self.ready[0].alone):
                tasks.append(self.ready.popleft())
            self._submit_call(w, tasks)

    def _submit_call(self, w: Worker, tasks: list[Task]) -> None:
        work, selections = [], []
        for task in tasks:
            assert task.cands is not None
            selector = self.actors.selectors[self._next_rr() % len(self.actors.selectors)]
            # Handed to the worker by reference: the driver never fetches selections.
            selections.append(
                selector.select.remote(task.cands, task.methods, self.actors.selection_cfg)
            )
            ctx = RowContext(run_id=self.run_id, attempt=task.attempt, k=self.k, n=self.n)
            work.append(QueryWork(task.cands, ctx, task.with_base))
        ref = w.actor.run_batch.remote(work, *selections)
        if not w.calls:
            w.busy_since = time.monotonic()
        call = Call(ref, tasks, w)
        w.calls.append(call)
        self.calls[ref] = call
        metrics.set_in_flight(w.worker_id, w.jobs_in_flight)

    # -------------------------------------------------------------- outcomes

    def _finish(self, task: Task, rows: list[ResultRow], failed: bool = False) -> None:
        self.sink.write(rows)
        metrics.record_rows(rows, failed=failed)
        c = self.counters
        c.rows_written += len(rows)
        c.failed_rows += sum(r.status == STATUS_FAILED for r in rows)
        c.processed += 1
        if self.on_progress:
            self.on_progress()
        if self.on_query_done:
            self.on_query_done(task.query.query_id)

    def _failed(self, task: Task, failure: Failure, error: str, *, call_size: int) -> None:
        decision = self.policy.decide(
            failure,
            attempt=task.attempt,
            retries=task.retries,
            waited_s=task.waited_s,
            call_size=call_size,
        )
        log.warning(
            "query %s attempt %d failed (%s): %s → %s%s",
            task.query.query_id,
            task.attempt,
            failure.value,
            _last_line(error),
            decision.action.value,
            f" in {decision.delay_s:.1f} s" if decision.delay_s else "",
        )
        if decision.action is Action.GIVE_UP:
            methods = ((BASE_METHOD,) if task.with_base else ()) + task.methods
            rows = failure_rows(
                self.run_id,
                task.query.query_id,
                task.query.domain,
                methods,
                error=error[-2000:],
                attempt=task.attempt,
                k=self.k,
                n=self.n,
            )
            self._finish(task, rows, failed=True)
            return
        self.counters.retried.add(task.query.query_id)
        metrics.record_retry(failure.value)
        task.retries += 1
        if decision.counts:
            task.attempt += 1
        elif failure is Failure.RESTARTING:
            task.waited_s += decision.delay_s
        if decision.action is Action.RETRY_ALONE:
            task.alone = True
        task.not_before = time.monotonic() + decision.delay_s
        self.delayed.append(task)

    # --------------------------------------------------------------- workers

    def _start_worker(self, worker_id: str) -> None:
        actor = self.actors.spawn(worker_id)
        # An actor runs its calls in order: ping answers once it is up (it may then
        # be given calls, which wait for its model), prepare once its model is built.
        self.workers.append(
            Worker(actor, worker_id, ping_ref=actor.ping.remote(), ready_ref=actor.prepare.remote())
        )

    def _lose_worker(self, w: Worker, how: str, *, running_failed: bool) -> None:
        """``w`` died or hung. Its running call (when still in ``w.calls``, i.e.
        ``running_failed``) fails as ``how`` says; the calls queued behind it
        never ran."""
        w.alive = False
        calls = list(w.calls)
        w.calls.clear()
        metrics.set_in_flight(w.worker_id, 0)
        for call in calls:
            self.calls.pop(call.ref, None)
        log.warning(
            "worker %s %s; %d quer%s move to other workers",
            w.worker_id,
            how,
            sum(len(c.tasks) for c in calls),
            "y" if sum(len(c.tasks) for c in calls) == 1 else "ies",
        )
        self._replace(w)
        for i, call in enumerate(calls):
            if i == 0 and running_failed:
                failure = Failure.WORKER_HUNG if how == "hung" else Failure.WORKER_DIED
                error = (
                    f"worker {w.worker_id} hung: no result within cluster.attempt_timeout_s="
                    f"{self.attempt_timeout_s:g} s per query"
                    if how == "hung"
                    else f"worker {w.worker_id} died"
                )
            else:
                failure, error = Failure.COLLATERAL, f"worker {w.worker_id} {how} before it ran"
            for task in call.tasks:
                self._failed(task, failure, error, call_size=len(call.tasks))

    def _replace(self, w: Worker) -> None:
        if self.counters.replaced < self.max_replacements:
            self.counters.replaced += 1
            metrics.record_worker_replaced()
            self._start_worker(f"w{len(self.workers)}")

    def _check_hung(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if (
                w.alive
                and w.ready  # model loading has no limit
                and w.calls
                and is_hung(now - w.busy_since, self.attempt_timeout_s, len(w.calls[0].tasks))
            ):
                self.on_worker_hung(w)

    def _stop_reason(self) -> str:
        live = [w for w in self.workers if w.alive]
        if not live:
            return "every model worker died and no replacement could be started"
        placed = any(w.scheduled or w.ready for w in live)
        if not placed and time.monotonic() - self._t0 > WORKER_START_TIMEOUT_S:
            return (
                f"no model worker could be placed within {WORKER_START_TIMEOUT_S:.0f}s; "
                "check `ray status` for free GPUs/CPUs"
            )
        return ""

    def _next_rr(self) -> int:
        self._rr += 1
        return self._rr - 1


def _error_facts(exc: BaseException) -> tuple[ErrorKind, str | None]:
    """What a Ray error says happened, and the actor it names (if any)."""
    if isinstance(exc, ray.exceptions.ActorUnavailableError):
        return ErrorKind.ACTOR_UNAVAILABLE, getattr(exc, "actor_id", None)
    if isinstance(exc, ray.exceptions.RayActorError):
        return ErrorKind.ACTOR_DIED, getattr(exc, "actor_id", None)
    if isinstance(exc, ray.exceptions.NodeDiedError | ray.exceptions.WorkerCrashedError):
        return ErrorKind.NODE_DIED, None
    return ErrorKind.TASK_ERROR, None


def _last_line(error: str) -> str:
    return error.strip().splitlines()[-1][:300] if error.strip() else ""
