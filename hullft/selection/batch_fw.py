"""Frank–Wolfe for B queries at once: the loop of :mod:`frank_wolfe`, vectorised.

Every element runs the same iteration as the single-query code (same formulas, same
order of floating-point operations, same stop rules, checked in the same order); an
element that has stopped is masked out and keeps its state. The loop ends when every
element has stopped, so a batch costs as many iterations as its slowest element.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hullft.selection.batch_problem import BatchProblem, first_max_rows, sort_key_rows
from hullft.selection.fw import _MIN_STEP_SQ, _RESCALE_BELOW
from hullft.selection.ties import TIE_ATOL


@dataclass(frozen=True, eq=False)
class BatchFW:
    """Frank–Wolfe output for a batch, padded to the largest support M."""

    support: torch.Tensor
    """(B, M) pool rows, weight descending (ties -> lowest row); padding = 0."""
    weights: torch.Tensor
    """(B, M) weights renormalised over the valid entries; padding = 0."""
    valid: torch.Tensor
    """(B, M) which entries are real."""


def frank_wolfe_batch(
    bp: BatchProblem, G: torch.Tensor, max_support: int, max_iter: int, tol: float
) -> BatchFW:
    """Batched :func:`hullft.selection.frank_wolfe.run_frank_wolfe`; G is (B, K, K)."""
    B, K = bp.b.shape
    dev = bp.b.device
    ar = torch.arange(B, device=dev)
    b, tt = bp.b, bp.tt
    diag = torch.diagonal(G, dim1=1, dim2=2)
    neg_inf = torch.tensor(-torch.inf, dtype=torch.float64, device=dev)
    P = b[:, None, :] - G  # P[:, s] = b - G[:, s] (G symmetric): the score after w = e_s

    first = b if bp.dup is None else torch.where(bp.dup, neg_inf, b)
    s = first_max_rows(first, TIE_ATOL)
    u = P[ar, s].clone()
    if bp.dup is not None:
        u = torch.where(bp.dup, neg_inf, u)
    alpha = torch.ones(B, dtype=torch.float64, device=dev)
    v = torch.zeros(B, K, dtype=torch.float64, device=dev)
    v[ar, s] = 1.0
    in_support = torch.zeros(B, K, dtype=torch.bool, device=dev)
    in_support[ar, s] = True
    n_support = torch.ones(B, dtype=torch.int64, device=dev)
    tc = b[ar, s]
    cc = diag[ar, s]
    active = torch.ones(B, dtype=torch.bool, device=dev)
    tol2 = tol * tol

    for _ in range(max_iter):
        if not bool(active.any()):
            break
        rr = tt - 2.0 * tc + cc
        near = active & (rr < 4.0 * tol2)
        if bool(near.any()):
            active = active & ~_residual_below(bp, near, alpha, v, tol)
        s = first_max_rows(u, TIE_ATOL / alpha)
        b_s = b[ar, s]
        g_s = b_s - alpha * u[ar, s]
        dd = diag[ar, s] - 2.0 * g_s + cc
        active = active & ~(dd < _MIN_STEP_SQ)
        rd = b_s - tc - g_s + cc
        gamma = torch.where(active, torch.clamp(rd / dd, 0.0, 1.0), 0.0)

        jump = active & (gamma == 1.0)
        step = active & (gamma > 0.0) & (gamma < 1.0)
        new_alpha = alpha * (1.0 - gamma)
        fold = step & (new_alpha < _RESCALE_BELOW)
        if bool(fold.any()):
            u = torch.where(fold[:, None], u * alpha[:, None], u)
            v = torch.where(fold[:, None], v * alpha[:, None], v)
            new_alpha = torch.where(fold, 1.0 - gamma, new_alpha)
        alpha = torch.where(step, new_alpha, alpha)
        coef = torch.where(step, gamma / alpha, 0.0)
        u = u + coef[:, None] * P[ar, s]
        v[ar, s] += coef
        if bool(jump.any()):
            reset = P[ar, s]
            if bp.dup is not None:
                reset = torch.where(bp.dup, neg_inf, reset)
            u = torch.where(jump[:, None], reset, u)
            v = torch.where(jump[:, None], 0.0, v)
            v[ar[jump], s[jump]] = 1.0
            alpha = torch.where(jump, 1.0, alpha)

        cc = torch.where(active, cc + 2.0 * gamma * (g_s - cc) + gamma * gamma * dd, cc)
        tc = torch.where(active, tc + gamma * (b_s - tc), tc)
        n_support += (active & ~in_support[ar, s]).to(torch.int64)
        in_support[ar, s] |= active
        active = active & (n_support < max_support)

    # Weight descending, ties (1e-12 grid) -> lowest row (stable sort); truncate.
    w = alpha[:, None] * v
    key = torch.where(in_support, -sort_key_rows(w), torch.inf)
    order = torch.sort(key, dim=1, stable=True).indices
    keep = torch.clamp(n_support, max=max_support)
    M = int(keep.max())
    support = order[:, :M]
    valid = torch.arange(M, device=dev)[None, :] < keep[:, None]
    weights = torch.where(valid, w.gather(1, support), 0.0)
    weights = weights / weights.sum(dim=1, keepdim=True)
    support = torch.where(valid, support, 0)
    return BatchFW(support=support, weights=weights, valid=valid)


def _residual_below(
    bp: BatchProblem, rows: torch.Tensor, alpha: torch.Tensor, v: torch.Tensor, tol: float
) -> torch.Tensor:
    """(B,) bool: |t - c| < tol for the elements in ``rows``, with c rebuilt in R^d."""
    idx = torch.nonzero(rows).flatten()
    out = torch.zeros_like(rows)
    out[idx] = bp.residual_norm(idx, alpha[idx, None] * v[idx]) < tol
    return out
