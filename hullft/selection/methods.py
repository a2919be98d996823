"""HullFT selection: Frank–Wolfe, then geometric integerization (docs/design.md §4.2-4.3)."""

from __future__ import annotations

from typing import Any

from hullft.selection.fw import solve_frank_wolfe
from hullft.selection.integerization import integerize_problem, support_gram
from hullft.selection.problem import check_nonnegative_int, check_positive_int
from hullft.selection.result import Selection
from hullft.selection.rounding import largest_remainder


def hullft_select(
    pool: Any,
    query: Any,
    n: int,
    *,
    max_iter: int = 250,
    tol: float = 1e-5,
    swap_passes: int = 2,
) -> Selection:
    """HullFT: a multiset of exactly ``n`` pool rows whose mean approximates ``query``.

    Frank–Wolfe with support at most ``n`` (:func:`frank_wolfe`), then geometric
    integerization of its weights (:func:`integerize`): exactly
    ``integerize(pool, query, frank_wolfe(pool, query, n, ...), n, ...)``, checked and
    prepared once. ``weights = counts / n``.
    """
    n = check_positive_int("n", n)
    swap_passes = check_nonnegative_int("swap_passes", swap_passes)
    problem, fw = solve_frank_wolfe(pool, query, n, max_iter, tol, support_name="n")
    w = fw.weights / fw.weights.sum()  # as integerize() renormalises its input
    # The support block as integerize() computes it, so the two agree bit for bit.
    G = support_gram(problem, fw.support)
    return integerize_problem(problem, G, fw.support, w, n, swap_passes)


def hullft_fw(
    pool: Any, query: Any, n: int, *, max_iter: int = 250, tol: float = 1e-5
) -> Selection:
    """Ablation: the Frank–Wolfe support (at most ``n`` rows), each row used once.

    Without integerization the multiset has |support| <= n elements: fewer than ``n``
    when Frank–Wolfe stops early (converged, max_iter, or a degenerate step).
    """
    _, fw = solve_frank_wolfe(pool, query, n, max_iter, tol, support_name="n")
    return fw.selection()


def hullft_round(
    pool: Any, query: Any, n: int, *, max_iter: int = 250, tol: float = 1e-5
) -> Selection:
    """Ablation: Frank–Wolfe weights rounded to ``n`` counts by largest remainder."""
    return largest_remainder(hullft_fw(pool, query, n, max_iter=max_iter, tol=tol), n)
