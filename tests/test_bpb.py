"""Bits per byte (hullft.bpb) against independent computations from the model's own loss."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hullft.bpb import (
    bits_per_byte,
    clean_text,
    plan_bpb,
    prefix_token_id,
    resolve_max_length,
    rolling_windows,
    score_bpb,
)
from hullft.models import build_tiny_model
from tests.fixtures.models import peaked_llama

LN2 = math.log(2)
TEXTS = [
    "Hello, world.",
    "Gradient reuse steps again on the last gradient.",
    "Ünïcödé: 漢字 and 🙂 take several bytes.",
    "x",
]
LONG = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(14))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    model, tok = build_tiny_model(context=64)
    model.eval()
    return model, tok


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def hf_nll_nats(model, input_ids: list[int], labels: list[int]) -> float:
    """Summed NLL from the model's own loss (``labels=``; -100 = not scored)."""
    ids = torch.tensor([input_ids])
    lab = torch.tensor([labels])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=lab).loss
    n_scored = int((lab[0, 1:] != -100).sum())
    return float(loss) * n_scored


def test_matches_model_loss_on_texts_within_context(tiny):
    model, tok = tiny
    bos = tok.bos_token_id
    nll = 0.0
    for text in TEXTS:
        ids = [bos, *tok(text, add_special_tokens=False)["input_ids"]]
        assert len(ids) <= 64
        nll += hf_nll_nats(model, ids, ids)
    expected = nll / LN2 / sum(nbytes(t) for t in TEXTS)

    res = bits_per_byte(model, tok, TEXTS)
    assert res.bpb == pytest.approx(expected, rel=1e-6)
    # Every byte-level token of every text is scored once, the first one included.
    assert res.n_tokens == sum(nbytes(t) for t in TEXTS)
    assert res.n_windows == len(TEXTS) and res.n_texts == len(TEXTS)
    assert res.mode == "rolling" and res.max_length == 64
    assert res.unscored_tokens == 0 and res.truncated_texts == 0


@pytest.mark.parametrize("stride", [9, 32, 63])
def test_rolling_matches_manual_sliding_window(tiny, stride):
    """The sliding-window evaluation written out window by window with the model's
    own loss (context tokens labelled -100)."""
    model, tok = tiny
    L = 64
    seq = [tok.bos_token_id, *tok(LONG, add_special_tokens=False)["input_ids"]]
    assert len(seq) > 10 * L
    nll, n_scored, prev_end, begin = 0.0, 0, 1, 0
    while True:
        end = min(begin + L, len(seq))
        window = seq[begin:end]
        n_new = end - prev_end
        labels = [-100] * (len(window) - n_new) + window[len(window) - n_new :]
        nll += hf_nll_nats(model, window, labels)
        n_scored += n_new
        prev_end = end
        if end == len(seq):
            break
        begin += stride

    res = bits_per_byte(model, tok, LONG, max_length=L, stride=stride)
    assert n_scored == len(seq) - 1 == res.n_tokens
    assert res.nll_bits == pytest.approx(nll / LN2, rel=1e-6)
    assert res.bpb == pytest.approx(nll / LN2 / nbytes(LONG), rel=1e-6)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 400),
    L=st.integers(2, 70),
    data=st.data(),
)
def test_rolling_windows_score_every_position_exactly_once(n, L, data):
    stride = data.draw(st.integers(1, L - 1))
    windows = rolling_windows(n, L, stride)
    scored: list[int] = []
    for i, (begin, end, k) in enumerate(windows):
        assert 0 <= begin < end <= n and end - begin <= L
        first = end - k
        assert first >= begin + 1  # every target has at least one token of context
        if i > 0:
            assert first - begin >= L - stride  # later windows keep the overlap as context
        scored.extend(range(first, end))
    assert scored == list(range(1, n))


def test_rolling_windows_rejects_a_stride_without_context():
    with pytest.raises(ValueError, match="stride"):
        rolling_windows(100, 8, 8)
    with pytest.raises(ValueError, match="stride"):
        rolling_windows(100, 8, 0)


def test_paper_mode_reproduces_the_published_computation(tiny):
    """Truncate to max_length, skip the first token, divide by the whole text's bytes."""
    model, tok = tiny
    L = 64
    texts = [LONG, TEXTS[1]]
    nll = 0.0
    for text in texts:
        ids = tok(text)["input_ids"][:L]
        nll += hf_nll_nats(model, ids, ids)
    expected = nll / LN2 / sum(nbytes(t) for t in texts)

    res = bits_per_byte(model, tok, texts, mode="paper", max_length=L)
    assert res.mode == "paper"
    assert res.bpb == pytest.approx(expected, rel=1e-6)
    assert res.truncated_texts == 1
    assert res.n_tokens == (L - 1) + (nbytes(TEXTS[1]) - 1)
    assert res.unscored_tokens == nbytes(LONG) + nbytes(TEXTS[1]) - res.n_tokens
    # On a long text the published number counts ~10x the bytes it scored.
    rolling = bits_per_byte(model, tok, LONG, max_length=L)
    paper = bits_per_byte(model, tok, LONG, mode="paper", max_length=L)
    assert paper.bpb < 0.2 * rolling.bpb


def test_texts_are_pooled_as_one_corpus(tiny):
    model, tok = tiny
    parts = [bits_per_byte(model, tok, t, max_length=48) for t in [LONG, *TEXTS]]
    whole = bits_per_byte(model, tok, [LONG, *TEXTS], max_length=48)
    assert whole.nll_bits == pytest.approx(sum(p.nll_bits for p in parts), rel=1e-9)
    assert whole.n_bytes == sum(p.n_bytes for p in parts)
    assert whole.n_tokens == sum(p.n_tokens for p in parts)
    assert whole.n_windows == sum(p.n_windows for p in parts)
    assert whole.bpb == pytest.approx(whole.nll_bits / whole.n_bytes)


def test_batching_windows_does_not_change_the_result(tiny):
    model, tok = tiny
    one = bits_per_byte(model, tok, [LONG, *TEXTS], batch_size=1)
    many = bits_per_byte(model, tok, [LONG, *TEXTS], batch_size=16)
    assert many.nll_bits == pytest.approx(one.nll_bits, rel=1e-6)
    assert many.n_input_tokens == one.n_input_tokens
    # A logits budget below one row still scores one row at a time.
    plan = plan_bpb(tok, [LONG, *TEXTS], max_length=64)
    capped = score_bpb(model, plan, batch_size=16, max_batch_logits=1)
    assert capped.nll_bits == pytest.approx(one.nll_bits, rel=1e-6)


def test_invalid_utf8_is_replaced_and_counted(tiny):
    model, tok = tiny
    assert clean_text(b"abc\xff\xfedef") == ("abc\ufffd\ufffddef", 2)
    assert clean_text("ok \ufffd".encode()) == ("ok \ufffd", 0)  # a real U+FFFD is not a repair
    assert clean_text(b"\xe2\xef\xbf\xbd") == ("\ufffd\ufffd", 1)  # truncated lead byte + U+FFFD
    assert clean_text("a\udcffb") == ("a\ufffdb", 1)  # lone surrogate (surrogateescape)
    with pytest.raises(TypeError):
        clean_text(3)  # type: ignore[arg-type]

    res = bits_per_byte(model, tok, [b"caf\xc3\xa9 \xff ok", "fine"])
    assert res.replaced_chars == 1
    assert res.n_bytes == nbytes("café \ufffd ok") + nbytes("fine")
    assert math.isfinite(res.bpb)


def test_empty_input_has_no_bpb(tiny):
    model, tok = tiny
    for texts in ([], [""], ""):
        res = bits_per_byte(model, tok, texts)
        assert math.isnan(res.bpb)
        assert res.n_tokens == res.n_bytes == res.n_windows == 0


def test_token_log_probabilities_agree_with_float64(tiny):
    """Scoring takes log-probabilities over the contiguous class dimension. A model
    with a 8192-token vocabulary and peaked logits (an output layer scaled up, as a
    trained LM's are) makes the old ``cross_entropy(logits.transpose(1, 2))`` form
    5e-7 low against float64; this form is within ~3e-9."""
    _, tok = tiny
    model = peaked_llama(tok, 256).eval()
    text = LONG[:212]
    ids = torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].double()  # fp32 logits, float64 from here
    expected = -logits.log_softmax(-1).gather(1, ids[0, 1:, None]).sum().item()
    assert logits.std() > 3  # peaked, unlike a freshly initialised output layer

    res = bits_per_byte(model, tok, text)
    assert res.n_tokens == ids.shape[1] - 1
    assert res.nll_bits * LN2 == pytest.approx(expected, rel=1e-8)


def test_special_token_text_is_scored_as_text(tiny):
    model, tok = tiny
    text = "a<|endoftext|>b"
    assert bits_per_byte(model, tok, text).n_tokens == nbytes(text)
    # A plain tokenizer call (what lm-evaluation-harness uses) makes it the control token.
    assert tok.encode(text, add_special_tokens=False) == [*tok.encode("a"), 0, *tok.encode("b")]


def test_prefix_is_bos_then_eos():
    class Tok:
        bos_token_id = None
        eos_token_id = 7

    assert prefix_token_id(Tok()) == 7
    Tok.bos_token_id = 3
    assert prefix_token_id(Tok()) == 3
    Tok.bos_token_id = Tok.eos_token_id = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match="bos_token"):
        prefix_token_id(Tok())


def test_max_length_defaults_to_and_is_capped_at_the_context(tiny, caplog):
    model, tok = tiny
    assert resolve_max_length(None, model) == 64
    assert resolve_max_length(16, model) == 16
    with caplog.at_level(logging.WARNING):
        assert resolve_max_length(1000, model) == 64
    assert "exceeds the model context" in caplog.text
    with pytest.raises(ValueError, match="max_length"):
        resolve_max_length(1, model)
    with pytest.raises(ValueError, match="mode"):
        plan_bpb(tok, "x", mode="mean", max_length=8)  # type: ignore[arg-type]


def test_scoring_restores_the_training_flag(tiny):
    model, tok = tiny
    model.train()
    try:
        bits_per_byte(model, tok, "abc")
        assert model.training
    finally:
        model.eval()


def test_bf16_autocast_scoring_is_close_to_fp32(tiny):
    """The CPU twin of scoring under CUDA autocast."""
    model, tok = tiny
    fp32 = bits_per_byte(model, tok, LONG)
    bf16 = bits_per_byte(model, tok, LONG, autocast_dtype=torch.bfloat16)
    assert bf16.bpb == pytest.approx(fp32.bpb, rel=2e-2)
