"""Text and embedding stores: random access, merging, round trip through a build."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from fixtures.pile import make_records, tiny_config, write_zst

from hullft.data.sequencing import Span
from hullft.data.stores import (
    EmbeddingStore,
    TextStore,
    TextStoreWriter,
    merge_text_stores,
    write_embeddings,
)
from hullft.index import build_index, load_index


def _write_store(path: Path, docs: list[tuple[str, str, str]], piece: int) -> list[dict]:
    """Write docs cut into ``piece``-character spans; return the expected records."""
    w = TextStoreWriter(path)
    expected = []
    for doc_id, domain, text in docs:
        data = text.encode()
        spans, pos = [], 0
        while pos < len(text):
            a, b = len(text[:pos].encode()), len(text[: pos + piece].encode())
            spans.append(Span(a, b, b - a))
            pos += piece
        w.add_document(doc_id, domain, data, spans)
        for s in spans:
            expected.append(
                {
                    "doc_id": doc_id,
                    "domain": domain,
                    "span": (s.start, s.end),
                    "text": data[s.start : s.end].decode(),
                }
            )
    w.close()
    return expected


def test_text_store_random_access(tmp_path: Path) -> None:
    rng = random.Random(0)
    docs = [
        (
            f"d{i}",
            rng.choice(["x", "y", "z"]),
            "".join(rng.choice("ab é東🙂\n") for _ in range(rng.randint(1, 60))),
        )
        for i in range(50)
    ]
    expected = _write_store(tmp_path / "s", docs, piece=7)
    store = TextStore(tmp_path / "s")
    assert len(store) == len(expected) and store.num_documents == 50
    ids = list(range(len(expected)))
    rng.shuffle(ids)
    for i in ids:
        e = expected[i]
        assert store.get(i) == e["text"]
        assert store.doc_id(i) == e["doc_id"]
        assert store.domain(i) == e["domain"]
        assert store.span(i) == e["span"]
        assert store.record(i).text == e["text"]
    assert store.get_many(np.array(ids[:10])) == [expected[i]["text"] for i in ids[:10]]
    assert store.doc_ids(ids[:5]) == [expected[i]["doc_id"] for i in ids[:5]]
    assert store.get_many([]) == []
    assert [store.domains[c] for c in store.domain_codes(ids[:5])] == [
        expected[i]["domain"] for i in ids[:5]
    ]
    with pytest.raises(IndexError, match="out of range"):
        store.get(len(expected))
    with pytest.raises(IndexError, match="-1"):
        store.get_many([0, -1])


def test_merged_stores_equal_one_store(tmp_path: Path) -> None:
    docs = [(f"d{i}", "xyz"[i % 3] if i < 6 else "w", f"document {i} " * (i + 1)) for i in range(9)]
    whole = _write_store(tmp_path / "whole", docs, piece=5)
    for k, part in enumerate((docs[:4], docs[4:5], docs[5:])):
        _write_store(tmp_path / f"p{k}", part, piece=5)
    names = merge_text_stores([tmp_path / f"p{k}" for k in range(3)], tmp_path / "merged")
    assert names == ["w", "x", "y", "z"]
    merged = TextStore(tmp_path / "merged")
    assert [merged.record(i).text for i in range(len(merged))] == [e["text"] for e in whole]
    assert [merged.doc_id(i) for i in range(len(merged))] == [e["doc_id"] for e in whole]
    assert [merged.domain(i) for i in range(len(merged))] == [e["domain"] for e in whole]


def test_embedding_store_gets_float32_rows_in_any_shape(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    write_embeddings(tmp_path / "e.npy", [x[:10], x[10:]], (30, 8), "float16")
    store = EmbeddingStore(tmp_path / "e.npy")
    assert (len(store), store.dim, store.dtype) == (30, 8, np.float16)
    ids = np.array([[5, 2, 29], [0, 5, 5]])
    got = store.get(ids)
    assert got.shape == (2, 3, 8) and got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(np.float16).astype(np.float32)[ids])
    with pytest.raises(IndexError):
        store.get([30])


def test_ingest_store_read_back_is_byte_identical(tmp_path: Path) -> None:
    """Every kept document comes back byte-for-byte from its sequences, in order."""
    recs = make_records(6)
    path = write_zst(tmp_path / "c.jsonl.zst", recs)
    index = load_index(build_index(tiny_config(tmp_path / "idx", [path]), progress=False))
    texts = index.texts
    by_doc: dict[str, list[bytes]] = {}
    for i in range(len(texts)):
        by_doc.setdefault(texts.doc_id(i), []).append(texts.get_bytes(i))
        assert texts.n_tokens(i) <= 128
    assert list(by_doc) == [r["meta"]["doc_id"] for r in recs]
    for r in recs:
        assert b"".join(by_doc[r["meta"]["doc_id"]]) == r["text"].encode()
    assert index.manifest.num_documents == len(recs)
    assert sum(d["bytes"] for d in index.manifest.domains.values()) == sum(
        len(r["text"].encode()) for r in recs
    )
