"""Naive reference transcriptions of the selection algorithms (docs/design.md §4.1-4.4).

Each ``naive_*`` function is a line-by-line transcription of the published procedure
in R^d: no Gram tricks, no incremental updates, plain numpy products, with the tie rule
of :mod:`hullft.selection.ties` (values within 1e-12 of the best tie, and the lowest
index wins; sorts compare values on a 1e-12 grid). They are slow on purpose: they are
what the fast implementations are checked against (``tests/test_selection_oracle.py``,
index for index) and the baseline ``benchmarks/bench_selection.py`` times.

Nothing in the product imports this module; it is not exported by
:mod:`hullft.selection` and needs only numpy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def unit(a: Any) -> np.ndarray:
    """Rows (or a vector) scaled to unit norm, in float64."""
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


# Tie rule of hullft.selection.ties: within 1e-12 of the best is a tie (lowest index
# wins); sorts compare values on a 1e-12 grid.
TIE = 1e-12


def first_best(values: Any, tol: float = TIE) -> int:
    """Lowest index whose value is within ``tol`` of the maximum."""
    values = np.asarray(values)
    return int(np.flatnonzero(values >= values.max() - tol)[0])


def grid(v: Any) -> int:
    """``v`` on the 1e-12 grid that sorts compare."""
    return round(v * 1e12)


def naive_knn(pool: Any, query: Any, n: int) -> list[int]:
    """§4.1: top-N rows by <x_i, t>, descending; ties -> lowest index."""
    X, t = unit(pool), unit(query)
    sims = X @ t
    return sorted(range(len(X)), key=lambda i: (-grid(sims[i]), i))[:n]


def naive_frank_wolfe(
    pool: Any,
    query: Any,
    N: int,
    max_iter: int = 250,
    tol: float = 1e-5,
    *,
    normalise: bool = True,
    gammas: list[float] | None = None,
) -> tuple[list[int], np.ndarray]:
    """§4.2, in R^d. Returns (support ordered by weight desc, renormalised weights).

    ``normalise=False`` runs on the rows and query as given; ``gammas``, a list, gets
    every step size.
    """
    if normalise:
        X, t = unit(pool), unit(query)
    else:
        X, t = np.asarray(pool, dtype=np.float64), np.asarray(query, dtype=np.float64)
    K = len(X)
    s0 = first_best(X @ t)
    w = np.zeros(K)
    w[s0] = 1.0
    c = X[s0].copy()
    support = [s0]
    for _ in range(max_iter):
        r = t - c
        if np.linalg.norm(r) < tol:
            break
        s = first_best(X @ r)  # the linear minimisation oracle
        d = X[s] - c
        if d @ d < 1e-12:
            break
        gamma = min(max((r @ d) / (d @ d), 0.0), 1.0)
        if gammas is not None:
            gammas.append(gamma)
        w = (1 - gamma) * w
        w[s] += gamma
        c = c + gamma * d
        if s not in support:
            support.append(s)
        if len(support) >= N:
            break
    # Weight descending, ties -> lowest index; truncate to N; renormalise.
    order = sorted(support, key=lambda i: (-grid(w[i]), i))[:N]
    weights = np.array([w[i] for i in order])
    return order, weights / weights.sum()


def naive_loss(X: np.ndarray, t: np.ndarray, counts: Any, N: int) -> float:
    """L(c) = |t - sum_i (c_i / N) x_i|^2, computed directly in R^d."""
    r = t - (np.asarray(counts, dtype=np.float64) @ X) / N
    return float(r @ r)


def naive_integerize(
    pool: Any, query: Any, support: Any, weights: Any, N: int, swap_passes: int = 2
) -> tuple[list[int], list[int]]:
    """§4.3: floor, greedy fill, first-improvement swaps; returns (rows, counts)."""
    X, t = unit(pool)[list(support)], unit(query)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    m = len(support)
    c = [math.floor(N * wi) for wi in w]
    while sum(c) < N:
        losses = [naive_loss(X, t, [ci + (k == i) for k, ci in enumerate(c)], N) for i in range(m)]
        c[first_best([-L for L in losses])] += 1
    for _ in range(swap_passes):
        moved = False
        sources = [i for i in range(m) if c[i] > 0]
        for i in sources:
            for j in range(m):
                if j == i or c[i] == 0:
                    continue
                trial = c.copy()
                trial[i] -= 1
                trial[j] += 1
                if naive_loss(X, t, c, N) - naive_loss(X, t, trial, N) > 1e-14:
                    c = trial
                    moved = True
        if not moved:
            break
    rows = [s for s, ci in zip(support, c, strict=True) if ci > 0]
    return rows, [ci for ci in c if ci > 0]


def naive_largest_remainder(weights: Any, N: int) -> list[int]:
    """floor(N w), then one unit each for the largest remainders (ties -> lowest)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    c = [math.floor(N * wi) for wi in w]
    rem = [N * wi - math.floor(N * wi) for wi in w]
    for i in sorted(range(len(w)), key=lambda i: (-grid(rem[i]), i))[: N - sum(c)]:
        c[i] += 1
    return c


def naive_sift(pool: Any, query: Any, N: int, lam: float) -> list[int]:
    """§4.4, first form: argmin_x k(t,t) - k_A(t)^T (K_AA + lam I)^-1 k_A(t)."""
    X, t = unit(pool), unit(query)
    kern = X @ X.T
    kt = X @ t
    ktt = t @ t
    picks: list[int] = []
    var_now = ktt
    for _ in range(N):
        var = []
        for x in range(len(X)):
            A = [*picks, x]
            kA = kt[A]
            var.append(ktt - kA @ np.linalg.solve(kern[np.ix_(A, A)] + lam * np.eye(len(A)), kA))
        # argmin variance; ties: variance reductions within 1e-12 (relative) of the best
        gains = [var_now - v for v in var]
        x = first_best(gains, TIE * max(gains))
        picks.append(x)
        var_now = var[x]
    return picks


def naive_sift_conditional(pool: Any, query: Any, N: int, lam: float) -> list[int]:
    """§4.4, conditional-kernel form on the full (K+1) x (K+1) kernel of pool + {t}."""
    X, t = unit(pool), unit(query)
    Z = np.vstack([X, t])
    kern = Z @ Z.T
    K = len(X)
    picks: list[int] = []
    for _ in range(N):
        gains = [kern[i, K] ** 2 / (kern[i, i] + lam) for i in range(K)]  # variance reduction
        i = first_best(gains, TIE * max(gains))
        picks.append(i)
        kern = kern - np.outer(kern[:, i], kern[i, :]) / (kern[i, i] + lam)
    return picks
