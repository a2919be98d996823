"""Geometric integerization of Frank–Wolfe weights into N counts (docs/design.md §4.3).

Minimise L(c) = |t - sum_i (c_i / N) x_i|^2 over integer c >= 0 with sum c = N:
floor N w, greedy fill, then first-improvement single-unit moves.

With G = X_S X_S^T, b = X_S t and h = G c (m = |S| support points):

    L(c)                    = <t,t> - (2/N) b.c + (1/N^2) c.G.c
    L(c + e_i) - L(c)       = (2/N^2) h_i + G_ii/N^2 - (2/N) b_i
    L(c - e_i + e_j) - L(c) = (2/N^2)(h_j - h_i) + 2 (b_i - b_j)/N
                              + (G_ii + G_jj - 2 G_ij)/N^2

so with ``ah = (2/N^2) h`` kept up to date (one O(m) update per unit moved) a fill
step is one argmin and a swap step one (rows, m) matrix expression: the whole step is
O(m^2 * moves), never touching R^d. First improvement is kept exact: after each move
only the pairs after it, in (i ascending, j ascending) order, are searched again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hullft.selection.problem import (
    Problem,
    check_nonnegative_int,
    check_positive_int,
    prepare,
)
from hullft.selection.result import Selection, selection_from_counts
from hullft.selection.ties import TIE_ATOL, first_max

# docs/design.md §4.3: a move must lower L by more than this.
MIN_IMPROVEMENT = 1e-14


def integerize_counts(
    G: np.ndarray, b: np.ndarray, w: np.ndarray, n: int, swap_passes: int
) -> np.ndarray:
    """Counts (m,) >= 0 summing to ``n`` for support Gram block ``G``, ``b`` and ``w``."""
    m = w.shape[0]
    inv_n = 1.0 / n
    inv_n2 = inv_n * inv_n
    diag = np.diagonal(G)
    # Row j of aGt is the change of ah when a unit is added at j: (2/N^2) G[:, j].
    aGt = np.ascontiguousarray((2.0 * inv_n2) * G.T)

    # 1. Floor.
    c = np.floor(n * w).astype(np.int64)
    ah = c @ aGt  # (2/N^2) G c
    # 2. Greedy fill: the unit whose increment of L is smallest (ties -> lowest position).
    neg_fill = 2.0 * inv_n * b - diag * inv_n2
    for _ in range(n - int(c.sum())):
        i = first_max(neg_fill - ah, TIE_ATOL)
        c[i] += 1
        ah += aGt[i]
    if swap_passes == 0 or m < 2:
        return c

    # 3. First-improvement moves of one unit from i to j (i != j). The move lowers L by
    # more than MIN_IMPROVEMENT iff delta[i, j] = base[i, j] + ah[j] - ah[i] is below
    # -MIN_IMPROVEMENT, i.e. iff base[i, j] + MIN_IMPROVEMENT < ah[i] - ah[j].
    base = 2.0 * inv_n * (b[:, None] - b[None, :]) + inv_n2 * (
        diag[:, None] + diag[None, :] - 2.0 * G
    )
    base += MIN_IMPROVEMENT
    np.fill_diagonal(base, np.inf)
    for _ in range(swap_passes):
        # Rows that may give a unit: c_i > 0 at the start of the pass and still now.
        masked = base.copy()
        masked[c == 0] = np.inf
        i, j = 0, 0  # next pair to look at
        moved = False
        while i < m:
            # Pairs (r, k) with r >= i; in row i only columns >= j are still due.
            hits = (masked[i:] < np.subtract.outer(ah[i:], ah)).ravel()[j:]
            q = int(hits.argmax())
            if not hits[q]:
                break
            q += j
            i, j = i + q // m, q % m
            c[i] -= 1
            c[j] += 1
            ah += aGt[j] - aGt[i]
            moved = True
            if c[i] == 0:
                masked[i] = np.inf
            j += 1
            if j == m:
                i, j = i + 1, 0
        if not moved:
            break
    return c


def integerize_problem(
    problem: Problem,
    G: np.ndarray,
    support: np.ndarray,
    w: np.ndarray,
    n: int,
    swap_passes: int,
) -> Selection:
    """Integerize on a prepared problem (arguments already checked, ``w`` sums to 1)."""
    counts = integerize_counts(G, problem.b[support], w, n, swap_passes)
    return selection_from_counts(support, counts, n)


def support_gram(problem: Problem, support: np.ndarray) -> np.ndarray:
    """G_S for the given rows, computed directly (m x m)."""
    Xs = problem.X[support]
    G = Xs @ Xs.T
    G *= np.multiply.outer(problem.inv[support], problem.inv[support])
    return G


def selection_weights(selection: Any, K: int | None = None) -> np.ndarray:
    """The weights of ``selection`` renormalised to sum 1; ValueError if unusable.

    ``K``: the pool size, to check that the selection's rows exist (if given).
    """
    if not isinstance(selection, Selection):
        raise ValueError(f"selection must be a Selection, got {type(selection).__name__}")
    if selection.weights is None:
        raise ValueError(
            "selection has no weights to round (weights=None); pass the output of frank_wolfe"
        )
    top = int(selection.indices.max())
    if K is not None and top >= K:
        raise ValueError(f"selection refers to pool row {top} but the pool has only {K} rows")
    return selection.weights / selection.weights.sum()


def integerize(
    pool: Any,
    query: Any,
    selection: Selection,
    n: int,
    *,
    swap_passes: int = 2,
) -> Selection:
    """Turn the convex weights of ``selection`` into exactly ``n`` counts (docs/design.md §4.3).

    Positions follow the order of ``selection`` (Frank–Wolfe: weight descending).
    Returns the rows with a count >= 1 in that order; ``counts`` sum to ``n`` and
    ``weights = counts / n``. Rows and query are normalised to unit norm first.
    """
    n = check_positive_int("n", n)
    swap_passes = check_nonnegative_int("swap_passes", swap_passes)
    problem = prepare(pool, query)
    w = selection_weights(selection, problem.K)
    support = selection.indices
    return integerize_problem(problem, support_gram(problem, support), support, w, n, swap_passes)
