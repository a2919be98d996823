"""Largest-remainder rounding of convex weights to N counts (the ``hullft_round`` ablation)."""

from __future__ import annotations

import numpy as np

from hullft.selection.integerization import selection_weights
from hullft.selection.problem import check_positive_int
from hullft.selection.result import Selection, selection_from_counts
from hullft.selection.ties import sort_key


def largest_remainder_counts(w: np.ndarray, n: int) -> np.ndarray:
    """floor(n w) plus one unit for the largest remainders (ties -> lowest position)."""
    scaled = n * w
    floor = np.floor(scaled)
    c = floor.astype(np.int64)
    missing = n - int(c.sum())
    m = w.shape[0]
    c += missing // m  # 0 for weights on the simplex; keeps sum c = n regardless
    order = np.lexsort((np.arange(m), -sort_key(scaled - floor)))
    c[order[: missing % m]] += 1
    return c


def largest_remainder(selection: Selection, n: int) -> Selection:
    """Round the weights of ``selection`` to ``n`` counts by largest remainder (ablation).

    floor(n w_i), then one more unit for the largest remainders n w_i - floor(n w_i),
    ties -> earliest position; no swaps. Rows with count 0 are dropped, order is kept,
    ``weights = counts / n``.
    """
    n = check_positive_int("n", n)
    w = selection_weights(selection)
    return selection_from_counts(selection.indices, largest_remainder_counts(w, n), n)
