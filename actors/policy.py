"""Pure scheduling decisions, tested without a cluster.

- :func:`classify` says why an attempt failed, from plain facts the driver read
  off the error (no Ray object, no private Ray attribute).
- :class:`RetryPolicy` decides what happens next: retry (when, and whether the
  failure spent one of the query's attempts), retry alone, or give up.
- :func:`call_size`, :func:`is_hung` and :func:`pick_worker` decide how work is
  handed to the model workers.
- :func:`plan_workers` decides how many model workers to start and with what
  resources, from the config and what the cluster offers.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from hullft.config import ClusterConfig

MAX_BACKOFF_S = 30.0
"""Longest delay between two tries of a query."""


class ErrorKind(enum.Enum):
    """What the error of a Ray call says happened (read off the exception type)."""

    TASK_ERROR = "task_error"
    """The called method raised."""
    ACTOR_DIED = "actor_died"
    """An actor died: the one called, or one whose result it was handed."""
    ACTOR_UNAVAILABLE = "actor_unavailable"
    """An actor is temporarily unreachable, e.g. restarting."""
    NODE_DIED = "node_died"
    """The node or worker process running the call died."""


class Failure(enum.Enum):
    """Why an attempt at a query failed."""

    TASK_ERROR = "task_error"
    """The worker raised (e.g. out of memory): the query may succeed elsewhere."""
    WORKER_DIED = "worker_died"
    """The model worker running the query died (or its node did)."""
    WORKER_HUNG = "worker_hung"
    """The model worker made no progress within ``cluster.attempt_timeout_s``."""
    RESTARTING = "restarting"
    """A selector or index actor the query needed died or is restarting: nothing
    about the query itself went wrong."""
    COLLATERAL = "collateral"
    """The query was queued behind another on a worker that died or hung: it never
    ran."""


def classify(
    kind: ErrorKind,
    failed_actor_id: str | None,
    callee_actor_id: str | None,
    callee_restarts: bool,
) -> Failure:
    """Why a call failed.

    ``failed_actor_id`` is the actor the error names (``None`` when it names none);
    ``callee_actor_id`` the actor that was called (as it reported itself, ``None``
    if unknown); ``callee_restarts`` whether Ray restarts that actor (selectors and
    index actors) or not (model workers, which the driver replaces).
    """
    if kind is ErrorKind.TASK_ERROR:
        return Failure.TASK_ERROR
    if kind is ErrorKind.ACTOR_UNAVAILABLE:
        return Failure.RESTARTING
    if kind is ErrorKind.NODE_DIED:
        return Failure.RESTARTING if callee_restarts else Failure.WORKER_DIED
    # ACTOR_DIED: the callee itself, unless the error names another actor — a
    # selector whose result a worker was handed by reference, which Ray restarts.
    itself = failed_actor_id is None or failed_actor_id == callee_actor_id
    if itself and not callee_restarts:
        return Failure.WORKER_DIED
    return Failure.RESTARTING


class Action(enum.Enum):
    RETRY = "retry"
    RETRY_ALONE = "retry_alone"
    """Retry each query of a failed multi-query call on its own, so that one bad
    query fails alone."""
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    """Wait this long before the next try."""
    counts: bool = False
    """Whether the failed attempt spent one of ``max_attempts``."""


@dataclass(frozen=True)
class RetryPolicy:
    """What to do with a query whose attempt failed.

    - A failure in a call of several queries is not pinned on any of them: each
      is retried alone, at once, without spending an attempt.
    - A query lost with its worker before it ran (:attr:`Failure.COLLATERAL`) is
      retried at once without spending an attempt.
    - A restarting selector or index actor costs no attempt: the query waits with
      exponential backoff, up to ``restart_wait_s`` in all; past that, the
      failure counts as any other.
    - Every other failure spends an attempt (a query that kills its worker every
      time must not take the pool down with it) and is retried after an
      exponential backoff until ``max_attempts`` are spent.
    """

    max_attempts: int = 3
    backoff_s: float = 1.0
    restart_wait_s: float = 300.0

    @classmethod
    def from_config(cls, cfg: ClusterConfig) -> RetryPolicy:
        return cls(cfg.max_attempts, cfg.retry_backoff_s, cfg.restart_wait_s)

    def backoff(self, retries: int) -> float:
        """Delay before retry number ``retries + 1``."""
        return min(MAX_BACKOFF_S, self.backoff_s * 2.0 ** min(retries, 32))

    def decide(
        self,
        failure: Failure,
        *,
        attempt: int,
        retries: int = 0,
        waited_s: float = 0.0,
        call_size: int = 1,
    ) -> Decision:
        """``attempt``: the 1-based attempt that failed; ``retries``: how many
        times the query was retried already; ``waited_s``: seconds it has waited
        for restarting actors so far; ``call_size``: queries in the failed call."""
        if failure is Failure.COLLATERAL:
            return Decision(Action.RETRY)
        if failure is Failure.RESTARTING:
            delay = self.backoff(retries)
            if waited_s + delay <= self.restart_wait_s:
                return Decision(Action.RETRY, delay)
        elif call_size > 1:
            return Decision(Action.RETRY_ALONE)
        if attempt < self.max_attempts:
            return Decision(Action.RETRY, self.backoff(retries), counts=True)
        return Decision(Action.GIVE_UP, counts=True)


def is_hung(busy_s: float, timeout_s: float | None, queries: int) -> bool:
    """Whether a worker that has worked ``busy_s`` on its current call of
    ``queries`` queries is hung (``timeout_s`` is per query; ``None`` = never)."""
    return timeout_s is not None and busy_s > timeout_s * max(1, queries)


def call_size(ready: int, batch_size: int, calls_in_flight: int, more_coming: bool) -> int:
    """How many of ``ready`` searched queries to hand to a worker with a free slot
    now (0 = wait for more). A busy worker waits until it can get a full batch
    of ``batch_size`` while more queries are coming; an idle one never waits."""
    if ready <= 0:
        return 0
    if ready >= batch_size or calls_in_flight == 0 or not more_coming:
        return min(ready, batch_size)
    return 0


@dataclass(frozen=True)
class WorkerLoad:
    """What :func:`pick_worker` sees of a worker."""

    ready: bool
    alive: bool
    calls_in_flight: int


def pick_worker(workers: Sequence[WorkerLoad], max_calls: int) -> int | None:
    """The index of the least-loaded live, ready worker with a free slot (lowest
    index on ties), or ``None``."""
    free = [
        (w.calls_in_flight, i)
        for i, w in enumerate(workers)
        if w.alive and w.ready and w.calls_in_flight < max_calls
    ]
    return min(free)[1] if free else None


@dataclass(frozen=True)
class WorkerPlan:
    num_workers: int
    num_gpus: float
    """GPUs per worker (0 on a CPU-only cluster)."""
    num_cpus: float


class PlanError(ValueError):
    """The requested workers cannot be placed on this cluster."""


def plan_workers(cfg: ClusterConfig, cluster_gpus: float, cluster_cpus: float) -> WorkerPlan:
    """Workers and per-worker resources for a cluster offering these totals.

    - ``num_workers=None``: one worker per ``gpus_per_worker`` share of every GPU,
      or a single CPU worker when the cluster has no GPU.
    - Asking for more GPUs than exist is an error that says what is available.
    """
    gpus_each = cfg.gpus_per_worker if cluster_gpus > 0 else 0.0
    if cfg.num_workers is None:
        n = math.floor(cluster_gpus / gpus_each + 1e-9) if gpus_each > 0 else 1
        if n < 1:
            raise PlanError(
                f"cluster.gpus_per_worker={cfg.gpus_per_worker} but the cluster has "
                f"{cluster_gpus:g} GPU(s); lower gpus_per_worker"
            )
    else:
        n = cfg.num_workers
    if gpus_each * n > cluster_gpus + 1e-9:
        raise PlanError(
            f"{n} worker(s) × {gpus_each:g} GPU(s) = {gpus_each * n:g} GPUs requested but the "
            f"cluster has {cluster_gpus:g}; set cluster.num_workers or cluster.gpus_per_worker lower"
        )
    if cfg.cpus_per_worker is not None:
        cpus_each = cfg.cpus_per_worker
    elif gpus_each > 0:
        cpus_each = 1.0
    else:  # CPU-only: the workers share every core (their torch threads)
        cpus_each = max(1.0, float(math.floor(cluster_cpus / n)))
    if cpus_each * n > cluster_cpus + 1e-9:
        raise PlanError(
            f"{n} worker(s) × {cpus_each:g} CPU(s) requested but the cluster has "
            f"{cluster_cpus:g}; lower cluster.cpus_per_worker or cluster.num_workers"
        )
    return WorkerPlan(num_workers=n, num_gpus=gpus_each, num_cpus=cpus_each)
