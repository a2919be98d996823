"""IndexService: holds the FAISS index and the embedder; embeds query batches and
returns their top-K candidate ids. One shared actor by default (replicas by config)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hullft.config import EmbedderConfig
from hullft.pipeline import Candidates, retrieve

log = logging.getLogger(__name__)


class IndexService:
    def __init__(self, index_dir: str | Path, embedder_cfg: EmbedderConfig):
        from hullft.embedder import Embedder
        from hullft.index import load_index

        self.index = load_index(index_dir)
        self.embedder = Embedder.from_config(embedder_cfg)

    def ping(self) -> bool:
        return True

    def search(self, queries: Sequence[Any], k: int) -> list[Candidates]:
        """Candidates for a batch of ``hullft.data.queries.Query``."""
        return retrieve(self.index, self.embedder, queries, k)
