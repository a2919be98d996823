"""Choosing the engine: how many jobs at once (``finetune.batch_jobs``), and the
batched engine when the architecture has a batched forward, else the sequential one.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from hullft.batched.arch import StackedArch, UnsupportedModel
from hullft.batched.engine import BatchedTTFTEngine
from hullft.batched.gpt2 import GPT2Stacked
from hullft.batched.llama import LlamaStacked
from hullft.bpb import resolve_max_length
from hullft.config import FinetuneConfig
from hullft.ttft import RuntimePolicy, TTFTEngine

log = logging.getLogger(__name__)

CPU_AUTO_BATCH = 16
"""``batch_jobs: auto`` on a CPU for a model below :data:`CPU_AUTO_MAX_PARAMS`, if
that many jobs fit in half the available host memory: the fastest B measured for the
tiny model (2.08x the one-at-a-time engine; docs/ttft.md, "Batched finetuning")."""
CPU_AUTO_MAX_PARAMS = 10_000_000
"""``auto`` on a CPU trains one job at a time from this many parameters up: a CPU is
compute-bound there and batching only adds work (SmolLM2-135M on 2 threads: B = 2 at
0.83x, B = 4 at 0.79x the one-at-a-time engine; docs/ttft.md). The threshold lies
between the two models measured; it is a rule of thumb, not a fitted boundary."""
MAX_AUTO_BATCH = 64
"""Upper bound of ``auto`` on a GPU: past it kernels are large already."""
BYTES_PER_PARAM = 24
"""Per job and parameter: fp32 weights, gradient and two Adam moments (16 bytes),
plus the fresh gradient before it is copied to its row and a gathered weight copy
when only some jobs are fresh (8)."""
ACTIVATION_FLOATS_PER_TOKEN_LAYER_HIDDEN = 24
"""Saved activations per token, layer and hidden unit, in 4-byte floats (norms,
q/k/v, attention output, MLP intermediates at ~3x width)."""
LOGIT_BYTES_PER_TOKEN_VOCAB = 12
"""Per token and vocabulary entry: logits (bf16 or fp32), their fp32 copy and its
gradient."""
AUTO_MEMORY_FRACTION = 0.8
"""Share of the free device memory ``auto`` plans for (the rest is headroom for
the allocator and the scoring pass)."""


def stacked_arch(model: Any) -> StackedArch:
    """The batched forward for ``model``'s architecture, or :class:`UnsupportedModel`
    saying what is not implemented."""
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind == "llama":
        return LlamaStacked(model)
    if kind == "gpt2":
        return GPT2Stacked(model)
    raise UnsupportedModel(
        f"architecture {kind!r} ({type(model).__name__}) has no batched forward; "
        "implemented: llama (SmolLM2, the tiny test model) and gpt2"
    )


def job_bytes(model: Any, max_length: int) -> int:
    """Device memory one job needs while training, by the documented formula:
    ``BYTES_PER_PARAM · params + max_length · (4 · 24 · layers · hidden + 12 · vocab)``."""
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    layers = int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None) or 1)
    hidden = int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or 1)
    vocab = int(getattr(cfg, "vocab_size", 1))
    per_token = 4 * ACTIVATION_FLOATS_PER_TOKEN_LAYER_HIDDEN * layers * hidden
    per_token += LOGIT_BYTES_PER_TOKEN_VOCAB * vocab
    return BYTES_PER_PARAM * params + max_length * per_token


def host_available_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), else ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resolve_batch_jobs(
    config: FinetuneConfig, model: Any, device: torch.device, max_length: int
) -> int:
    """``finetune.batch_jobs`` as a number: as configured, or for ``auto`` on CUDA
    ``⌊0.8 · free memory / job_bytes⌋`` clamped to [1, 64]; on a CPU
    :data:`CPU_AUTO_BATCH` for a model below :data:`CPU_AUTO_MAX_PARAMS` parameters
    (else 1), or fewer if that many do not fit in half the available host memory."""
    if config.batch_jobs != "auto":
        return int(config.batch_jobs)
    if device.type != "cuda":
        if sum(p.numel() for p in model.parameters()) >= CPU_AUTO_MAX_PARAMS:
            return 1
        host = host_available_bytes()
        if host is None:
            return CPU_AUTO_BATCH
        return max(1, min(CPU_AUTO_BATCH, host // 2 // job_bytes(model, max_length)))
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(AUTO_MEMORY_FRACTION * free // job_bytes(model, max_length))
    b = max(1, min(MAX_AUTO_BATCH, fits))
    log.info(
        "finetune.batch_jobs=auto: %d jobs at once (%.1f GiB free, %.2f GiB per job)",
        b,
        free / 2**30,
        job_bytes(model, max_length) / 2**30,
    )
    return b


def make_engine(
    model: Any,
    tokenizer: Any,
    config: FinetuneConfig,
    device: str | torch.device,
    max_length: int | None = None,
    *,
    policy: RuntimePolicy | None = None,
) -> TTFTEngine | BatchedTTFTEngine:
    """The engine a model worker uses: :class:`BatchedTTFTEngine` when
    ``config.batch_jobs`` resolves to more than one job and the architecture has a
    batched forward, else :class:`~hullft.ttft.TTFTEngine` (saying why in one log
    line when it falls back). Both give the same results per job."""
    dev = torch.device(device)
    length = resolve_max_length(max_length, model)
    b = resolve_batch_jobs(config, model, dev, length)
    if b == 1:
        log.info("finetuning one job at a time (finetune.batch_jobs resolves to 1)")
        return TTFTEngine(model, tokenizer, config, dev, length, policy=policy)
    try:
        arch = stacked_arch(model)
    except UnsupportedModel as why:
        log.warning(
            "finetune.batch_jobs=%s: finetuning one job at a time instead, because %s",
            config.batch_jobs,
            why,
        )
        return TTFTEngine(model, tokenizer, config, dev, length, policy=policy)
    return BatchedTTFTEngine(
        model, tokenizer, config, dev, length, arch=arch, batch_jobs=b, policy=policy
    )
