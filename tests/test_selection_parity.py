"""Parity of hullft.selection.sift with the SIFT reference package activeft 0.1.1.

activeft's ``Retriever(index, llambda=lam, fast=False)`` searches a faiss IndexFlatIP
over the pool and runs VTL (SIFT) on the retrieved candidates; its picks, repeats
included, must be ours. The Retriever computes in float32 (faiss, and the covariance
matrix it builds from float32 vectors), so where two candidates' variance reductions
agree to ~1e-6 relative it can pick either; there the comparison is tie-aware: the
sequences may part only at such a near-tie. The same VTL code run in float64
(``test_sift_matches_activeft_vtl_float64``) must agree exactly, pick for pick.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hullft.selection import sift, sift_sequence

torch = pytest.importorskip("torch")
faiss = pytest.importorskip("faiss")
activeft_sift = pytest.importorskip("activeft.sift")

from activeft.acquisition_functions.vtl import VTL  # noqa: E402
from activeft.active_data_loader import ActiveDataLoader  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """activeft runs many tiny torch ops; on a busy machine OpenMP threads only wait."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pools(seed: int, n_cases: int):
    """(pool, query, n, lam) on random and clustered pools of unit float32 vectors."""
    rng = np.random.default_rng(seed)
    for k in range(n_cases):
        K, d, n = [(20, 8, 5), (50, 64, 20), (200, 384, 50), (120, 32, 60)][k % 4]
        lam = (0.01, 0.2)[(k // 4) % 2]
        if k % 2:
            centres = rng.standard_normal((5, d))
            X = centres[rng.integers(0, 5, K)] + 0.3 * rng.standard_normal((K, d))
            q = centres[0] + 0.3 * rng.standard_normal(d)
        else:
            X, q = rng.standard_normal((K, d)), rng.standard_normal(d)
        X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
        q = (q / np.linalg.norm(q)).astype(np.float32)
        yield X, q, n, lam


def retriever_picks(X: np.ndarray, q: np.ndarray, n: int, lam: float) -> np.ndarray:
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(X)
    retriever = activeft_sift.Retriever(
        index, llambda=lam, fast=False, also_query_opposite=False, device=CPU
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "batch_size large relative to mini_batch_size"
        _, ids, _, _ = retriever.search(q[None, :], N=n, K=len(X))
    return np.asarray(ids, dtype=np.int64)


def vtl_float64_picks(X: np.ndarray, q: np.ndarray, n: int, lam: float) -> np.ndarray:
    """activeft's VTL + ActiveDataLoader (what Retriever runs), in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # activeft builds identity matrices with it
    try:
        acquisition = VTL(
            target=torch.tensor(q[None, :], dtype=torch.float64),
            num_workers=1,
            subsample=False,
            force_nonsequential=False,
            noise_std=float(np.sqrt(lam)),
        )
        data = activeft_sift.Dataset(torch.tensor(X, dtype=torch.float64))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ids, _ = ActiveDataLoader(
                dataset=data, batch_size=n, acquisition_function=acquisition, device=CPU
            ).next()
    finally:
        torch.set_default_dtype(previous)
    return ids.numpy().astype(np.int64)


def variance_reductions(X, q, picks, lam):
    """Float64 SIFT gains of every candidate after conditioning on ``picks``."""
    Z = np.vstack([X, q]).astype(np.float64)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    k = Z @ Z.T
    for j in picks:
        k = k - np.outer(k[:, j], k[j, :]) / (k[j, j] + lam)
    K = len(X)
    return k[:K, K] ** 2 / (np.diag(k)[:K] + lam)


def test_sift_matches_activeft_vtl_float64():
    for X, q, n, lam in pools(seed=0, n_cases=16):
        ours = sift_sequence(X, q, n, lam=lam)
        np.testing.assert_array_equal(ours, vtl_float64_picks(X, q, n, lam))


def test_sift_matches_activeft_retriever():
    exact = 0
    cases = list(pools(seed=1, n_cases=24))
    for X, q, n, lam in cases:
        ours = sift_sequence(X, q, n, lam=lam)
        theirs = retriever_picks(X, q, n, lam)
        assert theirs.shape == (n,)
        if np.array_equal(ours, theirs):
            exact += 1
            continue
        # Tie-aware: the sequences may only part where float32 cannot separate the two.
        p = int(np.argmax(ours != theirs))
        gains = variance_reductions(X, q, ours[:p], lam)
        a, b = gains[ours[p]], gains[theirs[p]]
        assert abs(a - b) <= 1e-5 * max(a, b), (p, a, b)
        assert a >= b  # float64 picks the larger reduction
    assert exact >= len(cases) - 2, f"only {exact}/{len(cases)} sequences identical"


def test_sift_selection_aggregates_the_reference_picks():
    X, q, _, lam = next(pools(seed=2, n_cases=1))
    picks = vtl_float64_picks(X, q, 30, lam)
    sel = sift(X, q, 30, lam=lam)
    order = list(dict.fromkeys(picks.tolist()))
    assert sel.indices.tolist() == order
    assert sel.counts.tolist() == [int((picks == i).sum()) for i in order]
