"""SIFT: greedy minimisation of the posterior variance at the query (docs/design.md §4.4).

Kernel k(a, b) = <a, b> on unit vectors. After picks A the posterior variance at t is
sigma^2_A(t) = k(t,t) - k_A(t)^T (K_AA + lam I)^-1 k_A(t); each step picks
argmin_x sigma^2_{A + x}(t), repeats allowed. In the conditional-kernel form, picking x
lowers the variance by k_A(x,t)^2 / (k_A(x,x) + lam), and conditioning on row j updates
k(a, b) <- k(a, b) - k(a, j) k(j, b) / (k(j, j) + lam).

Only k_A(x_i, t), k_A(x_i, x_i) and one new column k_A(., x_j) per pick are needed:
with u_p = k_{p-1}(., x_p) / sqrt(k_{p-1}(x_p, x_p) + lam) the conditional kernel is
k_A(a, b) = k(a, b) - sum_p u_p[a] u_p[b], so a pick costs O(K N) (plus one Gram column
when a row is picked for the first time) and no matrix is ever inverted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hullft.selection.problem import (
    Gram,
    Problem,
    check_float,
    check_positive_int,
    prepare,
)
from hullft.selection.result import Selection
from hullft.selection.ties import TIE_RTOL, first_max


def sift_picks_problem(problem: Problem, gram: Gram, n: int, lam: float) -> np.ndarray:
    """The n picks in order, with repeats, on a prepared problem."""
    K = problem.K
    dup = problem.duplicate_rows
    kt = problem.b.copy()  # k_A(x_i, t)
    kd = problem.kdiag.copy()  # k_A(x_i, x_i)
    U = np.empty((n, K))  # row p: u_p
    picks = np.empty(n, dtype=np.int64)
    for p in range(n):
        gain = kt * kt / (kd + lam)  # variance reduction of picking x_i next
        if dup.size:
            gain[dup] = -np.inf  # a later copy never beats the first (ties -> lowest row)
        j = first_max(gain, TIE_RTOL * float(gain.max()))
        picks[p] = j
        col = gram.column(j)
        if p:
            col = col - U[:p, j] @ U[:p]  # k_A(., x_j)
        scale = 1.0 / math.sqrt(float(kd[j]) + lam)
        u = col * scale
        U[p] = u
        kt -= u * (float(kt[j]) * scale)
        kd -= u * u
        np.maximum(kd, 0.0, out=kd)  # a variance; rounding must not make kd + lam <= 0
    return picks


def picks_to_selection(picks: np.ndarray) -> Selection:
    """Unique rows in order of first pick, with how often each was picked."""
    uniq, first, counts = np.unique(picks, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return Selection(indices=uniq[order], counts=counts[order])


# Below this, lambda drowns in the rounding of the kernel (~1e-16): a repeated pick's
# conditional variance k_A(x, x) ~ lam is then noise, and 1/sqrt(k + lam) overflows.
MIN_LAMBDA = 1e-8


def check_sift_args(n: Any, lam: Any) -> tuple[int, float]:
    lam = check_float("lam", lam, positive=True)
    if lam < MIN_LAMBDA:
        raise ValueError(
            f"lam={lam!r} is below {MIN_LAMBDA}: the posterior update would be float64 "
            "rounding noise; use lam >= 1e-8 (SIFT's default is 0.01, the HullFT paper ran 0.2)"
        )
    return check_positive_int("n", n), lam


def sift_sequence(pool: Any, query: Any, n: int, *, lam: float = 0.01) -> np.ndarray:
    """The ``n`` SIFT picks in the order they were made, repeats included, (n,) int64."""
    n, lam = check_sift_args(n, lam)
    problem = prepare(pool, query, gram_columns=n)
    return sift_picks_problem(problem, Gram(problem, n), n, lam)


def sift(pool: Any, query: Any, n: int, *, lam: float = 0.01) -> Selection:
    """SIFT selection of ``n`` elements (docs/design.md §4.4), repeats allowed and counted.

    Rows appear in order of their first pick with the number of times they were picked
    (counts sum to ``n``); ``weights=None``. Ties -> lowest row. Rows and query are
    normalised to unit norm first. ``n`` may exceed K.
    """
    return picks_to_selection(sift_sequence(pool, query, n, lam=lam))
