"""Cutting documents into training sequences of at most L tokens.

The tokenizer is the finetuned model's (``hullft.models.load_tokenizer``), so a
sequence fits the optimizer step it will be used for. Two modes:

- ``sequences``: the document is partitioned into consecutive pieces; joining a
  document's pieces gives back its exact bytes. Cuts fall on token boundaries.
- ``document``: one sequence per document, its first L tokens (as in the HullFT
  and TTT-NN papers); the truncated tail is counted.

Every piece is checked by tokenizing it *on its own*: a BPE merge cannot cross a
cut, so a piece can need a token or two more than it had in context. Pieces that
would exceed L are shortened (the rest moves to the next piece), which keeps the
"at most L tokens" promise exact (special tokens such as BOS not counted).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

Mode = Literal["sequences", "document"]


@dataclass(frozen=True)
class Span:
    """A sequence as a byte range of its document's UTF-8 text."""

    start: int
    end: int
    n_tokens: int
    """Tokens of ``text[start:end]`` tokenized on its own, without special tokens."""


class Sequencer:
    """Splits document texts into :class:`Span` s of at most ``max_tokens`` tokens."""

    def __init__(self, tokenizer: Any, max_tokens: int, mode: Mode = "sequences"):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if mode not in ("sequences", "document"):
            raise ValueError(f"mode must be 'sequences' or 'document', got {mode!r}")
        self.max_tokens = max_tokens
        self.mode = mode
        self._tok = _backend(tokenizer)

    def _count(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def split(self, text: str) -> list[Span]:
        """The spans of ``text`` (byte offsets into ``text.encode('utf-8')``)."""
        L = self.max_tokens
        enc = self._tok.encode(text, add_special_tokens=False)
        n = len(enc)
        if n <= L:
            return [Span(0, _nbytes(text), n)]
        if self.mode == "document":
            end, count = self._fit(text, _starts(enc), 0)
            return [Span(0, _nbytes(text[:end]), count)]

        # Fast path: cut at every L-th token (in context), then check all pieces at once.
        # Only the cut tokens' offsets are fetched: the full offset list costs more
        # than the tokenization itself on long documents.
        cuts = [0]
        for k in range(L, n, L):
            c = enc.token_to_chars(k)[0]
            if c > cuts[-1]:
                cuts.append(c)
        bounds = [*cuts, len(text)]
        pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
        counts = self._count(pieces)
        if max(counts) > L:  # rare: a boundary merge grew a piece; redo the cuts one by one
            starts = _starts(enc)
            chars: list[tuple[int, int, int]] = []
            pos = 0
            while pos < len(text):
                end, count = self._fit(text, starts, pos)
                chars.append((pos, end, count))
                pos = end
        else:
            chars = [
                (a, b, c) for (a, b), c in zip(itertools.pairwise(bounds), counts, strict=True)
            ]
        return _to_bytes(text, chars)

    def _fit(self, text: str, starts: list[int], pos: int) -> tuple[int, int]:
        """The end (char) of the longest piece starting at ``pos`` that cut at a token
        start holds at most L tokens on its own, and its token count."""
        L, n = self.max_tokens, len(starts)
        first = bisect.bisect_left(starts, pos)
        e = first + L
        while True:
            if e >= n:
                end = len(text)
            else:
                while e < n and starts[e] <= pos:  # several tokens of one character
                    e += 1
                end = starts[e] if e < n else len(text)
            count = self._count([text[pos:end]])[0]
            if count <= L:
                return end, count
            prev = e - 1  # move the cut back to the previous distinct token start
            while prev > first and starts[prev] >= end:
                prev -= 1
            if prev <= first or starts[prev] <= pos:
                log.debug("a piece of one token holds %d > %d tokens on its own", count, L)
                return end, count
            e = prev


def _starts(enc: Any) -> list[int]:
    """Start character of every token."""
    return [a for a, _ in enc.offsets]


def _nbytes(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


def _to_bytes(text: str, chars: list[tuple[int, int, int]]) -> list[Span]:
    """Character ranges to byte ranges (in one pass over the text)."""
    if text.isascii():
        return [Span(a, b, c) for a, b, c in chars]
    spans = []
    byte_pos, char_pos = 0, 0
    for a, b, c in chars:
        start = byte_pos + _nbytes(text[char_pos:a])
        end = start + _nbytes(text[a:b])
        spans.append(Span(start, end, c))
        byte_pos, char_pos = end, b
    return spans


def _backend(tokenizer: Any) -> Any:
    """A copy of the fast tokenizer's Rust backend without truncation or padding
    (a ``tokenizer.json`` may enable either, which would corrupt the counts)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "to_str"):
            backend = tokenizer  # already a tokenizers.Tokenizer
        else:
            raise TypeError(
                f"sequencing needs a fast (Rust) tokenizer for character offsets; "
                f"{type(tokenizer).__name__} is not one. Load the model's tokenizer with "
                "use_fast=True or convert it with transformers' convert_slow_tokenizer"
            )
    # tokenizers: a worker's tokenizer has loaded it already; the driver never does
    from tokenizers import Tokenizer

    own = Tokenizer.from_str(backend.to_str())
    own.no_truncation()
    own.no_padding()
    return own
