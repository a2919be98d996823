"""Geometric integerization and largest-remainder rounding for B queries at once.

Vectorised versions of :func:`hullft.selection.integerize.integerize_counts` and
:func:`largest_remainder_counts` on supports padded to a common length M (padding
never receives a unit). The swap passes keep first-improvement order exactly: each
loop step finds, per element, the first improving (i, j) pair after its last move,
so the number of steps is the largest number of moves any element makes in a pass.
"""

from __future__ import annotations

import torch

from hullft.selection.batch_problem import first_max_rows, sort_key_rows
from hullft.selection.integerization import MIN_IMPROVEMENT
from hullft.selection.ties import TIE_ATOL


def integerize_batch(
    G_S: torch.Tensor,
    b_S: torch.Tensor,
    w: torch.Tensor,
    valid: torch.Tensor,
    n: int,
    swap_passes: int,
) -> torch.Tensor:
    """(B, M) int64 counts summing to ``n``; G_S (B, M, M), b_S / w / valid (B, M)."""
    B, M = w.shape
    dev = w.device
    ar = torch.arange(B, device=dev)
    inv_n = 1.0 / n
    inv_n2 = inv_n * inv_n
    diag = torch.diagonal(G_S, dim1=1, dim2=2)
    inf = torch.tensor(torch.inf, dtype=torch.float64, device=dev)
    aGt = ((2.0 * inv_n2) * G_S.transpose(1, 2)).contiguous()  # [:, j] = (2/N^2) G[:, :, j]

    # 1. Floor.
    c = torch.floor(n * w).to(torch.int64)
    ah = torch.bmm(c.to(torch.float64)[:, None, :], aGt)[:, 0, :]
    # 2. Greedy fill, one unit per element per step while it still needs one.
    neg_fill = torch.where(valid, 2.0 * inv_n * b_S - diag * inv_n2, -inf)
    missing = n - c.sum(dim=1)
    for k in range(int(missing.max())):
        needs = missing > k
        i = first_max_rows(neg_fill - ah, TIE_ATOL)
        c[ar, i] += needs.to(torch.int64)
        ah = torch.where(needs[:, None], ah + aGt[ar, i], ah)
    if swap_passes == 0 or M < 2:
        return c

    # 3. First-improvement single-unit moves i -> j.
    base = 2.0 * inv_n * (b_S[:, :, None] - b_S[:, None, :]) + inv_n2 * (
        diag[:, :, None] + diag[:, None, :] - 2.0 * G_S
    )
    eye = torch.eye(M, dtype=torch.bool, device=dev)[None]
    base = base + MIN_IMPROVEMENT  # as in integerize_counts: compare with ah_i - ah_j
    base = torch.where(eye | ~valid[:, None, :], inf, base)  # j != i, j real
    pair = torch.arange(M * M, device=dev)[None, :]
    running = torch.ones(B, dtype=torch.bool, device=dev)
    for _ in range(swap_passes):
        # Rows that may give a unit: c_i > 0 at the start of the pass and still now.
        masked = torch.where((c == 0)[:, :, None], inf, base)
        pos = torch.zeros(B, dtype=torch.int64, device=dev)  # next pair, as i * M + j
        moved = torch.zeros(B, dtype=torch.bool, device=dev)
        while True:
            ok = (masked < ah[:, :, None] - ah[:, None, :]).reshape(B, M * M)
            ok &= (pair >= pos[:, None]) & running[:, None]
            found = ok.any(dim=1)
            if not bool(found.any()):
                break
            q = ok.to(torch.uint8).argmax(dim=1)  # first improving pair
            i, j = q // M, q % M
            step = found.to(torch.int64)
            c[ar, i] -= step
            c[ar, j] += step
            ah = torch.where(found[:, None], ah + (aGt[ar, j] - aGt[ar, i]), ah)
            emptied = found & (c[ar, i] == 0)
            masked[ar[emptied], i[emptied]] = inf
            pos = torch.where(found, q + 1, pos)
            moved |= found
        running &= moved
        if not bool(running.any()):
            break
    return c


def largest_remainder_batch(w: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """(B, M) int64 counts: floor(n w) plus a unit for the largest remainders."""
    B, M = w.shape
    scaled = n * w
    floor = torch.floor(scaled)
    c = floor.to(torch.int64)
    missing = n - c.sum(dim=1)
    m = valid.sum(dim=1)
    c += torch.where(valid, (missing // m)[:, None], 0)
    rem = torch.where(valid, -sort_key_rows(scaled - floor), torch.inf)
    order = torch.sort(rem, dim=1, stable=True).indices  # ties -> lowest position
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(M, device=w.device).expand(B, M))
    c += (rank < (missing % m)[:, None]).to(torch.int64)
    return c
