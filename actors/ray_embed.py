"""Distributed embedding for ``hullft index`` on Ray Data.

The library builder (``hullft.index.build_index``) stays Ray-free; this module
hands it an ``embed_fn`` that embeds each build shard with Ray Data:
``from_items -> map_batches(actor pool) -> iter_batches``. Each pool actor holds
one embedder, built lazily inside the actor after Ray has set
``CUDA_VISIBLE_DEVICES``: one actor per GPU when the cluster has GPUs, else
``index.embed_actors`` CPU actors. Rows carry their position, so the result is in
input order whatever order blocks finish in.

Each shard starts a fresh pool (Ray Data tears it down when the dataset is
consumed), so on the distributed path use large shards (``index.shard_docs`` of
tens of thousands of documents) to amortise model loading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors import ray_session
from hullft.config import EmbedderConfig, RunConfig, build_config, config_to_dict
from hullft.embedder import Embedder
from hullft.index import build_index

log = logging.getLogger(__name__)


class _EmbedActor:
    """One embedder per actor (the Ray Data callable class)."""

    def __init__(self, embedder: dict[str, Any]):
        cfg = build_config(EmbedderConfig, embedder, "embedder")
        self.embedder = Embedder.from_config(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        return {"row": batch["row"], "embedding": self.embedder.encode(texts)}


def pool_size(cfg: RunConfig) -> tuple[int, float]:
    """``(actors, GPUs per actor)``: one actor per GPU of the cluster when it has
    any, else ``index.embed_actors`` CPU actors."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    device = cfg.embedder.device
    if device.startswith("cuda") and gpus == 0:
        raise RuntimeError(
            f"embedder.device={device} but the Ray cluster has no GPU; use device=auto or cpu"
        )
    if gpus > 0 and (device == "auto" or device.startswith("cuda")):
        return gpus, 1.0
    return cfg.index.embed_actors, 0.0


def ray_embed_fn(cfg: RunConfig) -> Callable[[list[str]], np.ndarray]:
    """An ``embed_fn`` for :func:`hullft.index.build_index` that embeds on the Ray
    cluster this process is connected to (``ray.init`` first)."""
    if not ray.is_initialized():
        raise RuntimeError("ray_embed_fn needs a running Ray: call ray.init() first")
    embedder = config_to_dict(cfg.embedder)
    actors, gpus = pool_size(cfg)
    batch = cfg.embedder.batch_size
    log.info(
        "distributed embedding: %d actor(s) x %s, batch %d",
        actors,
        f"{gpus:g} GPU" if gpus else "CPU",
        batch,
    )

    def embed(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        items = [{"row": i, "text": t} for i, t in enumerate(texts)]
        blocks = max(1, min(len(items) // batch, 4 * actors))
        ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            _EmbedActor,
            fn_constructor_kwargs={"embedder": embedder},
            batch_size=batch,
            batch_format="numpy",
            concurrency=actors,
            num_gpus=gpus,
        )
        rows, parts = [], []
        for out in ds.iter_batches(batch_format="numpy", batch_size=None):
            rows.append(np.asarray(out["row"], dtype=np.int64))
            parts.append(np.asarray(out["embedding"], dtype=np.float32))
        order = np.concatenate(rows)
        emb = np.concatenate(parts)
        result = np.empty_like(emb)
        result[order] = emb
        if not np.array_equal(np.sort(order), np.arange(len(texts))):
            raise RuntimeError("Ray Data lost or duplicated rows while embedding a shard")
        return result

    return embed


def build_index_distributed(cfg: RunConfig, **kwargs: Any) -> Path:
    """``build_index`` with the Ray Data embedding path, on the Ray that
    :mod:`actors.ray_session` picks (shut down afterwards if it was started here)."""
    with ray_session.session(cfg.cluster):
        return build_index(cfg, embed_fn=ray_embed_fn(cfg), **kwargs)
