"""The public API of hullft.selection: result type, registry, dispatch, layering."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hullft.selection as sel_pkg
from hullft.config import SelectionConfig
from hullft.selection import (
    METHODS,
    Selection,
    frank_wolfe,
    get_method,
    hullft_fw,
    hullft_round,
    hullft_select,
    integerize,
    knn,
    largest_remainder,
    select,
    sift,
)
from tests.conftest import HANG_GUARD_S


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    t = rng.standard_normal(16)
    X = t + 0.8 * rng.standard_normal((40, 16))
    return X, t


def test_public_names_are_exported():
    for name in (
        "Selection",
        "knn",
        "frank_wolfe",
        "integerize",
        "hullft_select",
        "sift",
        "largest_remainder",
        "METHODS",
        "select",
        "warm_up",
    ):
        assert name in sel_pkg.__all__ and hasattr(sel_pkg, name)


def test_registry_entries_name_themselves():
    assert tuple(METHODS) == ("knn", "sift", "hullft", "hullft_fw", "hullft_round")
    for name, method in METHODS.items():
        assert method.name == name and method.summary


def test_the_batched_twin_is_gone():
    """One implementation per algorithm: no batched copy of the methods to keep in step."""
    assert not hasattr(sel_pkg, "select_batch")
    root = Path(sel_pkg.__file__).parent
    assert not list(root.glob("batch*.py"))


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        METHODS["mine"] = METHODS["knn"]  # type: ignore[index]


def test_unknown_method_lists_the_valid_names(problem):
    X, t = problem
    with pytest.raises(
        ValueError, match=r"unknown selection method 'hulft'.*'knn'.*'hullft_round'"
    ):
        select("hulft", X, t, SelectionConfig())
    with pytest.raises(ValueError, match="unknown selection method"):
        select("KNN", X, t, SelectionConfig())
    with pytest.raises(ValueError, match="unknown selection method"):
        get_method(3)


def test_select_dispatches_with_the_config_values(problem):
    X, t = problem
    cfg = SelectionConfig(
        methods=tuple(METHODS),
        n=12,
        k=40,
        fw_max_iter=40,
        fw_tol=1e-4,
        swap_passes=1,
        sift_lambda=0.2,
    )
    assert select("knn", X, t, cfg) == knn(X, t, 12)
    assert select("sift", X, t, cfg) == sift(X, t, 12, lam=0.2)
    assert select("hullft", X, t, cfg) == hullft_select(
        X, t, 12, max_iter=40, tol=1e-4, swap_passes=1
    )
    assert select("hullft_fw", X, t, cfg) == frank_wolfe(X, t, 12, max_iter=40, tol=1e-4)
    assert select("hullft_round", X, t, cfg) == largest_remainder(
        frank_wolfe(X, t, 12, max_iter=40, tol=1e-4), 12
    )
    assert select("sift", X, t, cfg) != sift(X, t, 12, lam=0.01)


def test_ablations_are_what_they_claim(problem):
    X, t = problem
    fw = hullft_fw(X, t, 10)
    assert fw.size <= 10 and set(fw.counts.tolist()) == {1}
    assert fw == frank_wolfe(X, t, 10)
    rounded = hullft_round(X, t, 10)
    assert rounded.size == 10 and rounded == largest_remainder(fw, 10)
    full = hullft_select(X, t, 10)
    assert full == integerize(X, t, fw, 10)


class TestSelection:
    def test_fields_and_expand(self):
        s = Selection(indices=[4, 1, 7], counts=[2, 1, 3], weights=[0.5, 0.25, 0.25])
        assert s.indices.dtype == np.int64 and s.counts.dtype == np.int64
        assert s.weights is not None and s.weights.dtype == np.float64
        assert s.size == 6 and len(s) == 3
        assert s.expand().tolist() == [4, 4, 1, 7, 7, 7]

    def test_frozen_and_read_only(self):
        s = Selection(indices=[0, 1], counts=[1, 1])
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.indices = np.array([2])  # type: ignore[misc]
        with pytest.raises(ValueError, match="read-only"):
            s.counts[0] = 5

    def test_copies_its_inputs(self):
        idx = np.array([3, 2])
        s = Selection(indices=idx, counts=[1, 1])
        idx[0] = 9
        assert s.indices.tolist() == [3, 2]

    def test_pickles_small_and_read_only(self, problem):
        X, t = problem
        s = hullft_select(X, t, 50)
        blob = pickle.dumps(s)
        assert len(blob) < 1500
        back = pickle.loads(blob)
        assert back == s
        assert not back.indices.flags.writeable

    def test_equality(self):
        a = Selection(indices=[1, 2], counts=[1, 2])
        assert a == Selection(indices=[1, 2], counts=[1, 2])
        assert a != Selection(indices=[2, 1], counts=[2, 1])
        assert a != Selection(indices=[1, 2], counts=[1, 2], weights=[0.5, 0.5])
        assert a != "a selection"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"indices": [], "counts": []}, "at least one"),
            ({"indices": [[1]], "counts": [[1]]}, "1-D"),
            ({"indices": [1, 2], "counts": [1]}, "equal length"),
            ({"indices": [1.0], "counts": [1]}, "integers"),
            ({"indices": [-1], "counts": [1]}, ">= 0"),
            ({"indices": [1, 1], "counts": [1, 1]}, "unique"),
            ({"indices": [1], "counts": [0]}, ">= 1"),
            ({"indices": [1, 2], "counts": [1, 1], "weights": [1.0]}, "shape"),
            ({"indices": [1, 2], "counts": [1, 1], "weights": [1.5, -0.5]}, ">= 0"),
            ({"indices": [1, 2], "counts": [1, 1], "weights": [0.5, 0.4]}, "sum to 1"),
            ({"indices": [1], "counts": [1], "weights": [np.nan]}, "finite"),
        ],
    )
    def test_rejects_malformed(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            Selection(**kwargs)


def test_weights_follow_the_documented_choice(problem):
    X, t = problem
    assert knn(X, t, 5).weights is None
    assert sift(X, t, 5).weights is None
    h = hullft_select(X, t, 7)
    np.testing.assert_array_equal(h.weights, h.counts / 7)
    fw = frank_wolfe(X, t, 7)
    assert fw.weights is not None and abs(fw.weights.sum() - 1) < 1e-12


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=HANG_GUARD_S,
    )
    return out.stdout.strip()


def test_import_does_not_load_torch_ray_hydra():
    mods = _run(
        "import sys, hullft.selection as s, numpy as np\n"
        "rng = np.random.default_rng(0)\n"
        "X, t = rng.standard_normal((20, 8)), rng.standard_normal(8)\n"
        "for m in s.METHODS: s.select(m, X, t, __import__('hullft.config').config.SelectionConfig(n=5, k=20))\n"
        "print(','.join(m for m in ('torch', 'ray', 'hydra', 'omegaconf') if m in sys.modules))"
    )
    assert mods == ""


def test_selection_sources_do_not_import_ray_hydra_omegaconf():
    root = Path(sel_pkg.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        for banned in ("import ray", "from ray", "hydra", "omegaconf", "print("):
            assert banned not in text, f"{path.name} contains {banned!r}"


def test_warm_up_compiles_the_frank_wolfe_kernel():
    """In a fresh process: nothing compiled on import, the kernel ready after warm_up."""
    out = _run(
        "import hullft.selection as s\n"
        "from hullft.selection.fw_kernel import fw_iterate as k\n"
        "before = len(k.signatures)\n"
        "s.warm_up()\n"
        "print(before, len(k.signatures))"
    )
    assert out == "0 1"
