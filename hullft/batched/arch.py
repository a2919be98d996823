"""Batched-weight forward passes: B copies of one architecture, each with its own
weights, in one set of kernels (docs/design.md §4.5b).

Every supported architecture is a :class:`StackedArch`: it reads a Hugging Face
model's configuration, refuses anything it does not implement (raising
:class:`UnsupportedModel` with the reason, so the caller can fall back to the
one-at-a-time engine), and computes hidden states and logits from *stacked*
parameters — a mapping from the model's parameter names to tensors with a leading
job dimension, ``[B, *shape]``. Linear layers become ``bmm``; embeddings are
gathered per job; norms scale by per-job weights. Nothing here holds state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

Params = Mapping[str, torch.Tensor]
"""Parameter name (as in ``model.named_parameters()``) -> ``[B, *shape]``."""


class UnsupportedModel(ValueError):
    """The batched engine does not implement this model (the message says why)."""


class StackedArch(Protocol):
    """One architecture's forward pass over stacked per-job parameters."""

    name: str

    def hidden(self, params: Params, input_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``(B, R·T, D)`` for right-padded ``input_ids`` of shape
        ``(B, T)`` or ``(B, R, T)``: R independent rows per job, all with that job's
        weights. Attention is causal within a row, so a real token never sees a pad
        after it, nor another row."""
        ...

    def logits(self, params: Params, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N, V)`` for hidden states ``(B, N, D)`` (any positions)."""
        ...


@dataclass(frozen=True)
class Layout:
    """Where each trainable parameter lives in one job's flat parameter vector, in
    ``model.named_parameters()`` order (tied weights once)."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    offsets: tuple[int, ...]
    numel: int

    @classmethod
    def of(cls, model: Any) -> Layout:
        names, shapes, offsets = [], [], []
        total = 0
        for name, p in model.named_parameters():
            names.append(name)
            shapes.append(p.shape)
            offsets.append(total)
            total += p.numel()
        return cls(tuple(names), tuple(shapes), tuple(offsets), total)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``flat (B, numel)`` as ``{name: (B, *shape)}`` views (no copies)."""
        b = flat.shape[0]
        return {
            name: flat[:, off : off + math.prod(shape)].view(b, *shape)
            for name, shape, off in zip(self.names, self.shapes, self.offsets, strict=True)
        }


def require(ok: bool, why: str) -> None:
    if not ok:
        raise UnsupportedModel(why)


def require_names(model: Any, expected: set[str], arch: str) -> None:
    """Every trainable parameter is one the forward uses, and vice versa, so no
    unknown feature (an extra bias, an adapter) is silently left out."""
    got = {n for n, _ in model.named_parameters()}
    missing, extra = sorted(expected - got), sorted(got - expected)
    require(
        not missing and not extra,
        f"{arch}: parameters differ from the implemented forward "
        f"(missing {missing[:3]}, unexpected {extra[:3]})",
    )
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    require(not frozen, f"{arch}: frozen parameters ({frozen[:3]}) are not implemented")
    odd = sorted({str(p.dtype) for p in model.parameters()} - {"torch.float32"})
    require(not odd, f"{arch}: parameters in {odd}; load the model in fp32")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x (B, T, in) @ weight (B, out, in)ᵀ + bias (B, out)`` — ``nn.Linear`` per job."""
    y = torch.bmm(x, weight.transpose(1, 2))
    return y if bias is None else y + bias.unsqueeze(1)


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GPT-2's ``Conv1D`` per job: ``x (B, T, in) @ weight (B, in, out) + bias``."""
    return torch.bmm(x, weight) + bias.unsqueeze(1)


def embed(table: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Row ``input_ids[b, t]`` of job b's ``table (B, V, D)`` -> ``(B, T, D)``.

    One ``F.embedding`` per job on its own (contiguous) table: its backward is the
    dense embedding backward, several times faster on CPU than the scatter-add that
    advanced indexing over the stacked table needs."""
    return torch.stack([F.embedding(ids, t) for ids, t in zip(input_ids, table, strict=True)])


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
) -> torch.Tensor:
    """SDPA over the natural batch dimension: ``(B, H, T, hd)``, causal; key/value
    heads are repeated for grouped-query attention."""
    if k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)


def rows_of(input_ids: torch.Tensor) -> torch.Tensor:
    """``input_ids`` as ``(B, R, T)`` (a ``(B, T)`` input is one row per job)."""
    return input_ids.unsqueeze(1) if input_ids.dim() == 2 else input_ids


def heads(x: torch.Tensor, head_dim: int, rows: int) -> torch.Tensor:
    """``(B, R·T, H·hd)`` -> ``(B·R, H, T, hd)``: every row its own attention batch."""
    b, n, _ = x.shape
    return x.view(b * rows, n // rows, -1, head_dim).transpose(1, 2)


def merge_heads(x: torch.Tensor, jobs: int) -> torch.Tensor:
    """``(B·R, H, T, hd)`` -> ``(B, R·T, H·hd)``."""
    _, h, _, hd = x.shape
    return x.transpose(1, 2).reshape(jobs, -1, h * hd)
