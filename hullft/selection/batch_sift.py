"""SIFT for B queries at once: the loop of :mod:`hullft.selection.sift`, vectorised."""

from __future__ import annotations

import torch

from hullft.selection.batch_problem import BatchProblem, first_max_rows
from hullft.selection.ties import TIE_RTOL


def sift_batch(bp: BatchProblem, G: torch.Tensor, n: int, lam: float) -> torch.Tensor:
    """(B, n) int64 picks in order, repeats included; G is the (B, K, K) Gram matrix."""
    B, K = bp.b.shape
    dev = bp.b.device
    ar = torch.arange(B, device=dev)
    kt = bp.b.clone()  # k_A(x_i, t)
    kd = bp.kdiag.clone()  # k_A(x_i, x_i)
    U = torch.empty(B, n, K, dtype=torch.float64, device=dev)  # U[:, p] = u_p
    picks = torch.empty(B, n, dtype=torch.int64, device=dev)
    for p in range(n):
        gain = kt * kt / (kd + lam)
        if bp.dup is not None:
            gain = torch.where(bp.dup, -torch.inf, gain)
        j = first_max_rows(gain, TIE_RTOL * gain.amax(dim=1))
        picks[:, p] = j
        col = G[ar, j]  # = G[:, :, j] by symmetry
        if p:
            col = col - torch.bmm(U[ar, :p, j][:, None, :], U[:, :p])[:, 0, :]
        scale = 1.0 / torch.sqrt(kd[ar, j] + lam)
        u = col * scale[:, None]
        U[:, p] = u
        kt -= u * (kt[ar, j] * scale)[:, None]
        kd -= u * u
        kd.clamp_(min=0.0)  # a variance; rounding must not make kd + lam <= 0
    return picks
