"""Token ids of the training sequences of one multiset (docs/design.md §4.5).

Two tokenizations, chosen by ``FinetuneConfig.train_tokenization``:

- ``bos`` (hullft's default): ``[BOS] + tokens``, the same document-start prefix
  and the same tokens that :mod:`hullft.bpb` scores a query with; a special
  token's string inside a text (``<|endoftext|>``) is tokenized as plain text;
- ``paper``: what the published finetuning code trains on, the tokenizer's own
  output with its defaults (``tokenizer(text, truncation=True,
  max_length=max_length)``): no prefix added by hullft, whatever special tokens
  the tokenizer adds by itself, special-token strings matched as control tokens.
  The published code also pads to ``max_length`` with an attention mask and
  ``-100`` labels, which does not change the mean loss, so it is not padded here.

Both truncate to ``max_length`` tokens, keeping the start. The engines
(:class:`hullft.ttft.TTFTEngine` and the batched one) call :func:`training_tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from hullft.bpb import clean_text, encode, prefix_token_id

TrainTokenization = Literal["bos", "paper"]
TRAIN_TOKENIZATIONS: tuple[TrainTokenization, ...] = get_args(TrainTokenization)


@dataclass(frozen=True)
class TrainingTokens:
    """Per distinct training text, its token ids, and what was done to get them."""

    ids: tuple[tuple[int, ...], ...]
    """Token ids per text, at most ``max_length`` each (possibly fewer than 2)."""
    truncated: int
    """Texts cut at ``max_length`` tokens."""
    replaced_chars: int
    """Invalid UTF-8 (or lone surrogates) replaced by U+FFFD across the texts."""


def training_tokens(
    tokenizer: Any,
    texts: Sequence[str | bytes],
    *,
    max_length: int,
    tokenization: TrainTokenization = "bos",
) -> TrainingTokens:
    """Tokenize ``texts`` for training as ``tokenization`` says (see module doc),
    in one batched tokenizer call."""
    if tokenization not in TRAIN_TOKENIZATIONS:
        raise ValueError(
            f"tokenization must be one of {list(TRAIN_TOKENIZATIONS)}, got {tokenization!r}"
        )
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    cleaned = [clean_text(t) for t in texts]
    strings = [s for s, _ in cleaned]
    if tokenization == "bos":
        bos = prefix_token_id(tokenizer)
        full = [[bos, *ids] for ids in encode(tokenizer, strings)]
    elif strings:
        # The tokenizer's defaults, as the published code calls it (it truncates in
        # the same call; here the untruncated length is kept to count truncations).
        out = tokenizer(strings, return_attention_mask=False, verbose=False)
        full = [list(ids) for ids in out["input_ids"]]
    else:
        full = []
    return TrainingTokens(
        ids=tuple(tuple(ids[:max_length]) for ids in full),
        truncated=sum(len(ids) > max_length for ids in full),
        replaced_chars=sum(n for _, n in cleaned),
    )
