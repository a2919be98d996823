"""select_batch: element b equals select(pools[b], queries[b]) on every path.

Paths: the vectorised CPU path (per-element numpy preparation, vectorised torch
loops), the all-torch preparation used on GPUs (forced on the CPU here with
``native=True``), the per-query loop that the CPU default picks for small n, and CUDA
itself when present (``-m gpu``). Rows and counts must match exactly; weights up to
rounding (numpy and torch sum in different orders).
"""

from __future__ import annotations

import numpy as np
import pytest

from hullft.config import METHOD_NAMES, SelectionConfig
from hullft.selection import Selection, select, select_batch

torch = pytest.importorskip("torch")


def same(a: Selection, b: Selection) -> bool:
    if a.indices.tolist() != b.indices.tolist() or a.counts.tolist() != b.counts.tolist():
        return False
    if a.weights is None or b.weights is None:
        return a.weights is None and b.weights is None
    return bool(np.allclose(a.weights, b.weights, rtol=0, atol=1e-12))


def make_batch(kind: str, B: int, K: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((B, K, d)), rng.standard_normal((B, d))
    if kind == "clustered":
        t = rng.standard_normal((B, d))
        centres = t[:, None, :] + rng.standard_normal((B, 4, d))
        which = rng.integers(0, 4, (B, K))
        P = np.take_along_axis(centres, which[:, :, None], axis=1)
        return P + 0.2 * rng.standard_normal((B, K, d)), t
    if kind == "duplicated":
        P = rng.standard_normal((B, K, d))
        rows = rng.integers(0, max(1, K // 3), (B, K))
        return np.take_along_axis(P, rows[:, :, None], axis=1), rng.standard_normal((B, d))
    if kind == "tied":  # small integers: exact ties everywhere
        P = rng.integers(-1, 2, (B, K, d)).astype(np.float64)
        P[~P.any(axis=2)] = 1.0
        Q = rng.integers(-1, 2, (B, d)).astype(np.float64)
        Q[~Q.any(axis=1)] = 1.0
        return P, Q
    raise AssertionError(kind)


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


CONFIGS = [
    ("random", 6, 30, 12, 1),
    ("random", 6, 30, 12, 10),
    ("clustered", 6, 40, 16, 25),
    ("duplicated", 5, 24, 8, 8),
    ("tied", 6, 20, 5, 7),
    ("random", 3, 5, 4, 12),  # n > K
]


@pytest.mark.parametrize(
    ("method", "kind", "B", "K", "d", "n"),
    [(m, *c) for m in METHOD_NAMES for c in CONFIGS if m != "knn" or c[4] <= c[2]],
)
def test_batched_equals_single(method, kind, B, K, d, n):
    P, Q = make_batch(kind, B, K, d, seed=B * K + n)
    cfg = SelectionConfig(methods=(method,), n=n, k=K)
    got = select_batch(method, P, Q, cfg, vectorised=True)
    assert len(got) == B
    for b in range(B):
        assert same(got[b], select(method, P[b], Q[b], cfg)), (b, got[b])
    looped = select_batch(method, P, Q, cfg, vectorised=False)
    assert looped == [select(method, P[b], Q[b], cfg) for b in range(B)]


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_torch_preparation_path_equals_single(method, monkeypatch):
    """The all-torch preparation (GPU path) forced on the CPU."""
    import hullft.selection.batch as batch_mod
    from hullft.selection.batch_problem import prepare_batch

    monkeypatch.setattr(
        batch_mod,
        "prepare_batch",
        lambda p, q, dev, **kw: prepare_batch(p, q, dev, native=True),
    )
    for kind, B, K, d, n in CONFIGS[:5]:
        P, Q = make_batch(kind, B, K, d, seed=7 + n)
        cfg = SelectionConfig(methods=(method,), n=n, k=K)
        got = select_batch(method, P, Q, cfg, vectorised=True)
        for b in range(B):
            assert same(got[b], select(method, P[b], Q[b], cfg)), (kind, b)


def test_chunking_does_not_change_results(monkeypatch):
    import hullft.selection.batch as batch_mod

    P, Q = make_batch("clustered", 7, 25, 6, seed=3)
    cfg = SelectionConfig(methods=METHOD_NAMES, n=9, k=25)
    whole = {m: select_batch(m, P, Q, cfg, vectorised=True) for m in METHOD_NAMES}
    monkeypatch.setattr(batch_mod, "chunk_size", lambda K, d, device: 3)
    for m in METHOD_NAMES:
        assert select_batch(m, P, Q, cfg, vectorised=True) == whole[m]


@pytest.mark.parametrize(
    ("method", "K", "n", "vectorised"),
    [
        ("knn", 200, 10, True),
        ("sift", 200, 10, False),
        ("sift", 200, 25, True),
        ("hullft", 200, 10, False),
        ("hullft", 200, 50, False),
        ("hullft_fw", 16, 1, False),
        ("hullft_round", 200, 50, False),
    ],
)
def test_cpu_default_vectorises_where_it_measured_faster(method, K, n, vectorised, monkeypatch):
    import hullft.selection.batch as batch_mod

    calls = []
    monkeypatch.setattr(batch_mod, "_loop", lambda *a: calls.append("loop") or [])
    monkeypatch.setattr(batch_mod, "prepare_batch", lambda *a, **kw: calls.append("vec") or None)
    monkeypatch.setattr(batch_mod, "_METHODS", {method: lambda bp, cfg: []})
    P, Q = make_batch("random", 2, K, 4, seed=0)
    select_batch(method, P, Q, SelectionConfig(methods=(method,), n=n, k=K))
    assert calls == (["vec"] if vectorised else ["loop"])


def test_accepts_torch_tensors_and_low_precision():
    P, Q = make_batch("random", 4, 20, 8, seed=4)
    cfg = SelectionConfig(methods=("hullft",), n=6, k=20)
    want = select_batch("hullft", P.astype(np.float32), Q.astype(np.float32), cfg)
    got = select_batch("hullft", torch.from_numpy(P).float(), torch.from_numpy(Q).float(), cfg)
    assert got == want
    half = select_batch(
        "sift", torch.from_numpy(P).half(), Q.astype(np.float16), cfg, vectorised=True
    )
    for b in range(4):
        assert half[b] == select("sift", P[b].astype(np.float16), Q[b].astype(np.float16), cfg)


def test_explicit_cpu_device():
    P, Q = make_batch("random", 2, 10, 4, seed=5)
    cfg = SelectionConfig(n=3, k=10)
    assert select_batch("knn", P, Q, cfg, device="cpu") == select_batch("knn", P, Q, cfg)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_cuda_equals_single(method):
    for kind, B, K, d, n in CONFIGS:
        if method == "knn" and n > K:
            continue
        P, Q = make_batch(kind, B, K, d, seed=11 + n)
        cfg = SelectionConfig(methods=(method,), n=n, k=K)
        got = select_batch(method, torch.from_numpy(P).cuda(), torch.from_numpy(Q).cuda(), cfg)
        assert got == select_batch(method, P, Q, cfg, device="cuda")
        for b in range(B):
            assert same(got[b], select(method, P[b], Q[b], cfg)), (kind, b)
