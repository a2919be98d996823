"""Pure scheduling decisions, tested without a cluster.

- :class:`FailurePolicy` decides what happens to a query whose attempt failed.
- :func:`plan_workers` decides how many model workers to start and with what
  resources, from the config and what the cluster offers.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from hullft.config import ClusterConfig


class Failure(enum.Enum):
    """Why an attempt failed."""

    TASK_ERROR = "task_error"
    """The worker raised (e.g. out of memory): the query may succeed elsewhere."""
    ACTOR_DIED = "actor_died"
    """The worker process or its node died mid-query."""


class Decision(enum.Enum):
    RETRY = "retry"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class FailurePolicy:
    """Retry a failed query on another worker until ``max_attempts`` are spent."""

    max_attempts: int = 3

    def decide(self, attempt: int, failure: Failure) -> Decision:
        """``attempt`` is the 1-based number of the attempt that just failed."""
        del failure  # every failure kind costs an attempt: a query that kills
        # its worker every time must not take the whole pool down with it.
        return Decision.RETRY if attempt < self.max_attempts else Decision.GIVE_UP


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
