"""The batched TTFT engine (hullft.batched) against the sequential engine, job by job.

Every comparison runs the same jobs through :class:`hullft.ttft.TTFTEngine` one at a
time and through :class:`hullft.batched.BatchedTTFTEngine` together, and holds each
job to the contract of docs/design.md §4.5b: the same result fields, BPB within 1e-5
relative and the weights after *every* step within 1e-5 (per tensor, in norm).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from hullft.batched import (
    BatchedTTFTEngine,
    job_bytes,
    make_engine,
    resolve_batch_jobs,
    stacked_arch,
)
from hullft.batched.arch import Layout, UnsupportedModel
from hullft.batched.factory import CPU_AUTO_BATCH
from hullft.config import FinetuneConfig
from hullft.models import build_tiny_model
from hullft.ttft import RuntimePolicy, TTFTEngine, TTFTJob, TTFTResult
from tests.fixtures.models import peaked_llama

pytestmark = pytest.mark.usefixtures("one_torch_thread")

L = 48
Q_SHORT = "Test-time finetuning adapts the model to each prompt before scoring it."
Q_LONG = "A query longer than the context is scored in rolling windows. " * 5  # 12 windows
POISON = "this sequence gets a non-finite loss"
TEXTS = (
    "Finetuning adapts the model to a prompt.",
    "Each prompt gets fresh weights and a fresh optimizer.",
    "Bits per byte divide the log-likelihood by the UTF-8 size of the text, " * 2,  # truncated
    "a",  # BOS + one token: one target
    "",  # BOS only: nothing to predict, its steps are skipped
    "kNN picks each neighbour once.",
)
JOBS = (
    TTFTJob(Q_SHORT, TEXTS[:3], (3, 1, 2)),  # HullFT-like: repeated sequences
    TTFTJob(Q_LONG, TEXTS, (1, 1, 1, 1, 1, 1)),  # kNN-like: all distinct, ragged
    TTFTJob(Q_SHORT, (TEXTS[0], TEXTS[3]), (0, 0)),  # zero steps
    TTFTJob(" \n ", TEXTS[:2], (2, 1)),  # blank query
    TTFTJob(Q_LONG, (TEXTS[1], POISON, TEXTS[3]), (2, 3, 1)),  # non-finite on its 2nd seq
    TTFTJob(Q_SHORT, (TEXTS[5], TEXTS[4], TEXTS[2]), (4, 2, 1)),
)
TIMING = {"finetune_s", "evaluate_s", "reset_s", "batch_size"}
FLOATS = {"bpb_before", "bpb_after", "mean_train_loss"}
RTOL = 1e-5


def tiny():
    return build_tiny_model(context=L)


def tiny_gpt2(dropout: float = 0.0):
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = tiny()
    cfg = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        vocab_size=len(tok),
        n_positions=L,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return GPT2LMHeadModel(cfg), tok


def poison_ids(tok) -> list[int]:
    return [tok.bos_token_id, *tok(POISON, add_special_tokens=False)["input_ids"]]


def run_sequential(build, cfg: FinetuneConfig, jobs, policy=None):
    """Results and per-job weight trajectories of the one-at-a-time engine."""
    model, tok = build()
    engine = TTFTEngine(model, tok, cfg, "cpu", policy=policy)
    poison = torch.tensor([poison_ids(tok)])
    loss = engine._train_loss

    def poisoned(input_ids: torch.Tensor) -> torch.Tensor:
        out = loss(input_ids)
        same = input_ids.shape == poison.shape and torch.equal(input_ids, poison)
        return out * float("nan") if same else out

    engine._train_loss = poisoned
    params = list(model.parameters())
    seen: list[torch.Tensor] = []
    handle = register_optimizer_step_post_hook(
        lambda *_: seen.append(torch.cat([p.detach().flatten() for p in params]).clone())
    )
    results, paths = [], []
    try:
        for job in jobs:
            seen.clear()
            results.append(engine.run(job.query, job.texts, job.counts, base=job.base))
            paths.append(list(seen))
    finally:
        handle.remove()
    return results, paths


def batched_engine(build, cfg: FinetuneConfig, b: int, *, clock=None, policy=None):
    model, tok = build()
    paths: dict[int, list[torch.Tensor]] = {}

    def hook(job: int, step: int, weights: torch.Tensor) -> None:
        if step == 1:  # a new run of this job index
            paths[job] = []
        paths[job].append(weights.detach().clone())
        assert len(paths[job]) == step

    extra = {"clock": clock} if clock is not None else {}
    engine = BatchedTTFTEngine(
        model,
        tok,
        cfg,
        "cpu",
        arch=stacked_arch(model),
        batch_jobs=b,
        step_hook=hook,
        policy=policy,
        **extra,
    )
    poison = poison_ids(tok)
    losses = engine._loss_fn

    def poisoned(params, input_ids, n_targets):
        out = losses(params, input_ids, n_targets)
        bad = [
            n.item() + 1 == len(poison) and input_ids[r, : len(poison)].tolist() == poison
            for r, n in enumerate(n_targets)
        ]
        mask = torch.tensor([math.nan if x else 1.0 for x in bad])
        return out * mask

    engine._loss_fn = poisoned
    return engine, paths


def run_batched(build, cfg: FinetuneConfig, jobs, b: int, **kw):
    engine, paths = batched_engine(build, cfg, b, **kw)
    results = engine.run_batch(jobs)
    return results, [paths.get(i, []) for i in range(len(jobs))], engine


def rel(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b) / max(abs(a), 1e-30)


def assert_same_result(got: TTFTResult, want: TTFTResult, rtol: float = RTOL) -> None:
    g, w = dataclasses.asdict(got), dataclasses.asdict(want)
    exact = {k for k in g if k not in TIMING | FLOATS}
    assert {k: g[k] for k in exact} == {k: w[k] for k in exact}
    for k in FLOATS:
        assert rel(g[k], w[k]) <= rtol, (k, g[k], w[k])


def assert_same_path(got, want, layout: Layout, rtol: float = RTOL, skip=None) -> None:
    """Weights after every step, per tensor: ‖a − b‖ / ‖a‖ ≤ rtol. ``skip(name)``
    gives a slice of a flattened tensor to leave out of the comparison."""
    assert len(got) == len(want)
    sizes = [math.prod(s) for s in layout.shapes]
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        for name, gt, wt in zip(layout.names, g.split(sizes), w.split(sizes), strict=True):
            cut = skip(name) if skip is not None else None
            if cut is not None:
                keep = torch.ones_like(gt, dtype=torch.bool)
                keep[cut] = False
                gt, wt = gt[keep], wt[keep]
            err = ((gt - wt).norm() / wt.norm()).item()
            assert err <= rtol, f"step {step + 1}, {name}: {err:.2e}"


def gpt2_key_bias(name: str) -> slice | None:
    """GPT-2's key bias adds q·b to every score of a query, which softmax ignores: its
    gradient is zero in exact arithmetic and rounding noise (~1e-10) in floats. Adam
    divides that noise by its own magnitude (plus eps), so the key bias moves by
    noise-driven amounts in *any* two float orderings — not a property of batching.
    It is left out of the weight comparison; BPB and every other weight are held."""
    return slice(64, 128) if name.endswith("attn.c_attn.bias") else None


_SEQUENTIAL: dict[tuple, tuple] = {}


def sequential_cached(build: Callable, cfg: FinetuneConfig):
    key = (build.__name__, cfg)
    if key not in _SEQUENTIAL:
        _SEQUENTIAL[key] = run_sequential(build, cfg, JOBS)
    return _SEQUENTIAL[key]


def config(optimizer: str, r: int, **kw) -> FinetuneConfig:
    """Adam with clipping, AdamW with decay, SGD with momentum and decay."""
    extra: dict = {"optimizer": optimizer, "refresh_interval": r, "lr": 1e-3}
    if optimizer == "adam":
        extra.update(grad_clip=0.5)  # clipped per job
    if optimizer == "adamw":
        extra.update(weight_decay=0.1)
    if optimizer == "sgd":
        extra.update(momentum=0.9, weight_decay=0.01, lr=5e-2)
    return FinetuneConfig(**{**extra, **kw})


# Every B with every r, each optimizer four times.
CASES = [(b, r, ("adam", "adamw", "sgd")[(b + r) % 3]) for b in (1, 2, 3, 5) for r in (1, 2, 3)]


# ---------------------------------------------------------------------------
# The batched forward is the Hugging Face forward


@pytest.mark.parametrize("build", [tiny, tiny_gpt2], ids=["llama", "gpt2"])
def test_stacked_forward_equals_the_hf_model_per_job_with_ragged_padding(build):
    model, _ = build()
    arch, layout = stacked_arch(model), Layout.of(model)
    base = torch.cat([p.detach().flatten() for p in model.parameters()])
    gen = torch.Generator().manual_seed(0)
    weights = base + 0.02 * torch.randn(3, layout.numel, generator=gen)  # three jobs
    lengths = [L, 5, 2]
    ids = torch.randint(1, 257, (3, L), generator=gen)
    for r, n in enumerate(lengths):
        ids[r, n:] = 0  # right padding
    params = layout.views(weights)
    with torch.no_grad():
        logits = arch.logits(params, arch.hidden(params, ids))
        for r, n in enumerate(lengths):
            torch.nn.utils.vector_to_parameters(weights[r], model.parameters())
            want = model(input_ids=ids[r : r + 1, :n]).logits[0]
            err = ((logits[r, :n] - want).norm() / want.norm()).item()
            assert err < 1e-6, (r, err)


# ---------------------------------------------------------------------------
# Batched == sequential, job by job


@pytest.mark.parametrize(
    ("b", "r", "optimizer"), CASES, ids=[f"B{b}-r{r}-{o}" for b, r, o in CASES]
)
def test_batched_equals_sequential_per_job_and_per_step(b, r, optimizer):
    # B = 2 runs every optimizer unfused (both engines), the rest with fused kernels.
    cfg = config(optimizer, r, fused=b != 2)
    want, want_paths = sequential_cached(tiny, cfg)
    got, got_paths, engine = run_batched(tiny, cfg, JOBS, b)
    assert [x.status for x in want] == [
        "ok",
        "ok",
        "ok",
        "empty_query",
        "nonfinite_loss",
        "ok",
    ]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same_result(g, w), i
        assert_same_path(got_paths[i], want_paths[i], engine.layout)
    # The chunks: jobs that train go b at a time, in order (the blank query never does).
    trained = [x.batch_size for i, x in enumerate(got) if i != 3]
    expected = [min(b, 5 - k) for k in range(0, 5, b) for _ in range(min(b, 5 - k))]
    assert trained == expected
    assert got[4].optimizer_steps == 2 and "nan" in (got[4].error or "")


def test_tiny_gpt2_batched_equals_sequential():
    cfg = config("adam", 2)
    want, want_paths = run_sequential(tiny_gpt2, cfg, JOBS)
    got, got_paths, engine = run_batched(tiny_gpt2, cfg, JOBS, 4)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same_result(g, w)
        assert_same_path(got_paths[i], want_paths[i], engine.layout, skip=gpt2_key_bias)


def test_paper_tokenization_batched_equals_sequential():
    """finetune=paper (no BOS prefix) trains the same way in the batched engine."""
    cfg = dataclasses.replace(config("adam", 2), train_tokenization="paper")
    want, want_paths = run_sequential(tiny_gpt2, cfg, JOBS)
    got, got_paths, engine = run_batched(tiny_gpt2, cfg, JOBS, 4)
    default, _ = run_sequential(tiny_gpt2, config("adam", 2), JOBS)
    assert any(rel(w.bpb_after, d.bpb_after) > 1e-6 for w, d in zip(want, default, strict=True))
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same_result(g, w)
        assert_same_path(got_paths[i], want_paths[i], engine.layout, skip=gpt2_key_bias)


def test_bf16_autocast_policy_on_cpu_stays_within_1e3_bpb():
    """The CUDA precision policy (bf16 training forward), exercised on CPU."""
    cfg = config("adam", 2)
    policy = RuntimePolicy(train_autocast="bfloat16", fused=True)
    jobs = JOBS[:3]
    want, _ = run_sequential(tiny, cfg, jobs, policy=policy)
    got, _, _ = run_batched(tiny, cfg, jobs, 3, policy=policy)
    for g, w in zip(got, want, strict=True):
        assert g.status == w.status and g.optimizer_steps == w.optimizer_steps
        assert rel(g.bpb_after, w.bpb_after) <= 1e-3


def test_jobs_do_not_depend_on_their_neighbours_and_runs_are_deterministic():
    cfg = config("adamw", 2)
    first, first_paths, _ = run_batched(tiny, cfg, JOBS, 5)
    again, again_paths, _ = run_batched(tiny, cfg, JOBS, 5)
    for a, b in zip(first, again, strict=True):
        assert {k: v for k, v in dataclasses.asdict(a).items() if k not in TIMING} == {
            k: v for k, v in dataclasses.asdict(b).items() if k not in TIMING
        } or (math.isnan(a.bpb_after) and a.status == b.status)
    for p, q in zip(first_paths, again_paths, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(p, q, strict=True))
    # Job 0 alone, and job 0 beside the others, agree.
    alone, alone_paths, engine = run_batched(tiny, cfg, JOBS[:1], 1)
    assert_same_result(alone[0], first[0])
    assert_same_path(alone_paths[0], first_paths[0], engine.layout)


def test_base_given_is_used_and_checked():
    cfg = config("adam", 2)
    engine, _ = batched_engine(tiny, cfg, 2)
    base = engine.evaluate(Q_SHORT)
    res = engine.run_batch([TTFTJob(Q_SHORT, TEXTS[:2], (1, 1), base)])[0]
    assert res.bpb_before == base.bpb
    fresh = engine.run(Q_SHORT, TEXTS[:2], (1, 1))
    # Without a base the before-score is computed too: its tokens are counted.
    assert fresh.tokens_scored == res.tokens_scored + base.n_input_tokens
    with pytest.raises(ValueError, match="does not match"):
        engine.run_batch([TTFTJob(Q_LONG, TEXTS[:2], (1, 1), base)])


def test_caller_bugs_raise_before_anything_runs():
    engine, paths = batched_engine(tiny, config("adam", 2), 2)
    with pytest.raises(ValueError, match="job 1: 2 texts but 1 counts"):
        engine.run_batch([JOBS[0], TTFTJob(Q_SHORT, TEXTS[:2], (1,))])
    with pytest.raises(ValueError, match="non-negative"):
        engine.run_batch([TTFTJob(Q_SHORT, TEXTS[:1], (-1,))])
    assert not paths


# ---------------------------------------------------------------------------
# Reset, memory, budgets


def test_the_model_is_never_changed_and_reset_restores_every_row():
    model, tok = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = BatchedTTFTEngine(
        model, tok, config("adam", 1), "cpu", arch=stacked_arch(model), batch_jobs=3
    )
    engine.run_batch(JOBS[:3])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert engine._state is not None
    assert not torch.equal(engine._state.weights[0], engine._base)
    engine.reset()
    state = engine._state
    assert all(torch.equal(row, engine._base) for row in state.weights)
    assert not state.grads.any() and state.optimizer.steps == [0] * state.rows
    assert state.optimizer._m is not None and not state.optimizer._m.any()
    # The base vector is the model's parameters, on the model's device.
    assert torch.equal(engine._base, torch.cat([p.flatten() for p in model.parameters()]))


def test_out_of_memory_splits_the_chunk_and_loses_no_job(caplog):
    cfg = config("adam", 2)
    want, _, _ = run_batched(tiny, cfg, JOBS, 5)
    engine, _ = batched_engine(tiny, cfg, 5)
    chunk_sizes: list[int] = []
    run_chunk = engine._run_chunk

    def small_memory(chunk):
        chunk_sizes.append(len(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return run_chunk(chunk)

    engine._run_chunk = small_memory
    with caplog.at_level(logging.WARNING, logger="hullft.batched.engine"):
        got = engine.run_batch(JOBS)
    assert chunk_sizes == [5, 2, 2, 1]  # 5 trainable jobs: 5 fails, then 2 + 2 + 1
    assert engine.batch_jobs == 2
    assert "out of device memory" in caplog.text
    for g, w in zip(got, want, strict=True):
        assert_same_result(g, w)
    assert [x.batch_size for i, x in enumerate(got) if i != 3] == [2, 2, 2, 2, 1]

    def no_memory(chunk):
        raise torch.OutOfMemoryError("simulated")

    engine._run_chunk = no_memory
    with pytest.raises(torch.OutOfMemoryError):
        engine.run_batch(JOBS[:1])


class StepClock:
    """Advances one second every time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.mark.parametrize(("b", "steps"), [(1, 2), (2, 4)])
def test_time_budget_is_charged_on_the_amortised_wall_time(b, steps):
    """Each job is charged 1 s for its tokenization, then 1 s per round shared by the
    jobs in the round: at B = 2 each pays half, so it gets twice the steps."""
    cfg = config("adam", 1, time_budget_s=3.0)
    jobs = [JOBS[0], JOBS[5]]
    got, _, _ = run_batched(tiny, cfg, jobs, b, clock=StepClock())
    for res in got:
        assert res.status == "budget_exhausted" and res.ok
        assert res.optimizer_steps == steps < res.planned_steps
        assert res.finetune_s == pytest.approx(1.0 + steps * 1.0 / b)
        assert math.isfinite(res.bpb_after) and res.bpb_after != res.bpb_before


def test_zero_budget_takes_no_step_and_a_generous_one_changes_nothing():
    none, _, _ = run_batched(tiny, config("adam", 2, time_budget_s=0.0), JOBS[:2], 2)
    assert all(r.status == "budget_exhausted" and r.optimizer_steps == 0 for r in none)
    assert all(r.bpb_after == r.bpb_before for r in none)
    timed, _, _ = run_batched(tiny, config("adam", 2, time_budget_s=1e6), JOBS[:3], 3)
    free, _, _ = run_batched(tiny, config("adam", 2), JOBS[:3], 3)
    for a, b in zip(timed, free, strict=True):
        assert_same_result(a, b, rtol=0.0)


# ---------------------------------------------------------------------------
# Choosing the engine


def test_make_engine_batches_when_asked_and_runs_one_at_a_time_at_one():
    model, tok = tiny()
    engine = make_engine(model, tok, FinetuneConfig(batch_jobs=4), "cpu")
    assert isinstance(engine, BatchedTTFTEngine) and engine.batch_jobs == 4
    model, tok = tiny()
    assert type(make_engine(model, tok, FinetuneConfig(batch_jobs=1), "cpu")) is TTFTEngine
    model, tok = tiny()
    auto = make_engine(model, tok, FinetuneConfig(batch_jobs="auto"), "cpu")
    assert isinstance(auto, BatchedTTFTEngine) and auto.batch_jobs == CPU_AUTO_BATCH


def test_unsupported_architecture_falls_back_with_one_log_line_and_exact_results(caplog):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _, tok = tiny()

    def qwen():
        cfg = Qwen2Config(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=L,
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return Qwen2ForCausalLM(cfg), tok

    cfg = config("adam", 2, batch_jobs=4)
    with caplog.at_level(logging.INFO, logger="hullft.batched"):
        engine = make_engine(*qwen(), cfg, "cpu")
    assert type(engine) is TTFTEngine
    lines = [r for r in caplog.records if r.name.startswith("hullft.batched")]
    assert len(lines) == 1 and "one job at a time" in lines[0].getMessage()
    assert "qwen2" in lines[0].getMessage()
    got = engine.run_batch(JOBS[:2])
    want = TTFTEngine(*qwen(), cfg, "cpu").run_batch(JOBS[:2])
    for g, w in zip(got, want, strict=True):
        assert_same_result(g, w, rtol=0.0)


def test_gpt2_with_dropout_is_refused_by_name():
    model, _ = tiny_gpt2(dropout=0.1)
    with pytest.raises(UnsupportedModel, match="dropout"):
        stacked_arch(model)


def test_auto_on_cuda_divides_free_memory_by_the_documented_job_size(monkeypatch):
    model, _ = tiny()
    per_job = job_bytes(model, L)
    params = sum(p.numel() for p in model.parameters())
    assert per_job == 24 * params + L * (4 * 24 * 2 * 64 + 12 * 257)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * per_job, 0))
    cfg = FinetuneConfig(batch_jobs="auto")
    assert resolve_batch_jobs(cfg, model, torch.device("cuda"), L) == 8  # ⌊0.8 · 10⌋
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (per_job // 2, 0))
    assert resolve_batch_jobs(cfg, model, torch.device("cuda"), L) == 1
    assert resolve_batch_jobs(FinetuneConfig(batch_jobs=3), model, torch.device("cuda"), L) == 3


def test_auto_on_cpu_is_the_benchmarked_b_unless_host_memory_is_short(monkeypatch):
    from hullft.batched import factory

    model, _ = tiny()
    cpu, cfg = torch.device("cpu"), FinetuneConfig(batch_jobs="auto")
    monkeypatch.setattr(factory, "host_available_bytes", lambda: 1 << 40)
    assert resolve_batch_jobs(cfg, model, cpu, L) == CPU_AUTO_BATCH
    monkeypatch.setattr(factory, "host_available_bytes", lambda: 4 * job_bytes(model, L))
    assert resolve_batch_jobs(cfg, model, cpu, L) == 2  # half of it
    monkeypatch.setattr(factory, "host_available_bytes", lambda: None)
    assert resolve_batch_jobs(cfg, model, cpu, L) == CPU_AUTO_BATCH
    # A model past the CPU threshold (SmolLM2-sized: measured slower batched) trains
    # one job at a time, however much memory there is.
    params = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(factory, "host_available_bytes", lambda: 1 << 40)
    monkeypatch.setattr(factory, "CPU_AUTO_MAX_PARAMS", params)
    assert resolve_batch_jobs(cfg, model, cpu, L) == 1
    monkeypatch.setattr(factory, "CPU_AUTO_MAX_PARAMS", params + 1)
    assert resolve_batch_jobs(cfg, model, cpu, L) == CPU_AUTO_BATCH


# ---------------------------------------------------------------------------
# Per-job optimizers against torch.optim, row by row


@pytest.mark.parametrize(
    "cfg",
    [
        FinetuneConfig(optimizer="adam", lr=1e-2),
        FinetuneConfig(optimizer="adam", lr=1e-2, weight_decay=0.1),
        FinetuneConfig(optimizer="adamw", lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99)),
        FinetuneConfig(optimizer="sgd", lr=1e-1),
        FinetuneConfig(optimizer="sgd", lr=1e-1, momentum=0.9, weight_decay=0.05),
    ],
    ids=["adam", "adam-wd", "adamw", "sgd", "sgd-momentum-wd"],
)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "elementwise"])
def test_batched_optimizer_equals_one_torch_optimizer_per_row(cfg, fused):
    """Rows step on their own schedules; a row that does not step is bit for bit
    unchanged, and a row that does matches its own torch optimizer."""
    from hullft.batched import BatchedOptimizer
    from hullft.ttft import build_optimizer

    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(3, 40, generator=gen)
    grads = torch.zeros_like(weights)
    batched = BatchedOptimizer(weights, grads, cfg, fused=fused)
    rows = [torch.nn.Parameter(w.clone()) for w in weights]
    policy = RuntimePolicy(fused=fused, foreach=False)
    torch_opts = [build_optimizer([p], cfg, policy) for p in rows]
    schedule = [[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 1]]  # row 2 starts late
    for active in schedule:
        grads.copy_(torch.randn(3, 40, generator=gen))
        before = weights.clone()
        batched.step([bool(a) for a in active])
        for b, a in enumerate(active):
            if a:
                rows[b].grad = grads[b].clone()
                torch_opts[b].step()
                if fused:  # the very kernel torch.optim runs
                    assert torch.equal(weights[b], rows[b].detach())
                else:
                    torch.testing.assert_close(weights[b], rows[b].detach(), rtol=1e-6, atol=1e-7)
            else:
                assert torch.equal(weights[b], before[b])
    assert batched.steps == [4, 3, 1]


def peaked():
    _, tok = tiny()
    return peaked_llama(tok, L), tok


def test_batched_scoring_is_the_scorers_own_per_token_loss():
    """BPB after finetuning on a peaked 8192-token model: the batched scorer and the
    sequential one (hullft.bpb.token_nll) agree far below the contract's 1e-5, so a
    scorer of its own (e.g. cross_entropy over a transposed class dimension, ~5e-7
    low here and ~5e-5 on SmolLM2-135M) cannot hide inside it."""
    cfg = config("adam", 2)
    jobs = (TTFTJob(Q_LONG, TEXTS[:3], (2, 1, 1)),)
    want, _ = run_sequential(peaked, cfg, jobs)
    got, _, _ = run_batched(peaked, cfg, jobs, 1)
    assert want[0].optimizer_steps == 4
    assert rel(got[0].bpb_after, want[0].bpb_after) < 5e-8
