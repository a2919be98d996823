"""Bad input is a ValueError that names the problem; odd-but-valid input is accepted.

Decisions under test (docs/selection.md): float16/32/64 are accepted and computed in
float64; rows and query of any norm are normalised to unit norm; NaN/inf and all-zero
rows or queries are rejected; n must be a positive integer, and n <= K for kNN.
"""

from __future__ import annotations

import numpy as np
import pytest

from hullft.config import SelectionConfig
from hullft.selection import (
    METHODS,
    Selection,
    frank_wolfe,
    hullft_select,
    integerize,
    knn,
    largest_remainder,
    select,
    sift,
)
from hullft.selection.fw import frank_wolfe_path

METHOD_NAMES = tuple(METHODS)


@pytest.fixture
def pool():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 4))


@pytest.fixture
def query():
    return np.array([1.0, 0.5, -0.2, 0.3])


def _via_registry(method):
    return lambda X, t: select(method, X, t, SelectionConfig(n=2, k=6))


SINGLE = {
    "knn": lambda X, t: knn(X, t, 2),
    "frank_wolfe": lambda X, t: frank_wolfe(X, t, 2),
    "hullft_select": lambda X, t: hullft_select(X, t, 2),
    "sift": lambda X, t: sift(X, t, 2),
    "integerize": lambda X, t: integerize(
        X, t, Selection(indices=[0, 1], counts=[1, 1], weights=[0.5, 0.5]), 3
    ),
    **{f"select:{m}": _via_registry(m) for m in METHOD_NAMES},
}


def with_nan(X):
    X = X.copy()
    X[3, 1] = np.nan
    return X


def with_inf(X):
    X = X.copy()
    X[2, 0] = -np.inf
    return X


def with_zero_row(X):
    X = X.copy()
    X[4] = 0.0
    return X


BAD_POOLS = [
    (lambda X: X[0], "pool must be a 2-D"),
    (lambda X: X[None], "pool must be a 2-D"),
    (lambda X: X[:0], "pool is empty"),
    (lambda X: X[:, :0], "dimension"),
    (lambda X: X.astype(np.int64), "floating-point.*int64"),
    (lambda X: X > 0, "floating-point.*bool"),
    (lambda X: X.astype(np.complex128), "floating-point.*complex128"),
    (lambda X: X.astype(object), "floating-point.*object"),
    (with_nan, r"pool has NaN or inf values in rows \[3\]"),
    (with_inf, r"pool has NaN or inf values in rows \[2\]"),
    (with_zero_row, r"pool has all-zero rows \[4\]"),
    (lambda X: X[:, :3], "query has dimension 4 but pool rows have dimension 3"),
]

BAD_QUERIES = [
    (lambda t: t[None], "query must be a 1-D"),
    (lambda t: np.zeros_like(t), "query is all zeros"),
    (lambda t: np.where(np.arange(4) == 1, np.nan, t), "query has NaN or inf"),
    (lambda t: t.astype(np.int32), "floating-point.*int32"),
    (lambda t: t[:2], "query has dimension 2"),
]


@pytest.mark.parametrize("fn", sorted(SINGLE))
@pytest.mark.parametrize(("bad", "message"), BAD_POOLS)
def test_bad_pool_is_rejected_by_every_method(pool, query, fn, bad, message):
    with pytest.raises(ValueError, match=message):
        SINGLE[fn](bad(pool), query)


@pytest.mark.parametrize("fn", sorted(SINGLE))
@pytest.mark.parametrize(("bad", "message"), BAD_QUERIES)
def test_bad_query_is_rejected_by_every_method(pool, query, fn, bad, message):
    with pytest.raises(ValueError, match=message):
        SINGLE[fn](pool, bad(query))


def test_unconvertible_input(query):
    with pytest.raises(ValueError, match="floating-point"):
        knn("not an array", query, 1)
    with pytest.raises(ValueError, match=r"pool must be a numpy array.*got list"):
        knn([[1.0, 2.0], [3.0]], query, 1)  # ragged


@pytest.mark.parametrize("n", [0, -3, 1.5, "2", True, None])
def test_bad_n(pool, query, n):
    for fn in (knn, sift, hullft_select, frank_wolfe):
        with pytest.raises(ValueError, match=r"(n|max_support) must be (an integer )?>= 1"):
            fn(pool, query, n)
    sel = Selection(indices=[0], counts=[1], weights=[1.0])
    with pytest.raises(ValueError, match="n must be"):
        integerize(pool, query, sel, n)
    with pytest.raises(ValueError, match="n must be"):
        largest_remainder(sel, n)


def test_knn_needs_n_at_most_k(pool, query):
    with pytest.raises(ValueError, match=r"n=7 > K=6: kNN picks distinct pool rows"):
        knn(pool, query, 7)
    assert knn(pool, query, 6).size == 6


def test_methods_with_repeats_accept_n_above_k(pool, query):
    assert sift(pool, query, 20).size == 20
    assert hullft_select(pool, query, 20).size == 20
    assert frank_wolfe(pool, query, 20).size <= 6


@pytest.mark.parametrize("lam", [0, -0.1, np.nan, np.inf, "0.1"])
def test_bad_sift_lambda(pool, query, lam):
    with pytest.raises(ValueError, match="lam must be"):
        sift(pool, query, 2, lam=lam)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_iter": -1}, "max_iter must be an integer >= 0"),
        ({"max_iter": 2.5}, "max_iter must be an integer >= 0"),
        ({"tol": -1e-3}, "tol must be finite and >= 0"),
        ({"tol": np.nan}, "tol must be finite"),
    ],
)
def test_bad_frank_wolfe_options(pool, query, kwargs, message):
    with pytest.raises(ValueError, match=message):
        frank_wolfe(pool, query, 3, **kwargs)
    with pytest.raises(ValueError, match=message):
        hullft_select(pool, query, 3, **kwargs)


def test_bad_integerize_arguments(pool, query):
    with pytest.raises(ValueError, match="swap_passes must be an integer >= 0"):
        hullft_select(pool, query, 3, swap_passes=-1)
    with pytest.raises(ValueError, match="must be a Selection"):
        integerize(pool, query, [0, 1], 3)
    with pytest.raises(ValueError, match="no weights"):
        integerize(pool, query, knn(pool, query, 2), 3)
    with pytest.raises(ValueError, match="no weights"):
        largest_remainder(knn(pool, query, 2), 3)
    far = Selection(indices=[0, 9], counts=[1, 1], weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="pool row 9 but the pool has only 6 rows"):
        integerize(pool, query, far, 3)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_bad_config(pool, query, method):
    bad = {"n": 2}
    calls = [
        lambda: select(method, pool, query, bad),
        lambda: METHODS[method].select(pool, query, bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="SelectionConfig"):
            call()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.longdouble])
def test_float_dtypes_give_the_float64_answer(dtype):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 8)).astype(dtype)
    t = rng.standard_normal(8).astype(dtype)
    X64, t64 = X.astype(np.float64), t.astype(np.float64)  # exact for these dtypes' values
    cfg = SelectionConfig(methods=METHOD_NAMES, n=10, k=30)
    for m in METHOD_NAMES:
        assert select(m, X, t, cfg) == select(m, X64, t64, cfg)


def test_rows_of_any_norm_are_normalised():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((25, 6))
    t = rng.standard_normal(6)
    unit_X = X / np.linalg.norm(X, axis=1, keepdims=True)
    scaled = unit_X * rng.uniform(0.01, 100.0, size=(25, 1))
    cfg = SelectionConfig(methods=METHOD_NAMES, n=8, k=25)
    for m in METHOD_NAMES:
        a, b = select(m, scaled, 3.0 * t, cfg), select(m, unit_X, t / np.linalg.norm(t), cfg)
        assert a.indices.tolist() == b.indices.tolist() and a.counts.tolist() == b.counts.tolist()


def test_extreme_magnitudes_are_rescaled_not_rejected():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 5))
    t = rng.standard_normal(5)
    huge, tiny = X.copy(), X.copy()
    huge[::2] *= 2.0**700  # squares would overflow
    tiny[1::2] *= 2.0**-700  # squares would underflow to 0
    cfg = SelectionConfig(methods=METHOD_NAMES, n=6, k=12)
    for m in METHOD_NAMES:
        want = select(m, X, t, cfg)
        assert select(m, huge, t * 2.0**600, cfg) == want
        assert select(m, tiny, t * 2.0**-600, cfg) == want


def test_inputs_are_not_modified(pool, query):
    X, t = pool.copy(), query.copy()
    for m in METHOD_NAMES:
        select(m, pool, query, SelectionConfig(n=4, k=6))
    frank_wolfe_path(pool, query, 4)
    np.testing.assert_array_equal(pool, X)
    np.testing.assert_array_equal(query, t)


def test_duplicate_rows_resolve_to_the_first_copy():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((5, 6))
    X = base[[3, 0, 3, 1, 0, 2, 4, 3]]  # rows 0, 2, 7 are equal; so are 1, 4
    t = base[3] + 0.01 * rng.standard_normal(6)
    assert knn(X, t, 3).indices.tolist() == [0, 2, 7]  # copies in row order
    for fn in (frank_wolfe, hullft_select, sift):
        chosen = fn(X, t, 6).indices.tolist()
        assert 2 not in chosen and 7 not in chosen and 4 not in chosen


def test_small_sift_lambda_stays_finite():
    """Repeated picks drive k_A(x, x) to ~lam; nothing overflows down to lam = 1e-8."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((5, 3))
    with np.errstate(all="raise"):
        sel = sift(X, X[2], 40, lam=1e-8)
    assert sel.size == 40 and sel.counts.max() > 1
    with pytest.raises(ValueError, match=r"lam=1e-300 is below 1e-08"):
        sift(X, X[2], 4, lam=1e-300)
    # a config cannot even carry such a lambda to select
    with pytest.raises(ValueError, match=r"sift_lambda must be >= 1e-8.*got 1e-09"):
        SelectionConfig(n=2, k=5, sift_lambda=1e-9)
