"""The Ray Data embedding path builds the same index as the in-process path."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fixtures.pile import make_records, tiny_config, write_zst

from hullft.index import build_index, load_index

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def test_ray_data_embedding_matches_in_process(tmp_path: Path, ray_local) -> None:
    from actors.ray_embed import pool_size, ray_embed_fn

    corpus = write_zst(tmp_path / "c.jsonl.zst", make_records(6))
    local = build_index(tiny_config(tmp_path / "local", [corpus], shard_docs=12), progress=False)

    cfg = tiny_config(tmp_path / "ray", [corpus], shard_docs=12, embed_actors=1, distributed=True)
    assert pool_size(cfg) == (1, 0.0)  # no GPU in the cluster: embed_actors CPU actors
    path = build_index(cfg, embed_fn=ray_embed_fn(cfg), progress=False)

    a, b = load_index(local), load_index(path)
    assert a.manifest.config_hash == b.manifest.config_hash
    assert b.manifest.build["embed"] == "custom" and b.manifest.build["shards"] == 2
    np.testing.assert_array_equal(a.embeddings.array, b.embeddings.array)
    assert a.texts.get_many(range(len(a))) == b.texts.get_many(range(len(b)))
    assert (path / "index.faiss").read_bytes() == (local / "index.faiss").read_bytes()

    # Without the Ray path the library refuses the distributed flag.
    with pytest.raises(ValueError, match="Ray"):
        build_index(replace(cfg, index=replace(cfg.index, dir=str(tmp_path / "x"))))
