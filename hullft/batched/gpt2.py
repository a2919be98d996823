"""GPT-2 (the HullFT paper's model) over stacked weights.

Mirrors ``transformers``' ``GPT2LMHeadModel``: learned absolute positions,
pre-norm LayerNorm blocks, ``Conv1D`` layers (weights stored ``(in, out)``), fused
q/k/v projection, the configured activation (``gelu_new`` for the released
checkpoints) and an ``lm_head`` tied to the token embedding.

The released checkpoints train with dropout 0.1; random masks cannot be matched
job by job, so a config with any dropout is refused (the caller falls back to the
one-at-a-time engine). Set ``resid_pdrop = embd_pdrop = attn_pdrop = 0`` to batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.activations import ACT2FN

from hullft.batched.arch import (
    Params,
    causal_attention,
    conv1d,
    embed,
    heads,
    linear,
    merge_heads,
    require,
    require_names,
    rows_of,
)


class GPT2Stacked:
    """:class:`~hullft.batched.arch.StackedArch` for ``GPT2LMHeadModel``."""

    name = "gpt2"

    def __init__(self, model: Any) -> None:
        cfg = model.config
        require(
            type(model).__name__ == "GPT2LMHeadModel",
            f"gpt2: {type(model).__name__} is not GPT2LMHeadModel",
        )
        drops = {
            k: float(getattr(cfg, k, 0.0) or 0.0)
            for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")
        }
        require(
            not any(drops.values()),
            f"gpt2: dropout {drops} (random masks cannot be matched job by job; set them to 0)",
        )
        require(not getattr(cfg, "add_cross_attention", False), "gpt2: cross-attention")
        require(
            not getattr(cfg, "scale_attn_by_inverse_layer_idx", False),
            "gpt2: scale_attn_by_inverse_layer_idx",
        )
        require(not getattr(cfg, "reorder_and_upcast_attn", False), "gpt2: reorder_and_upcast_attn")
        require(
            model.lm_head.weight is model.transformer.wte.weight and model.lm_head.bias is None,
            "gpt2: an lm_head not tied to the token embedding",
        )
        require(cfg.activation_function in ACT2FN, f"gpt2: activation {cfg.activation_function!r}")
        self.act = ACT2FN[cfg.activation_function]
        self.layers = int(cfg.n_layer)
        self.head_dim = int(cfg.n_embd) // int(cfg.n_head)
        self.scale = self.head_dim**-0.5 if getattr(cfg, "scale_attn_weights", True) else 1.0
        self.eps = float(cfg.layer_norm_epsilon)
        names = {"transformer.wte.weight", "transformer.wpe.weight"}
        names |= {"transformer.ln_f.weight", "transformer.ln_f.bias"}
        for i in range(self.layers):
            pre = f"transformer.h.{i}."
            for part in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                names |= {f"{pre}{part}.weight", f"{pre}{part}.bias"}
        require_names(model, names, "gpt2")

    def _norm(self, x: torch.Tensor, p: Params, name: str) -> torch.Tensor:
        h = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return h * p[name + ".weight"].unsqueeze(1) + p[name + ".bias"].unsqueeze(1)

    def hidden(self, params: Params, input_ids: torch.Tensor) -> torch.Tensor:
        p = params
        ids = rows_of(input_ids)
        b, rows, t = ids.shape
        tokens = embed(p["transformer.wte.weight"], ids.reshape(b, rows * t))  # (B, R·T, D)
        d = tokens.shape[-1]
        positions = p["transformer.wpe.weight"][:, None, :t]  # (B, 1, T, D)
        h = (tokens.view(b, rows, t, d) + positions).view(b, rows * t, d)
        for i in range(self.layers):
            pre = f"transformer.h.{i}."
            a = self._norm(h, p, pre + "ln_1")
            qkv = conv1d(a, p[pre + "attn.c_attn.weight"], p[pre + "attn.c_attn.bias"])
            q, k, v = (heads(x, self.head_dim, rows) for x in qkv.split(d, dim=2))
            o = merge_heads(causal_attention(q, k, v, self.scale), b)
            h = h + conv1d(o, p[pre + "attn.c_proj.weight"], p[pre + "attn.c_proj.bias"])
            m = self._norm(h, p, pre + "ln_2")
            m = self.act(conv1d(m, p[pre + "mlp.c_fc.weight"], p[pre + "mlp.c_fc.bias"]))
            h = h + conv1d(m, p[pre + "mlp.c_proj.weight"], p[pre + "mlp.c_proj.bias"])
        return self._norm(h, p, "transformer.ln_f")

    def logits(self, params: Params, hidden: torch.Tensor) -> torch.Tensor:
        return linear(hidden, params["transformer.wte.weight"], None)
