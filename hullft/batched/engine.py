"""Batched test-time finetuning: B jobs, each exactly as :class:`~hullft.ttft.TTFTEngine`
would run it alone, trained together on one replica (docs/design.md §4.5b, docs/ttft.md).

The Hugging Face model is never trained: its parameters are the base weights.
Every job gets a row of a ``(B, P)`` weight matrix (its flat parameter vector),
a row of a gradient matrix and its own optimizer state (:mod:`hullft.batched.optim`).
Jobs advance in lockstep, one step of each job's own reuse schedule per round:

- the jobs whose step is *fresh* run one forward/backward together: their
  sequences right-padded to the longest, the loss the sum over jobs of each job's
  mean token cross-entropy (pads never enter it), so each job's gradient is that
  of its own mean loss; the gradient is clipped per job and written to its row;
- every job that steps this round (fresh or reused) takes one optimizer step; a
  job on a reused step runs no forward/backward and steps on the gradient still in
  its row, a job that finished or stopped is not touched.

Scoring after finetuning batches the jobs' windows the same way (one row per job,
right-padded), logits in fp32 as :func:`hullft.bpb.score_bpb` takes them; the score
before finetuning is the base model's, computed exactly as the sequential engine
does. Reset is one broadcast copy of the base vector into all rows on the device.

Time budgets are amortised: a round's wall time is shared equally by the jobs in
it, and a job stops once its share (plus its own tokenization) reaches
``time_budget_s``. ``finetune_s`` reports that share, so the jobs' times add up to
the device time they used together.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from hullft.batched.arch import Layout, Params, StackedArch
from hullft.batched.optim import BatchedOptimizer
from hullft.bpb import (
    BPBPlan,
    BPBResult,
    QueryPlanner,
    prefix_token_id,
    resolve_max_length,
    score_bpb,
    token_nll,
)
from hullft.config import FinetuneConfig
from hullft.reuse import Step, check_counts, reuse_schedule
from hullft.ttft import (
    Multiset,
    RuntimePolicy,
    TTFTJob,
    TTFTResult,
    TTFTStatus,
    autocast,
    blank_query_result,
    broken_base_result,
    check_base,
    make_result,
    multiset_fields,
    prepare_multiset,
    query_fields,
    seeded,
)

log = logging.getLogger(__name__)

_LN2 = math.log(2.0)

StepHook = Callable[[int, int, torch.Tensor], None]
"""``(job index in the run_batch call, steps it has taken, its flat weights (P,))``,
called after every optimizer step of a job; the weights are a live view."""


@dataclass
class _Job:
    """A job admitted to training: planned, scored before, multiset on the device."""

    index: int
    plan: BPBPlan
    before: BPBResult
    common: dict[str, Any]
    multiset: Multiset
    schedule: list[Step]
    prepare_s: float
    evaluate_s: float


@dataclass
class _Trained:
    status: TTFTStatus = "ok"
    error: str | None = None
    steps: int = 0
    passes: int = 0
    tokens: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0


class _State:
    """Weights, gradients and optimizer state for up to ``rows`` jobs."""

    def __init__(self, base: torch.Tensor, rows: int, config: FinetuneConfig, fused: bool) -> None:
        self.rows = rows
        self.weights = base.expand(rows, -1).clone()  # (rows, P)
        self.grads = torch.zeros_like(self.weights)
        self.optimizer = BatchedOptimizer(self.weights, self.grads, config, fused=fused)

    def reset(self, base: torch.Tensor, n: int) -> None:
        """Base weights, zero gradients and fresh optimizers in the first ``n`` rows."""
        self.weights[:n].copy_(base.expand(n, -1))
        self.grads[:n].zero_()
        self.optimizer.reset(n)


class BatchedTTFTEngine:
    """Finetunes up to ``batch_jobs`` jobs at once on one model replica, each job
    exactly as :class:`~hullft.ttft.TTFTEngine` finetunes it alone.

    Same public surface as the sequential engine (``device``, :meth:`evaluate`,
    :meth:`run`, :meth:`run_batch`, :meth:`warm_up`, :meth:`reset`). ``arch`` is the
    model's batched forward (:func:`hullft.batched.factory.stacked_arch`); build the
    engine through :func:`hullft.batched.make_engine`, which falls back to the
    sequential engine for architectures without one. The model's own parameters
    stay the base weights and are never changed; the engine keeps a flat copy of
    them on the device, plus ``(weights, grads, optimizer state)`` per job.

    ``step_hook`` (tests, diagnostics) sees every job's weights after each step.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: FinetuneConfig,
        device: str | torch.device,
        max_length: int | None = None,
        *,
        arch: StackedArch,
        batch_jobs: int,
        policy: RuntimePolicy | None = None,
        clock: Callable[[], float] = time.perf_counter,
        step_hook: StepHook | None = None,
    ) -> None:
        if batch_jobs < 1:
            raise ValueError(f"batch_jobs must be >= 1, got {batch_jobs}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.policy = policy or RuntimePolicy.for_device(config, self.device)
        self.max_length = resolve_max_length(max_length, model)
        self.bos_id = prefix_token_id(tokenizer)
        self.arch = arch
        self.batch_jobs = batch_jobs
        self.layout = Layout.of(model)
        self._clock = clock
        self._step_hook = step_hook
        with torch.no_grad():
            self._base = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
        self._vocab = int(getattr(model.config, "vocab_size", 0) or 1)
        self._state: _State | None = None
        self._plan = QueryPlanner(tokenizer, mode=config.bpb_mode, max_length=self.max_length)
        self._loss_fn: Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor]
        self._loss_fn = self._job_losses
        self._warm = not self.policy.compile
        if self.policy.compile:
            self._loss_fn = torch.compile(self._job_losses, dynamic=True)

    # -- public API ---------------------------------------------------------

    def warm_up(self) -> float:
        """Compile the training step now (with ``policy.compile``; otherwise nothing
        to do) on a dummy batch of two jobs, and return the seconds it took."""
        if self._warm:
            return 0.0
        t0 = self._clock()
        rows = min(2, self.batch_jobs)
        ids = torch.full((rows, min(8, self.max_length)), self.bos_id, device=self.device)
        weights = self._base.expand(rows, -1).clone()
        leaves = {k: v.requires_grad_() for k, v in self.layout.views(weights).items()}
        try:
            n_targets = torch.full((rows,), ids.shape[1] - 1, device=self.device)
            self._loss_fn(leaves, ids, n_targets).sum().backward()
        except Exception as exc:
            raise RuntimeError(
                f"finetune.compile: torch.compile failed on {self.device} "
                f"({type(exc).__name__}: {str(exc).strip()[:500]}). On a CPU it needs a "
                "C++ compiler (g++ or clang++ on PATH, or CXX); set finetune.compile=false "
                "to finetune eagerly"
            ) from exc
        self._warm = True
        return self._clock() - t0

    def evaluate(self, query: str | bytes) -> BPBResult:
        """BPB of ``query`` under the base weights: the ``base`` method."""
        return score_bpb(
            self.model, self._plan(query), autocast_dtype=_dtype(self.policy.eval_autocast)
        )

    def run(
        self,
        query: str | bytes,
        texts: Sequence[str | bytes],
        counts: Sequence[int],
        *,
        base: BPBResult | None = None,
    ) -> TTFTResult:
        """One job on its own (see :meth:`run_batch`)."""
        return self.run_batch([TTFTJob(query, tuple(texts), tuple(counts), base)])[0]

    def run_batch(self, jobs: Sequence[TTFTJob]) -> list[TTFTResult]:
        """One result per job, in order, each that of
        :meth:`hullft.ttft.TTFTEngine.run` on the job alone.

        Jobs are trained ``batch_jobs`` at a time. Mismatched ``texts``/``counts`` or
        negative counts in any job are caller bugs and raise ``ValueError`` before
        anything runs. A chunk that runs out of device memory is split in halves and
        retried (and later chunks are no larger); one job that does not fit raises.
        """
        checked = []
        for i, job in enumerate(jobs):
            js = check_counts(job.counts)
            if len(job.texts) != len(js):
                raise ValueError(
                    f"job {i}: {len(job.texts)} texts but {len(js)} counts; give one count per text"
                )
            checked.append(js)
        results: list[TTFTResult | None] = [None] * len(jobs)
        pending: list[_Job] = []
        with seeded(self.device, self.config.seed):
            for i, (job, js) in enumerate(zip(jobs, checked, strict=True)):
                admitted = self._admit(i, job, js)
                if isinstance(admitted, _Job):
                    pending.append(admitted)
                else:
                    results[i] = admitted
            while pending:
                chunk = pending[: self.batch_jobs]
                try:
                    done = self._run_chunk(chunk)
                except torch.OutOfMemoryError:
                    if len(chunk) == 1:
                        raise
                    self._state = None  # free before retrying smaller
                    self.batch_jobs = len(chunk) // 2
                    log.warning(
                        "out of device memory finetuning %d jobs at once; retrying %d at a "
                        "time (and no more from now on)",
                        len(chunk),
                        self.batch_jobs,
                    )
                    continue
                for admitted_job, res in zip(chunk, done, strict=True):
                    results[admitted_job.index] = res
                pending = pending[len(chunk) :]
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def reset(self) -> None:
        """Base weights, zero gradients and fresh optimizer state in every job row.
        (Each chunk starts from this anyway; the model itself is never changed.)"""
        if self._state is not None:
            self._state.reset(self._base, self._state.rows)
        self._synchronize()

    # -- admission: the sequential engine's checks, per job -------------------

    def _admit(self, index: int, job: TTFTJob, js: list[int]) -> _Job | TTFTResult:
        """Plan, score before and tokenize one job, or its result if it cannot train."""
        clock = self._clock
        blank = blank_query_result(job.query, len(job.texts), js)
        if blank is not None:
            return blank
        t0 = clock()
        plan = self._plan(job.query)
        if job.base is None:
            before = self.evaluate(job.query)
        else:
            check_base(job.base, plan)
            before = job.base
        evaluate_s = clock() - t0
        common = query_fields(plan, before, len(job.texts), js, base_given=job.base is not None)
        if not math.isfinite(before.bpb):
            return broken_base_result(before, evaluate_s, common)
        t1 = clock()
        multiset = prepare_multiset(
            self.tokenizer,
            job.texts,
            js,
            tokenization=self.config.train_tokenization,
            max_length=self.max_length,
            device=self.device,
        )
        common.update(multiset_fields(multiset, self.config.refresh_interval))
        schedule = list(reuse_schedule(multiset.counts, self.config.refresh_interval))
        return _Job(index, plan, before, common, multiset, schedule, clock() - t1, evaluate_s)

    # -- one chunk of jobs ----------------------------------------------------

    def _state_for(self, n: int) -> _State:
        if self._state is None or self._state.rows < n:
            self._state = None  # free the old one before allocating
            rows = max(n, min(self.batch_jobs, 64))
            self._state = _State(self._base, rows, self.config, self.policy.fused)
        return self._state

    def _run_chunk(self, chunk: list[_Job]) -> list[TTFTResult]:
        clock = self._clock
        n = len(chunk)
        t0 = clock()
        state = self._state_for(n)
        state.reset(self._base, n)
        self._synchronize()
        reset_s = (clock() - t0) / n

        trained = self._train(chunk, state)

        t1 = clock()
        score = [j for j, t in enumerate(trained) if t.status != "nonfinite_loss" and t.steps > 0]
        after = self._score(state, [chunk[j].plan for j in score], score) if score else []
        eval_share = (clock() - t1) / len(score) if score else 0.0
        scored = dict(zip(score, after, strict=True))

        results = []
        for j, (job, done) in enumerate(zip(chunk, trained, strict=True)):
            common = dict(job.common)
            status, error = done.status, done.error
            evaluate_s = job.evaluate_s
            if status == "nonfinite_loss":
                bpb_after = math.nan
            elif j not in scored:
                bpb_after = job.before.bpb  # no step ran: the base weights, not rescored
            else:
                nll_bits, n_input = scored[j]
                bpb_after = nll_bits / job.plan.n_bytes if job.plan.n_bytes else math.nan
                common["tokens_scored"] += n_input
                evaluate_s += eval_share
                if not math.isfinite(bpb_after):
                    status = "nonfinite_loss"
                    error = f"the query BPB after {done.steps} steps is {bpb_after}"
            results.append(
                make_result(
                    status=status,
                    error=error,
                    bpb_after=bpb_after,
                    optimizer_steps=done.steps,
                    fwd_bwd_passes=done.passes,
                    tokens_trained=done.tokens,
                    mean_train_loss=done.loss_sum / done.passes if done.passes else math.nan,
                    finetune_s=done.seconds,
                    evaluate_s=evaluate_s,
                    reset_s=reset_s,
                    batch_size=n,
                    **common,
                )
            )
        return results

    def _train(self, chunk: list[_Job], state: _State) -> list[_Trained]:
        """Every job's schedule, one step of each per round (see the module doc)."""
        cfg = self.config
        budget = cfg.time_budget_s
        n = len(chunk)
        out = [_Trained(seconds=job.prepare_s) for job in chunk]
        running = [True] * n
        t_prev = self._clock()
        for t in range(max(len(job.schedule) for job in chunk)):
            for b, job in enumerate(chunk):
                if running[b] and t >= len(job.schedule):
                    running[b] = False  # done: status stays ok
                elif running[b] and budget is not None and out[b].seconds >= budget:
                    running[b] = False
                    out[b].status = "budget_exhausted"
            in_round = [b for b in range(n) if running[b]]
            if not in_round:
                break
            fresh = [b for b in in_round if chunk[b].schedule[t].fresh]
            if fresh:
                steps = [chunk[b].schedule[t] for b in fresh]
                seqs = [
                    chunk[b].multiset.sequences[s.seq][0] for b, s in zip(fresh, steps, strict=True)
                ]
                losses = self._fresh_pass(state, n, fresh, seqs)
                for b, s, seq, value in zip(fresh, steps, seqs, losses, strict=True):
                    if not math.isfinite(value):
                        running[b] = False
                        out[b].status = "nonfinite_loss"
                        out[b].error = (
                            f"training loss is {value} on sequence {s.seq} after "
                            f"{out[b].steps} steps; finetuning stopped and the base "
                            "weights were restored"
                        )
                        log.warning("job %d: %s", chunk[b].index, out[b].error)
                        continue
                    out[b].passes += 1
                    out[b].tokens += seq.numel()
                    out[b].loss_sum += value
            # On a reused step a job's gradient row still holds its last fresh gradient.
            state.optimizer.step(running)
            for b in range(n):
                if running[b]:
                    out[b].steps += 1
                    if self._step_hook is not None:
                        self._step_hook(chunk[b].index, out[b].steps, state.weights[b])
            self._synchronize()
            now = self._clock()
            share = (now - t_prev) / len(in_round)
            for b in in_round:
                out[b].seconds += share
            t_prev = now
        return out

    def _fresh_pass(
        self, state: _State, n: int, rows: list[int], seqs: list[torch.Tensor]
    ) -> list[float]:
        """Forward/backward for the jobs in ``rows`` (chunk positions) on their
        sequences; writes each finite job's (clipped) gradient to its gradient row
        and returns every job's loss."""
        names = self.layout.names
        idx = torch.tensor(rows, device=self.device)
        lo, hi = rows[0], rows[-1] + 1
        block = rows == list(range(lo, hi))
        # Leaves for autograd: the weight rows themselves when the fresh jobs are
        # adjacent rows (a view, no copy), else a gathered copy of their rows.
        source = state.weights[lo:hi] if block else state.weights.index_select(0, idx)
        leaves = {k: v.detach().requires_grad_() for k, v in self.layout.views(source).items()}
        ids = pad_sequence(seqs, batch_first=True, padding_value=self.bos_id)  # (F, T)
        n_targets = torch.tensor([s.numel() - 1 for s in seqs], device=self.device)
        losses = self._loss_fn(leaves, ids, n_targets)  # (F,)
        # autograd.grad hands back the gradients as computed; .backward() would copy
        # each into a .grad laid out like its (strided) leaf first.
        g_list = list(torch.autograd.grad(losses.sum(), [leaves[k] for k in names]))
        values: list[float] = losses.detach().tolist()  # one host sync per round
        finite = [r for r, v in enumerate(values) if math.isfinite(v)]
        if not finite:
            return values
        if self.config.grad_clip is not None:
            _clip_rows(g_list, self.config.grad_clip)
        if block and len(finite) == len(rows):
            torch._foreach_copy_(list(self.layout.views(state.grads[lo:hi]).values()), g_list)
        else:
            targets = list(self.layout.views(state.grads[:n]).values())
            keep = torch.tensor(finite, device=self.device)
            dest = idx.index_select(0, keep)
            for target, g in zip(targets, g_list, strict=True):
                target.index_copy_(0, dest, g.index_select(0, keep))
        return values

    def _job_losses(
        self, params: Params, input_ids: torch.Tensor, n_targets: torch.Tensor
    ) -> torch.Tensor:
        """Each row's mean next-token cross-entropy over its own ``n_targets`` targets
        (right-padded ``input_ids (F, T)``; pads are never a target) -> ``(F,)``."""
        with autocast(self.device, self.policy.train_autocast):
            logits = self.arch.logits(params, self.arch.hidden(params, input_ids))  # (F, T, V)
        f, t = input_ids.shape
        labels = F.pad(input_ids[:, 1:], (0, 1), value=-100)  # (F, T)
        labels = labels.masked_fill(
            torch.arange(t, device=input_ids.device) >= n_targets[:, None], -100
        )
        nll = F.cross_entropy(
            logits.float().reshape(f * t, -1),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="none",
        )
        return nll.view(f, t).sum(1) / n_targets

    # -- scoring after finetuning ---------------------------------------------

    @torch.inference_mode()
    def _score(
        self,
        state: _State,
        plans: list[BPBPlan],
        rows: list[int],
        windows_per_job: int = 8,
        max_logits: int = 1 << 24,
    ) -> list[tuple[float, int]]:
        """``(nll_bits, input tokens)`` of each plan under its job's weights (weight
        row ``rows[i]``). Every forward takes up to ``windows_per_job`` windows of
        every job (as ``score_bpb`` batches 8 windows), right-padded; a job with
        fewer windows gets empty rows that score nothing."""
        dev = self.device
        total = torch.zeros(len(plans), dtype=torch.float64, device=dev)
        n_input = [0] * len(plans)
        most = max(len(p.windows) for p in plans)
        for w0 in range(0, most, windows_per_job):
            members = [i for i, p in enumerate(plans) if len(p.windows) > w0]
            jobs = [rows[i] for i in members]
            lo, hi = jobs[0], jobs[-1] + 1
            source = (
                state.weights[lo:hi]
                if jobs == list(range(lo, hi))
                else state.weights.index_select(0, torch.tensor(jobs, device=dev))
            )
            params = self.layout.views(source)
            groups = [plans[i].windows[w0 : w0 + windows_per_job] for i in members]
            r = max(len(g) for g in groups)
            t = max(x.end - x.begin for g in groups for x in g)
            ids = torch.full((len(members), r, t), self.bos_id, dtype=torch.long)
            lengths = torch.zeros(len(members), r, dtype=torch.long)
            first = torch.zeros(len(members), r, dtype=torch.long)
            for m, (i, group) in enumerate(zip(members, groups, strict=True)):
                for k, x in enumerate(group):
                    seq = plans[i].sequences[x.text][x.begin : x.end]
                    ids[m, k, : seq.numel()] = seq
                    lengths[m, k] = seq.numel()
                    first[m, k] = seq.numel() - x.n_targets
                    n_input[i] += seq.numel()
            ids, lengths, first = ids.to(dev), lengths.to(dev), first.to(dev)
            with autocast(dev, self.policy.eval_autocast):
                hidden = self.arch.hidden(params, ids)  # (M, R·T, D)
            hidden = hidden.view(len(members), r, t, -1)
            # Position p predicts token p + 1, scored when p + 1 is one of its row's
            # targets [length − n_targets, length). Logits a slice of positions at a time.
            step = max(1, max_logits // (len(members) * r * self._vocab))
            for p0 in range(0, t - 1, step):
                p1 = min(p0 + step, t - 1)
                h = hidden[:, :, p0:p1].reshape(len(members), r * (p1 - p0), -1)
                with autocast(dev, self.policy.eval_autocast):
                    logits = self.arch.logits(params, h).float()  # (M, R·P, V)
                targets = ids[:, :, p0 + 1 : p1 + 1].reshape(len(members), -1)
                nll = token_nll(logits, targets)  # (M, R·P): the scorer's own per-token loss
                pos = torch.arange(p0 + 1, p1 + 1, device=dev)
                mask = (pos >= first[..., None]) & (pos < lengths[..., None])  # (M, R, P)
                nll = nll.double().view(mask.shape).masked_fill(~mask, 0.0)
                total.index_add_(0, torch.tensor(members, device=dev), nll.sum((1, 2)))
        nats = total.tolist()
        return [(x / _LN2, k) for x, k in zip(nats, n_input, strict=True)]

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _clip_rows(grads: list[torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` per job: each row's global norm over all tensors, clipped
    once right after its backward (as the sequential engine does)."""
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), 2, dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, 2, dim=0)  # (F,)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def _dtype(name: str | None) -> torch.dtype | None:
    return None if name is None else getattr(torch, name)
