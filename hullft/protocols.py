"""The seams between the pipeline's stages, as typed protocols.

:mod:`hullft.pipeline` calls an embedder, an index and a finetuning engine through
these, not through concrete classes: ``hullft.embedder.Embedder``, the FAISS
``RetrievalIndex`` and ``TTFTEngine`` / ``BatchedTTFTEngine`` satisfy them, and tests
can pass anything that does. Torch types are named for the checker only, so
importing this module (as the driver does, through the pipeline) never loads torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from hullft.bpb import BPBResult
    from hullft.ttft import TTFTJob, TTFTResult


class TextEmbedder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32, L2-normalised rows."""
        ...


class SearchIndex(Protocol):
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k); ids of -1 pad rows with fewer than k hits."""
        ...


class FinetuneEngine(Protocol):
    device: Any
    """The torch device of the model replica (recorded in every row)."""

    def evaluate(self, query: str | bytes) -> BPBResult:
        """BPB of ``query`` under the base weights."""
        ...

    def run_batch(self, jobs: Sequence[TTFTJob]) -> list[TTFTResult]:
        """One result per job, in order, each as if the job ran alone."""
        ...
