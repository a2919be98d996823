"""A multi-node run on ray.cluster_utils.Cluster: two nodes with one logical GPU
each; the node that holds a query is removed mid-run, and that query is retried on
the other node, so every (query, method) row exists exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.driver import run_pipeline
from hullft.results import BASE_METHOD, read_results
from tests.conftest import ray_runtime_env, smoke_config
from tests.fault_workers import StallOnNode

pytestmark = pytest.mark.ray


def test_node_removed_mid_run(smoke_index_dir: Path, tmp_path: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    doomed, survivor = nodes[1].node_id, nodes[0].node_id
    marker = tmp_path / "stalled_query"
    worker_cls = type("StallOnSecondNode", (StallOnNode,), {"NODE": doomed, "MARKER": str(marker)})
    ray.init(address=cluster.address, runtime_env=ray_runtime_env())
    try:
        cluster.wait_for_nodes()
        cfg = smoke_config(
            smoke_index_dir,
            tmp_path / "runs",
            [f"cluster.address={cluster.address}", "cluster.max_in_flight_per_worker=1"],
        )
        removed: list[str] = []

        def remove_the_stalled_node(query_id: str) -> None:
            # The other node finishes nothing before the doomed one holds a query.
            if not removed and marker.exists():
                cluster.remove_node(nodes[1])
                removed.append(query_id)

        summary = run_pipeline(
            cfg, worker_cls=worker_cls, progress=False, on_query_done=remove_the_stalled_node
        )
        assert removed, "the stalling node never received a query"
        assert summary.complete, summary.message
        stalled = marker.read_text()
        df = read_results(summary.run_dir)
        methods = {BASE_METHOD, *cfg.selection.methods}
        keys = list(zip(df["query_id"], df["method"], strict=True))
        assert len(keys) == len(set(keys)) == summary.queries_total * len(methods)
        assert set(df["method"]) == methods
        assert (df["status"] == "ok").all()
        # The removed node's query ran again, on the surviving node; nothing it started
        # produced a row.
        again = df[df["query_id"] == stalled]
        assert set(again["method"]) == methods
        assert (again["attempt"] == 2).all()
        assert summary.retried_queries >= 1
        assert all(n and survivor.startswith(n) for n in df["node_id"]), set(df["node_id"])
        assert not any(doomed.startswith(n) for n in df["node_id"])
    finally:
        ray.shutdown()
        cluster.shutdown()
