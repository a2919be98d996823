"""``finetune=paper`` against the published procedure (hullft.reference), on a tiny GPT-2."""

from __future__ import annotations

import copy

import pytest

from hullft.config import FinetuneConfig
from hullft.models import byte_tokenizer
from hullft.reference import PublishedProcedure
from hullft.train_tokens import training_tokens
from hullft.ttft import TTFTEngine

L = 64
QUERY = "Test-time finetuning adapts the model to each prompt before scoring it. " * 2
TEXTS = [
    "Finetuning adapts the model to a prompt.",
    "A document may contain <|endoftext|> in the middle of its text.",
    "Bits per byte divide the log-likelihood by the UTF-8 size of the text. " * 2,  # > L
]
COUNTS = [3, 1, 4]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_gpt2(seed: int = 0):
    """A 2-layer GPT-2 over the byte tokenizer, dropout off (as SmolLM2's is)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = byte_tokenizer()
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=L,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    return model, tok


def paper_config(**kw) -> FinetuneConfig:
    return FinetuneConfig(lr=1e-3, refresh_interval=2, **kw)


def test_paper_tokenization_is_the_tokenizers_own_output():
    tok = byte_tokenizer()
    paper = training_tokens(tok, TEXTS, max_length=L, tokenization="paper")
    bos = training_tokens(tok, TEXTS, max_length=L, tokenization="bos")
    for text, p, b in zip(TEXTS, paper.ids, bos.ids, strict=True):
        published = tok(text, truncation=True, max_length=L)["input_ids"]
        assert list(p) == published
        assert b[0] == tok.bos_token_id and len(b) == min(L, len(text.encode()) + 1)
    # The special token's string: one control token in the paper's tokenization, text in ours.
    assert tok.bos_token_id in paper.ids[1] and tok.bos_token_id not in bos.ids[1][1:]
    assert paper.truncated == bos.truncated == 1
    with pytest.raises(ValueError, match="tokenization"):
        training_tokens(tok, TEXTS, max_length=L, tokenization="none")  # type: ignore[arg-type]


def test_paper_mode_matches_the_published_gradient_reuse_loop():
    """Same model, texts, counts, Adam and refresh interval: ``finetune=paper`` gives
    the published procedure's BPB before and after finetuning. The published code
    pads every sequence to ``max_length`` (masked); hullft does not pad."""
    model, tok = tiny_gpt2()
    cfg = paper_config(bpb_mode="paper", train_tokenization="paper")
    published = PublishedProcedure(copy.deepcopy(model), tok, L, cfg, "cpu").run(
        QUERY, TEXTS, COUNTS
    )
    engine = TTFTEngine(model, tok, cfg, "cpu", max_length=L)
    res = engine.run(QUERY, TEXTS, COUNTS)

    assert res.status == "ok"
    assert res.fwd_bwd_passes == published["passes"] == 2 + 1 + 2
    assert res.bpb_before == pytest.approx(published["before"], rel=1e-5)
    assert abs(published["after"] - published["before"]) > 0.02 * published["before"]
    # The issue asks for 0.2 %; measured 1e-7 (fused Adam here, foreach Adam there).
    assert res.bpb_after == pytest.approx(published["after"], rel=1e-4)
    # Per pass, no BOS: the texts' own tokens, the special token's string as one token.
    assert res.tokens_trained == 2 * len(TEXTS[0]) + 1 * (len(TEXTS[1]) - 12) + 2 * L

    # hullft's default tokenization (a BOS prefix) trains on other tokens: scored the
    # published way, its BPB after finetuning is visibly elsewhere.
    default = TTFTEngine(
        tiny_gpt2()[0], tok, paper_config(bpb_mode="paper"), "cpu", max_length=L
    ).run(QUERY, TEXTS, COUNTS)
    assert default.bpb_before == res.bpb_before
    assert abs(default.bpb_after / res.bpb_after - 1) > 1e-3
