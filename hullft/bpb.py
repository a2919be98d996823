"""Bits per byte of a causal LM on text (docs/design.md §4.6).

    BPB = Σ −log₂ p(token_i | prefix) / Σ bytes_utf8(text)

``rolling`` (the default) scores every token of every text exactly once:

- the tokenizer's BOS token (EOS when it has none) is prepended, so the first
  token of the text is scored too, conditioned on a document start;
- a text whose ``[BOS] + tokens`` sequence is longer than the context is scored
  in windows of ``max_length`` tokens that start every ``stride`` tokens
  (default ``max_length // 2``). Window k covers positions
  ``[k·stride, k·stride + max_length)`` and scores only the positions the
  previous window did not reach, so every token after the first window sees at
  least ``max_length − stride`` tokens of context. This is the sliding-window
  evaluation of the Hugging Face perplexity guide, with the BOS prefix;
- log-likelihoods and bytes are summed over all texts before dividing, so a
  list of texts is scored as one long corpus (not an average of ratios).

``paper`` reproduces the published computation, for comparison only: the text
is tokenized with the tokenizer's defaults, truncated to ``max_length`` tokens,
the first token is not scored, and the log-likelihood of what is left is divided
by the bytes of the *whole* text. On texts longer than the context that
understates BPB, because bytes are counted that were never scored.

Inputs may be ``str`` or ``bytes``: invalid UTF-8 is replaced by U+FFFD and the
replacements are counted; the denominator is the UTF-8 size of the text that
was scored (replacement characters included), so numerator and denominator
always describe the same string.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

BPBMode = Literal["rolling", "paper"]
BPB_MODES: tuple[BPBMode, ...] = ("rolling", "paper")

_LN2 = math.log(2.0)
_REPLACEMENT = "\ufffd"
_REPLACEMENT_UTF8 = _REPLACEMENT.encode("utf-8")
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class BPBResult:
    """Bits per byte of one or more texts, with what went into it."""

    bpb: float
    """``nll_bits / n_bytes``; NaN when there were no bytes to score."""
    nll_bits: float
    """Σ −log₂ p over the scored tokens."""
    n_bytes: int
    """UTF-8 bytes of the texts (the denominator)."""
    n_tokens: int
    """Tokens whose log-probability was summed."""
    n_input_tokens: int
    """Tokens through the forward passes (scored tokens plus BOS and window context)."""
    n_windows: int
    """Forward-pass rows (one per text within the context, more for long texts)."""
    n_texts: int
    """Texts scored."""
    replaced_chars: int
    """U+FFFD characters that replaced invalid UTF-8 (or lone surrogates) in the input."""
    unscored_tokens: int
    """``paper`` mode: tokens of the texts that were never scored (the first token
    and everything past ``max_length``). Always 0 in ``rolling`` mode."""
    truncated_texts: int
    """``paper`` mode: texts cut at ``max_length``. Always 0 in ``rolling`` mode."""
    mode: BPBMode
    """How the texts were scored."""
    max_length: int
    """Context (tokens per window) used."""
    fingerprint: str
    """Digest of the scored texts, so a score can be matched to its query."""
    seconds: float
    """Wall time of tokenization and scoring."""


# ---------------------------------------------------------------------------
# Text and tokens


def clean_text(text: str | bytes) -> tuple[str, int]:
    """Valid text for ``text`` and how many U+FFFD replacements that took.

    ``bytes`` are decoded as UTF-8 with replacement; a ``str`` keeps its characters
    except lone surrogates (e.g. from ``errors="surrogateescape"``), which no
    tokenizer accepts and which are replaced one for one.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        decoded = raw.decode("utf-8", errors="replace")
        # A genuine U+FFFD in the input decodes to itself and is not a replacement.
        # Its encoding starts with 0xEF, which is never a continuation byte, so it
        # cannot be swallowed by a neighbouring invalid sequence.
        return decoded, decoded.count(_REPLACEMENT) - raw.count(_REPLACEMENT_UTF8)
    if not isinstance(text, str):
        raise TypeError(f"expected str or bytes, got {type(text).__name__}")
    return _SURROGATES.subn(_REPLACEMENT, text)


def prefix_token_id(tokenizer: Any) -> int:
    """The document-start token: BOS, else EOS (GPT-2-style tokenizers have only EOS)."""
    for name in ("bos_token_id", "eos_token_id"):
        tid = getattr(tokenizer, name, None)
        if tid is not None:
            return int(tid)
    raise ValueError(
        "the tokenizer has neither a BOS nor an EOS token, so the first token of a "
        "text cannot be scored; set tokenizer.bos_token (e.g. to its end-of-text token)"
    )


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of ``texts`` without special tokens, in one batched tokenizer call.

    ``split_special_tokens`` makes a literal ``<|endoftext|>`` inside a document
    count as text, not as the control token.
    """
    if not texts:
        return []
    out = tokenizer(
        list(texts),
        add_special_tokens=False,
        split_special_tokens=True,
        return_attention_mask=False,
        verbose=False,
    )
    return [list(ids) for ids in out["input_ids"]]


def model_context(model: Any) -> int | None:
    """The model's context length from its config, if it declares one."""
    ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(ctx) if ctx else None


def resolve_max_length(max_length: int | None, model: Any) -> int:
    """``max_length`` capped at the model's context; the context when ``None``."""
    ctx = model_context(model)
    if max_length is None:
        if ctx is None:
            raise ValueError("the model config has no max_position_embeddings; pass max_length")
        return ctx
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 (a prefix and one target), got {max_length}")
    if ctx is not None and max_length > ctx:
        log.warning("max_length %d exceeds the model context %d; using %d", max_length, ctx, ctx)
        return ctx
    return int(max_length)


# ---------------------------------------------------------------------------
# Windows


@dataclass(frozen=True)
class Window:
    """One forward-pass row: positions ``[begin, end)`` of text ``text``; the last
    ``n_targets`` positions are scored."""

    text: int
    begin: int
    end: int
    n_targets: int


def rolling_windows(n_positions: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, n_targets)`` windows over a sequence of ``n_positions`` tokens
    (BOS included) that score positions ``1 .. n_positions−1`` exactly once.

    Windows start every ``stride`` tokens and are ``max_length`` long (the last may
    be shorter); each scores the positions past the previous window's end.
    """
    if not 1 <= stride < max_length:
        raise ValueError(f"stride must be in [1, max_length) = [1, {max_length}), got {stride}")
    windows: list[tuple[int, int, int]] = []
    if n_positions < 2:
        return windows
    begin, scored_to = 0, 1  # position 0 (BOS) is context only
    while True:
        end = min(begin + max_length, n_positions)
        windows.append((begin, end, end - scored_to))
        if end == n_positions:
            return windows
        scored_to = end
        begin += stride


@dataclass(frozen=True)
class BPBPlan:
    """Tokenized texts and the windows that score them; model-independent, so a
    query can be planned once and scored before and after finetuning."""

    mode: BPBMode
    max_length: int
    sequences: tuple[torch.Tensor, ...]
    """Per text, the int64 token sequence on the CPU (with BOS in ``rolling`` mode)."""
    windows: tuple[Window, ...]
    n_bytes: int
    n_texts: int
    replaced_chars: int
    unscored_tokens: int
    truncated_texts: int
    fingerprint: str
    seconds: float


def plan_bpb(
    tokenizer: Any,
    texts: str | bytes | Sequence[str | bytes],
    *,
    mode: BPBMode = "rolling",
    max_length: int,
    stride: int | None = None,
) -> BPBPlan:
    """Tokenize ``texts`` and lay out the windows that score them (see module doc)."""
    t0 = time.perf_counter()
    if mode not in BPB_MODES:
        raise ValueError(f"mode must be one of {list(BPB_MODES)}, got {mode!r}")
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    items = [texts] if isinstance(texts, str | bytes) else list(texts)
    cleaned = [clean_text(t) for t in items]
    strings = [s for s, _ in cleaned]
    replaced = sum(n for _, n in cleaned)
    encoded = [s.encode("utf-8") for s in strings]
    n_bytes = sum(len(b) for b in encoded)
    digest = hashlib.blake2b(digest_size=8)
    for b in encoded:
        digest.update(len(b).to_bytes(8, "little"))
        digest.update(b)

    sequences: list[torch.Tensor] = []
    windows: list[Window] = []
    unscored = truncated = 0
    if mode == "rolling":
        stride = max_length // 2 if stride is None else stride
        bos = prefix_token_id(tokenizer)
        for i, ids in enumerate(encode(tokenizer, strings)):
            seq = torch.tensor([bos, *ids], dtype=torch.long)
            sequences.append(seq)
            windows.extend(Window(i, *w) for w in rolling_windows(len(seq), max_length, stride))
    else:
        # The published computation: the tokenizer's own defaults (special tokens
        # included), right truncation, no prefix, first token unscored.
        for i, s in enumerate(strings):
            ids = list(tokenizer(s, return_attention_mask=False, verbose=False)["input_ids"])
            kept = ids[:max_length]
            truncated += len(ids) > max_length
            sequences.append(torch.tensor(kept, dtype=torch.long))
            n_targets = max(len(kept) - 1, 0)
            unscored += len(ids) - n_targets
            if n_targets:
                windows.append(Window(i, 0, len(kept), n_targets))
    return BPBPlan(
        mode=mode,
        max_length=max_length,
        sequences=tuple(sequences),
        windows=tuple(windows),
        n_bytes=n_bytes,
        n_texts=len(items),
        replaced_chars=replaced,
        unscored_tokens=unscored,
        truncated_texts=truncated,
        fingerprint=digest.hexdigest(),
        seconds=time.perf_counter() - t0,
    )


class QueryPlanner:
    """:func:`plan_bpb` for one engine's tokenizer, mode and context, keeping the last
    plan: the base and every method of a query score the same text, so an engine
    tokenizes each query once."""

    def __init__(self, tokenizer: Any, *, mode: BPBMode, max_length: int):
        self.tokenizer = tokenizer
        self.mode: BPBMode = mode
        self.max_length = max_length
        self._last: tuple[str | bytes, BPBPlan] | None = None

    def __call__(self, query: str | bytes) -> BPBPlan:
        if self._last is not None and self._last[0] == query:
            return self._last[1]
        plan = plan_bpb(self.tokenizer, query, mode=self.mode, max_length=self.max_length)
        self._last = (query, plan)
        return plan


# ---------------------------------------------------------------------------
# Scoring


def _accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic forward signatures
        return False


def _vocab_size(model: Any) -> int | None:
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(size) if size else None


def _batches(
    windows: Sequence[Window], batch_size: int, max_logits: int | None
) -> Iterator[list[Window]]:
    """Windows grouped by length (so rows stack without padding), at most
    ``batch_size`` rows and about ``max_logits`` fp32 logits at a time."""
    by_length: dict[int, list[Window]] = {}
    for w in windows:
        by_length.setdefault(w.end - w.begin, []).append(w)
    for length in sorted(by_length):
        group = by_length[length]
        rows = batch_size
        if max_logits is not None:
            # A row keeps logits for its scored positions (at most its length).
            rows = max(1, min(batch_size, max_logits // length))
        for i in range(0, len(group), rows):
            yield group[i : i + rows]


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """−log p(target) in nats per position, from fp32 ``logits`` (..., V) whose
    class dimension is the last one; ``targets`` has the leading shape.

    Computed as ``logsumexp(logits) − logits[target]`` over the contiguous last
    dimension. On CPU, ``F.cross_entropy(logits.transpose(1, 2), targets)`` (class
    dimension not last) is biased low: 4–6e-5 relative on SmolLM2-135M's BPB, and
    ~5e-7 on a tiny model with peaked logits, where this form is within ~3e-9 of a
    float64 computation (``tests/test_bpb.py``). It also never materialises a
    (…, V) log-softmax.
    """
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.logsumexp(logits, dim=-1) - picked


def score_bpb(
    model: Any,
    plan: BPBPlan,
    *,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
    max_batch_logits: int = 1 << 24,
) -> BPBResult:
    """Score a :class:`BPBPlan` with ``model`` (on whatever device it lives).

    Runs in ``eval`` mode under ``inference_mode`` and restores the model's
    training flag. Log-probabilities are taken in fp32 and summed in fp64 on the
    device; there is one host synchronisation, at the end. Windows of equal length
    share a forward pass, up to ``batch_size`` rows and about ``max_batch_logits``
    logits (64 MB in fp32) so that large vocabularies stay within memory.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    keep_arg = _accepts_logits_to_keep(model)
    total = torch.zeros((), dtype=torch.float64, device=device)
    n_tokens = n_input = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            vocab = _vocab_size(model)
            max_rows_tokens = max_batch_logits // vocab if vocab else None
            for batch in _batches(plan.windows, batch_size, max_rows_tokens):
                rows = [plan.sequences[w.text][w.begin : w.end] for w in batch]
                input_ids = torch.stack(rows).to(device, non_blocking=True)  # (B, T)
                n_max = max(w.n_targets for w in batch)
                kwargs: dict[str, Any] = {"use_cache": False}
                if keep_arg:
                    # Logits only where a scored token is predicted: positions
                    # [T-n_max-1, T-1) predict the targets [T-n_max, T).
                    kwargs["logits_to_keep"] = n_max + 1
                autocast = (
                    torch.autocast(device.type, dtype=autocast_dtype)
                    if autocast_dtype is not None
                    else contextlib.nullcontext()
                )
                with autocast:
                    logits = model(input_ids=input_ids, **kwargs).logits
                logits = logits[:, -(n_max + 1) : -1].float()  # (B, n_max, V)
                targets = input_ids[:, -n_max:]  # (B, n_max)
                nll = token_nll(logits, targets)  # (B, n_max)
                # Rows score their last n_targets positions; shorter rows are masked.
                n_t = torch.tensor([w.n_targets for w in batch], device=device)
                mask = torch.arange(n_max, device=device) >= (n_max - n_t)[:, None]
                total += nll.double().masked_fill(~mask, 0.0).sum()
                n_tokens += sum(w.n_targets for w in batch)
                n_input += input_ids.numel()
            nll_nats = float(total.item())
    finally:
        model.train(was_training)
    nll_bits = nll_nats / _LN2
    bpb = nll_bits / plan.n_bytes if plan.n_bytes else math.nan
    return BPBResult(
        bpb=bpb,
        nll_bits=nll_bits,
        n_bytes=plan.n_bytes,
        n_tokens=n_tokens,
        n_input_tokens=n_input,
        n_windows=len(plan.windows),
        n_texts=plan.n_texts,
        replaced_chars=plan.replaced_chars,
        unscored_tokens=plan.unscored_tokens,
        truncated_texts=plan.truncated_texts,
        mode=plan.mode,
        max_length=plan.max_length,
        fingerprint=plan.fingerprint,
        seconds=plan.seconds + time.perf_counter() - t0,
    )


def bits_per_byte(
    model: Any,
    tokenizer: Any,
    texts: str | bytes | Sequence[str | bytes],
    *,
    mode: BPBMode = "rolling",
    max_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
) -> BPBResult:
    """Bits per byte of ``texts`` under ``model`` (docs/design.md §4.6; see the module doc).

    ``max_length`` defaults to the model's context; ``stride`` (rolling mode) to
    ``max_length // 2``. ``batch_size`` windows of equal length share a forward
    pass. Evaluation is fp32 unless ``autocast_dtype`` is given. An empty input
    has ``bpb = nan`` and zero counts.
    """
    length = resolve_max_length(max_length, model)
    plan = plan_bpb(tokenizer, texts, mode=mode, max_length=length, stride=stride)
    return score_bpb(model, plan, batch_size=batch_size, autocast_dtype=autocast_dtype)
