"""The Ray query processor on CPU with logical GPUs: scheduling, exactly-once
results, faults (killed workers, a query that always fails, a worker stopped with
SIGSTOP, a selector killed mid-run), batched calls, parity with the
single-process pipeline."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

import numpy as np
import pytest

from actors.driver import ACTOR_NAMESPACE, run_pipeline, worker_actor_name
from hullft.pipeline import run_id_for, run_local
from hullft.results import read_results
from tests.conftest import ray_runtime_env, smoke_config
from tests.fault_workers import AlwaysOOM, BatchOf, CrashOnFirstAttempt

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

    # Every query's rows committed at once (results_part_rows=1), so the callback can
    # read who ran the query from disk.
    cfg = smoke_config(
        smoke_index_dir,
        tmp_path,
        # One job at a time: a call holds one query, so the lost query is the one the
        # worker died on and its retry counts an attempt (a lost call of several
        # queries is split and retried without blame: tests/test_scheduler.py).
        [
            "cluster.max_in_flight_per_worker=1",
            "experiment.results_part_rows=1",
            "finetune.batch_jobs=1",
        ],
    )
    run_dir = tmp_path / run_id_for(cfg)
    killed: list[str] = []

    def kill_a_working_worker_once(query_id: str) -> None:
        # The worker that just finished a query (so it is up; a worker still loading
        # its model would only be "failed to start"): the driver hands it the next
        # query right after this callback, and that query is lost with it.
        if not killed:
            rows = read_results(run_dir)
            worker = rows[rows["query_id"] == query_id]["worker_id"].iloc[0]
            name = worker_actor_name(run_id_for(cfg), worker)
            ray.kill(ray.get_actor(name, namespace=ACTOR_NAMESPACE))
            killed.append(worker)

    summary = run_pipeline(cfg, progress=False, on_query_done=kill_a_working_worker_once)
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
    # One call in flight per worker and one query per call, so only the target is on
    # the crashing worker. (With several queries in a call, how many share the
    # target's call depends on how many were ready: each is then retried alone, and
    # counted as retried, which made this test depend on the machine's speed.)
    cfg = smoke_config(
        smoke_index_dir,
        tmp_path,
        [
            "experiment.limit=4",
            "cluster.max_in_flight_per_worker=1",
            "finetune.batch_jobs=1",
        ],
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


def test_hung_worker_is_killed_replaced_and_its_query_retried(
    ray_cluster, smoke_index_dir, tmp_path
) -> None:
    """SIGSTOP on the only model worker: past cluster.attempt_timeout_s the driver
    kills it, starts another and retries the query there (it used to wait forever)."""
    import ray

    cfg = smoke_config(
        smoke_index_dir,
        tmp_path,
        [
            "experiment.limit=3",
            "cluster.num_workers=1",
            "cluster.max_in_flight_per_worker=1",
            "cluster.attempt_timeout_s=20",
            "cluster.retry_backoff_s=0",
            "finetune.batch_jobs=1",  # one query per call: its retry counts an attempt
        ],
    )
    stopped: list[int] = []

    def stop_w0_once(query_id: str) -> None:
        if not stopped:
            w0 = ray.get_actor(worker_actor_name(run_id_for(cfg), "w0"), namespace=ACTOR_NAMESPACE)
            stopped.append(ray.get(w0.__ray_call__.remote(lambda self: os.getpid())))
            os.kill(stopped[0], signal.SIGSTOP)  # the worker is idle now: its next query hangs

    try:
        summary = run_pipeline(cfg, progress=False, on_query_done=stop_w0_once)
    finally:
        if stopped:  # never leave a stopped process behind, whatever happened
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped[0], signal.SIGKILL)
    assert stopped and summary.complete, summary.message
    df = read_results(summary.run_dir)
    _assert_exactly_once(df, 3)
    assert (df["status"] == "ok").all(), df[["query_id", "method", "error"]]
    assert summary.workers_replaced >= 1
    retried = df[df["attempt"] > 1]
    assert not retried.empty and set(retried["worker_id"]) != {"w0"}


def test_selector_killed_mid_run_costs_no_query_an_attempt(
    ray_cluster, smoke_index_dir, tmp_path
) -> None:
    """With a single attempt per query, a selector killed (and restarted by Ray) while
    queries need it fails none of them: waiting for the restart costs no attempt."""
    import ray

    cfg = smoke_config(
        smoke_index_dir,
        tmp_path,
        ["experiment.limit=5", "cluster.max_attempts=1", "cluster.retry_backoff_s=0.2"],
    )
    killed: list[str] = []

    def kill_selector_once(query_id: str) -> None:
        if not killed:
            selector = ray.get_actor(f"{run_id_for(cfg)}/selector0", namespace=ACTOR_NAMESPACE)
            pid = ray.get(selector.__ray_call__.remote(lambda self: os.getpid()))
            os.kill(pid, signal.SIGKILL)  # a crash Ray learns of late: it restarts it
            killed.append(query_id)

    summary = run_pipeline(cfg, progress=False, on_query_done=kill_selector_once)
    assert killed and summary.complete, summary.message
    df = read_results(summary.run_dir)
    _assert_exactly_once(df, 5)
    assert (df["status"] == "ok").all(), df[["query_id", "method", "error"]]
    assert (df["attempt"] == 1).all()


def test_batched_calls_give_the_rows_of_one_query_at_a_time(
    ray_cluster, smoke_index_dir, tmp_path
) -> None:
    """Workers that take up to 3 queries per call: every (query, method) once, with
    the numbers of the single-process pipeline."""
    cfg = smoke_config(
        smoke_index_dir, tmp_path, ["experiment.limit=6", "cluster.max_in_flight_per_worker=1"]
    )
    summary = run_pipeline(cfg, progress=False, worker_cls=BatchOf)
    assert summary.complete
    df = read_results(summary.run_dir)
    _assert_exactly_once(df, 6)
    assert (df["status"] == "ok").all()
    sizes = df["worker_id"].str.split(":").str[1].astype(int)
    assert sizes.max() > 1 and sizes.max() <= BatchOf.B, sizes.tolist()
    by_key = df.set_index(["query_id", "method"])
    for row in run_local(cfg):
        got = by_key.loc[(row.query_id, row.method)]
        assert tuple(got["support_ids"]) == row.support_ids
        np.testing.assert_allclose(got["bpb_after"], row.bpb_after, rtol=1e-5)
