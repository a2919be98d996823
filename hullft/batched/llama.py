"""The Llama family (SmolLM2, hullft's tiny test model) over stacked weights.

Mirrors ``transformers``' ``LlamaForCausalLM`` forward: pre-norm decoder layers,
RMSNorm computed in fp32, rotary embeddings, grouped-query attention, a gated MLP
(``down(act(gate(x)) * up(x))``), an optionally tied ``lm_head``. The rotary cos/sin
come from the model's own rotary module (so every static RoPE variant and its
scaling is exactly Hugging Face's); RoPE types whose frequencies depend on the
sequence length are refused, because padding would change them.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.activations import ACT2FN

from hullft.batched.arch import (
    Params,
    causal_attention,
    embed,
    heads,
    linear,
    merge_heads,
    require,
    require_names,
    rows_of,
)

# RoPE variants whose cos/sin depend only on the position (not on the length of
# the batch), so right-padding cannot change them.
STATIC_ROPE = ("default", "linear", "llama3", "yarn")


class LlamaStacked:
    """:class:`~hullft.batched.arch.StackedArch` for ``LlamaForCausalLM``."""

    name = "llama"

    def __init__(self, model: Any) -> None:
        cfg = model.config
        require(
            type(model).__name__ == "LlamaForCausalLM",
            f"llama: {type(model).__name__} is not LlamaForCausalLM",
        )
        require(getattr(cfg, "pretraining_tp", 1) == 1, "llama: pretraining_tp > 1")
        require(
            float(getattr(cfg, "attention_dropout", 0.0) or 0.0) == 0.0,
            "llama: attention dropout (random masks cannot be matched job by job)",
        )
        rope = getattr(model.model.rotary_emb, "rope_type", "default")
        require(rope in STATIC_ROPE, f"llama: RoPE type {rope!r} depends on the sequence length")
        require(cfg.hidden_act in ACT2FN, f"llama: activation {cfg.hidden_act!r}")
        self.act = ACT2FN[cfg.hidden_act]
        self.layers = int(cfg.num_hidden_layers)
        self.head_dim = int(
            getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        )
        self.scale = self.head_dim**-0.5
        self.eps = float(cfg.rms_norm_eps)
        self.rotary = model.model.rotary_emb
        self.attn_bias = bool(getattr(cfg, "attention_bias", False))
        self.mlp_bias = bool(getattr(cfg, "mlp_bias", False))
        self.tied = model.lm_head.weight is model.model.embed_tokens.weight
        names = {"model.embed_tokens.weight", "model.norm.weight"}
        if not self.tied:
            names.add("lm_head.weight")
        require(getattr(model.lm_head, "bias", None) is None, "llama: lm_head bias")
        for i in range(self.layers):
            pre = f"model.layers.{i}."
            names |= {pre + "input_layernorm.weight", pre + "post_attention_layernorm.weight"}
            for proj in ("q", "k", "v", "o"):
                names.add(f"{pre}self_attn.{proj}_proj.weight")
                if self.attn_bias:
                    names.add(f"{pre}self_attn.{proj}_proj.bias")
            for proj in ("gate", "up", "down"):
                names.add(f"{pre}mlp.{proj}_proj.weight")
                if self.mlp_bias:
                    names.add(f"{pre}mlp.{proj}_proj.bias")
        require_names(model, names, "llama")

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # LlamaRMSNorm: statistics in fp32, weight applied in the input dtype.
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight.unsqueeze(1) * h.to(dtype)

    def hidden(self, params: Params, input_ids: torch.Tensor) -> torch.Tensor:
        p = params
        ids = rows_of(input_ids)
        b, rows, t = ids.shape
        h = embed(p["model.embed_tokens.weight"], ids.reshape(b, rows * t))  # (B, R·T, D)
        positions = torch.arange(t, device=input_ids.device).unsqueeze(0)
        cos, sin = self.rotary(h, positions)  # (1, T, hd)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)

        def rope(x: torch.Tensor) -> torch.Tensor:
            half = x.shape[-1] // 2
            rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
            return x * cos + rotated * sin

        for i in range(self.layers):
            pre = f"model.layers.{i}."
            a = self._norm(h, p[pre + "input_layernorm.weight"])

            def proj(name: str, x: torch.Tensor, bias: bool, pre: str = pre) -> torch.Tensor:
                return linear(
                    x, p[pre + name + ".weight"], p[pre + name + ".bias"] if bias else None
                )

            q = rope(heads(proj("self_attn.q_proj", a, self.attn_bias), self.head_dim, rows))
            k = rope(heads(proj("self_attn.k_proj", a, self.attn_bias), self.head_dim, rows))
            v = heads(proj("self_attn.v_proj", a, self.attn_bias), self.head_dim, rows)
            o = merge_heads(causal_attention(q, k, v, self.scale), b)
            h = h + proj("self_attn.o_proj", o, self.attn_bias)
            m = self._norm(h, p[pre + "post_attention_layernorm.weight"])
            gated = self.act(proj("mlp.gate_proj", m, self.mlp_bias)) * proj(
                "mlp.up_proj", m, self.mlp_bias
            )
            h = h + proj("mlp.down_proj", gated, self.mlp_bias)
        return self._norm(h, p["model.norm.weight"])

    def logits(self, params: Params, hidden: torch.Tensor) -> torch.Tensor:
        head = params["model.embed_tokens.weight" if self.tied else "lm_head.weight"]
        return linear(hidden, head, None)
