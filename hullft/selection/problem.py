"""Input checking, normalisation and the Gram matrix shared by the single-query methods.

Every method sees the pool and the query through :class:`Problem`: rows converted to
float64 and checked, their inverse norms, the cosine similarities ``b`` and, where the
pool holds bitwise-identical rows, the first copy of each. Normalisation is folded into
the inner products (``<x_i, x_j> / (|x_i| |x_j|)``) instead of materialising a
normalised copy of the pool: one elementwise pass over a (200, 1024) float64 array
costs ~0.2 ms, a tenth of a whole HullFT selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Rows with |x|^2 outside this range are rescaled (exactly, by a power of two) before any
# product: inside it no inner product between two rows can overflow or underflow.
SQ_NORM_RANGE = (1e-250, 1e250)

# A K x K Gram matrix (one syrk) costs about as much as K/8 matrix-vector products at
# K = 200, d in {384, 1024} (measured with benchmarks/bench_selection.py's machine);
# methods that will need more columns than that get the whole matrix up front.
_FULL_GRAM_COLUMN_FRACTION = 1.0 / 8.0


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_nonnegative_int(name: str, value: Any) -> int:
    """``value`` as an int >= 0, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, *, positive: bool) -> float:
    """``value`` as a finite float (> 0 or >= 0), or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {v}")
    return v


def _rows_preview(rows: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return f"[{shown}{', ...' if rows.size > limit else ''}] ({rows.size} in all)"


def as_float64(name: str, a: Any, ndim: int, shape_doc: str) -> np.ndarray:
    """Check dtype and rank of ``a`` and return it as a C-contiguous float64 array."""
    try:
        arr = np.asarray(a)
    except Exception as exc:  # e.g. a CUDA tensor
        raise ValueError(
            f"{name} must be a numpy array (or convertible to one), got {type(a).__name__}: {exc}"
        ) from exc
    if arr.dtype.kind != "f":
        raise ValueError(
            f"{name} must hold floating-point embeddings (float16/32/64), got dtype {arr.dtype}"
        )
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D {shape_doc} array, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def row_inverse_norms(
    name: str, X: np.ndarray, *, rows_label: bool = True, sq: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(X', inv, sq)``: rows checked finite and non-zero, ``inv = 1/|x_i|``.

    ``X'`` is ``X`` itself unless some row's |x|^2 is outside :data:`SQ_NORM_RANGE`
    (float64 values beyond ~1e125 or below ~1e-125); such rows are rescaled by an exact
    power of two in a copy, which changes no direction. ``sq[i] = |x'_i|^2``; pass it
    if already known (the diagonal of X X^T): NaN, inf and zero rows show in it too.
    """
    if sq is None:
        sq = np.einsum("ij,ij->i", X, X)
    lo, hi = SQ_NORM_RANGE
    bad = ~((sq > lo) & (sq < hi))  # also NaN and inf
    if bad.any():
        rows = np.flatnonzero(bad)
        sub = X[rows]
        nonfinite = rows[~np.isfinite(sub).all(axis=1)]
        if nonfinite.size:
            where = f" in rows {_rows_preview(nonfinite)}" if rows_label else ""
            raise ValueError(f"{name} has NaN or inf values{where}")
        zero = rows[~sub.any(axis=1)]
        if zero.size:
            what = f"has all-zero rows {_rows_preview(zero)}" if rows_label else "is all zeros"
            raise ValueError(
                f"{name} {what}; a zero embedding has no direction: drop it before selection"
            )
        # Finite, non-zero rows too large or too small to square safely: rescale exactly.
        _, exp = np.frexp(np.abs(sub).max(axis=1))
        X = X.copy()
        X[rows] = np.ldexp(sub, -exp[:, None])
        sq = sq.copy()
        sq[rows] = np.einsum("ij,ij->i", X[rows], X[rows])
    inv = 1.0 / np.sqrt(sq)
    return X, inv, sq


# Odd multipliers for the sampled-column key of canonical_rows (any odd constants do).
_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


def canonical_rows(X: np.ndarray) -> np.ndarray | None:
    """For each row, the lowest index of a row equal to it; ``None`` if all rows differ.

    Duplicates get exactly the scores of their first copy, so "ties -> lowest index"
    always picks that copy; resolving this up front keeps it exact even where BLAS
    computes two identical rows with different rounding (tail rows of a gemv kernel).
    Rows count as equal when their float64 bit patterns are (so -0.0 != 0.0 here).
    """
    K, d = X.shape
    if K < 2:
        return None
    # Key each row by the bits of 4 sampled columns: identical rows always share a key,
    # so no duplicate is missed. Rows whose keys collide are keyed again by a wrapping,
    # position-weighted sum of all their bits and then compared element by element.
    cols = np.unique(np.linspace(0, d - 1, num=min(d, 4)).astype(np.int64))
    key = (X[:, cols].view(np.uint64) * _MIX[: cols.size]).sum(axis=1)
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    if not same.any():
        return None
    suspects = np.unique(np.concatenate((order[1:][same], order[:-1][same])))  # ascending
    weights = np.arange(1, 2 * d, 2, dtype=np.uint64)  # odd, position-dependent
    full = (X[suspects].view(np.uint64) * weights).sum(axis=1)
    canon = np.arange(K)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, k, f in zip(suspects.tolist(), key[suspects].tolist(), full.tolist(), strict=True):
        reps = groups.setdefault((k, f), [])  # rows of this hash seen so far, ascending
        for r in reps:
            if np.array_equal(X[i], X[r]):
                canon[i] = r
                break
        else:
            reps.append(i)
    return canon if (canon != np.arange(K)).any() else None


@dataclass(frozen=True, eq=False)
class Problem:
    """A checked single-query problem; all inner products are between unit vectors."""

    X: np.ndarray
    """(K, d) float64 pool rows as given (not normalised)."""
    inv: np.ndarray
    """(K,) 1 / |x_i|."""
    t: np.ndarray
    """(d,) unit-norm float64 query."""
    tt: float
    """<t, t> (1 up to rounding)."""
    b: np.ndarray
    """(K,) <x_i, t> / |x_i|, the cosine similarities."""
    kdiag: np.ndarray
    """(K,) <x_i, x_i> / |x_i|^2 (1 up to rounding)."""
    canon: np.ndarray | None
    """(K,) first copy of each row, or ``None`` when all rows differ."""
    G: np.ndarray | None = None
    """(K, K) Gram matrix of the unit rows, if :func:`prepare` was asked for it."""

    @property
    def K(self) -> int:
        return int(self.X.shape[0])

    @property
    def duplicate_rows(self) -> np.ndarray:
        """Indices of rows that repeat an earlier row (never selected by FW/SIFT)."""
        if self.canon is None:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self.canon != np.arange(self.K))


def wants_full_gram(K: int, columns: int) -> bool:
    """Whether a method that needs ``columns`` Gram columns should compute all K."""
    return min(columns, K) >= _FULL_GRAM_COLUMN_FRACTION * K


def prepare(pool: Any, query: Any, *, gram_columns: int = 0) -> Problem:
    """Check ``pool`` (K, d) and ``query`` (d,) and build the :class:`Problem`.

    Rows and query may have any norm (they are normalised); they must be finite and
    non-zero. Raises ``ValueError`` naming the problem otherwise. ``gram_columns``: how
    many Gram columns the caller will use; if that makes the whole Gram matrix
    worthwhile it is computed here, and the row norms are read off its diagonal.
    """
    X = as_float64("pool", pool, 2, "(K, d)")
    t = as_float64("query", query, 1, "(d,)")
    K, d = X.shape
    if K == 0:
        raise ValueError("pool is empty (K = 0): there is nothing to select from")
    if d == 0:
        raise ValueError("pool rows have dimension 0")
    if t.shape[0] != d:
        raise ValueError(f"query has dimension {t.shape[0]} but pool rows have dimension {d}")
    lo, hi = SQ_NORM_RANGE
    with np.errstate(over="ignore", invalid="ignore"):  # caught just below
        tt = float(t @ t)
    if not lo < tt < hi:
        t = row_inverse_norms("query", t[None, :], rows_label=False)[0][0]  # raises, or rescales
        tt = float(t @ t)
    t = t * (1.0 / math.sqrt(tt))
    G = None
    if wants_full_gram(K, gram_columns):
        # b and the duplicate hash first, while the freshly converted rows are in cache
        # (the syrk's packing evicts them); rows are checked on the Gram diagonal.
        with np.errstate(over="ignore", invalid="ignore"):
            xt = X @ t
            canon = canonical_rows(X)
            G = X @ X.T  # numpy runs A @ A.T as one syrk: exactly symmetric
        sq = np.diagonal(G).copy()  # |x_i|^2; NaN, inf, 0 and extremes show up here too
        if not (np.minimum.reduce(sq) > lo and np.maximum.reduce(sq) < hi):
            X, _, _ = row_inverse_norms("pool", X, sq=sq)  # raises, or rescales rows
            G = X @ X.T
            sq = np.diagonal(G).copy()
            xt = X @ t
            canon = canonical_rows(X)
        inv = 1.0 / np.sqrt(sq)
        G *= np.multiply.outer(inv, inv)
    else:
        X, inv, sq = row_inverse_norms("pool", X)
        xt = X @ t
        canon = canonical_rows(X)
    return Problem(
        X=X,
        inv=inv,
        t=t,
        tt=float(t @ t),
        b=xt * inv,
        kdiag=sq * inv * inv,
        canon=canon,
        G=G,
    )


class Gram:
    """Columns of G[i, j] = <x_i, x_j> / (|x_i| |x_j|), whole or computed on demand.

    ``expected_columns`` is how many distinct columns the caller may ask for at most;
    when that is a sizeable fraction of K one syrk for the whole matrix is cheaper.
    Returned arrays are shared: callers must not modify them.
    """

    def __init__(self, problem: Problem, expected_columns: int) -> None:
        self._X = problem.X
        self._inv = problem.inv
        self._cols: dict[int, np.ndarray] = {}
        self._G = problem.G
        if self._G is None and wants_full_gram(problem.K, expected_columns):
            self.matrix()

    def column(self, j: int) -> np.ndarray:
        """G[:, j] as a (K,) array."""
        if self._G is not None:
            return self._G[j]  # = G[:, j] by symmetry, and contiguous
        col = self._cols.get(j)
        if col is None:
            col = self._X @ self._X[j]
            col *= self._inv * self._inv[j]
            self._cols[j] = col
        return col

    def matrix(self) -> np.ndarray:
        """The whole (K, K) matrix (computes it if this Gram was lazy)."""
        if self._G is None:
            G = self._X @ self._X.T  # numpy runs A @ A.T as one syrk: exactly symmetric
            G *= np.multiply.outer(self._inv, self._inv)
            self._G = G
        return self._G
