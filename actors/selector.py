"""SelectorService: runs every configured selection method for a query, reading
the candidates' embeddings from the memory-mapped embedding store."""

from __future__ import annotations

from pathlib import Path

from hullft.config import SelectionConfig
from hullft.index import load_index
from hullft.pipeline import Candidates, MethodSelection, select_methods
from hullft.selection import warm_up


class SelectorService:
    def __init__(self, index_dir: str | Path, cfg: SelectionConfig):
        # Only the embedding store is used; the FAISS index itself is not searched here.
        self.embeddings = load_index(index_dir).embeddings
        self.cfg = cfg
        warm_up()  # compile the selection kernel before the first query, not during it

    def ping(self) -> bool:
        return True

    def select(
        self,
        cands: Candidates,
        methods: tuple[str, ...],
        cfg: SelectionConfig | None = None,
    ) -> list[MethodSelection]:
        """Each method's selection; ``cfg`` overrides the config the actor was built
        with (a selector kept for the next bench point serves its config)."""
        pool = self.embeddings.get(cands.ids)
        return select_methods(pool, cands.embedding, cfg or self.cfg, methods)
