"""Recall of an approximate search against exact search, tie-aware."""

from __future__ import annotations

import numpy as np


def recall_at_k(
    approx_ids: np.ndarray,
    exact_ids: np.ndarray,
    *,
    approx_true_scores: np.ndarray | None = None,
    exact_scores: np.ndarray | None = None,
    tol: float = 1e-6,
) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k, with ``k`` the width of
    ``exact_ids``.

    With ties at the k-th exact score, the exact top-k is not unique; given the
    exact scores of the approximate results (``approx_true_scores``) and the
    exact scores (``exact_scores``), a result scoring at least the k-th exact
    score minus ``tol`` also counts as found. ``-1`` ids never count.
    """
    approx_ids = np.atleast_2d(approx_ids)
    exact_ids = np.atleast_2d(exact_ids)
    if approx_ids.shape[0] != exact_ids.shape[0]:
        raise ValueError("approx_ids and exact_ids must have the same number of queries")
    k = exact_ids.shape[1]
    a = approx_ids[:, :k]
    hits = np.zeros(a.shape, dtype=bool)
    for i in range(a.shape[0]):
        hits[i] = np.isin(a[i], exact_ids[i][exact_ids[i] >= 0]) & (a[i] >= 0)
    if approx_true_scores is not None and exact_scores is not None:
        kth = np.atleast_2d(exact_scores)[:, k - 1 : k]
        hits |= (np.atleast_2d(approx_true_scores)[:, :k] >= kth - tol) & (a >= 0)
    return float(hits.sum(axis=1).mean() / k)
