"""Per-query test-time finetuning with gradient reuse (docs/design.md §4.5).

:class:`TTFTEngine` holds one model replica on one device. For every query it

1. scores the query with the base weights (or takes that score from the caller,
   so ``base`` is computed once per query and shared by all methods);
2. builds a fresh optimizer and takes one step per multiset element, computing a
   forward/backward only every r-th repeat of a sequence and otherwise stepping
   again on the gradient that is still in ``.grad`` (no copies);
3. scores the query with the adapted weights;
4. restores the base weights from a snapshot on the same device with one
   ``torch._foreach_copy_`` (no state-dict reload, no host round trip).

Training sequences are ``[BOS] + tokens`` (the same document-start prefix that
:mod:`hullft.bpb` scores with; ``finetune.train_tokenization=paper``: the published
tokenization, see :mod:`hullft.train_tokens`), truncated to ``max_length`` and run one at a time
(batch size 1, as in the published procedure), so nothing is ever padded.

Precision and kernels come from a :class:`RuntimePolicy`: fused optimizer kernels
on every device, and on CUDA bf16 autocast for training (both switchable in
:class:`FinetuneConfig`); on CPU, fp32; opt-in, a ``torch.compile``d training step
(:meth:`TTFTEngine.warm_up` compiles it once for every sequence length). The policy can be given
explicitly, which is how the CUDA path (bf16 autocast, fused Adam) is exercised
on CPU in the tests. Evaluation runs in fp32 by default on every device: it is a
few forward passes per query and keeps BPB free of bf16 logit rounding.

Why reused gradients stay exact:

- no ``torch.optim`` optimizer used here writes to ``.grad``: coupled weight decay
  (Adam, SGD) adds ``λ·θ`` out of place, the fused Adam/AdamW kernels store the
  gradient back only when a ``GradScaler`` passes ``grad_scale`` (never here), and
  SGD momentum starts from a clone;
- gradient clipping *does* scale ``.grad`` in place, and clipping an already
  clipped gradient again is not a no-op in floating point (``clip_grad_norm_``
  divides by ``norm + 1e-6``). So the norm is clipped once, right after each
  backward, and reused steps step on exactly that clipped gradient.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F

from hullft.bpb import (
    BPBPlan,
    BPBResult,
    QueryPlanner,
    clean_text,
    prefix_token_id,
    resolve_max_length,
    score_bpb,
)
from hullft.config import FinetuneConfig
from hullft.results import BLANK_QUERY_ERROR, Outcome, is_blank
from hullft.reuse import check_counts, count_passes, reuse_schedule
from hullft.train_tokens import TrainTokenization, training_tokens

log = logging.getLogger(__name__)

TTFTStatus = Literal["ok", "empty_query", "nonfinite_loss", "budget_exhausted"]
"""How a query ended.

- ``ok``: every planned step ran and both BPBs are finite; steps on training
  texts without a token are not run but counted in ``skipped_steps``;
- ``empty_query``: the query is empty or whitespace-only; nothing was trained or
  scored and both BPBs are NaN;
- ``nonfinite_loss``: a training loss, or the BPB before or after, was NaN/inf;
  finetuning stopped there, ``bpb_after`` is NaN and the weights were restored;
- ``budget_exhausted``: ``time_budget_s`` ran out before the last step;
  ``optimizer_steps < planned_steps`` and ``bpb_after`` scores the weights that
  the steps taken produced. This is a valid result, not a failure.
"""
STATUSES: tuple[TTFTStatus, ...] = get_args(TTFTStatus)

AutocastDtype = Literal["bfloat16"]


@dataclass(frozen=True)
class RuntimePolicy:
    """Precision and optimizer kernels of an engine; derived from the config and
    the device by :meth:`for_device` unless given explicitly."""

    train_autocast: AutocastDtype | None = None
    """Autocast dtype for training forward passes (``None`` = full precision)."""
    eval_autocast: AutocastDtype | None = None
    """Autocast dtype for scoring (``None`` = fp32 logits, the default everywhere)."""
    fused: bool = False
    """Fused optimizer kernel (one launch for all parameters)."""
    foreach: bool | None = None
    """Multi-tensor optimizer kernels when not fused (``None`` = PyTorch's choice)."""
    compile: bool = False
    """Run the training loss (forward and cross-entropy, and so their backward) through
    ``torch.compile``, dynamic in the sequence length: one compilation serves every
    length, done by :meth:`TTFTEngine.warm_up`. Scoring stays eager."""

    @classmethod
    def for_device(cls, config: FinetuneConfig, device: torch.device) -> RuntimePolicy:
        """Fused kernels (as configured) everywhere; bf16 autocast on CUDA only.

        PyTorch has fused Adam, AdamW and SGD on CPU as well: one pass over all
        parameters instead of a dozen multi-tensor ops, ~5x faster per step for
        SmolLM2-135M on two cores (docs/ttft.md).
        """
        cuda = device.type == "cuda"
        return cls(
            train_autocast="bfloat16" if cuda and config.bf16 else None,
            eval_autocast=None,
            fused=config.fused,
            compile=config.compile,
        )


def build_optimizer(
    params: Sequence[torch.nn.Parameter], config: FinetuneConfig, policy: RuntimePolicy
) -> torch.optim.Optimizer:
    """A fresh optimizer over ``params`` as configured (no state carried over)."""
    kernel: dict[str, Any] = {}
    if policy.fused:
        kernel["fused"] = True
    elif policy.foreach is not None:
        kernel["foreach"] = policy.foreach
    if config.optimizer in ("adam", "adamw"):
        adam = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        return adam(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
            **kernel,
        )
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            **kernel,
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose adam, adamw or sgd")


@dataclass(frozen=True)
class TTFTResult(Outcome):
    """One query through the engine: the :class:`~hullft.results.Outcome` fields
    (declared and documented there, shared with every result row), with the
    engine's own statuses. ``ResultRow.with_outcome`` makes it a row."""

    status: TTFTStatus = "ok"
    """See :data:`TTFTStatus`."""


@dataclass(frozen=True)
class TTFTJob:
    """One finetuning job: score ``query``, finetune on the multiset (``texts[k]``
    repeated ``counts[k]`` times, in order), score again. ``base`` is the engine's
    :meth:`TTFTEngine.evaluate` of the same query, to skip the before-score."""

    query: str | bytes
    texts: tuple[str | bytes, ...]
    counts: tuple[int, ...]
    base: BPBResult | None = None


@dataclass(frozen=True)
class Multiset:
    """Training sequences of one job, on the device (see :func:`prepare_multiset`)."""

    sequences: tuple[torch.Tensor, ...]  # each (1, T), T <= max_length
    counts: tuple[int, ...]  # J_k; 0 for sequences without tokens to train on
    skipped_steps: int
    truncated: int
    replaced_chars: int


def prepare_multiset(
    tokenizer: Any,
    texts: Sequence[str | bytes],
    counts: Sequence[int],
    *,
    tokenization: TrainTokenization,
    max_length: int,
    device: torch.device,
) -> Multiset:
    """Tokenize each unique sequence once (:func:`hullft.train_tokens.training_tokens`:
    ``[BOS] + tokens``, or the published tokenization), truncate at ``max_length``,
    move to ``device``. A sequence without a token to predict gets count 0 and its
    steps are counted as skipped."""
    tokens = training_tokens(tokenizer, texts, max_length=max_length, tokenization=tokenization)
    seqs, js = [], []
    skipped = 0
    for ids, j in zip(tokens.ids, counts, strict=True):
        if len(ids) < 2:  # no token to predict: the element's steps are skipped
            skipped += j
            j = 0
        seqs.append(ids)
        js.append(j)
    # One host-to-device copy for the whole multiset, then views per sequence.
    flat = torch.tensor([t for s in seqs for t in s], dtype=torch.long).to(device)
    views = torch.split(flat, [len(s) for s in seqs]) if seqs else ()
    return Multiset(
        sequences=tuple(v.unsqueeze(0) for v in views),
        counts=tuple(js),
        skipped_steps=skipped,
        truncated=tokens.truncated,
        replaced_chars=tokens.replaced_chars,
    )


def check_base(base: BPBResult, plan: BPBPlan) -> None:
    """``base`` must be the score of the query ``plan`` describes."""
    mine = (plan.fingerprint, plan.mode, plan.max_length)
    theirs = (base.fingerprint, base.mode, base.max_length)
    if mine != theirs:
        raise ValueError(
            f"base (text digest, mode, max_length) = {theirs} does not match this "
            f"query's {mine}; pass engine.evaluate(query) of the same query"
        )


def make_result(**fields: Any) -> TTFTResult:
    """A :class:`TTFTResult` with ``fields`` and the neutral defaults of
    :class:`hullft.results.Outcome` for the rest."""
    return TTFTResult(**fields)


# What both engines (this one and hullft.batched) decide per job before training,
# written once so that they cannot drift apart.


def blank_query_result(
    query: str | bytes, n_texts: int, counts: Sequence[int]
) -> TTFTResult | None:
    """The ``empty_query`` result of a blank query (:func:`hullft.results.is_blank`,
    the one rule for rows and engines), or ``None`` when the query has text."""
    text, replaced = clean_text(query)
    if not is_blank(text):
        return None
    return make_result(
        status="empty_query",
        error=BLANK_QUERY_ERROR,
        query_bytes=len(text.encode("utf-8")),
        query_replaced_chars=replaced,
        unique_sequences=n_texts,
        planned_steps=sum(counts),
    )


def query_fields(
    plan: BPBPlan, before: BPBResult, n_texts: int, counts: Sequence[int], *, base_given: bool
) -> dict[str, Any]:
    """Result fields known once the query is scored under the base weights."""
    return {
        "bpb_before": before.bpb,
        "query_bytes": plan.n_bytes,
        "query_tokens": before.n_tokens,
        "query_windows": len(plan.windows),
        "query_replaced_chars": plan.replaced_chars,
        "unique_sequences": n_texts,
        "planned_steps": sum(counts),
        "tokens_scored": 0 if base_given else before.n_input_tokens,
    }


def broken_base_result(before: BPBResult, evaluate_s: float, fields: dict[str, Any]) -> TTFTResult:
    """The result of a job whose query scores non-finite under the base weights."""
    return make_result(
        status="nonfinite_loss",
        error=f"the base BPB of the query is {before.bpb}; the model is broken",
        evaluate_s=evaluate_s,
        **fields,
    )


def multiset_fields(multiset: Multiset, refresh_interval: int) -> dict[str, Any]:
    """Result fields known once the multiset is tokenized."""
    return {
        "planned_passes": count_passes(multiset.counts, refresh_interval),
        "skipped_steps": multiset.skipped_steps,
        "truncated_sequences": multiset.truncated,
        "train_replaced_chars": multiset.replaced_chars,
    }


@dataclass(frozen=True)
class _Finetuned:
    status: TTFTStatus
    error: str | None
    steps: int
    passes: int
    tokens: int
    loss_sum: float


class TTFTEngine:
    """Finetunes one model replica per query and always hands it back unchanged.

    The engine takes ownership of ``model``: it moves it to ``device``, snapshots
    its trainable parameters and buffers there (one extra copy of the weights in
    device memory) and restores that snapshot after every :meth:`run`, also when
    finetuning raises. Do not move or replace the model's tensors afterwards.

    ``max_length`` (default: the model's context) caps training sequences and is
    the BPB window. ``policy`` overrides :meth:`RuntimePolicy.for_device`;
    ``clock`` is the timer used for stage times and the time budget.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: FinetuneConfig,
        device: str | torch.device,
        max_length: int | None = None,
        *,
        policy: RuntimePolicy | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.config = config
        self.policy = policy or RuntimePolicy.for_device(config, self.device)
        self.max_length = resolve_max_length(max_length, model)
        self.bos_id = prefix_token_id(tokenizer)
        self._clock = clock
        self._params = [p for p in model.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("the model has no trainable parameters (requires_grad=False)")
        odd = sorted({str(p.dtype) for p in self._params} - {"torch.float32"})
        if odd:
            log.warning(
                "trainable parameters in %s: Adam on low-precision weights loses small "
                "updates; load the model in fp32 (autocast handles bf16 compute)",
                ", ".join(odd),
            )
        # Buffers are part of the snapshot too: some (e.g. dynamic RoPE frequencies)
        # can change in a forward pass.
        self._live = [*self._params, *model.buffers()]
        with torch.no_grad():
            self._snapshot = [t.detach().clone() for t in self._live]
        self._plan = QueryPlanner(tokenizer, mode=config.bpb_mode, max_length=self.max_length)
        self._train_loss: Callable[[torch.Tensor], torch.Tensor] = self._loss
        self._warm = not self.policy.compile
        if self.policy.compile:
            self._train_loss = torch.compile(self._loss, dynamic=True)
        self.model.eval()

    # -- public API ---------------------------------------------------------

    def warm_up(self) -> float:
        """Compile the training step now (with ``policy.compile``; otherwise nothing
        to do) and return the seconds it took.

        Call it once before the first query, so that neither that query's finetune
        time nor its time budget pays for the compilation; :meth:`run` compiles on
        first use otherwise. It runs one forward/backward on a short dummy sequence
        and no optimizer step, then :meth:`reset`, so the weights are untouched.
        """
        if self._warm:
            return 0.0
        t0 = self._clock()
        dummy = torch.full((1, min(8, self.max_length)), self.bos_id, device=self.device)
        self.model.train()
        try:
            with self._seeded():
                self._train_loss(dummy).backward()
        except Exception as exc:
            raise RuntimeError(
                f"finetune.compile: torch.compile failed on {self.device} "
                f"({type(exc).__name__}: {str(exc).strip()[:500]}). On a CPU it needs a "
                "C++ compiler (g++ or clang++ on PATH, or CXX); set finetune.compile=false "
                "to finetune eagerly"
            ) from exc
        finally:
            self.reset()
        self._warm = True
        return self._clock() - t0

    def evaluate(self, query: str | bytes) -> BPBResult:
        """BPB of ``query`` under the current (base) weights: the ``base`` method."""
        return self._score(self._plan(query))

    def run(
        self,
        query: str | bytes,
        texts: Sequence[str | bytes],
        counts: Sequence[int],
        *,
        base: BPBResult | None = None,
    ) -> TTFTResult:
        """Finetune on the multiset (``texts[k]`` repeated ``counts[k]`` times, in
        order), score ``query`` before and after, and restore the base weights.

        ``base`` is :meth:`evaluate` of the same query; when given, it is used as
        ``bpb_before`` instead of scoring again. Bad queries and non-finite losses
        become a result with a status; mismatched ``texts``/``counts`` or negative
        counts are caller bugs and raise ``ValueError``.
        """
        js = check_counts(counts)
        if len(texts) != len(js):
            raise ValueError(f"{len(texts)} texts but {len(js)} counts; give one count per text")
        clock = self._clock
        blank = blank_query_result(query, len(texts), js)
        if blank is not None:
            return blank

        with self._seeded():
            t0 = clock()
            plan = self._plan(query)
            if base is None:
                before = self._score(plan)
            else:
                check_base(base, plan)
                before = base
            evaluate_s = clock() - t0
            common = query_fields(plan, before, len(texts), js, base_given=base is not None)
            if not math.isfinite(before.bpb):
                return broken_base_result(before, evaluate_s, common)

            t1 = clock()
            multiset = prepare_multiset(
                self.tokenizer,
                texts,
                js,
                tokenization=self.config.train_tokenization,
                max_length=self.max_length,
                device=self.device,
            )
            common.update(multiset_fields(multiset, self.config.refresh_interval))
            done = _Finetuned("ok", None, 0, 0, 0, 0.0)
            after: BPBResult | None = None
            finetune_s = reset_s = 0.0
            try:
                done = self._finetune(multiset, t1)
                self._synchronize()
                finetune_s = clock() - t1
                if done.status != "nonfinite_loss" and done.steps:
                    t2 = clock()
                    after = self._score(plan)
                    evaluate_s += clock() - t2
            finally:
                t3 = clock()
                self.reset()
                reset_s = clock() - t3

        status, error = done.status, done.error
        if status == "nonfinite_loss":
            bpb_after = math.nan
        elif after is None:
            # No step ran, so the weights were the base weights: nothing to rescore.
            bpb_after = before.bpb
        else:
            bpb_after = after.bpb
            common["tokens_scored"] += after.n_input_tokens
            if not math.isfinite(bpb_after):
                status = "nonfinite_loss"
                error = f"the query BPB after {done.steps} steps is {bpb_after}"
        return self._result(
            status=status,
            error=error,
            bpb_after=bpb_after,
            optimizer_steps=done.steps,
            fwd_bwd_passes=done.passes,
            tokens_trained=done.tokens,
            mean_train_loss=done.loss_sum / done.passes if done.passes else math.nan,
            finetune_s=finetune_s,
            evaluate_s=evaluate_s,
            reset_s=reset_s,
            **common,
        )

    def run_batch(self, jobs: Sequence[TTFTJob]) -> list[TTFTResult]:
        """One result per job, in order, each exactly :meth:`run` of that job alone.

        This engine runs the jobs one after another; a batched engine runs them
        together with the same contract. A job whose arguments are a caller bug
        (see :meth:`run`) raises for the whole call.
        """
        return [self.run(j.query, j.texts, j.counts, base=j.base) for j in jobs]

    def reset(self) -> None:
        """Copy the base weights and buffers back in place, on the device, and drop
        the gradients. Safe to call at any time."""
        with torch.no_grad():
            torch._foreach_copy_(self._live, self._snapshot)
        for p in self._params:
            p.grad = None
        self.model.eval()
        self._synchronize()

    # -- internals ----------------------------------------------------------

    def _score(self, plan: BPBPlan) -> BPBResult:
        return score_bpb(self.model, plan, autocast_dtype=_dtype(self.policy.eval_autocast))

    def _loss(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy of one unpadded sequence (1, T)."""
        # Autocast is entered per forward, never around the loop: its cache of bf16
        # weight casts lives as long as the context and would go stale after the
        # in-place optimizer updates.
        with self._autocast(self.policy.train_autocast):
            logits = self.model(input_ids=input_ids, use_cache=False).logits  # (1, T, V)
        # Shift the labels, not the logits: slicing the (T, V) logits would make the
        # backward allocate and zero-fill a full-size gradient just to copy into it.
        labels = F.pad(input_ids[0, 1:], (0, 1), value=-100)  # (T,), last one ignored
        return F.cross_entropy(logits[0].float(), labels, ignore_index=-100)

    def _finetune(self, multiset: Multiset, t_start: float) -> _Finetuned:
        cfg = self.config
        budget = cfg.time_budget_s
        optimizer = build_optimizer(self._params, cfg, self.policy)
        steps = passes = tokens = 0
        loss_sum = 0.0
        self.model.train()
        try:
            for step in reuse_schedule(multiset.counts, cfg.refresh_interval):
                if budget is not None and self._clock() - t_start >= budget:
                    return _Finetuned("budget_exhausted", None, steps, passes, tokens, loss_sum)
                if step.fresh:
                    input_ids = multiset.sequences[step.seq]
                    optimizer.zero_grad(set_to_none=True)
                    loss = self._train_loss(input_ids)
                    loss.backward()
                    # One host sync per pass: it guards the next step against a
                    # non-finite gradient and keeps the budget clock honest on CUDA.
                    value = loss.item()
                    if not math.isfinite(value):
                        error = (
                            f"training loss is {value} on sequence {step.seq} "
                            f"after {steps} steps; finetuning stopped and the base "
                            "weights were restored"
                        )
                        log.warning("%s", error)
                        return _Finetuned("nonfinite_loss", error, steps, passes, tokens, loss_sum)
                    if cfg.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(self._params, cfg.grad_clip)
                    passes += 1
                    tokens += input_ids.numel()
                    loss_sum += value
                # On a reused step .grad still holds the last fresh gradient.
                optimizer.step()
                steps += 1
        finally:
            optimizer.zero_grad(set_to_none=True)
            self.model.eval()
        return _Finetuned("ok", None, steps, passes, tokens, loss_sum)

    def _result(self, **fields: Any) -> TTFTResult:
        result = make_result(**fields)
        log.debug(
            "query done: %s bpb %.4f -> %.4f, %d/%d steps, %d passes",
            result.status,
            result.bpb_before,
            result.bpb_after,
            result.optimizer_steps,
            result.planned_steps,
            result.fwd_bwd_passes,
        )
        return result

    def _autocast(self, dtype: AutocastDtype | None) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, dtype)

    def _seeded(self) -> contextlib.AbstractContextManager[None]:
        return seeded(self.device, self.config.seed)

    def _synchronize(self) -> None:
        """Wait for queued device work, so stage times measure the work itself."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@contextlib.contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Seed torch with ``seed`` inside the block without disturbing the caller's
    random state (on ``device`` and the CPU)."""
    devices: list[int] = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def autocast(
    device: torch.device, dtype: AutocastDtype | None
) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``dtype`` on ``device``, or nothing for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_dtype(dtype))


def _dtype(name: AutocastDtype | None) -> torch.dtype | None:
    return None if name is None else getattr(torch, name)
