"""Index builds: idempotence, interruption and resumption, refusal of mismatches,
bad-input accounting, failure on all-bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fixtures.pile import make_records, tiny_config, write_jsonl, write_zst

from hullft.config import EmbedderConfig, IndexConfig
from hullft.embedder import HashingEmbedder
from hullft.index import (
    EmptyCorpusError,
    IndexMismatchError,
    IndexNotFoundError,
    build_index,
    load_index,
)
from tests.conftest import HANG_GUARD_S

FIXTURES = Path(__file__).parent / "fixtures"
COMPARED = [
    "embeddings.npy",
    "index.faiss",
    *(f"text/{n}" for n in ("texts.bin", "text_offsets.npy", "seq_doc.npy", "seq_span.npy")),
    *(f"text/{n}" for n in ("seq_tokens.npy", "seq_domain.npy", "doc_ids.bin", "domains.json")),
]


class Interrupt(Exception):
    pass


class CountingEmbed:
    def __init__(self, dim: int = 64):
        self.embedder = HashingEmbedder(dim)
        self.texts = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.embedder.encode(texts)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "c.jsonl.zst"
    return write_zst(path, make_records(12), frames=2)  # 48 documents, 5 shards of 10


def assert_same_index(a: Path, b: Path) -> None:
    for name in COMPARED:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    ma.pop("build"), mb.pop("build")
    assert ma == mb
    ia, ib = load_index(a), load_index(b)
    q = ia.embeddings.get(np.arange(0, len(ia), 7))
    sa, ida = ia.search(q, 10)
    sb, idb = ib.search(q, 10)
    np.testing.assert_array_equal(ida, idb)
    np.testing.assert_array_equal(sa, sb)


def test_build_is_searchable_and_idempotent(tmp_path: Path, corpus: Path) -> None:
    cfg = tiny_config(tmp_path / "idx", [corpus])
    embed = CountingEmbed()
    path = build_index(cfg, embed_fn=embed, progress=False)
    index = load_index(cfg)
    m = index.manifest
    assert (m.num_documents, m.num_sequences, m.dim) == (48, len(index), 64)
    assert set(m.domains) == {"Alpha", "Beta", "Gamma", "Delta"}
    assert m.embedder == {"name": "hashing", "dim": 64}
    assert m.tokenizer == "tiny-llama" and m.index["kind"] == "flat"
    assert embed.texts == m.num_sequences
    # Each sequence retrieves itself first.
    scores, ids = index.search(index.embeddings.get(np.arange(len(index))), 3)
    np.testing.assert_array_equal(ids[:, 0], np.arange(len(index)))
    assert np.all(scores[:, 0] >= scores[:, 1])
    # A rebuild with the same config is a no-op.
    again = CountingEmbed()
    assert build_index(cfg, embed_fn=again, progress=False) == path
    assert again.texts == 0
    # Asking for more results than there are sequences pads with -1 / -inf.
    s, i = index.search(index.embeddings.get([0]), len(index) + 2)
    assert list(i[0, -2:]) == [-1, -1] and np.all(np.isneginf(s[0, -2:]))


@pytest.mark.parametrize("kind", ["flat", "ivf_flat"])
def test_interrupted_build_resumes_to_the_same_index(
    tmp_path: Path, corpus: Path, kind: str
) -> None:
    ref = build_index(tiny_config(tmp_path / "ref", [corpus], kind=kind, nlist=4), progress=False)

    cfg = tiny_config(tmp_path / "idx", [corpus], kind=kind, nlist=4)

    def stop_after_two(j: int) -> None:
        if j == 1:
            raise Interrupt

    first = CountingEmbed()
    with pytest.raises(Interrupt):
        build_index(cfg, embed_fn=first, progress=False, on_shard_done=stop_after_two)
    assert not (tmp_path / "idx").exists()
    with pytest.raises(IndexNotFoundError, match="no complete index"):
        load_index(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / ".idx.partial" / "shards").iterdir()) == [
        "000000",
        "000001",
    ]

    rest = CountingEmbed()
    path = build_index(cfg, embed_fn=rest, progress=False)
    total = load_index(path).manifest.num_sequences
    assert first.texts + rest.texts == total  # finished shards were not embedded again
    assert not (tmp_path / ".idx.partial").exists()
    assert_same_index(ref, path)


_KILLED_BUILD = """
import sys, time
sys.path.insert(0, {tests!r})
from fixtures.pile import tiny_config
from hullft.embedder import HashingEmbedder
from hullft.index import build_index
emb = HashingEmbedder(64)
def slow(texts):
    time.sleep(0.4)
    return emb.encode(texts)
def done(j):
    print("shard", j, flush=True)
build_index(tiny_config({idx!r}, [{corpus!r}]), embed_fn=slow, progress=False, on_shard_done=done)
"""


def test_build_killed_mid_way_resumes_to_the_same_index(tmp_path: Path, corpus: Path) -> None:
    idx = tmp_path / "idx"
    code = _KILLED_BUILD.format(tests=str(Path(__file__).parent), idx=str(idx), corpus=str(corpus))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "shard 1":
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=HANG_GUARD_S)
    assert proc.returncode == -signal.SIGKILL
    assert not idx.exists()
    ref = build_index(tiny_config(tmp_path / "ref", [corpus]), progress=False)
    rest = CountingEmbed()
    t = time.perf_counter()
    build_index(tiny_config(idx, [corpus]), embed_fn=rest, progress=False)
    assert time.perf_counter() - t < 30
    assert 0 < rest.texts < load_index(idx).manifest.num_sequences
    assert_same_index(ref, idx)


def test_mismatched_indexes_are_refused_with_a_rebuild_hint(tmp_path: Path, corpus: Path) -> None:
    cfg = tiny_config(tmp_path / "idx", [corpus])
    path = build_index(cfg, progress=False)
    other_dim = replace(cfg, embedder=EmbedderConfig(name="hashing", dim=32))
    with pytest.raises(IndexMismatchError, match=r"embedder\.dim.*rebuild"):
        load_index(other_dim)
    with pytest.raises(IndexMismatchError, match="embedder"):
        load_index(path, embedder=EmbedderConfig(name="all-minilm-l6-v2"))
    with pytest.raises(IndexMismatchError, match=r"rm -r .*hullft index"):
        build_index(replace(cfg, index=replace(cfg.index, kind="hnsw")), progress=False)
    # A query of the wrong dimension says which embedder the index needs.
    with pytest.raises(ValueError, match="hashing"):
        load_index(path).search(np.zeros((1, 32), np.float32), 5)

    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 0
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match=r"format version 0.*rebuild"):
        load_index(path)
    # overwrite replaces it with a current one.
    build_index(cfg, progress=False, overwrite=True)
    assert load_index(cfg).manifest.format_version == 1


def test_the_index_service_searches_with_the_run_settings(tmp_path: Path, corpus: Path) -> None:
    """Search settings are not part of the index identity: the IndexService must use
    the run's, not the ones the index was built with."""
    from actors.index_actor import IndexService

    cfg = tiny_config(tmp_path / "idx", [corpus], kind="ivf_flat", nlist=4, nprobe=1)
    path = build_index(cfg, progress=False)
    assert load_index(path).nprobe == 1  # the build-time value, without a run config
    run = replace(cfg.index, nprobe=4, use_gpu="never")
    service = IndexService(str(path), cfg.embedder, run)
    assert (service.index.nprobe, service.index.use_gpu) == (4, "never")
    # Probing all 4 lists is exhaustive: the IVF results are the exact ones.
    # Compared by score, which ties cannot reorder.
    vectors = service.index.embeddings.get(np.arange(len(service.index))).astype(np.float32)
    q = vectors[::5]
    scores, _ = service.index.search(q, 5)
    exact = -np.sort(-(q @ vectors.T), axis=1)[:, :5]
    np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-5)
    with pytest.raises(IndexMismatchError, match="embedder"):
        IndexService(str(path), EmbedderConfig(name="hashing", dim=32), run)


def test_bad_inputs_are_counted_in_the_manifest(tmp_path: Path) -> None:
    small = [r for r in make_records(30) if len(r["text"].encode()) <= 2000]
    cut = write_zst(tmp_path / "cut.jsonl.zst", small, frames=3)
    cut.write_bytes(cut.read_bytes()[:-25])
    defects = tmp_path / "defects.jsonl"
    defects.write_bytes((FIXTURES / "defects.jsonl").read_bytes())
    cfg = tiny_config(tmp_path / "idx", [defects, cut])
    cfg = replace(cfg, data=replace(cfg.data, max_doc_bytes=2000))
    manifest = load_index(build_index(cfg, progress=False)).manifest
    skipped = manifest.input["skipped"]
    assert skipped["truncated_file"] == 1 and skipped["malformed_json"] == 2
    assert sum(skipped.values()) == 13  # 12 bad lines in defects.jsonl + the cut file
    assert manifest.input["examples"]["blank_line"] == ["defects.jsonl:12: blank_line"]
    assert manifest.input["files"] == 2
    assert manifest.domains["unknown"]["documents"] == 2


def test_all_bad_inputs_fail_with_the_reasons(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"no": "text"}, [1], {"text": ""}])
    with pytest.raises(EmptyCorpusError, match=r"missing_text=1.*e\.g\. bad\.jsonl:\d"):
        build_index(tiny_config(tmp_path / "idx", [bad]), progress=False)
    good = write_jsonl(tmp_path / "good.jsonl", make_records(1))
    cfg = tiny_config(tmp_path / "idx2", [good])
    with pytest.raises(EmptyCorpusError, match=r"matched nothing.*Alpha"):
        build_index(replace(cfg, data=replace(cfg.data, domains=("Typo",))), progress=False)


def test_configuration_errors_come_before_any_work(tmp_path: Path, corpus: Path) -> None:
    cfg = tiny_config(tmp_path / "idx", [corpus])
    with pytest.raises(ValueError, match="Ray"):
        build_index(replace(cfg, index=replace(cfg.index, distributed=True)), progress=False)
    with pytest.raises(RuntimeError, match="use_gpu=always"):
        build_index(replace(cfg, index=replace(cfg.index, use_gpu="always")), progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_index(tiny_config(tmp_path / "idx", [tmp_path / "typo.jsonl"]), progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("not an index")
    with pytest.raises(FileExistsError, match="not a hullft index"):
        build_index(tiny_config(tmp_path / "full", [corpus]), progress=False)
    assert not (tmp_path / "idx").exists()


def test_ivf_pq_on_a_small_corpus_caps_its_parameters(
    tmp_path: Path, corpus: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_config(tmp_path / "idx", [corpus], kind="ivf_pq", nlist=1024, pq_m=8)
    index = load_index(build_index(cfg, progress=False))
    n = len(index)
    assert index.manifest.index["nlist"] == n // 39
    assert index.manifest.index["pq_bits"] == 8
    assert "too many lists" in caplog.text
    _scores, ids = index.search(index.embeddings.get(np.arange(20)), 5)
    assert (ids[:, 0] == np.arange(20)).mean() >= 0.9  # exact re-ranking finds itself


def test_default_index_dir_is_named_by_config_hash(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HULLFT_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(tmp_path, [corpus])
    cfg = replace(cfg, index=IndexConfig(shard_docs=100))
    path = build_index(cfg, progress=False)
    assert path.parent == tmp_path / "cache" / "index"
    assert path.name == load_index(cfg).manifest.config_hash
    # Search-time settings do not change the identity.
    same = replace(cfg, index=replace(cfg.index, nprobe=3, ef_search=9, shard_docs=7))
    assert build_index(same, progress=False) == path


def test_a_mistyped_domain_is_reported(
    tmp_path: Path, corpus: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_config(tmp_path / "idx", [corpus])
    cfg = replace(cfg, data=replace(cfg.data, domains=("Alpha", "Typo")))
    index = load_index(build_index(cfg, progress=False))
    assert set(index.manifest.domains) == {"Alpha"}
    assert index.manifest.input["filtered"]["domain_not_selected"] == 36
    assert "data.domains ['Typo'] do not occur" in caplog.text


@pytest.mark.slow
def test_default_build_of_the_embedded_corpus(tmp_path: Path) -> None:
    """The real defaults (SmolLM2 tokenizer, MiniLM) on a 3-documents-per-domain slice."""
    from hullft.config import DataConfig, RunConfig

    cfg = RunConfig(
        data=DataConfig(max_docs_per_domain=3), index=IndexConfig(dir=str(tmp_path / "idx"))
    )
    index = load_index(build_index(cfg, progress=False))
    m = index.manifest
    assert m.dim == 384 and m.tokenizer == "smollm2-135m" and len(m.domains) >= 8
    assert all(index.texts.n_tokens(i) <= 256 for i in range(len(index)))
    _, ids = index.search(index.embeddings.get(np.arange(10)), 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(10))
