"""Failure policy and worker planning: pure decisions, no cluster."""

from __future__ import annotations

import pytest

from actors.policy import Decision, Failure, FailurePolicy, PlanError, plan_workers
from hullft.config import ClusterConfig


@pytest.mark.parametrize("failure", list(Failure))
def test_retries_until_attempts_are_spent(failure: Failure) -> None:
    policy = FailurePolicy(max_attempts=3)
    assert [policy.decide(a, failure) for a in (1, 2, 3, 4)] == [
        Decision.RETRY,
        Decision.RETRY,
        Decision.GIVE_UP,
        Decision.GIVE_UP,
    ]


def test_single_attempt_never_retries() -> None:
    assert FailurePolicy(max_attempts=1).decide(1, Failure.ACTOR_DIED) is Decision.GIVE_UP


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


def test_only_the_workers_own_death_marks_it_dead() -> None:
    """A selector that dies fails the selection handed to a worker by reference; the
    worker must stay in the pool (on a 2-core machine a replacement could never start)."""
    from types import SimpleNamespace

    from ray.exceptions import RayActorError

    from actors.driver import _died

    worker = SimpleNamespace(_actor_id=SimpleNamespace(hex=lambda: "aa11"))
    assert _died(RayActorError(actor_id="aa11"), worker)
    assert not _died(RayActorError(actor_id="bb22"), worker)
    assert _died(RayActorError(), worker)  # unknown actor: assume the worker died
