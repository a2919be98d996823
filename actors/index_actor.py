"""IndexService: holds the FAISS index and the embedder; embeds query batches and
returns their top-K candidate ids. One shared actor by default (replicas by config).

The run's search settings (``index.nprobe``, ``ef_search``, ``refine_factor``,
``use_gpu``) apply, not the values the index was built with: they are not part of
the index identity, so a run may change them without a rebuild."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hullft.config import EmbedderConfig, IndexConfig
from hullft.embedder import Embedder
from hullft.index import load_index, search_settings
from hullft.pipeline import Candidates, retrieve

log = logging.getLogger(__name__)


class IndexService:
    def __init__(self, index_dir: str | Path, embedder_cfg: EmbedderConfig, index_cfg: IndexConfig):
        self.index = load_index(index_dir, embedder=embedder_cfg, **search_settings(index_cfg))
        self.embedder = Embedder.from_config(embedder_cfg)

    def ping(self) -> bool:
        return True

    def search(self, queries: Sequence[Any], k: int) -> list[Candidates]:
        """Candidates for a batch of ``hullft.data.queries.Query``."""
        return retrieve(self.index, self.embedder, queries, k)
