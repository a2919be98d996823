"""The result of every selection method: a small, frozen, picklable multiset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Weights are renormalised by the methods that produce them; anything further than
# this from 1 is a bug upstream, not rounding.
_SIMPLEX_ATOL = 1e-9


def _frozen(a: np.ndarray) -> np.ndarray:
    """``a`` (already a private copy) made read-only."""
    a.flags.writeable = False
    return a


def _min(a: np.ndarray) -> Any:
    return np.minimum.reduce(a)


def _max(a: np.ndarray) -> Any:
    return np.maximum.reduce(a)


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
        # Built once per query per method: every check below is a single ufunc call.
        idx = np.array(self.indices, dtype=None, copy=True)
        cnt = np.array(self.counts, dtype=None, copy=True)
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
        if _min(idx) < 0:
            raise ValueError(f"Selection.indices must be >= 0, got {_min(idx)}")
        ordered = np.sort(idx)
        if (ordered[1:] == ordered[:-1]).any():
            raise ValueError("Selection.indices must be unique (use counts for repeats)")
        if _min(cnt) < 1:
            raise ValueError(f"Selection.counts must be >= 1, got {_min(cnt)}")
        object.__setattr__(self, "indices", _frozen(idx.astype(np.int64, copy=False)))
        object.__setattr__(self, "counts", _frozen(cnt.astype(np.int64, copy=False)))
        if self.weights is not None:
            w = np.array(self.weights, dtype=np.float64, copy=True)
            if w.shape != idx.shape:
                raise ValueError(f"Selection.weights must have shape {idx.shape}, got {w.shape}")
            if not _min(w) >= 0 or not np.isfinite(_max(w)):  # NaN fails both
                raise ValueError("Selection.weights must be finite and >= 0")
            total = float(np.add.reduce(w))
            if abs(total - 1.0) > _SIMPLEX_ATOL:
                raise ValueError(f"Selection.weights must sum to 1, got {total!r}")
            object.__setattr__(self, "weights", _frozen(w))

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
