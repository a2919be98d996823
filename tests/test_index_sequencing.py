"""Sequencing: documents cut into pieces of at most L tokens, byte-exact."""

from __future__ import annotations

import functools
import itertools

import pytest
from fixtures.pile import make_records
from hypothesis import given, settings
from hypothesis import strategies as st

from hullft.data.sequencing import Sequencer
from hullft.models import byte_tokenizer


@functools.cache
def bpe_tokenizer():
    """A small byte-level BPE trained in-process: its merges cross would-be cuts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([r["text"] for r in make_records(20)], trainer)
    return tok


def own_count(tok, text: str) -> int:
    backend = getattr(tok, "backend_tokenizer", tok)
    return len(backend.encode(text, add_special_tokens=False).ids)


def check_partition(seq: Sequencer, tok, text: str) -> None:
    data = text.encode()
    spans = seq.split(text)
    assert spans[0].start == 0 and spans[-1].end == len(data)
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    assert b"".join(data[s.start : s.end] for s in spans) == data
    for s in spans:
        piece = data[s.start : s.end].decode()  # cuts fall on character boundaries
        assert s.n_tokens == own_count(tok, piece) <= seq.max_tokens


texts = st.text(
    alphabet=st.sampled_from(list("abcde fgh\n.,é東🙂")), min_size=1, max_size=400
).filter(lambda t: t.strip())


@settings(max_examples=60, deadline=None)
@given(text=texts, L=st.integers(8, 40))
def test_sequences_partition_the_document_within_L_tokens(text: str, L: int) -> None:
    for tok in (byte_tokenizer(), bpe_tokenizer()):
        check_partition(Sequencer(tok, L), tok, text)


def test_real_documents_and_boundary_merges() -> None:
    tok = bpe_tokenizer()
    for r in make_records(8):
        for L in (8, 13, 64):
            check_partition(Sequencer(tok, L), tok, r["text"])


def test_document_mode_keeps_the_first_L_tokens() -> None:
    tok = byte_tokenizer()
    seq = Sequencer(tok, 16, mode="document")
    [span] = seq.split("short")
    assert (span.start, span.end, span.n_tokens) == (0, 5, 5)
    text = "é" * 20  # 2 bytes (= 2 byte tokens) per character
    [span] = seq.split(text)
    assert (span.start, span.end, span.n_tokens) == (0, 16, 16)
    [span] = Sequencer(tok, 15, mode="document").split(text)
    assert span.end == 14  # never half a character


def test_rejects_slow_tokenizers() -> None:
    with pytest.raises(TypeError, match="fast"):
        Sequencer(object(), 16)


class _Inflating(Sequencer):
    """Counts 3 more tokens for a piece on its own than in context, forcing the slow
    path that moves cuts back until every piece fits."""

    def _count(self, texts: list[str]) -> list[int]:
        return [n + 3 for n in super()._count(texts)]


@pytest.mark.parametrize("mode", ["sequences", "document"])
def test_pieces_that_grow_on_their_own_are_shortened(mode: str) -> None:
    tok = bpe_tokenizer()
    text = make_records(1)[1]["text"]
    seq = _Inflating(tok, 20, mode=mode)
    spans = seq.split(text)
    data = text.encode()
    for s in spans:
        piece = data[s.start : s.end].decode()
        assert s.n_tokens == own_count(tok, piece) + 3 <= 20
    if mode == "sequences":
        assert b"".join(data[s.start : s.end] for s in spans) == data
        assert len(spans) > len(Sequencer(tok, 20).split(text))
    else:
        assert len(spans) == 1 and spans[0].start == 0
