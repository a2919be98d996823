"""hullft's Ray metrics: documented, never failing a query, and — after a smoke run
on a local Ray — read back from the node's Prometheus endpoint with the rows the
run wrote."""

from __future__ import annotations

import logging
import re
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from actors import metrics
from actors.driver import run_pipeline
from hullft.results import ResultRow, read_results
from tests.conftest import ray_runtime_env, smoke_config
from tests.fault_workers import AlwaysOOM

ROOT = Path(__file__).resolve().parent.parent
EXPORT_DEADLINE_S = 180.0
"""Ray exports application metrics every few seconds; a generous bound, not a timing."""


def test_docs_list_exactly_the_declared_metrics() -> None:
    documented = set(re.findall(r"`(hullft_[a-z_]+)`", (ROOT / "docs/metrics.md").read_text()))
    declared = {m.name for m in metrics.METRICS}
    assert declared == documented
    assert all(m.name.startswith("hullft_") for m in metrics.METRICS)
    for m in metrics.METRICS:
        assert not {"query", "query_id", "run_id"} & set(m.tags), m.name


def test_recording_outside_ray_is_a_no_op() -> None:
    import ray

    assert not ray.is_initialized()
    # Objects made by an earlier Ray session in this process may be cached; recording
    # outside Ray must create none.
    made = set(metrics._objects)
    row = ResultRow(run_id="r", query_id="q", method="knn", domain="d", finetune_s=1.0)
    metrics.record_rows([row])
    metrics.record_retry("task_error")
    metrics.set_in_flight("w0", 1)
    assert set(metrics._objects) == made


def test_a_failing_recorder_logs_once_and_never_raises(monkeypatch, caplog) -> None:
    def broken(metric: metrics.Metric) -> None:
        raise RuntimeError("metrics backend down")

    monkeypatch.setattr(metrics, "_ray_ready", lambda: True)
    monkeypatch.setattr(metrics, "_get", broken)
    monkeypatch.setattr(metrics, "_failed_once", set())
    with caplog.at_level(logging.WARNING, logger="actors.metrics"):
        metrics.record_retry("task_error")
        metrics.record_retry("task_error")
    assert len([r for r in caplog.records if "record_retry" in r.getMessage()]) == 1


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format → {name: [(labels, value)]} for hullft's series."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for line in text.splitlines():
        m = re.match(r"^(ray_hullft_\w+)(?:\{(.*)\})?\s+(\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            series[m.group(1)].append((labels, float(m.group(3))))
    return series


def _total(series: dict, name: str, **match: str) -> float:
    return sum(
        v
        for labels, v in series.get(name, [])
        if all(labels.get(k) == want for k, want in match.items())
    )


@pytest.mark.ray
def test_smoke_run_metrics_read_back_from_prometheus(smoke_index_dir, tmp_path) -> None:
    import ray

    from hullft.data.queries import load_queries

    cfg = smoke_config(smoke_index_dir, tmp_path, ["cluster.max_attempts=2"])
    target = load_queries(cfg.queries)[0].query_id
    worker = type("OOMOnFirst", (AlwaysOOM,), {"TARGET": target})
    # A Ray of our own, like `cluster=local`; include_dashboard=False still starts
    # the per-node agent that exports metrics.
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        runtime_env=ray_runtime_env(),
    )
    try:
        summary = run_pipeline(cfg, worker_cls=worker, progress=False)
        df = read_results(summary.run_dir)
        node = next(n for n in ray.nodes() if n["Alive"])
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        # Every declared metric but the one for dead workers (none died); histograms
        # are exported as _bucket, _count and _sum.
        expected = {
            f"ray_{m.name}_count" if m.kind == "histogram" else f"ray_{m.name}"
            for m in metrics.METRICS
            if m is not metrics.WORKERS_REPLACED
        }
        deadline = time.monotonic() + EXPORT_DEADLINE_S
        while True:
            series = _scrape(url)
            if (
                expected <= set(series)
                and _total(series, "ray_hullft_results_total") == summary.rows_written
            ) or time.monotonic() > deadline:
                break
            time.sleep(2.0)
    finally:
        ray.shutdown()

    assert summary.complete and summary.rows_written == len(df) > 0
    assert sorted(expected - set(series)) == []
    assert _total(series, "ray_hullft_results_total") == len(df)
    for (method, status), n in df.groupby(["method", "status"]).size().items():
        assert _total(series, "ray_hullft_results_total", method=method, status=status) == n
    failed = df[df["status"] == "failed"]
    assert set(failed["query_id"]) == {target}
    assert _total(series, "ray_hullft_queries_total", status="failed") == 1
    assert _total(series, "ray_hullft_queries_total") == df["query_id"].nunique()
    assert _total(series, "ray_hullft_attempts_retried_total", reason="task_error") == 1
    tuned = df[(df["method"] == "hullft") & (df["status"] == "ok")]
    assert _total(
        series, "ray_hullft_stage_seconds_count", stage="finetune", method="hullft"
    ) == len(tuned)
    finetuned = df[(df["method"] != "base") & (df["status"] != "failed")]
    assert _total(series, "ray_hullft_worker_batch_size_count") == len(finetuned)
    assert _total(series, "ray_hullft_tokens_trained_total") == df["tokens_trained"].sum()
    assert _total(series, "ray_hullft_index_queries_searched_total") == summary.queries_total
    in_flight = series["ray_hullft_worker_jobs_in_flight"]
    assert {labels["worker"] for labels, _ in in_flight} == {"w0", "w1"}
    assert all(v == 0 for _, v in in_flight)  # every job returned
