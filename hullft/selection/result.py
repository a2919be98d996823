"""The result of every selection method: a small, frozen, picklable multiset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Weights are renormalised by the methods that produce them; anything further than
# this from 1 is a bug upstream, not rounding.
_SIMPLEX_ATOL = 1e-9


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Selection:
    """A multiset of pool rows, in selection order.

    ``indices[k]`` is a row of the pool (unique), ``counts[k] >= 1`` how often it is
    used, and ``weights[k]`` its convex weight where the method has one (else
    ``None``). Arrays are read-only copies, so a ``Selection`` can be shared and sent
    through Ray's object store (it pickles to a few hundred bytes).
    """

    indices: np.ndarray
    """(m,) int64 pool rows, unique, in selection order."""
    counts: np.ndarray
    """(m,) int64 multiplicities, each >= 1."""
    weights: np.ndarray | None = None
    """(m,) float64 convex weights (>= 0, summing to 1), or ``None``."""

    def __post_init__(self) -> None:
        idx = np.asarray(self.indices)
        cnt = np.asarray(self.counts)
        if idx.ndim != 1 or cnt.ndim != 1 or idx.shape != cnt.shape:
            raise ValueError(
                f"Selection.indices and counts must be 1-D of equal length, "
                f"got shapes {idx.shape} and {cnt.shape}"
            )
        if idx.size == 0:
            raise ValueError("Selection must contain at least one pool row")
        for name, a in (("indices", idx), ("counts", cnt)):
            if a.dtype.kind not in "iu":
                raise ValueError(f"Selection.{name} must be integers, got dtype {a.dtype}")
        if idx.min() < 0:
            raise ValueError(f"Selection.indices must be >= 0, got {idx.min()}")
        if np.unique(idx).size != idx.size:
            raise ValueError("Selection.indices must be unique (use counts for repeats)")
        if cnt.min() < 1:
            raise ValueError(f"Selection.counts must be >= 1, got {cnt.min()}")
        object.__setattr__(self, "indices", _readonly(idx.astype(np.int64, copy=False)))
        object.__setattr__(self, "counts", _readonly(cnt.astype(np.int64, copy=False)))
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            if w.shape != idx.shape:
                raise ValueError(f"Selection.weights must have shape {idx.shape}, got {w.shape}")
            if not np.all(np.isfinite(w)) or w.min() < 0:
                raise ValueError("Selection.weights must be finite and >= 0")
            if abs(float(w.sum()) - 1.0) > _SIMPLEX_ATOL:
                raise ValueError(f"Selection.weights must sum to 1, got {float(w.sum())!r}")
            object.__setattr__(self, "weights", _readonly(w))

    @property
    def size(self) -> int:
        """Number of elements of the multiset (= sum of counts)."""
        return int(self.counts.sum())

    def __len__(self) -> int:
        """Number of distinct pool rows."""
        return int(self.indices.size)

    def expand(self) -> np.ndarray:
        """The ordered multiset: each index repeated ``counts`` times, in selection order."""
        return np.repeat(self.indices, self.counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selection):
            return NotImplemented
        if (self.weights is None) != (other.weights is None):
            return False
        same = np.array_equal(self.indices, other.indices) and np.array_equal(
            self.counts, other.counts
        )
        if same and self.weights is not None and other.weights is not None:
            same = np.array_equal(self.weights, other.weights)
        return bool(same)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild through __init__ so that unpickled arrays are read-only again.
        return (Selection, (self.indices, self.counts, self.weights))

    def __repr__(self) -> str:
        w = "None" if self.weights is None else np.array2string(self.weights, precision=4)
        return f"Selection(indices={self.indices.tolist()}, counts={self.counts.tolist()}, weights={w})"


def selection_from_counts(positions: np.ndarray, counts: np.ndarray, n: int) -> Selection:
    """Rows ``positions`` with their ``counts`` (zeros dropped, order kept), weights counts/n."""
    keep = counts > 0
    kept = counts[keep]
    return Selection(indices=positions[keep], counts=kept, weights=kept / n)
