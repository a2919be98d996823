"""How every selection method breaks ties: the lowest index wins.

docs/design.md §4 resolves ties to the lowest index. Values that are equal in exact
arithmetic (duplicate rows, symmetric pools, a Frank–Wolfe iterate sitting on a face)
come out of floating-point arithmetic a few ulps apart, in an order that depends on
how they were computed: BLAS kernel, numpy or torch, CPU or GPU. So ties are decided
with a tolerance far above rounding (~1e-16 here) and far below any difference that
matters for selection:

- an argmax takes the lowest index whose value is within ``TIE_ATOL`` of the maximum
  (``TIE_RTOL`` times the maximum for SIFT's variance reductions, which scale as
  1/lambda);
- a sort (kNN by similarity, Frank–Wolfe support by weight, largest remainders) orders
  by the value rounded to a 1e-12 grid, then by index.
"""

from __future__ import annotations

import numpy as np

TIE_ATOL = 1e-12
"""Scores closer than this to the best one count as tied (scores are O(1))."""
TIE_RTOL = 1e-12
"""Relative version, for values whose scale varies (SIFT gains)."""
GRID = 1e12
"""Sort keys are ``rint(value * GRID)``: values on the same 1e-12 step tie."""


def first_max(values: np.ndarray, tol: float) -> int:
    """Lowest index i with values[i] >= max(values) - tol."""
    s = int(values.argmax())
    if s:
        thr = values.item(s) - tol
        head = values[:s]
        if head.item(int(head.argmax())) >= thr:  # rare: look for the first one
            return int((head >= thr).argmax())
    return s


def sort_key(values: np.ndarray) -> np.ndarray:
    """Values on the 1e-12 grid, for sorting with ties broken by index."""
    return np.rint(values * GRID)
