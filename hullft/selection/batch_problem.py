"""Batched input checking and preparation (float64, CPU or GPU).

The batched counterpart of :mod:`hullft.selection.problem`: the same checks and error
messages (prefixed with the batch element), the same folded normalisation, plus the
full (B, K, K) Gram matrix that every batched method works from.

On the CPU each element is prepared by the single-query :func:`prepare` and its Gram
matrix by the single-query :class:`Gram` (numpy: one syrk, half the flops of a batched
matmul, and bitwise the same inputs as :func:`select`); on other devices the same
checks run vectorised in torch. Only imported by :func:`select_batch`, so
``import hullft.selection`` stays torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hullft.selection.problem import (
    SQ_NORM_RANGE,
    as_float64,
    canonical_rows,
    prepare,
    row_inverse_norms,
)
from hullft.selection.ties import GRID


@dataclass(frozen=True, eq=False)
class BatchProblem:
    """B checked problems of equal shape; see :class:`hullft.selection.problem.Problem`."""

    inv: torch.Tensor
    """(B, K) 1 / |x_i|."""
    t: torch.Tensor
    """(B, d) unit queries."""
    tt: torch.Tensor
    """(B,) <t, t>."""
    b: torch.Tensor
    """(B, K) cosine similarities."""
    kdiag: torch.Tensor
    """(B, K) <x_i, x_i> / |x_i|^2."""
    canon: torch.Tensor | None
    """(B, K) first copy of each row, or ``None`` if no element has duplicate rows."""
    dup: torch.Tensor | None
    """(B, K) True on rows that repeat an earlier row, or ``None``."""
    X: torch.Tensor | None = None
    """(B, K, d) rows as float64 (torch path)."""
    raw: np.ndarray | None = None
    """(B, K, d) rows as given, any float dtype (numpy path; for the rare exact residual)."""
    G_host: np.ndarray | None = None
    """(B, K, K) Gram matrices prepared with the rows (numpy path)."""

    @property
    def B(self) -> int:
        return int(self.b.shape[0])

    @property
    def K(self) -> int:
        return int(self.b.shape[1])

    def gram(self) -> torch.Tensor:
        """(B, K, K) G[i, j] = <x_i, x_j> / (|x_i| |x_j|), exactly symmetric."""
        if self.G_host is not None:
            return torch.from_numpy(self.G_host).to(self.b.device)
        assert self.X is not None, "prepare_batch(..., gram=False) has no Gram matrix"
        G = torch.bmm(self.X, self.X.transpose(1, 2))
        G = 0.5 * (G + G.transpose(1, 2))  # bmm need not round G_ij and G_ji alike
        return G * (self.inv[:, :, None] * self.inv[:, None, :])

    def residual_norm(self, rows: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """|t - sum_k w_k x_k / |x_k||, rebuilt in R^d, for batch elements ``rows``.

        ``w`` is (len(rows), K), zero outside the support.
        """
        if self.raw is not None:
            inv, t = self.inv.cpu().numpy(), self.t.cpu().numpy()
            out = []
            for i, wi in zip(rows.tolist(), w.cpu().numpy(), strict=True):
                # The same float64 rows (rescaled alike, if at all) as prepare() saw.
                X, _, _ = row_inverse_norms("pool", as_float64("pool", self.raw[i], 2, ""))
                idx = np.flatnonzero(wi)
                r = t[i] - (wi[idx] * inv[i, idx]) @ X[idx]
                out.append(float(np.sqrt(r @ r)))
            return torch.tensor(out, dtype=torch.float64, device=w.device)
        assert self.X is not None
        c = torch.bmm((w * self.inv[rows])[:, None, :], self.X[rows])[:, 0, :]
        r = self.t[rows] - c
        return torch.sqrt((r * r).sum(dim=1))


def first_max_rows(values: torch.Tensor, tol: torch.Tensor | float) -> torch.Tensor:
    """(B,) lowest index per row with value >= row max - tol (see hullft.selection.ties)."""
    thr = values.amax(dim=1) - tol
    return (values >= thr[:, None]).to(torch.uint8).argmax(dim=1)


def sort_key_rows(values: torch.Tensor) -> torch.Tensor:
    """Values on the tie grid of :func:`hullft.selection.ties.sort_key`."""
    return torch.round(values * GRID)


def resolve_device(pools: Any, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(pools, torch.Tensor):
        return pools.device
    return torch.device("cpu")


def prepare_batch(
    pools: Any,
    queries: Any,
    device: Any = None,
    *,
    gram: bool = True,
    gram_out: np.ndarray | None = None,
    native: bool | None = None,
) -> BatchProblem:
    """Check pools (B, K, d) and queries (B, d) and build the :class:`BatchProblem`.

    ``gram``: whether the method will use the Gram matrix (prepared along, on the CPU,
    into ``gram_out`` (B, K, K) if given: reusing one buffer saves page faults).
    ``native=True`` forces the vectorised torch path on the CPU too (for the tests).
    """
    dev = resolve_device(pools, device)
    if native or (native is None and dev.type != "cpu"):
        return _prepare_torch(pools, queries, dev)
    return _prepare_numpy(pools, queries, dev, gram, gram_out)


def check_batch_shapes(xs: tuple[int, ...], ts: tuple[int, ...]) -> int:
    """Check (B, K, d) against (B, d); return K."""
    B, K, d = xs
    if ts[0] != B:
        raise ValueError(f"queries has {ts[0]} rows but pools has {B} batch elements")
    if K == 0:
        raise ValueError("pools are empty (K = 0): there is nothing to select from")
    if d == 0:
        raise ValueError("pool rows have dimension 0")
    if ts[1] != d:
        raise ValueError(f"queries have dimension {ts[1]} but pool rows have dimension {d}")
    return K


def _not_float(name: str, dtype: Any) -> ValueError:
    return ValueError(
        f"{name} must hold floating-point embeddings (float16/32/64), got dtype {dtype}"
    )


# -- numpy path (CPU) ------------------------------------------------------------------


def _prepare_numpy(
    pools: Any, queries: Any, dev: torch.device, gram: bool, gram_out: np.ndarray | None
) -> BatchProblem:
    P = as_host_array("pools", pools, 3, "(B, K, d)")
    Q = as_host_array("queries", queries, 2, "(B, d)")
    K = check_batch_shapes(P.shape, Q.shape)
    B, d = P.shape[0], P.shape[2]
    inv, b, kdiag = (np.empty((B, K)) for _ in range(3))
    t, tt = np.empty((B, d)), np.empty(B)
    canon: np.ndarray | None = None
    G = None
    if gram:
        G = gram_out if gram_out is not None else np.empty((B, K, K))
        if G.shape != (B, K, K) or G.dtype != np.float64:
            raise ValueError(f"gram_out must be float64 of shape {(B, K, K)}, got {G.shape}")
    for i in range(B):
        # One element at a time, keeping nothing of size K x d: the float64 copy of a
        # pool is freed before the next is made, so it reuses warm memory.
        try:
            p = prepare(P[i], Q[i], gram_columns=K if gram else 0)
        except ValueError as exc:
            raise ValueError(f"batch element {i}: {exc}") from None
        inv[i], b[i], kdiag[i], t[i], tt[i] = p.inv, p.b, p.kdiag, p.t, p.tt
        if G is not None:
            G[i] = p.G
        if p.canon is not None:
            if canon is None:
                canon = np.tile(np.arange(K), (B, 1))
            canon[i] = p.canon

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(dev)

    canon_t = None if canon is None else put(canon)
    return BatchProblem(
        inv=put(inv),
        t=put(t),
        tt=put(tt),
        b=put(b),
        kdiag=put(kdiag),
        canon=canon_t,
        dup=None if canon_t is None else canon_t != torch.arange(K, device=dev)[None, :],
        raw=P,
        G_host=G,
    )


def as_host_array(name: str, a: Any, ndim: int, shape_doc: str) -> np.ndarray:
    """Dtype and rank checked, but not yet converted (elements convert one by one)."""
    if isinstance(a, torch.Tensor):
        if not torch.is_floating_point(a):
            raise _not_float(name, a.dtype)
        if a.dtype == torch.bfloat16:  # numpy has no bfloat16
            a = a.float()
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise _not_float(name, arr.dtype)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D {shape_doc} array, got shape {arr.shape}")
    return arr


# -- torch path (GPU, or CPU with native=True) -----------------------------------------


def _prepare_torch(pools: Any, queries: Any, dev: torch.device) -> BatchProblem:
    X = _as_tensor("pools", pools, 3, "(B, K, d)", dev)
    T = _as_tensor("queries", queries, 2, "(B, d)", dev)
    K = check_batch_shapes(tuple(X.shape), tuple(T.shape))
    X, inv, sq = _inverse_norms("pool", X)
    T3, t_inv, _ = _inverse_norms("query", T[:, None, :], rows_label=False)
    t = T3[:, 0, :] * t_inv
    b = torch.bmm(X, t[:, :, None])[:, :, 0] * inv
    canon = _canonical(X)
    return BatchProblem(
        inv=inv,
        t=t,
        tt=(t * t).sum(dim=1),
        b=b,
        kdiag=sq * inv * inv,
        canon=canon,
        dup=None if canon is None else canon != torch.arange(K, device=dev)[None, :],
        X=X,
    )


def _as_tensor(name: str, a: Any, ndim: int, shape_doc: str, dev: torch.device) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        if not torch.is_floating_point(a):
            raise _not_float(name, a.dtype)
        t = a.detach()
    else:
        t = torch.from_numpy(as_float64(name, a, ndim, shape_doc))
    if t.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D {shape_doc} array, got shape {tuple(t.shape)}")
    return t.to(device=dev, dtype=torch.float64).contiguous()


def _rows_preview(rows: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return f"[{shown}{', ...' if len(rows) > limit else ''}] ({len(rows)} in all)"


def _inverse_norms(
    name: str, X: torch.Tensor, *, rows_label: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X', inv, sq)`` for (B, K, d) rows, as :func:`problem.row_inverse_norms`."""
    sq = torch.einsum("bkd,bkd->bk", X, X)
    lo, hi = SQ_NORM_RANGE
    bad = ~((sq > lo) & (sq < hi))  # also NaN and inf
    if bool(bad.any()):
        for b in torch.nonzero(bad.any(dim=1)).flatten().tolist():
            rows = torch.nonzero(bad[b]).flatten()
            sub = X[b, rows]
            nonfinite = rows[~torch.isfinite(sub).all(dim=1)].tolist()
            if nonfinite:
                where = f" in rows {_rows_preview(nonfinite)}" if rows_label else ""
                raise ValueError(f"batch element {b}: {name} has NaN or inf values{where}")
            zero = rows[~(sub != 0).any(dim=1)].tolist()
            if zero:
                what = f"has all-zero rows {_rows_preview(zero)}" if rows_label else "is all zeros"
                raise ValueError(
                    f"batch element {b}: {name} {what}; a zero embedding has no "
                    "direction: drop it before selection"
                )
        # Finite, non-zero rows too large or too small to square safely: exact rescale.
        X = X.clone()
        _, exp = torch.frexp(X[bad].abs().amax(dim=1))
        X[bad] = torch.ldexp(X[bad], -exp[:, None].to(X.dtype))
        sq = torch.einsum("bkd,bkd->bk", X, X)
    return X, 1.0 / torch.sqrt(sq), sq


def _canonical(X: torch.Tensor) -> torch.Tensor | None:
    """(B, K) first copy of each row, or ``None`` if no element has duplicate rows."""
    B, K, _ = X.shape
    if K < 2:
        return None
    # The (wrapping) sum of the bit patterns is order-free, so identical rows always
    # hash alike. Equal hashes are confirmed exactly, on the CPU, only for the elements
    # that have any.
    h = X.view(torch.int64).sum(dim=2)
    hs = torch.sort(h, dim=1).values
    suspects = torch.nonzero((hs[:, 1:] == hs[:, :-1]).any(dim=1)).flatten().tolist()
    canon = torch.arange(K, device=X.device).expand(B, K).clone()
    found = False
    for b in suspects:
        c = canonical_rows(X[b].cpu().numpy())
        if c is not None:
            canon[b] = torch.from_numpy(c).to(X.device)
            found = True
    return canon if found else None
