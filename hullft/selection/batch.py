"""Batched selection: B queries per call, vectorised in torch on CPU or GPU.

Entry point of :func:`hullft.selection.select_batch`. Each element's result equals the
single-query method's (same algorithm, same tie-breaking, same stop rules); elements
are independent, so results do not depend on the order of the batch. Pools are
processed in chunks that keep the float64 working set bounded.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import torch

from hullft.config import SelectionConfig
from hullft.selection.batch_fw import BatchFW, frank_wolfe_batch
from hullft.selection.batch_integerize import integerize_batch, largest_remainder_batch
from hullft.selection.batch_problem import (
    BatchProblem,
    as_host_array,
    check_batch_shapes,
    prepare_batch,
    resolve_device,
    sort_key_rows,
)
from hullft.selection.batch_sift import sift_batch
from hullft.selection.nearest import check_knn_n
from hullft.selection.problem import wants_full_gram
from hullft.selection.registry import get_method
from hullft.selection.result import Selection
from hullft.selection.sift_greedy import check_sift_args, picks_to_selection

logger = logging.getLogger(__name__)

# Bytes of one (B, K, K) float64 array per chunk. On the CPU this stays below glibc's
# largest mmap threshold (32 MiB), so chunk after chunk reuses the same heap memory
# instead of paying page faults for fresh mappings; on a GPU, chunks are larger.
_CHUNK_BYTES = {"cpu": 24 * 2**20, "other": 1024 * 2**20}


def chunk_size(K: int, d: int, device: torch.device) -> int:
    if device.type == "cpu":  # rows stay with the per-element numpy problems
        return max(1, _CHUNK_BYTES["cpu"] // (8 * K * K))
    return max(1, _CHUNK_BYTES["other"] // (8 * K * max(K, d)))


def run_batch(
    method: str,
    pools: Any,
    queries: Any,
    cfg: SelectionConfig,
    *,
    device: Any = None,
    vectorised: bool | None = None,
) -> list[Selection]:
    """Run registered ``method`` for pools (B, K, d) and queries (B, d); see select_batch."""
    dev = resolve_device(pools, device)
    shape = tuple(pools.shape) if hasattr(pools, "shape") else np.shape(pools)
    if len(shape) != 3:
        raise ValueError(f"pools must be a 3-D (B, K, d) array, got shape {shape}")
    B, K, d = (int(x) for x in shape)
    if B == 0:
        prepare_batch(pools, queries, dev)  # still reject malformed input
        return []
    if vectorised is None:
        vectorised = dev.type != "cpu" or vectorise_on_cpu(method, K, cfg.n)
    logger.debug(
        "select_batch(%s): B=%d K=%d d=%d n=%d on %s, %s",
        method,
        B,
        K,
        d,
        cfg.n,
        dev,
        "vectorised" if vectorised else "per-query loop",
    )
    if not vectorised:
        return _loop(method, pools, queries, cfg)
    out: list[Selection] = []
    step = chunk_size(max(K, 1), max(d, 1), dev)
    gram = method != "knn"
    # One host buffer for every chunk's Gram matrices (CPU path): fresh memory costs a
    # page fault per 4 KiB on first touch, about as much as filling it.
    host = np.empty((min(step, B), K, K)) if gram and dev.type == "cpu" else None
    for start in range(0, B, step):
        stop = min(B, start + step)
        try:
            bp = prepare_batch(
                pools[start:stop],
                queries[start:stop],
                dev,
                gram=gram,
                gram_out=None if host is None else host[: stop - start],
            )
        except ValueError as exc:
            raise ValueError(_shift_batch_index(str(exc), start)) from None
        out.extend(_METHODS[method](bp, cfg))
    return out


def vectorise_on_cpu(method: str, K: int, n: int) -> bool:
    """Whether ``select_batch`` vectorises ``method`` on a CPU by default.

    Measured with benchmarks/bench_selection.py (docs/selection.md): on a CPU the
    vectorised loops save Python overhead but no BLAS time and always build the whole
    (B, K, K) Gram matrix. That pays for SIFT once the single-query code needs the whole
    Gram matrix too (n >= K/8; its per-pick work is dense O(K N) algebra that batches
    well) and costs nothing for kNN; Frank–Wolfe's latency-bound inner loop is no faster
    vectorised on a CPU, so the Frank–Wolfe methods run per query there.
    """
    if method == "knn":
        return True
    if method == "sift":
        return wants_full_gram(K, n)
    return False


def _loop(method: str, pools: Any, queries: Any, cfg: SelectionConfig) -> list[Selection]:
    P = as_host_array("pools", pools, 3, "(B, K, d)")
    Q = as_host_array("queries", queries, 2, "(B, d)")
    check_batch_shapes(P.shape, Q.shape)
    single = get_method(method).single
    out = []
    for i in range(P.shape[0]):
        try:
            out.append(single(P[i], Q[i], cfg))
        except ValueError as exc:
            raise ValueError(f"batch element {i}: {exc}") from None
    return out


def _shift_batch_index(msg: str, offset: int) -> str:
    """Rewrite 'batch element 3: ...' of a chunk into the index in the whole batch."""
    return re.sub(
        r"^batch element (\d+)", lambda m: f"batch element {int(m.group(1)) + offset}", msg
    )


def _knn(bp: BatchProblem, cfg: SelectionConfig) -> list[Selection]:
    n = check_knn_n(cfg.n, bp.K)
    key = sort_key_rows(bp.b)
    if bp.canon is not None:
        key = key.gather(1, bp.canon)  # copies rank exactly alike, so they stay in row order
    top = torch.sort(-key, dim=1, stable=True).indices[:, :n].cpu().numpy()
    ones = np.ones(n, dtype=np.int64)
    return [Selection(indices=row, counts=ones) for row in top]


def _sift(bp: BatchProblem, cfg: SelectionConfig) -> list[Selection]:
    n, lam = check_sift_args(cfg.n, cfg.sift_lambda)
    picks = sift_batch(bp, bp.gram(), n, lam).cpu().numpy()
    return [picks_to_selection(row) for row in picks]


def _fw(bp: BatchProblem, cfg: SelectionConfig) -> tuple[BatchFW, torch.Tensor]:
    G = bp.gram()
    return frank_wolfe_batch(bp, G, cfg.n, cfg.fw_max_iter, cfg.fw_tol), G


def _to_selections(fw: BatchFW, counts: torch.Tensor | None, n: int) -> list[Selection]:
    support = fw.support.cpu().numpy()
    valid = fw.valid.cpu().numpy()
    if counts is None:
        weights = fw.weights.cpu().numpy()
        return [
            Selection(indices=s[v], counts=np.ones(int(v.sum()), dtype=np.int64), weights=w[v])
            for s, v, w in zip(support, valid, weights, strict=True)
        ]
    cnt = counts.cpu().numpy()
    out = []
    for s, c in zip(support, cnt, strict=True):
        keep = c > 0
        out.append(Selection(indices=s[keep], counts=c[keep], weights=c[keep] / n))
    return out


def _hullft(bp: BatchProblem, cfg: SelectionConfig) -> list[Selection]:
    fw, G = _fw(bp, cfg)
    B = bp.B
    ar = torch.arange(B, device=G.device)
    S = fw.support
    G_S = G[ar[:, None, None], S[:, :, None], S[:, None, :]]
    w = fw.weights / fw.weights.sum(dim=1, keepdim=True)  # as integerize() renormalises
    counts = integerize_batch(G_S, bp.b.gather(1, S), w, fw.valid, cfg.n, cfg.swap_passes)
    return _to_selections(fw, counts, cfg.n)


def _hullft_fw(bp: BatchProblem, cfg: SelectionConfig) -> list[Selection]:
    fw, _ = _fw(bp, cfg)
    return _to_selections(fw, None, cfg.n)


def _hullft_round(bp: BatchProblem, cfg: SelectionConfig) -> list[Selection]:
    fw, _ = _fw(bp, cfg)
    w = fw.weights / fw.weights.sum(dim=1, keepdim=True)  # as largest_remainder() does
    return _to_selections(fw, largest_remainder_batch(w, fw.valid, cfg.n), cfg.n)


_METHODS = {
    "knn": _knn,
    "sift": _sift,
    "hullft": _hullft,
    "hullft_fw": _hullft_fw,
    "hullft_round": _hullft_round,
}
