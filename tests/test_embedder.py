"""Embedders: the hashing embedder's frozen output, mean pooling against a manual
computation, and the embedded MiniLM on a handful of texts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hullft.config import EmbedderConfig
from hullft.embedder import Embedder, HashingEmbedder, MeanPoolingEmbedder


def test_hashing_is_frozen_normalised_and_process_independent() -> None:
    emb = Embedder.from_config(EmbedderConfig(name="hashing", dim=64))
    assert isinstance(emb, HashingEmbedder) and emb.dim == 64
    v = emb.encode(["hello world", "", "Hello World"])
    assert v.shape == (3, 64) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-6)
    # Frozen values: a change of hashing silently invalidates every built index.
    np.testing.assert_allclose(v[0, :6], [0, 0, -0.223607, 0, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(v[1, :2], [1, 0])  # empty text -> first basis vector
    np.testing.assert_array_equal(v[0], v[2])  # case-insensitive
    code = (
        "from hullft.embedder import HashingEmbedder;"
        "print(HashingEmbedder(64).encode(['hello world'])[0].tobytes().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        cwd=Path(__file__).parent.parent,
    )
    assert out.stdout.strip() == v[0].tobytes().hex()
    assert emb.encode([]).shape == (0, 64)


def test_hashing_ranks_shared_ngrams_higher() -> None:
    emb = HashingEmbedder(256)
    a, b, c = emb.encode(
        [
            "the river flows under the old stone bridge",
            "an old stone bridge spans the river",
            "mutex lock contention in the kernel scheduler",
        ]
    )
    assert a @ b > a @ c + 0.2


def _tiny_bert(path: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = "the river stone bridge kernel lock a an old flows under"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words.split(" ")]
    (path / "vocab.txt").parent.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_plain_hf_encoders_are_mean_pooled(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = _tiny_bert(tmp_path / "bert")
    cfg = EmbedderConfig(name=str(path), device="cpu", batch_size=2, max_seq_length=16)
    emb = Embedder.from_config(cfg)
    assert isinstance(emb, MeanPoolingEmbedder) and emb.dim == 32
    texts = ["the river", "a stone bridge under the old river flows", "kernel lock"]
    got = emb.encode(texts)

    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    for text, row in zip(texts, got, strict=True):
        batch = tok(text, return_tensors="pt")
        with torch.no_grad():
            want = model(**batch).last_hidden_state[0].mean(0).numpy()  # no padding: plain mean
        np.testing.assert_allclose(row, want / np.linalg.norm(want), atol=1e-5)


def test_embedded_minilm_on_a_handful_of_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = Embedder.from_config(EmbedderConfig(device="cpu"))
    assert (emb.name, emb.dim) == ("all-minilm-l6-v2", 384)
    assert emb.info() == {"name": "all-minilm-l6-v2", "dim": 384, "max_seq_length": 128}
    v = emb.encode(
        [
            "A cat sits on the mat.",
            "A kitten is sitting on a rug.",
            "Quarterly tax filings are due in April.",
        ]
    )
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2]
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1"):
        Embedder.from_config(EmbedderConfig(name="nobody/no-such-encoder", device="cpu"))
