"""The driver's decisions, pure and without a cluster: why an attempt failed,
what to do about it (retries, backoff, waiting for restarting actors, splitting a
failed batch), which worker gets how many queries, when a worker is hung, and how
many workers to plan."""

from __future__ import annotations

import pytest

from actors.policy import (
    MAX_BACKOFF_S,
    Action,
    ErrorKind,
    Failure,
    PlanError,
    RetryPolicy,
    WorkerLoad,
    call_size,
    classify,
    is_hung,
    pick_worker,
    plan_workers,
)
from hullft.config import ClusterConfig


def test_one_worker_per_gpu_by_default() -> None:
    plan = plan_workers(ClusterConfig(), cluster_gpus=4, cluster_cpus=16)
    assert (plan.num_workers, plan.num_gpus) == (4, 1.0)


def test_fractional_gpus_pack_workers() -> None:
    plan = plan_workers(ClusterConfig(gpus_per_worker=0.5), cluster_gpus=2, cluster_cpus=8)
    assert (plan.num_workers, plan.num_gpus) == (4, 0.5)


def test_cpu_cluster_gets_one_worker_with_every_core() -> None:
    plan = plan_workers(ClusterConfig(), cluster_gpus=0, cluster_cpus=2)
    assert (plan.num_workers, plan.num_gpus, plan.num_cpus) == (1, 0.0, 2.0)


def test_cpu_workers_share_the_cores() -> None:
    plan = plan_workers(ClusterConfig(num_workers=2), cluster_gpus=0, cluster_cpus=5)
    assert (plan.num_workers, plan.num_cpus) == (2, 2.0)


def test_gpu_workers_reserve_one_cpu_by_default() -> None:
    assert plan_workers(ClusterConfig(), cluster_gpus=2, cluster_cpus=16).num_cpus == 1.0


def test_more_gpus_than_exist_is_explained() -> None:
    with pytest.raises(
        PlanError, match=r"3 worker\(s\) × 1 GPU\(s\) = 3 GPUs requested but the cluster has 2"
    ):
        plan_workers(ClusterConfig(num_workers=3), cluster_gpus=2, cluster_cpus=8)


def test_too_many_cpus_is_explained() -> None:
    with pytest.raises(PlanError, match="CPU"):
        plan_workers(
            ClusterConfig(num_workers=3, cpus_per_worker=2), cluster_gpus=0, cluster_cpus=4
        )


# ---------------------------------------------------------------------------
# classify: why an attempt failed


def test_only_the_workers_own_death_is_a_worker_death() -> None:
    """A selector that dies fails the selection handed to a worker by reference; the
    worker must stay in the pool (on a 2-core machine a replacement could never start)."""
    died = ErrorKind.ACTOR_DIED
    assert classify(died, "aa11", "aa11", callee_restarts=False) is Failure.WORKER_DIED
    assert classify(died, "bb22", "aa11", callee_restarts=False) is Failure.RESTARTING
    # an error that names no actor: assume the worker itself died
    assert classify(died, None, "aa11", callee_restarts=False) is Failure.WORKER_DIED
    assert classify(died, None, None, callee_restarts=False) is Failure.WORKER_DIED


def test_restartable_actors_never_count_as_worker_deaths() -> None:
    for kind in (ErrorKind.ACTOR_DIED, ErrorKind.NODE_DIED, ErrorKind.ACTOR_UNAVAILABLE):
        assert classify(kind, None, None, callee_restarts=True) is Failure.RESTARTING


def test_unavailable_actor_is_restarting_and_errors_are_task_errors() -> None:
    assert (
        classify(ErrorKind.ACTOR_UNAVAILABLE, "aa11", "aa11", callee_restarts=False)
        is Failure.RESTARTING
    )
    assert classify(ErrorKind.TASK_ERROR, None, "aa11", callee_restarts=False) is (
        Failure.TASK_ERROR
    )
    assert classify(ErrorKind.NODE_DIED, None, "aa11", callee_restarts=False) is (
        Failure.WORKER_DIED
    )


# ---------------------------------------------------------------------------
# RetryPolicy


@pytest.mark.parametrize("failure", [Failure.TASK_ERROR, Failure.WORKER_DIED, Failure.WORKER_HUNG])
def test_counted_failures_retry_with_backoff_until_attempts_are_spent(failure: Failure) -> None:
    policy = RetryPolicy(max_attempts=3, backoff_s=1.0)
    d1 = policy.decide(failure, attempt=1, retries=0)
    d2 = policy.decide(failure, attempt=2, retries=1)
    d3 = policy.decide(failure, attempt=3, retries=2)
    assert (d1.action, d1.delay_s, d1.counts) == (Action.RETRY, 1.0, True)
    assert (d2.action, d2.delay_s, d2.counts) == (Action.RETRY, 2.0, True)
    assert (d3.action, d3.counts) == (Action.GIVE_UP, True)


def test_single_attempt_never_retries() -> None:
    assert RetryPolicy(max_attempts=1).decide(Failure.WORKER_DIED, attempt=1).action is (
        Action.GIVE_UP
    )


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(backoff_s=0.5)
    assert [policy.backoff(k) for k in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.backoff(50) == MAX_BACKOFF_S
    assert RetryPolicy(backoff_s=0.0).backoff(10) == 0.0


def test_a_restarting_actor_costs_no_attempt_while_it_restarts() -> None:
    """A healthy query must survive a selector restart even with one attempt."""
    policy = RetryPolicy(max_attempts=1, backoff_s=1.0, restart_wait_s=10.0)
    waited, retries, delays = 0.0, 0, []
    while True:
        d = policy.decide(Failure.RESTARTING, attempt=1, retries=retries, waited_s=waited)
        if d.action is not Action.RETRY:
            break
        assert not d.counts
        delays.append(d.delay_s)
        waited += d.delay_s
        retries += 1
    assert delays == [1.0, 2.0, 4.0]  # exponential, within the 10 s restart budget
    # past the budget the failure counts like any other (here: the only attempt)
    assert (d.action, d.counts) == (Action.GIVE_UP, True)


def test_restart_wait_past_budget_spends_an_attempt_and_retries() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_s=1.0, restart_wait_s=0.0)
    d = policy.decide(Failure.RESTARTING, attempt=1, retries=0, waited_s=0.0)
    assert (d.action, d.counts, d.delay_s) == (Action.RETRY, True, 1.0)


@pytest.mark.parametrize("failure", [Failure.TASK_ERROR, Failure.WORKER_DIED, Failure.WORKER_HUNG])
def test_a_failed_batch_is_split_without_blaming_anyone(failure: Failure) -> None:
    """One bad query in a call of several must fail alone: none of them spends an
    attempt for the call, each is retried in a call of its own."""
    d = RetryPolicy(max_attempts=1).decide(failure, attempt=1, call_size=4)
    assert (d.action, d.counts, d.delay_s) == (Action.RETRY_ALONE, False, 0.0)


def test_collateral_queries_retry_at_once_for_free() -> None:
    d = RetryPolicy(max_attempts=1).decide(Failure.COLLATERAL, attempt=1, call_size=3)
    assert (d.action, d.counts, d.delay_s) == (Action.RETRY, False, 0.0)


# ---------------------------------------------------------------------------
# Liveness and dispatch


def test_hung_after_the_per_query_timeout_times_the_call_size() -> None:
    assert not is_hung(100.0, None, 1)  # no limit
    assert not is_hung(29.0, 30.0, 1)
    assert is_hung(31.0, 30.0, 1)
    assert not is_hung(31.0, 30.0, 2)  # two queries in the call: 60 s
    assert is_hung(61.0, 30.0, 2)


@pytest.mark.parametrize(
    ("ready", "batch", "in_flight", "more", "expected"),
    [
        (0, 4, 0, False, 0),
        (1, 1, 1, True, 1),  # B = 1: never wait
        (3, 4, 0, True, 3),  # idle worker: never wait
        (3, 4, 1, True, 0),  # busy worker, more coming: wait to fill B
        (3, 4, 1, False, 3),  # nothing more will come: send what there is
        (9, 4, 1, True, 4),  # never more than B
    ],
)
def test_call_size(ready: int, batch: int, in_flight: int, more: bool, expected: int) -> None:
    assert call_size(ready, batch, in_flight, more) == expected


def test_pick_worker_least_loaded_live_ready_with_a_free_slot() -> None:
    w = WorkerLoad
    assert pick_worker([w(True, True, 1), w(True, True, 0)], max_calls=2) == 1
    assert pick_worker([w(True, True, 0), w(True, True, 0)], max_calls=2) == 0
    assert pick_worker([w(False, True, 0), w(True, True, 1)], max_calls=2) == 1  # not ready
    assert pick_worker([w(True, False, 0), w(True, True, 1)], max_calls=2) == 1  # dead
    assert pick_worker([w(True, True, 2)], max_calls=2) is None  # full
    assert pick_worker([], max_calls=2) is None


def test_policy_from_config() -> None:
    cfg = ClusterConfig(max_attempts=5, retry_backoff_s=0.25, restart_wait_s=7.0)
    assert RetryPolicy.from_config(cfg) == RetryPolicy(5, 0.25, 7.0)


def test_queries_per_call_fill_the_engines_jobs_rounding_up() -> None:
    from hullft.pipeline import queries_per_call

    assert queries_per_call(1, 3) == 1  # the one-at-a-time engine: one query per call
    assert queries_per_call(16, 3) == 6  # 18 jobs: the engine's last group part-filled
    assert queries_per_call(9, 3) == 3
    assert queries_per_call(4, 1) == 4
    assert queries_per_call(0, 0) == 1  # never zero
