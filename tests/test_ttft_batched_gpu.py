"""The batched TTFT engine on CUDA: bf16 autocast, fused kernels, torch.compile.

Run on a GPU machine with ``pytest -m gpu tests/test_ttft_batched_gpu.py``; without
CUDA every test is skipped. The CPU twins are in ``test_ttft_batched.py``.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from hullft.batched import BatchedTTFTEngine, make_engine, stacked_arch
from hullft.config import FinetuneConfig
from hullft.models import build_tiny_model
from hullft.ttft import RuntimePolicy, TTFTEngine, TTFTJob

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

L = 64
QUERY = "Test-time finetuning adapts the model to each prompt before scoring it. " * 3
TEXTS = (
    "Finetuning adapts the model to a prompt.",
    "Each prompt gets fresh weights and a fresh optimizer.",
    "Bits per byte divide the log-likelihood by the UTF-8 size of the text. " * 2,
    "a",
)
JOBS = [
    TTFTJob(QUERY, TEXTS[:3], (3, 1, 2)),
    TTFTJob(QUERY[:70], TEXTS, (1, 1, 1, 1)),
    TTFTJob(QUERY, TEXTS[1:], (2, 2, 1)),
]


def engines(cfg: FinetuneConfig, b: int):
    model, tok = build_tiny_model(context=L)
    seq = TTFTEngine(model, tok, cfg, "cuda")
    model, tok = build_tiny_model(context=L)
    bat = make_engine(model, tok, dataclasses.replace(cfg, batch_jobs=b), "cuda")
    assert isinstance(bat, BatchedTTFTEngine)
    return seq, bat


@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_bf16_fused_batched_equals_sequential_within_1e3_bpb(compile_):
    cfg = FinetuneConfig(lr=1e-3, compile=compile_)
    seq, bat = engines(cfg, 3)
    assert bat.policy == RuntimePolicy(train_autocast="bfloat16", fused=True, compile=compile_)
    bat.warm_up()
    want = seq.run_batch(JOBS)
    got = bat.run_batch(JOBS)
    for g, w in zip(got, want, strict=True):
        assert g.status == w.status == "ok" and g.optimizer_steps == w.optimizer_steps
        assert g.bpb_before == w.bpb_before
        assert abs(g.bpb_after - w.bpb_after) / w.bpb_after <= 1e-3
        assert g.batch_size == 3


def test_reset_stays_on_the_device_and_is_exact():
    model, tok = build_tiny_model(context=L)
    engine = BatchedTTFTEngine(
        model, tok, FinetuneConfig(), "cuda", arch=stacked_arch(model), batch_jobs=2
    )
    engine.run_batch(JOBS[:2])
    engine.reset()
    assert engine._state is not None and engine._state.weights.is_cuda
    assert all(torch.equal(row, engine._base) for row in engine._state.weights)
    assert math.isfinite(engine.evaluate(QUERY).bpb)
