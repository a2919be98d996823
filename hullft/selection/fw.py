"""Frank–Wolfe convex reconstruction of the query from the pool (docs/design.md §4.2).

Minimise f(w) = |t - X^T w|^2 over the probability simplex, with exact line search,
ties in every argmax to the lowest row (:mod:`hullft.selection.ties`), float64
throughout.

Cost: O(K) per iteration instead of the naive O(K d). The linear minimisation oracle
needs <x_i, r> = b_i - g_i with b = X t and g = X c = sum_s w_s G[:, s]; every scalar
the step needs (<r, d>, |d|^2, |r|^2) follows from b, g and the Gram column of the
chosen vertex, which is computed once when the vertex first enters the support. The
score vector is kept in scaled form (score = alpha * u), so that one iteration is an
argmax and one axpy over K entries; the iterations run compiled
(:mod:`hullft.selection.fw_kernel`).

Gram columns are computed lazily, one matrix-vector product per vertex that enters the
support: on retrieval pools the support stays well below N (about 20 rows at N = 50,
K = 200, where the 250 iterations run out first), so the ~20 products cost less than
one K x K syrk (docs/selection.md; ``benchmarks/bench_selection.py`` times both).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from hullft.selection.fw_kernel import (
    ALPHA,
    CC,
    DONE,
    N_ITER,
    N_SLOTS,
    N_SUPPORT,
    REASON,
    REASON_NAMES,
    TC,
    fw_iterate,
)
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
# docs/design.md §4.2: stop when |d|^2 < 1e-12 (the new vertex is the current iterate).
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
    rescale_below: float = _RESCALE_BELOW,
) -> FrankWolfeResult:
    """Frank–Wolfe on a prepared problem (arguments already checked).

    The iterations run in :func:`hullft.selection.fw_kernel.fw_iterate`; this
    function sets up its state, computes each Gram column the kernel asks for, and
    orders and truncates the result. ``rescale_below``: the scale below which the
    scaled score vector is folded back (alpha -> 1); any value far from the float64
    limits gives the same result, which the oracle tests check by folding on every
    step (``rescale_below=2``).
    """
    K = problem.K
    b = problem.b
    dup = np.zeros(K, dtype=np.bool_)
    dup[problem.duplicate_rows] = True
    cap = min(max_support, K) + 1  # support rows, plus one degenerate last pick
    P = np.empty((cap, K))
    slot = np.full(K, -1, dtype=np.int64)
    order = np.zeros(cap, dtype=np.int64)
    wv = np.zeros(cap)  # weight / alpha of order[k]
    dg = np.zeros(cap)  # G[order[k], order[k]]
    st = np.array([0, 0, 1, 0], dtype=np.int64)  # iterations, slots, support, reason

    def add_column(i: int) -> np.ndarray:
        k = int(st[N_SLOTS])
        col = gram.column(i)
        np.subtract(b, col, out=P[k])
        slot[i], order[k], dg[k] = k, i, col.item(i)
        st[N_SLOTS] = k + 1
        return col

    s = first_max(_masked(b, dup) if problem.canon is not None else b, TIE_ATOL)
    col = add_column(s)
    u = P[0].copy()
    u[dup] = -np.inf  # the oracle never picks a later copy of a row (ties -> lowest)
    wv[0] = 1.0
    tt = problem.tt
    tc = b.item(s)  # <t, c>
    cc = col.item(s)  # <c, c>
    fs = np.array([1.0, tc, cc, tt])  # alpha, <t,c>, <c,c>, <t,t>
    history = np.empty(max_iter + 1 if record else 1)
    history[0] = tt - 2.0 * tc + cc
    while True:
        need = fw_iterate(
            u, P, slot, order, wv, dg, b, dup, problem.X, problem.inv, problem.t, fs, st,
            history, max_support, max_iter, tol, TIE_ATOL, _MIN_STEP_SQ, rescale_below,
            record,
        )  # fmt: skip
        if need == DONE:
            break
        add_column(need)

    n_iter, m = int(st[N_ITER]), int(st[N_SUPPORT])
    reason = cast(StopReason, REASON_NAMES[int(st[REASON])])
    alpha, tc, cc = float(fs[ALPHA]), float(fs[TC]), float(fs[CC])
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "frank_wolfe: K=%d support=%d iterations=%d stop=%s |r|^2=%.3e",
            K,
            m,
            n_iter,
            reason,
            tt - 2.0 * tc + cc,
        )
    support = order[:m].copy()
    weights = wv[:m] * alpha
    # Weight descending, ties (1e-12 grid) -> lowest pool row; truncate; renormalise.
    keep = np.lexsort((support, -sort_key(weights)))[:max_support]
    support, weights = support[keep], weights[keep]
    weights = weights / weights.sum()
    return FrankWolfeResult(
        support=support,
        weights=weights,
        n_iter=n_iter,
        stop_reason=reason,
        objective=history[: n_iter + 1].copy() if record else np.empty(0),
    )


def _masked(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = scores.copy()
    out[rows] = -np.inf
    return out


def solve_frank_wolfe(
    pool: Any,
    query: Any,
    max_support: int,
    max_iter: int,
    tol: float,
    *,
    record: bool = False,
    support_name: str = "max_support",
) -> tuple[Problem, FrankWolfeResult]:
    """Check the arguments, prepare the problem and run Frank–Wolfe on it.

    Gram columns are computed on demand (see the module docstring). ``support_name``
    is what an error calls ``max_support`` (``n`` for the HullFT methods).
    """
    max_support = check_positive_int(support_name, max_support)
    max_iter = check_nonnegative_int("max_iter", max_iter)
    tol = check_float("tol", tol, positive=False)
    problem = prepare(pool, query)
    fw = run_frank_wolfe(problem, Gram(problem, 0), max_support, max_iter, tol, record=record)
    return problem, fw


def warm_up() -> None:
    """Compile the Frank–Wolfe kernel now (~1.5 s), or load it from numba's cache.

    Long-lived services call this at start so that their first query is not the one
    that pays for the compilation.
    """
    frank_wolfe(np.eye(2), np.ones(2), 2)


def frank_wolfe_path(
    pool: Any,
    query: Any,
    max_support: int,
    *,
    max_iter: int = 250,
    tol: float = 1e-5,
) -> FrankWolfeResult:
    """Like :func:`frank_wolfe`, returning the objective path and stop reason too."""
    return solve_frank_wolfe(pool, query, max_support, max_iter, tol, record=True)[1]


def frank_wolfe(
    pool: Any,
    query: Any,
    max_support: int,
    *,
    max_iter: int = 250,
    tol: float = 1e-5,
) -> Selection:
    """Sparse convex reconstruction of ``query`` from ``pool`` rows (docs/design.md §4.2).

    Returns at most ``max_support`` rows ordered by weight (descending, ties -> lowest
    row; see :mod:`hullft.selection.ties`), each with count 1 and its Frank–Wolfe
    weight (renormalised to sum to 1 after truncation, which only happens at
    ``max_support = 1``). A row enters the support when the oracle picks it, even if its
    step size is 0; such a row keeps weight 0. Rows and query are normalised to unit
    norm first.
    """
    return solve_frank_wolfe(pool, query, max_support, max_iter, tol)[1].selection()
