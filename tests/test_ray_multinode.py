"""A multi-node run on ray.cluster_utils.Cluster: two nodes with one logical GPU
each; one node is removed mid-run and its queries finish on the other."""

from __future__ import annotations

import pytest

from actors.driver import run_pipeline
from hullft.results import read_results
from tests.conftest import smoke_config

pytestmark = pytest.mark.ray


def test_node_removed_mid_run(smoke_index_dir, tmp_path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    ray.init(address=cluster.address)
    try:
        cluster.wait_for_nodes()
        cfg = smoke_config(
            smoke_index_dir,
            tmp_path,
            [f"cluster.address={cluster.address}", "cluster.max_in_flight_per_worker=1"],
        )
        removed: list[str] = []

        def remove_a_node(query_id: str) -> None:
            if not removed:
                cluster.remove_node(nodes[1])
                removed.append(query_id)

        summary = run_pipeline(cfg, progress=False, on_query_done=remove_a_node)
        assert removed and summary.complete, summary.message
        df = read_results(summary.run_dir)
        keys = list(zip(df["query_id"], df["method"], strict=True))
        assert len(keys) == len(set(keys))
        assert df["query_id"].nunique() == summary.queries_total
        assert (df["status"] == "ok").all()
        assert df["node_id"].nunique() >= 1
    finally:
        ray.shutdown()
        cluster.shutdown()
