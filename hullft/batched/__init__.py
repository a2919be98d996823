"""Batched multi-job test-time finetuning (docs/design.md §4.5b, docs/ttft.md).

- :func:`make_engine` — the engine a worker should build: batched when
  ``finetune.batch_jobs`` > 1 and the architecture is supported, else sequential;
- :class:`BatchedTTFTEngine` — B jobs at once, each exact (``engine``);
- :class:`BatchedOptimizer` — per-job Adam/AdamW/SGD on stacked rows (``optim``);
- the batched forwards: Llama (``llama``), GPT-2 (``gpt2``), shared layers (``arch``).
"""

from hullft.batched.arch import StackedArch, UnsupportedModel
from hullft.batched.engine import BatchedTTFTEngine
from hullft.batched.factory import job_bytes, make_engine, resolve_batch_jobs, stacked_arch
from hullft.batched.optim import BatchedOptimizer

__all__ = [
    "BatchedOptimizer",
    "BatchedTTFTEngine",
    "StackedArch",
    "UnsupportedModel",
    "job_bytes",
    "make_engine",
    "resolve_batch_jobs",
    "stacked_arch",
]
