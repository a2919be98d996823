"""The published TTFT procedure, implemented naively — for comparison only.

Written the way the HullFT issue tracker describes the published code: every
sequence tokenized and padded to ``max_length`` on every pass, fp32, the gradient
cloned after every fresh pass and copied back for every reuse, the state dict
reloaded from a host copy for every query, and the query scored (truncated, first
token unscored, divided by the bytes of the whole text) before and after for every
method. ``benchmarks/bench_ttft.py`` and ``hullft bench`` time hullft's
:class:`~hullft.ttft.TTFTEngine` against it on the same model and multisets.
Never use it to report results.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from hullft.config import FinetuneConfig

LN2 = math.log(2.0)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PublishedProcedure:
    """A naive implementation of the published TTFT procedure, for comparison only."""

    def __init__(
        self, model: Any, tokenizer: Any, max_length: int, cfg: FinetuneConfig, device: str
    ) -> None:
        self.model = model
        self.tok = tokenizer
        self.max_length = max_length
        self.cfg = cfg
        self.device = torch.device(device)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        # The base weights are kept in host memory and loaded back for every query.
        self.host_state = {
            k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
        }

    def _encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        enc = self.tok(
            text,
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device)
        return ids, mask, ids.masked_fill(mask == 0, -100)

    def bpb(self, query: str) -> float:
        """Truncated, first token unscored, divided by the bytes of the whole text."""
        ids, mask, labels = self._encode(query)
        with torch.no_grad():
            loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
        n_scored = int(mask.sum()) - 1
        return float(loss) * n_scored / LN2 / len(query.encode("utf-8"))

    def run(self, query: str, texts: Sequence[str], counts: Sequence[int]) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.model.load_state_dict(self.host_state)
        params = list(self.model.parameters())
        opt = torch.optim.Adam(params, lr=self.cfg.lr, betas=self.cfg.betas, eps=self.cfg.eps)
        self.model.eval()
        synchronize(self.device)
        t1 = time.perf_counter()
        before = self.bpb(query)
        t2 = time.perf_counter()
        self.model.train()
        passes = processed = 0
        for text, n in zip(texts, counts, strict=True):
            saved: list[torch.Tensor] = []
            for j in range(n):
                if j % self.cfg.refresh_interval == 0:
                    ids, mask, labels = self._encode(text)
                    opt.zero_grad()
                    loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
                    loss.backward()
                    saved = [p.grad.clone() for p in params]
                    passes += 1
                    processed += ids.numel()
                else:
                    for p, g in zip(params, saved, strict=True):
                        p.grad.copy_(g)
                opt.step()
        self.model.eval()
        synchronize(self.device)
        t3 = time.perf_counter()
        after = self.bpb(query)
        t4 = time.perf_counter()
        return {
            "before": before,
            "after": after,
            "passes": passes,
            "processed": processed,
            "scored": 2 * self.max_length,
            "reload_s": t1 - t0,
            "finetune_s": t3 - t2,
            "evaluate_s": (t2 - t1) + (t4 - t3),
        }
