"""Frank–Wolfe convex reconstruction of the query from the pool (DESIGN.md §4.2).

Minimise f(w) = |t - X^T w|^2 over the probability simplex, with exact line search,
ties in every argmax to the lowest row (:mod:`hullft.selection.ties`), float64
throughout.

Cost: O(K) per iteration instead of the naive O(K d). The linear minimisation oracle
needs <x_i, r> = b_i - g_i with b = X t and g = X c = sum_s w_s G[:, s]; every scalar
the step needs (<r, d>, |d|^2, |r|^2) follows from b, g and the Gram column of the
chosen vertex, which is computed once when the vertex first enters the support. The
score vector is kept in scaled form (score = alpha * u), so that one iteration is an
argmax and one axpy over K entries.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hullft.selection.problem import (
    Gram,
    Problem,
    check_float,
    check_nonnegative_int,
    check_positive_int,
    prepare,
)
from hullft.selection.result import Selection
from hullft.selection.ties import TIE_ATOL, first_max, sort_key

logger = logging.getLogger(__name__)

StopReason = Literal["tol", "degenerate", "support", "max_iter"]

# Below this scale the scaled score vector is folded back (alpha -> 1) before its
# entries can overflow; any value far from the float64 limits works.
_RESCALE_BELOW = 1e-30
# DESIGN.md §4.2: stop when |d|^2 < 1e-12 (the new vertex is the current iterate).
_MIN_STEP_SQ = 1e-12


@dataclass(frozen=True, eq=False)
class FrankWolfeResult:
    """Frank–Wolfe output with diagnostics (the path, why it stopped)."""

    support: np.ndarray
    """(m,) pool rows ordered by weight (descending, ties -> lowest row), truncated."""
    weights: np.ndarray
    """(m,) their weights, renormalised to sum to 1 after truncation."""
    n_iter: int
    """Iterations run (each computed one oracle call)."""
    stop_reason: StopReason
    """``tol`` (|r| < tol), ``degenerate`` (|d|^2 < 1e-12), ``support`` (|S| >= N) or
    ``max_iter``."""
    objective: np.ndarray = field(repr=False)
    """f = |t - X^T w|^2 at the start and after every iteration, (n_iter + 1,); empty
    unless recorded (:func:`frank_wolfe_path` records it)."""

    def selection(self) -> Selection:
        """The support as a :class:`Selection`, each row used once."""
        return Selection(
            indices=self.support,
            counts=np.ones(self.support.size, dtype=np.int64),
            weights=self.weights,
        )


def run_frank_wolfe(
    problem: Problem,
    gram: Gram,
    max_support: int,
    max_iter: int,
    tol: float,
    *,
    record: bool = False,
) -> FrankWolfeResult:
    """Frank–Wolfe on a prepared problem (arguments already checked)."""
    b = problem.b
    b_list = b.tolist()
    dup = problem.duplicate_rows
    tt = problem.tt

    s = first_max(b if not dup.size else _masked(b, dup), TIE_ATOL)
    col = gram.column(s)
    # score = <x_i, r> = b - g, kept as alpha * u; u is -inf on duplicate rows so the
    # oracle never picks a later copy of a row (ties -> lowest index).
    p_s = b - col
    u = p_s.copy()
    if dup.size:
        u[dup] = -np.inf
    alpha = 1.0
    v = {s: 1.0}  # support -> weight / alpha, in order of entry
    tc = b_list[s]  # <t, c>
    cc = float(col[s])  # <c, c>
    history = [tt - 2.0 * tc + cc] if record else []
    # Per row: its score vector b - G[:, s] and G[s, s], filled when it is first picked.
    p_cache: list[np.ndarray | None] = [None] * problem.K
    diag = [0.0] * problem.K
    p_cache[s], diag[s] = p_s, col.item(s)

    reason: StopReason = "max_iter"
    n_iter = 0
    near = 4.0 * (tol * tol)  # below this |r|^2, check |r| < tol exactly (_residual_below)
    for _ in range(max_iter):
        rr = tt - 2.0 * tc + cc
        if rr < near and _residual_below(tol, problem, v, alpha):
            reason = "tol"
            break
        n_iter += 1
        # argmax <x_i, r> (= alpha * u), ties within TIE_ATOL -> lowest row.
        s = int(u.argmax())
        u_s = u.item(s)
        if s and u.item(int(u[:s].argmax())) >= u_s - TIE_ATOL / alpha:
            s = int((u[:s] >= u_s - TIE_ATOL / alpha).argmax())
            u_s = u.item(s)
        p_s = p_cache[s]
        if p_s is None:
            col = gram.column(s)
            p_s = p_cache[s] = b - col
            diag[s] = col.item(s)
        b_s = b_list[s]
        g_s = b_s - alpha * u_s  # <x_s, c>
        dd = diag[s] - 2.0 * g_s + cc  # |x_s - c|^2
        if dd < _MIN_STEP_SQ:
            reason = "degenerate"
            if record:
                history.append(rr)
            break
        gamma = (b_s - tc - g_s + cc) / dd  # exact line search: <r, x_s - c> / |x_s - c|^2
        if gamma < 0.0:
            gamma = 0.0
        elif gamma > 1.0:
            gamma = 1.0
        if gamma == 1.0:
            # The iterate jumps onto the vertex: w = e_s exactly.
            u = p_s.copy()
            if dup.size:
                u[dup] = -np.inf
            alpha = 1.0
            v = dict.fromkeys(v, 0.0)
            v[s] = 1.0
        elif gamma > 0.0:
            new_alpha = alpha * (1.0 - gamma)
            if new_alpha < _RESCALE_BELOW:
                # Fold the scale into u and v before 1/alpha can overflow.
                u *= alpha
                v = {k: x * alpha for k, x in v.items()}
                new_alpha = 1.0 - gamma
            alpha = new_alpha
            coef = gamma / alpha
            u += coef * p_s
            v[s] = v.get(s, 0.0) + coef
        else:
            v.setdefault(s, 0.0)
        cc = cc + 2.0 * gamma * (g_s - cc) + gamma * gamma * dd
        tc = tc + gamma * (b_s - tc)
        if record:
            history.append(tt - 2.0 * tc + cc)
        if len(v) >= max_support:
            reason = "support"
            break

    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "frank_wolfe: K=%d support=%d iterations=%d stop=%s |r|^2=%.3e",
            problem.K,
            len(v),
            n_iter,
            reason,
            tt - 2.0 * tc + cc,
        )
    support = np.fromiter(v.keys(), dtype=np.int64, count=len(v))
    weights = np.fromiter(v.values(), dtype=np.float64, count=len(v)) * alpha
    # Weight descending, ties (1e-12 grid) -> lowest pool row; truncate; renormalise.
    order = np.lexsort((support, -sort_key(weights)))[:max_support]
    support, weights = support[order], weights[order]
    weights = weights / weights.sum()
    return FrankWolfeResult(
        support=support,
        weights=weights,
        n_iter=n_iter,
        stop_reason=reason,
        objective=np.asarray(history, dtype=np.float64),
    )


def _masked(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = scores.copy()
    out[rows] = -np.inf
    return out


def _residual_below(tol: float, problem: Problem, v: dict[int, float], alpha: float) -> bool:
    """|t - c| < tol with c rebuilt in R^d from the support.

    |r|^2 = tt - 2<t,c> + |c|^2 has absolute rounding ~1e-16, i.e. a relative error
    ~1e-6 in |r| at |r| ~ tol = 1e-5; the loop calls this only within a factor 2 of tol.
    """
    idx = np.fromiter(v.keys(), dtype=np.int64, count=len(v))
    w = np.fromiter(v.values(), dtype=np.float64, count=len(v)) * alpha
    c = (w * problem.inv[idx]) @ problem.X[idx]
    r = problem.t - c
    return math.sqrt(float(r @ r)) < tol


def frank_wolfe_path(
    pool: Any,
    query: Any,
    max_support: int,
    *,
    max_iter: int = 250,
    tol: float = 1e-5,
) -> FrankWolfeResult:
    """Like :func:`frank_wolfe`, returning the objective path and stop reason too."""
    max_support = check_positive_int("max_support", max_support)
    max_iter = check_nonnegative_int("max_iter", max_iter)
    tol = check_float("tol", tol, positive=False)
    problem = prepare(pool, query, gram_columns=max_support + 1)
    gram = Gram(problem, max_support + 1)
    return run_frank_wolfe(problem, gram, max_support, max_iter, tol, record=True)


def frank_wolfe(
    pool: Any,
    query: Any,
    max_support: int,
    *,
    max_iter: int = 250,
    tol: float = 1e-5,
) -> Selection:
    """Sparse convex reconstruction of ``query`` from ``pool`` rows (DESIGN.md §4.2).

    Returns at most ``max_support`` rows ordered by weight (descending, ties -> lowest
    row; see :mod:`hullft.selection.ties`), each with count 1 and its Frank–Wolfe
    weight (renormalised to sum to 1 after truncation, which only happens at
    ``max_support = 1``). A row enters the support when the oracle picks it, even if its
    step size is 0; such a row keeps weight 0. Rows and query are normalised to unit
    norm first.
    """
    max_support = check_positive_int("max_support", max_support)
    max_iter = check_nonnegative_int("max_iter", max_iter)
    tol = check_float("tol", tol, positive=False)
    problem = prepare(pool, query, gram_columns=max_support + 1)
    gram = Gram(problem, max_support + 1)
    return run_frank_wolfe(problem, gram, max_support, max_iter, tol).selection()
