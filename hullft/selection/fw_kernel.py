"""The Frank–Wolfe iteration loop, compiled (numba), for :mod:`hullft.selection.fw`.

At K = 200 one iteration is an argmax with its tie check and one axpy over K
entries: ~0.1 µs of arithmetic, against ~2 µs for the same steps as numpy calls
from Python. With 250 iterations per query that overhead was a third of a whole
HullFT selection, so the loop runs here, compiled once per machine (``cache=True``
keeps the machine code next to this file, or in numba's user cache directory where
that is read-only).

The kernel is resumable: Gram columns come from BLAS in Python (numba's own
``np.dot`` would need SciPy), so when the oracle picks a vertex whose column has not
been computed yet, :func:`fw_iterate` returns that vertex; the caller stores its
score column in ``P`` and calls again, and the iteration restarts from its top with
unchanged state. Every operation and its order are those of docs/design.md §4.2 as
:mod:`hullft.selection.fw` documents them; ``fastmath`` is off, so rounding is
IEEE float64 step for step.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Indices into the float state vector ``fs``.
ALPHA, TC, CC, TT = 0, 1, 2, 3
# Indices into the integer state vector ``st``.
N_ITER, N_SLOTS, N_SUPPORT, REASON = 0, 1, 2, 3
# Stop reasons, in ``st[REASON]``.
REASON_MAX_ITER, REASON_TOL, REASON_DEGENERATE, REASON_SUPPORT = 0, 1, 2, 3
REASON_NAMES = ("max_iter", "tol", "degenerate", "support")
"""The stop reason of each code above, by index."""
DONE = -1
"""Returned by :func:`fw_iterate` when the loop has stopped (reason in ``st``)."""


@njit(cache=True)
def _residual_below(
    tol: float,
    X: np.ndarray,
    inv: np.ndarray,
    t: np.ndarray,
    order: np.ndarray,
    wv: np.ndarray,
    n_support: int,
    alpha: float,
) -> bool:
    """|t - c| < tol with c rebuilt in R^d from the support.

    |r|^2 = tt - 2<t,c> + |c|^2 has absolute rounding ~1e-16, i.e. a relative error
    ~1e-6 in |r| at |r| ~ tol = 1e-5; the loop calls this only within a factor 2 of tol.
    """
    d = t.shape[0]
    c = np.zeros(d)
    for k in range(n_support):
        i = order[k]
        w = wv[k] * alpha * inv[i]
        for j in range(d):
            c[j] += w * X[i, j]
    rr = 0.0
    for j in range(d):
        r = t[j] - c[j]
        rr += r * r
    return math.sqrt(rr) < tol


@njit(cache=True)
def fw_iterate(
    u: np.ndarray,
    P: np.ndarray,
    slot: np.ndarray,
    order: np.ndarray,
    wv: np.ndarray,
    dg: np.ndarray,
    b: np.ndarray,
    dup: np.ndarray,
    X: np.ndarray,
    inv: np.ndarray,
    t: np.ndarray,
    fs: np.ndarray,
    st: np.ndarray,
    history: np.ndarray,
    max_support: int,
    max_iter: int,
    tol: float,
    tie_atol: float,
    min_step_sq: float,
    rescale_below: float,
    record: bool,
) -> int:
    """Run Frank–Wolfe iterations in place until it stops or needs a Gram column.

    State (all updated in place):

    - ``u`` (K,): scores <x_i, r> = alpha * u, ``-inf`` on duplicate rows;
    - ``P`` (cap, K): row k is b - G[:, order[k]], the score vector of the k-th vertex
      to get a column; ``slot[i]`` is its row in ``P`` (-1: none yet), ``dg[k]`` its
      G[i, i]; ``order[k]`` the vertex;
    - the support is ``order[:st[N_SUPPORT]]`` (in order of entry) with weights
      ``alpha * wv[:st[N_SUPPORT]]``; a vertex whose step was degenerate gets a column
      but stops the loop before entering, so it can only be the last slot;
    - ``fs``: alpha, <t, c>, <c, c>, <t, t>; ``st``: iterations, slots used, support
      size, stop reason; ``history[n]``: f after iteration n (if ``record``).

    Returns the vertex whose column is needed next, or :data:`DONE`.
    """
    alpha, tc, cc, tt = fs[ALPHA], fs[TC], fs[CC], fs[TT]
    n_iter, n_support = st[N_ITER], st[N_SUPPORT]
    K = u.shape[0]
    near = 4.0 * (tol * tol)  # below this |r|^2, check |r| < tol exactly
    need = DONE
    reason = REASON_MAX_ITER
    while n_iter < max_iter:
        rr = tt - 2.0 * tc + cc
        if rr < near and _residual_below(tol, X, inv, t, order, wv, n_support, alpha):
            reason = REASON_TOL
            break
        # argmax <x_i, r> (= alpha * u), ties within tie_atol -> lowest row: the first
        # row within the tolerance of the maximum.
        s = 0
        best = u[0]
        for i in range(1, K):
            if u[i] > best:
                best = u[i]
                s = i
        thr = best - tie_atol / alpha
        for i in range(s):
            if u[i] >= thr:
                s = i
                break
        u_s = u[s]
        k = slot[s]
        if k < 0:
            need = s  # the caller computes its column; this iteration starts again
            break
        n_iter += 1
        b_s = b[s]
        g_s = b_s - alpha * u_s  # <x_s, c>
        dd = dg[k] - 2.0 * g_s + cc  # |x_s - c|^2
        if dd < min_step_sq:
            reason = REASON_DEGENERATE
            if record:
                history[n_iter] = rr
            break
        gamma = (b_s - tc - g_s + cc) / dd  # <r, x_s - c> / |x_s - c|^2
        if gamma < 0.0:
            gamma = 0.0
        elif gamma > 1.0:
            gamma = 1.0
        if k == n_support:
            n_support += 1  # s enters the support (with weight 0 if gamma == 0)
        if gamma == 1.0:
            # The iterate jumps onto the vertex: w = e_s exactly. (On unit rows this
            # needs the vertex to be as good as the iterate: rounding, or raw rows.)
            for i in range(K):
                u[i] = -np.inf if dup[i] else P[k, i]
            alpha = 1.0
            for q in range(n_support):
                wv[q] = 0.0
            wv[k] = 1.0
        elif gamma > 0.0:
            new_alpha = alpha * (1.0 - gamma)
            if new_alpha < rescale_below:
                # Fold the scale into u and wv before 1/alpha can overflow.
                for i in range(K):
                    u[i] *= alpha
                for q in range(n_support):
                    wv[q] *= alpha
                new_alpha = 1.0 - gamma
            alpha = new_alpha
            coef = gamma / alpha
            for i in range(K):
                u[i] += coef * P[k, i]
            wv[k] += coef
        cc = cc + 2.0 * gamma * (g_s - cc) + gamma * gamma * dd
        tc = tc + gamma * (b_s - tc)
        if record:
            history[n_iter] = tt - 2.0 * tc + cc
        if n_support >= max_support:
            reason = REASON_SUPPORT
            break
    fs[ALPHA], fs[TC], fs[CC] = alpha, tc, cc
    st[N_ITER], st[N_SUPPORT], st[REASON] = n_iter, n_support, reason
    return need
