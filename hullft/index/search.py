"""Loading a built index and searching it.

:func:`load_index` opens the stores memory-mapped and defers reading the FAISS
index to the first search, so an actor that only needs the embeddings or texts
(selectors, model workers) pays for neither the index's RAM nor its load time.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hullft.config import EmbedderConfig, IndexConfig, RunConfig
from hullft.data.stores import EMBEDDINGS, EmbeddingStore, TextStore
from hullft.index import faiss_index
from hullft.index.errors import IndexCorruptError
from hullft.index.manifest import (
    FAISS_FILE,
    TEXT_DIR,
    Manifest,
    check_embedder,
    check_identity,
    index_dir,
    index_identity,
    read_manifest,
)

log = logging.getLogger(__name__)


class RetrievalIndex:
    """A built index: FAISS search plus the text and embedding stores.

    ``search`` returns inner-product scores (cosine, as vectors are unit norm) in
    descending order and int64 sequence ids; rows are padded with id ``-1`` and
    score ``-inf`` when fewer than ``k`` results exist.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest: Manifest,
        *,
        use_gpu: str = "auto",
        nprobe: int | None = None,
        ef_search: int | None = None,
        refine_factor: int | None = None,
    ):
        self.path = Path(path)
        self.manifest = manifest
        self.texts = TextStore(self.path / TEXT_DIR)
        self.embeddings = EmbeddingStore(self.path / EMBEDDINGS)
        if not len(self.texts) == len(self.embeddings) == manifest.num_sequences:
            raise IndexCorruptError(
                f"{self.path}: {len(self.texts)} texts, {len(self.embeddings)} embeddings, "
                f"manifest says {manifest.num_sequences} sequences; rebuild the index"
            )
        if self.embeddings.dim != manifest.dim:
            raise IndexCorruptError(
                f"{self.path}: embeddings have dim {self.embeddings.dim}, manifest says "
                f"{manifest.dim}; rebuild the index"
            )
        search = manifest.index.get("search", {})
        self.kind: str = manifest.index["kind"]
        self.use_gpu = use_gpu
        self.nprobe = nprobe if nprobe is not None else search.get("nprobe")
        if self.nprobe is not None and manifest.index.get("nlist"):
            self.nprobe = min(self.nprobe, int(manifest.index["nlist"]))
        self.ef_search = ef_search if ef_search is not None else search.get("ef_search")
        rf = refine_factor if refine_factor is not None else search.get("refine_factor", 1)
        self.refine_factor = max(1, int(rf)) if self.kind == "ivf_pq" else 1
        self._index: Any = None
        self._on_gpu = False
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.manifest.dim

    def __len__(self) -> int:
        return self.manifest.num_sequences

    def __repr__(self) -> str:
        return (
            f"RetrievalIndex({str(self.path)!r}, kind={self.kind}, "
            f"sequences={len(self)}, dim={self.dim})"
        )

    @property
    def faiss_index(self) -> Any:
        """The FAISS index, read (and moved to GPU when allowed) on first use."""
        with self._lock:
            if self._index is None:
                faiss = faiss_index._faiss()
                index = faiss.read_index(os.fspath(self.path / FAISS_FILE))
                if index.ntotal != len(self) or index.d != self.dim:
                    raise IndexCorruptError(
                        f"{self.path / FAISS_FILE}: {index.ntotal} vectors of dim {index.d}, "
                        f"expected {len(self)} of dim {self.dim}; rebuild the index"
                    )
                index, self._on_gpu = faiss_index.to_gpu_for_search(index, self.use_gpu)
                faiss_index.set_search_params(
                    index, nprobe=self.nprobe, ef_search=self.ef_search, on_gpu=self._on_gpu
                )
                log.info(
                    "loaded %s index of %d vectors from %s%s",
                    self.kind,
                    index.ntotal,
                    self.path,
                    " onto GPU" if self._on_gpu else "",
                )
                self._index = index
            return self._index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores (B, k) float32, ids (B, k) int64)`` for ``(B, d)`` queries."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"queries must have shape (B, {self.dim}), got {tuple(np.shape(queries))}; "
                "embed them with the index's embedder "
                f"({self.manifest.embedder.get('name')})"
            )
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        index = self.faiss_index
        fetch = min(k * self.refine_factor, len(self))
        if self.kind == "hnsw":
            faiss = faiss_index._faiss()
            # The beam must hold at least the results asked for; per-call parameters
            # keep concurrent searches from racing on the index's own setting.
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search or 0, fetch)
            scores, ids = index.search(q, fetch, params=params)
        else:
            scores, ids = index.search(q, fetch)
        ids = ids.astype(np.int64, copy=False)
        if self.refine_factor > 1:
            scores, ids = self._rerank(q, ids)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        if ids.shape[1] >= k:
            return scores[:, :k], ids[:, :k]
        pad = k - ids.shape[1]
        return (
            np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf),
            np.pad(ids, ((0, 0), (0, pad)), constant_values=-1),
        )

    def _rerank(self, q: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products against the stored vectors, descending."""
        valid = ids >= 0
        vecs = self.embeddings.get(np.where(valid, ids, 0))  # (B, k', d)
        exact = np.einsum("bkd,bd->bk", vecs, q)
        exact[~valid] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")
        return np.take_along_axis(exact, order, 1), np.take_along_axis(ids, order, 1)


def search_settings(cfg: IndexConfig) -> dict[str, Any]:
    """The search settings of an index config as :func:`load_index` keywords.

    They are not part of the index identity, so a run may change them without a
    rebuild: whoever opens an index for a run by path passes these.
    """
    return {
        "use_gpu": cfg.use_gpu,
        "nprobe": cfg.nprobe,
        "ef_search": cfg.ef_search,
        "refine_factor": cfg.refine_factor,
    }


def load_index(
    source: str | os.PathLike[str] | RunConfig,
    *,
    embedder: EmbedderConfig | None = None,
    use_gpu: str | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    refine_factor: int | None = None,
) -> RetrievalIndex:
    """Open the index at a path, or the one ``RunConfig`` resolves to.

    With a ``RunConfig`` the index must have been built from that config (same
    inputs, sequencing, tokenizer, embedder and index parameters) and its search
    settings apply; with a path, pass ``embedder`` to check the index's vectors are
    comparable with that embedder's. Mismatches raise
    :class:`~hullft.index.errors.IndexMismatchError` saying to rebuild. Keyword
    overrides beat both the config and the build-time search settings.
    """
    if isinstance(source, RunConfig):
        cfg = source
        try:
            identity = index_identity(cfg)
        except FileNotFoundError:
            identity = None  # the corpus is not on this node; check what can be checked
        path = index_dir(cfg, identity)
        manifest = read_manifest(path)
        if identity is not None:
            check_identity(manifest, identity, path)
        embedder = embedder or cfg.embedder
        run = search_settings(cfg.index)
        use_gpu = use_gpu or run["use_gpu"]
        nprobe = nprobe if nprobe is not None else run["nprobe"]
        ef_search = ef_search if ef_search is not None else run["ef_search"]
        if refine_factor is None:
            refine_factor = run["refine_factor"]
    else:
        path = Path(source)
        manifest = read_manifest(path)
    if embedder is not None:
        check_embedder(manifest, embedder, path)
    return RetrievalIndex(
        path,
        manifest,
        use_gpu=use_gpu or "auto",
        nprobe=nprobe,
        ef_search=ef_search,
        refine_factor=refine_factor,
    )
