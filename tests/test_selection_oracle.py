"""Oracle tests: naive transcriptions of docs/design.md §4 against hullft.selection.

The ``naive_*`` functions (:mod:`hullft.selection.oracle`) are line-by-line
transcriptions of the published procedure in R^d (no Gram tricks, no incremental
updates; plain numpy products), with the tie rule of ``hullft.selection.ties``. The
results must agree index for index (and count for count) with the fast
implementations on random, clustered, tied and duplicated pools.
``benchmarks/bench_selection.py`` times the same ``naive_frank_wolfe`` +
``naive_integerize`` as the baseline a user would otherwise run.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hullft.selection import (
    Selection,
    frank_wolfe,
    hullft_select,
    integerize,
    knn,
    largest_remainder,
    sift,
    sift_sequence,
)
from hullft.selection.fw import run_frank_wolfe
from hullft.selection.oracle import (
    naive_frank_wolfe,
    naive_integerize,
    naive_knn,
    naive_largest_remainder,
    naive_loss,
    naive_sift,
    naive_sift_conditional,
    unit,
)
from hullft.selection.problem import Gram, Problem, prepare

# ----------------------------------------------------------------------------------
# Pools.


def random_pool(rng, K, d):
    return rng.standard_normal((K, d)), rng.standard_normal(d)


def clustered_pool(rng, K, d, clusters=4, spread=0.15):
    centres = rng.standard_normal((clusters, d))
    X = centres[rng.integers(0, clusters, K)] + spread * rng.standard_normal((K, d))
    t = centres[0] + spread * rng.standard_normal(d)
    return X, t


def duplicated_pool(rng, K, d):
    """Rows drawn with replacement from a smaller set: many exact duplicates."""
    base = rng.standard_normal((max(2, K // 3), d))
    return base[rng.integers(0, len(base), K)], rng.standard_normal(d)


def tied_pool(rng, K, d):
    """Signed unit axes and sums of two: exact ties in every inner product."""
    vecs = [np.eye(d)[i] * s for i in range(d) for s in (1, -1)]
    vecs += [np.eye(d)[i] + np.eye(d)[j] for i in range(d) for j in range(i + 1, d)]
    X = np.array(vecs)[rng.permutation(len(vecs))[:K]]
    t = np.ones(d)
    t[rng.integers(0, d)] = 2.0
    return X, t


POOLS = {
    "random": random_pool,
    "clustered": clustered_pool,
    "duplicated": duplicated_pool,
    "tied": tied_pool,
}


def cases(kind, n_cases, seed, K_range=(2, 40), d_range=(2, 16), N_range=(1, 20)):
    rng = np.random.default_rng(seed)
    for _ in range(n_cases):
        K = int(rng.integers(*K_range))
        d = int(rng.integers(*d_range))
        if kind == "tied":
            d = max(d, 3)
            K = min(K, d * (d + 3) // 2)
        N = int(rng.integers(*N_range))
        X, t = POOLS[kind](rng, K, d)
        yield X, t, N


KINDS = sorted(POOLS)

# ----------------------------------------------------------------------------------
# Tests.


@pytest.mark.parametrize("kind", KINDS)
def test_knn_matches_oracle(kind):
    for X, t, N in cases(kind, 40, seed=1):
        N = min(N, len(X))
        assert knn(X, t, N).indices.tolist() == naive_knn(X, t, N)


@pytest.mark.parametrize("kind", KINDS)
def test_frank_wolfe_matches_oracle(kind):
    for X, t, N in cases(kind, 25, seed=2):
        rows, weights = naive_frank_wolfe(X, t, N)
        sel = frank_wolfe(X, t, N)
        assert sel.indices.tolist() == rows
        np.testing.assert_allclose(sel.weights, weights, rtol=0, atol=1e-9)
        assert sel.counts.tolist() == [1] * len(rows)


@pytest.mark.parametrize("kind", KINDS)
def test_hullft_matches_oracle(kind):
    """Frank–Wolfe + integerization, both naive, against hullft_select (N up to 2K)."""
    for X, t, N in cases(kind, 20, seed=3, N_range=(1, 30)):
        rows, weights = naive_frank_wolfe(X, t, N)
        want_rows, want_counts = naive_integerize(X, t, rows, weights, N)
        sel = hullft_select(X, t, N)
        assert sel.indices.tolist() == want_rows
        assert sel.counts.tolist() == want_counts
        assert sel.size == N


@pytest.mark.parametrize("swap_passes", [0, 1, 2, 5])
def test_integerize_matches_oracle_on_given_weights(swap_passes):
    """integerize() on arbitrary convex weights, not only Frank–Wolfe's."""
    rng = np.random.default_rng(4)
    for _ in range(30):
        K, d = int(rng.integers(2, 12)), int(rng.integers(2, 8))
        X, t = clustered_pool(rng, K, d)
        m = int(rng.integers(1, K + 1))
        rows = rng.permutation(K)[:m]
        w = rng.dirichlet(np.full(m, 0.5))
        N = int(rng.integers(1, 25))
        sel = Selection(indices=rows, counts=np.ones(m, dtype=np.int64), weights=w)
        want_rows, want_counts = naive_integerize(X, t, rows.tolist(), w, N, swap_passes)
        got = integerize(X, t, sel, N, swap_passes=swap_passes)
        assert got.indices.tolist() == want_rows
        assert got.counts.tolist() == want_counts


def test_largest_remainder_matches_oracle():
    rng = np.random.default_rng(5)
    for _ in range(200):
        m = int(rng.integers(1, 10))
        w = rng.dirichlet(np.ones(m)) if rng.random() < 0.7 else np.full(m, 1.0 / m)
        N = int(rng.integers(1, 30))
        sel = Selection(indices=np.arange(m), counts=np.ones(m, dtype=np.int64), weights=w)
        want = naive_largest_remainder(w, N)
        got = largest_remainder(sel, N)
        assert got.indices.tolist() == [i for i in range(m) if want[i] > 0]
        assert got.counts.tolist() == [c for c in want if c > 0]


@pytest.mark.parametrize("kind", KINDS)
def test_sift_matches_oracle(kind):
    """Both forms of §4.4 agree with each other and with sift() (repeats included)."""
    for i, (X, t, N) in enumerate(cases(kind, 12, seed=6, K_range=(1, 14), N_range=(1, 9))):
        lam = (0.01, 0.2, 1.0)[i % 3]
        picks = naive_sift(X, t, N, lam)
        assert naive_sift_conditional(X, t, N, lam) == picks
        assert sift_sequence(X, t, N, lam=lam).tolist() == picks
        sel = sift(X, t, N, lam=lam)
        assert sel.expand().tolist() == sorted(picks, key=picks.index)


@pytest.mark.parametrize("kind", KINDS)
def test_sift_matches_conditional_oracle_larger(kind):
    for i, (X, t, N) in enumerate(cases(kind, 6, seed=7, K_range=(20, 60), N_range=(10, 40))):
        lam = (0.01, 0.2)[i % 2]
        assert sift_sequence(X, t, N, lam=lam).tolist() == naive_sift_conditional(X, t, N, lam)


def test_frank_wolfe_oracle_on_converging_case():
    """The query inside the hull: Frank–Wolfe stops on tol, not on the support size."""
    rng = np.random.default_rng(8)
    X = unit(rng.standard_normal((6, 3)))
    t = unit(0.5 * X[0] + 0.3 * X[1] + 0.2 * X[2])
    for N in (3, 6, 50):
        rows, weights = naive_frank_wolfe(X, t, N, tol=1e-3)
        sel = frank_wolfe(X, t, N, tol=1e-3)
        assert sel.indices.tolist() == rows
        np.testing.assert_allclose(sel.weights, weights, atol=1e-9)


def raw_problem(X, t) -> Problem:
    """The problem over rows and query as given, not normalised (a geometry that unit
    vectors cannot take, to reach the kernel's rarer branches)."""
    X, t = np.asarray(X, dtype=np.float64), np.asarray(t, dtype=np.float64)
    G = X @ X.T
    return Problem(
        X=X,
        inv=np.ones(len(X)),
        t=t,
        tt=float(t @ t),
        b=X @ t,
        kdiag=np.diagonal(G).copy(),
        canon=None,
        G=G,
    )


def test_frank_wolfe_jump_onto_a_vertex_matches_oracle():
    """A full step (gamma = 1) puts all weight on the new vertex: w = e_s exactly.

    On unit vectors a full step needs the new vertex to be exactly as good as the
    current iterate, so only rounding gets there; raw rows reach it directly.
    """
    X = [[10.0, 0.0], [2.0, 1.0], [3.0, -1.0]]
    t = [2.0, 1.0]
    problem = raw_problem(X, t)
    gammas: list[float] = []
    rows, weights = naive_frank_wolfe(X, t, 3, normalise=False, gammas=gammas)
    assert 1.0 in gammas
    fw = run_frank_wolfe(problem, Gram(problem, 3), 3, 250, 1e-5, record=True)
    assert fw.support.tolist() == rows == [1, 0]
    np.testing.assert_array_equal(fw.weights, [1.0, 0.0])
    np.testing.assert_array_equal(weights, [1.0, 0.0])
    assert fw.stop_reason == "tol"
    np.testing.assert_allclose(fw.objective, [65.0, 0.0])


@pytest.mark.parametrize("kind", KINDS)
def test_frank_wolfe_scale_folding_changes_nothing(kind):
    """The scaled score vector is folded back (alpha -> 1) when alpha gets tiny; with
    the threshold raised so that it folds on every step, results must not move."""
    for X, t, N in cases(kind, 10, seed=9, N_range=(2, 30)):
        problem = prepare(X, t)
        plain = run_frank_wolfe(problem, Gram(problem, 0), N, 250, 1e-5, record=True)
        folded = run_frank_wolfe(
            problem, Gram(problem, 0), N, 250, 1e-5, record=True, rescale_below=2.0
        )  # alpha < 2: folds on every step
        assert folded.support.tolist() == plain.support.tolist()
        assert (folded.n_iter, folded.stop_reason) == (plain.n_iter, plain.stop_reason)
        np.testing.assert_allclose(folded.weights, plain.weights, rtol=0, atol=1e-12)
        np.testing.assert_allclose(folded.objective, plain.objective, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------
# Integerization against exhaustive search (reported, not only asserted).


def compositions(N, m):
    """(C(N+m-1, m-1), m) array of all c in Z_{>=0}^m with sum c = N (stars and bars)."""
    rows = []
    for cuts in itertools.combinations(range(N + m - 1), m - 1):
        edges = np.array([-1, *cuts, N + m - 1])
        rows.append(np.diff(edges) - 1)
    return np.array(rows)


def exhaustive_losses(Xs, t, N):
    C = compositions(N, len(Xs))
    R = t[None, :] - (C @ Xs) / N
    return np.einsum("ij,ij->i", R, R)


def test_integerize_vs_exhaustive_search(capsys):
    """How close greedy fill + swaps gets to the best N-multiset over the FW support."""
    rng = np.random.default_rng(9)
    stats: dict[str, list[float]] = {"greedy+swap": [], "largest remainder": []}
    n_cases = 400
    for k in range(n_cases):
        m, d = int(rng.integers(2, 7)), int(rng.integers(2, 7))
        make = (random_pool, clustered_pool)[k % 2]
        X, t = make(rng, m, d)
        N = int(rng.integers(2, 13))
        fw = frank_wolfe(X, t, N)
        S = fw.indices
        Xs, tu = unit(X)[S], unit(t)
        best = float(exhaustive_losses(Xs, tu, N).min())
        for name, sel in (
            ("greedy+swap", integerize(X, t, fw, N)),
            ("largest remainder", largest_remainder(fw, N)),
        ):
            counts = dict(zip(sel.indices.tolist(), sel.counts.tolist(), strict=True))
            L = naive_loss(Xs, tu, [counts.get(int(s), 0) for s in S], N)
            assert best - 1e-12 <= L  # nothing beats the exhaustive optimum
            stats[name].append((L - best) / max(best, 1e-300))
    lines = ["", f"integerization vs exhaustive search ({n_cases} cases, m <= 6, N <= 12):"]
    for name, gaps in stats.items():
        g = np.array(gaps)
        lines.append(
            f"  {name:17s}: optimal in {np.mean(g <= 1e-9):6.1%} of cases, mean relative "
            f"excess loss {g.mean():.1e}, worst {g.max():.1e}"
        )
    with capsys.disabled():
        print("\n".join(lines))
    greedy = np.array(stats["greedy+swap"])
    assert np.mean(greedy <= 1e-9) >= 0.9
    assert greedy.mean() <= np.mean(stats["largest remainder"])
