"""Frank–Wolfe for B queries at once: the loop of :mod:`hullft.selection.fw`, vectorised.

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
    dup = bp.dup

    # As in run_frank_wolfe: score = <x_i, r> = alpha * u, with p_s = b - G[:, s] the
    # score vector of the vertex s (G is symmetric, so G[ar, s] is that column).
    first = b if dup is None else torch.where(dup, -torch.inf, b)
    s = first_max_rows(first, TIE_ATOL)
    u = b - G[ar, s]
    if dup is not None:
        u = torch.where(dup, -torch.inf, u)
    alpha = torch.ones(B, dtype=torch.float64, device=dev)
    v = torch.zeros(B, K, dtype=torch.float64, device=dev)
    v[ar, s] = 1.0
    in_support = torch.zeros(B, K, dtype=torch.bool, device=dev)
    in_support[ar, s] = True
    n_support = torch.ones(B, dtype=torch.int64, device=dev)
    tc = b[ar, s]
    cc = diag[ar, s]
    active = torch.ones(B, dtype=torch.bool, device=dev)
    near_sq = 4.0 * (tol * tol)

    for _ in range(max_iter):
        if not bool(active.any()):
            break
        rr = tt - 2.0 * tc + cc
        near = active & (rr < near_sq)
        if bool(near.any()):
            active &= ~_residual_below(bp, near, alpha, v, tol)
        s = first_max_rows(u, TIE_ATOL / alpha)
        b_s = b[ar, s]
        g_s = b_s - alpha * u[ar, s]
        dd = diag[ar, s] - 2.0 * g_s + cc
        active &= dd >= _MIN_STEP_SQ
        # Stopped elements get gamma = 0, which leaves every quantity below unchanged.
        gamma = torch.where(active, torch.clamp((b_s - tc - g_s + cc) / dd, 0.0, 1.0), 0.0)
        p_s = b - G[ar, s]
        new_alpha = alpha * (1.0 - gamma)
        jump = gamma == 1.0  # the iterate jumps onto the vertex: w = e_s
        fold = (new_alpha < _RESCALE_BELOW) & ~jump
        if bool(fold.any()):
            u = torch.where(fold[:, None], u * alpha[:, None], u)
            v = torch.where(fold[:, None], v * alpha[:, None], v)
            new_alpha = torch.where(fold, 1.0 - gamma, new_alpha)
        if bool(jump.any()):
            reset = p_s if dup is None else torch.where(dup, -torch.inf, p_s)
            u = torch.where(jump[:, None], reset, u)
            v = torch.where(jump[:, None], 0.0, v)
            v[ar[jump], s[jump]] = 1.0
            coef = torch.where(jump, 0.0, gamma / new_alpha)
            alpha = torch.where(jump, 1.0, new_alpha)
        else:
            coef = gamma / new_alpha
            alpha = new_alpha
        u = u + coef[:, None] * p_s
        v[ar, s] += coef
        cc = cc + 2.0 * gamma * (g_s - cc) + gamma * gamma * dd
        tc = tc + gamma * (b_s - tc)
        n_support += (active & ~in_support[ar, s]).to(torch.int64)
        in_support[ar, s] |= active
        active &= n_support < max_support

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
