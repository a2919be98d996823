"""FAISS indexes: recall of each approximate kind against exact search, parameter
fitting, GPU selection."""

from __future__ import annotations

import numpy as np
import pytest

from hullft.config import IndexConfig
from hullft.index import faiss_index, recall_at_k
from hullft.index.faiss_index import IndexSpec, fit_spec


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """OpenMP threads spin while waiting; on a shared 2-core CI box that makes FAISS
    training 5-10x slower than one thread. (Results do not depend on it.)"""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def clustered(n: int, d: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` centres (retrieval-like structure)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = clustered(4000, 64, 40)
    q = clustered(40, 64, 40, seed=1)
    return x, q


def exact(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q @ x.T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, ids, 1), ids


def refine(x: np.ndarray, q: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    s = np.einsum("bkd,bd->bk", x[np.maximum(ids, 0)], q)
    s[ids < 0] = -np.inf
    return np.take_along_axis(ids, np.argsort(-s, axis=1, kind="stable")[:, :k], 1)


@pytest.mark.parametrize(
    ("cfg", "refine_factor", "floor"),
    [
        (IndexConfig(kind="ivf_flat", nlist=64, nprobe=16), 1, 0.95),
        (IndexConfig(kind="hnsw", hnsw_m=32, ef_construction=100, ef_search=256), 1, 0.95),
        (IndexConfig(kind="ivf_pq", nlist=64, nprobe=16, pq_m=16), 4, 0.95),
        pytest.param(
            IndexConfig(kind="ivf_pq", nlist=64, nprobe=16, pq_m=16, opq=True),
            4,
            0.95,
            marks=pytest.mark.slow,  # OPQ training takes ~5-30 s on 2 busy cores
        ),
    ],
    ids=["ivf_flat", "hnsw", "ivf_pq+refine", "opq_ivf_pq+refine"],
)
def test_recall_against_exact_search(
    data: tuple[np.ndarray, np.ndarray], cfg: IndexConfig, refine_factor: int, floor: float
) -> None:
    x, q = data
    k = 50
    spec = fit_spec(cfg, len(x), x.shape[1])
    index = faiss_index.build(spec, x)
    faiss_index.set_search_params(index, nprobe=cfg.nprobe, ef_search=cfg.ef_search)
    _, ids = index.search(q, k * refine_factor)
    if refine_factor > 1:
        ids = refine(x, q, ids, k)
    es, eids = exact(x, q, k)
    true = np.einsum("bkd,bd->bk", x[np.maximum(ids, 0)], q)
    r = recall_at_k(ids, eids, approx_true_scores=true, exact_scores=es)
    assert r >= floor, f"{spec.factory()}: recall@{k} = {r:.3f}"


def test_flat_is_exact(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = data
    index = faiss_index.build(fit_spec(IndexConfig(kind="flat"), len(x), 64), x)
    s, ids = index.search(q, 20)
    es, eids = exact(x, q, 20)
    np.testing.assert_allclose(s, es, rtol=1e-5, atol=1e-5)
    assert recall_at_k(ids, eids, approx_true_scores=s, exact_scores=es) == 1.0


def test_recall_is_tie_aware() -> None:
    exact_ids = np.array([[0, 1, 2]])
    exact_scores = np.array([[0.9, 0.5, 0.5]])
    # id 7 ties with the 3rd exact result: as good an answer as id 2.
    assert recall_at_k(np.array([[0, 1, 7]]), exact_ids) == pytest.approx(2 / 3)
    got = recall_at_k(
        np.array([[0, 1, 7]]),
        exact_ids,
        approx_true_scores=np.array([[0.9, 0.5, 0.5]]),
        exact_scores=exact_scores,
    )
    assert got == 1.0
    assert recall_at_k(np.array([[0, -1, -1]]), exact_ids) == pytest.approx(1 / 3)


def test_parameters_are_fitted_to_small_corpora(caplog: pytest.LogCaptureFixture) -> None:
    spec = fit_spec(IndexConfig(kind="ivf_pq", nlist=1024, pq_m=32), 1000, 384)
    assert (spec.nlist, spec.pq_bits) == (25, 8)
    assert "too many lists" in caplog.text and "under-train" in caplog.text
    assert fit_spec(IndexConfig(kind="ivf_pq", nlist=4), 100, 384).pq_bits == 6
    with pytest.raises(ValueError, match="must divide the embedding dimension 100"):
        fit_spec(IndexConfig(kind="ivf_pq", pq_m=32), 5000, 100)
    assert IndexSpec("ivf_pq", 384, nlist=8, pq_m=32, pq_bits=8, opq=True).factory() == (
        "OPQ32,IVF8,PQ32x8"
    )
    assert IndexSpec("ivf_pq", 384, nlist=8, pq_m=32, pq_bits=8).bytes_per_vector == 40


def test_tiny_corpora_still_build(data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0][:50]
    for kind in ("ivf_flat", "ivf_pq", "hnsw"):
        cfg = IndexConfig(kind=kind, pq_m=8, opq=kind == "ivf_pq")
        index = faiss_index.build(fit_spec(cfg, len(x), 64), x)
        assert index.ntotal == 50


def test_training_is_deterministic(data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0][:400]
    spec = fit_spec(IndexConfig(kind="ivf_pq", nlist=8, pq_m=8, opq=True), len(x), 64)
    a, b = (faiss_index.serialize(faiss_index.build(spec, x)) for _ in range(2))
    assert a == b


def test_gpu_always_without_a_gpu_is_a_clear_error() -> None:
    if faiss_index.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match=r"use_gpu=always.*use_gpu=auto"):
        faiss_index.resolve_use_gpu("always")
    assert faiss_index.resolve_use_gpu("auto") is False


@pytest.mark.gpu
def test_gpu_build_and_search_match_cpu(data: tuple[np.ndarray, np.ndarray]) -> None:
    if not faiss_index.gpu_available():
        pytest.skip("no GPU FAISS")
    x, q = data
    spec = fit_spec(IndexConfig(kind="ivf_flat", nlist=64), len(x), 64)
    cpu = faiss_index.build(spec, x)
    gpu_built = faiss_index.build(spec, x, use_gpu=True)
    searcher, on_gpu = faiss_index.to_gpu_for_search(gpu_built, "always")
    assert on_gpu
    faiss_index.set_search_params(searcher, nprobe=64, ef_search=None, on_gpu=True)
    faiss_index.set_search_params(cpu, nprobe=64, ef_search=None)
    _, a = cpu.search(q, 20)
    _, b = searcher.search(q, 20)
    assert recall_at_k(b, a) >= 0.99


def test_missing_faiss_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from hullft.index import faiss_index

    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ModuleNotFoundError, match=r"\.\[cpu\].*\.\[gpu\]"):
        faiss_index._faiss()
