"""The Ray query processor on CPU with logical GPUs: scheduling, exactly-once
results, faults (killed workers, a query that always fails), parity with the
single-process pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from actors.driver import ACTOR_NAMESPACE, run_pipeline, worker_actor_name
from hullft.pipeline import run_id_for, run_local
from hullft.results import read_results
from tests.conftest import ray_runtime_env, smoke_config
from tests.fault_workers import AlwaysOOM, CrashOnFirstAttempt

pytestmark = pytest.mark.ray
METHODS = {"base", "knn", "sift", "hullft"}


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        runtime_env=ray_runtime_env(),
    )
    yield
    ray.shutdown()


def _assert_exactly_once(df: Any, n_queries: int) -> None:
    keys = list(zip(df["query_id"], df["method"], strict=True))
    assert len(keys) == len(set(keys)), "a (query, method) was written twice"
    assert df["query_id"].nunique() == n_queries
    for qid, g in df.groupby("query_id"):
        assert set(g["method"]) == METHODS, f"{qid} lacks {METHODS - set(g['method'])}"


def test_two_logical_gpu_workers_share_the_queries(ray_cluster, smoke_index_dir, tmp_path) -> None:
    cfg = smoke_config(smoke_index_dir, tmp_path)
    summary = run_pipeline(cfg, progress=False)
    assert summary.complete
    df = read_results(summary.run_dir)
    _assert_exactly_once(df, summary.queries_total)
    assert (df["status"] == "ok").all(), df[df["status"] != "ok"][["method", "error"]]
    assert set(df["worker_id"]) == {"w0", "w1"}
    assert (df["attempt"] == 1).all()
    tuned = df[df["method"] != "base"]
    assert (tuned["optimizer_steps"] == cfg.selection.n).all()
    assert summary.report is not None and summary.report.is_file()


def test_ray_results_equal_single_process_results(ray_cluster, smoke_index_dir, tmp_path) -> None:
    cfg = smoke_config(smoke_index_dir, tmp_path, ["experiment.limit=3"])
    ray_df = read_results(run_pipeline(cfg, progress=False).run_dir)
    local = run_local(cfg)
    assert len(ray_df) == len(local)
    by_key = ray_df.set_index(["query_id", "method"])
    for row in local:
        got = by_key.loc[(row.query_id, row.method)]
        assert tuple(got["support_ids"]) == row.support_ids
        assert tuple(got["support_counts"]) == row.support_counts
        np.testing.assert_allclose(got["bpb_before"], row.bpb_before, rtol=1e-6)
        np.testing.assert_allclose(got["bpb_after"], row.bpb_after, rtol=1e-5)
        assert got["optimizer_steps"] == row.optimizer_steps


def test_killed_worker_queries_are_retried_elsewhere(
    ray_cluster, smoke_index_dir, tmp_path
) -> None:
    import ray

    cfg = smoke_config(smoke_index_dir, tmp_path, ["cluster.max_in_flight_per_worker=1"])
    killed: list[str] = []

    def kill_w0_once(query_id: str) -> None:
        if not killed:
            ray.kill(
                ray.get_actor(worker_actor_name(run_id_for(cfg), "w0"), namespace=ACTOR_NAMESPACE)
            )
            killed.append(query_id)

    summary = run_pipeline(cfg, progress=False, on_query_done=kill_w0_once)
    assert killed and summary.complete
    df = read_results(summary.run_dir)
    _assert_exactly_once(df, summary.queries_total)
    assert (df["status"] == "ok").all()
    assert summary.workers_replaced == 1
    assert summary.retried_queries >= 1 and (df["attempt"] > 1).any(), (
        "the lost query was not retried"
    )


def _first_query_id(cfg) -> str:  # type: ignore[no-untyped-def]
    from hullft.data.queries import load_queries

    return load_queries(cfg.queries)[0].query_id


def test_worker_crash_mid_query_marks_the_retry(ray_cluster, smoke_index_dir, tmp_path) -> None:
    # one query in flight per worker, so only the target is on the crashing worker
    cfg = smoke_config(
        smoke_index_dir, tmp_path, ["experiment.limit=4", "cluster.max_in_flight_per_worker=1"]
    )
    target = _first_query_id(cfg)
    worker = type("Crash", (CrashOnFirstAttempt,), {"TARGET": target})
    summary = run_pipeline(cfg, progress=False, worker_cls=worker)
    df = read_results(summary.run_dir)
    _assert_exactly_once(df, 4)
    mine = df[df["query_id"] == target]
    assert (mine["attempt"] == 2).all() and (mine["status"] == "ok").all()
    assert (df[df["query_id"] != target]["attempt"] == 1).all()
    assert summary.retried_queries == 1


def test_always_failing_query_gets_failure_rows(ray_cluster, smoke_index_dir, tmp_path) -> None:
    cfg = smoke_config(smoke_index_dir, tmp_path, ["experiment.limit=4", "cluster.max_attempts=2"])
    target = _first_query_id(cfg)
    worker = type("OOM", (AlwaysOOM,), {"TARGET": target})
    summary = run_pipeline(cfg, progress=False, worker_cls=worker)
    assert summary.complete
    df = read_results(summary.run_dir)
    _assert_exactly_once(df, 4)
    bad = df[df["query_id"] == target]
    assert (bad["status"] == "failed").all() and (bad["attempt"] == 2).all()
    assert bad["error"].str.contains("out of memory").all()
    assert (df[df["query_id"] != target]["status"] == "ok").all()
    # a rerun does not redo or duplicate anything
    again = run_pipeline(cfg, progress=False)
    assert again.queries_processed == 0
    assert len(read_results(summary.run_dir)) == len(df)


def test_more_gpus_than_exist_is_a_clear_error(ray_cluster, smoke_index_dir, tmp_path) -> None:
    from actors.policy import PlanError

    cfg = smoke_config(smoke_index_dir, tmp_path, ["cluster.num_workers=3"])
    with pytest.raises(PlanError, match="3 GPUs requested but the cluster has 2"):
        run_pipeline(cfg, progress=False)


def test_run_dir_of_another_config_is_refused(ray_cluster, smoke_index_dir, tmp_path) -> None:
    cfg = smoke_config(smoke_index_dir, tmp_path, ["experiment.run_id=fixed", "experiment.limit=1"])
    run_pipeline(cfg, progress=False)
    other = smoke_config(
        smoke_index_dir,
        tmp_path,
        ["experiment.run_id=fixed", "experiment.limit=1", "selection.n=3"],
    )
    with pytest.raises(ValueError, match=r"selection\.n"):
        run_pipeline(other, progress=False)
