"""The TTFT engine's CUDA path: bf16 autocast, fused optimizers, on-device reset.

Run on a GPU machine with ``pytest -m gpu tests/test_ttft_gpu.py``; without CUDA
every test is skipped. The CPU twins of these tests (the same policy and code on
CPU) are in ``test_ttft.py`` and run in CI.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from hullft.bpb import bits_per_byte
from hullft.config import FinetuneConfig
from hullft.models import build_tiny_model
from hullft.ttft import RuntimePolicy, TTFTEngine, build_optimizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

L = 64
QUERY = "Test-time finetuning adapts the model to each prompt before scoring it. " * 3
TEXTS = [
    "Finetuning adapts the model to a prompt.",
    "Each prompt gets fresh weights and a fresh optimizer.",
    "Bits per byte divide the log-likelihood by the UTF-8 size of the text. " * 2,
]
COUNTS = [3, 1, 2]


def tiny(device: str = "cuda"):
    model, tok = build_tiny_model(context=L)
    return model.to(device), tok


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model, base: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, base[k]), k


def test_default_cuda_policy_is_bf16_autocast_and_fused_adam():
    model, tok = tiny()
    engine = TTFTEngine(model, tok, FinetuneConfig(), "cuda")
    assert engine.policy == RuntimePolicy(train_autocast="bfloat16", fused=True)
    opt = build_optimizer(list(model.parameters()), engine.config, engine.policy)
    assert opt.param_groups[0]["fused"]
    model, tok = tiny()
    off = TTFTEngine(model, tok, FinetuneConfig(bf16=False, fused=False), "cuda")
    assert off.policy == RuntimePolicy()


def test_bf16_run_trains_and_restores_the_weights_bit_for_bit():
    model, tok = tiny()
    base = state(model)
    engine = TTFTEngine(model, tok, FinetuneConfig(lr=1e-3), "cuda")
    assert all(t.is_cuda for t in engine._snapshot)
    res = engine.run(QUERY, TEXTS, COUNTS)
    assert res.status == "ok"
    assert math.isfinite(res.bpb_after) and res.bpb_after < res.bpb_before
    assert res.fwd_bwd_passes == 4 and res.optimizer_steps == 6
    assert_bit_identical(model, base)
    assert all(p.grad is None for p in model.parameters())


def test_reset_never_touches_host_memory():
    from torch.profiler import ProfilerActivity, profile

    model, tok = tiny()
    engine = TTFTEngine(model, tok, FinetuneConfig(lr=1e-3), "cuda")
    engine.run(QUERY, TEXTS, COUNTS)  # warm up
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        engine.reset()
        torch.cuda.synchronize()
    names = [e.name for e in prof.events()]
    assert not [n for n in names if "HtoD" in n or "DtoH" in n], names
    # A whole query moves only token ids to the device: kilobytes, not the weights.
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        engine.run(QUERY, TEXTS, COUNTS)
    htod = [e.name for e in prof.events() if "HtoD" in e.name]
    # (A state-dict reload alone would copy every one of the model's tensors.)
    assert len(htod) < len(model.state_dict()), htod


def test_fused_reuse_matches_a_plain_loop_on_cuda():
    """Reuse with fused Adam under bf16 autocast = J fused steps on the same gradient."""
    cfg = FinetuneConfig(refresh_interval=2, lr=1e-3)
    model, tok = tiny()
    ref_model = copy.deepcopy(model)
    engine = TTFTEngine(model, tok, cfg, "cuda")
    params = list(model.parameters())
    seen: list[torch.Tensor] = []
    handle = register_optimizer_step_post_hook(
        lambda opt, a, k: seen.append(torch.cat([p.detach().flatten() for p in params]).clone())
    )
    try:
        engine.run(QUERY, TEXTS, COUNTS)
    finally:
        handle.remove()

    ref_params = list(ref_model.parameters())
    opt = torch.optim.Adam(ref_params, lr=cfg.lr, eps=cfg.eps, fused=True)
    ref_model.train()
    want = []
    for text, n in zip(TEXTS, COUNTS, strict=True):
        ids = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]][:L]
        x = torch.tensor([ids], device="cuda")
        saved: list[torch.Tensor] = []
        for j in range(n):
            if j % cfg.refresh_interval == 0:
                opt.zero_grad()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = ref_model(input_ids=x).logits
                F.cross_entropy(logits[0, :-1].float(), x[0, 1:]).backward()
                saved = [p.grad.clone() for p in ref_params]
            else:
                for p, g in zip(ref_params, saved, strict=True):
                    p.grad = g.clone()
            opt.step()
            want.append(torch.cat([p.detach().flatten() for p in ref_params]).clone())
    assert len(seen) == len(want) == sum(COUNTS)
    for got, exp in zip(seen, want, strict=True):
        # Embedding backward accumulates with atomics on CUDA: equal up to rounding.
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_optimizers_never_write_to_grad(name):
    model, tok = tiny()
    cfg = FinetuneConfig(optimizer=name, weight_decay=0.1, momentum=0.9)
    params = list(model.parameters())
    opt = build_optimizer(params, cfg, RuntimePolicy(fused=True))
    x = torch.tensor([[tok.bos_token_id, *tok(TEXTS[0])["input_ids"]]], device="cuda")
    F.cross_entropy(model(input_ids=x).logits[0, :-1], x[0, 1:]).backward()
    grads = [p.grad.clone() for p in params]
    for _ in range(3):
        opt.step()
    for p, g in zip(params, grads, strict=True):
        assert torch.equal(p.grad, g)


def test_cuda_fp32_agrees_with_cpu():
    cfg = FinetuneConfig(bf16=False, fused=False, lr=1e-3)
    model, tok = build_tiny_model(context=L)
    cpu = TTFTEngine(copy.deepcopy(model), tok, cfg, "cpu").run(QUERY, TEXTS, COUNTS)
    gpu = TTFTEngine(model, tok, cfg, "cuda").run(QUERY, TEXTS, COUNTS)
    assert gpu.bpb_before == pytest.approx(cpu.bpb_before, rel=1e-4)
    assert gpu.bpb_after == pytest.approx(cpu.bpb_after, rel=1e-3)
    assert (gpu.fwd_bwd_passes, gpu.optimizer_steps) == (cpu.fwd_bwd_passes, cpu.optimizer_steps)


def test_repeated_queries_agree_and_bpb_scoring_matches_cpu():
    model, tok = tiny()
    engine = TTFTEngine(model, tok, FinetuneConfig(lr=1e-3), "cuda")
    first, again = engine.run(QUERY, TEXTS, COUNTS), engine.run(QUERY, TEXTS, COUNTS)
    assert again.bpb_before == first.bpb_before
    assert again.bpb_after == pytest.approx(first.bpb_after, rel=1e-5)
    on_cpu = bits_per_byte(copy.deepcopy(model).cpu(), tok, QUERY)
    assert first.bpb_before == pytest.approx(on_cpu.bpb, rel=1e-4)


def test_time_budget_on_cuda():
    model, tok = tiny()
    res = TTFTEngine(model, tok, FinetuneConfig(time_budget_s=0.0), "cuda").run(
        QUERY, TEXTS, COUNTS
    )
    assert res.status == "budget_exhausted" and res.optimizer_steps == 0


def test_compiled_bf16_step_compiles_once_and_agrees_with_eager():
    """finetune.compile on CUDA with the default bf16 autocast and fused Adam."""
    from torch._dynamo.utils import counters

    model, tok = tiny()
    base = state(model)
    engine = TTFTEngine(model, tok, FinetuneConfig(lr=1e-3, compile=True), "cuda")
    assert engine.warm_up() > 0
    graphs = counters["stats"]["unique_graphs"]
    res = engine.run(QUERY, TEXTS, COUNTS)
    engine.run("Another query, other lengths.", [t[:17] for t in TEXTS], [1, 2, 1])
    assert counters["stats"]["unique_graphs"] == graphs  # one graph for every length
    assert res.status == "ok" and res.bpb_after < res.bpb_before
    assert_bit_identical(model, base)
    eager_model, _ = tiny()
    eager = TTFTEngine(eager_model, tok, FinetuneConfig(lr=1e-3), "cuda").run(QUERY, TEXTS, COUNTS)
    assert res.bpb_before == eager.bpb_before
    # bf16 forward in both; the compiled kernels round differently
    assert res.mean_train_loss == pytest.approx(eager.mean_train_loss, rel=2e-2)
    assert res.bpb_after == pytest.approx(eager.bpb_after, rel=2e-2)
