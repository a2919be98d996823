"""k nearest neighbours: the top-N pool rows by cosine similarity (docs/design.md §4.1)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hullft.selection.problem import Problem, check_positive_int, prepare
from hullft.selection.result import Selection
from hullft.selection.ties import sort_key


def check_knn_n(n: Any, K: int) -> int:
    n = check_positive_int("n", n)
    if n > K:
        raise ValueError(
            f"n={n} > K={K}: kNN picks distinct pool rows, so it needs at least n "
            "candidates; lower n or retrieve more candidates"
        )
    return n


def knn_problem(problem: Problem, n: int) -> Selection:
    """kNN on a prepared problem (``n`` already checked against K)."""
    key = sort_key(problem.b)
    if problem.canon is not None:
        key = key[problem.canon]  # copies score exactly alike, so they stay in index order
    order = np.argsort(-key, kind="stable")[:n]
    return Selection(indices=order, counts=np.ones(n, dtype=np.int64))


def knn(pool: Any, query: Any, n: int) -> Selection:
    """The ``n`` pool rows most similar to ``query`` (inner product of unit vectors).

    Ordered by similarity (descending; similarities equal on a 1e-12 grid tie, and
    ties go to the lowest row), each with count 1 and
    ``weights=None`` (kNN has no convex weights). Needs ``n <= K``.
    """
    problem = prepare(pool, query)
    return knn_problem(problem, check_knn_n(n, problem.K))
