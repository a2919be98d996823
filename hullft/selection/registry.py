"""Selection methods by name, so that configs name methods as values.

``METHODS[name].select(pool, query, cfg)`` runs one query, ``.select_batch(pools,
queries, cfg, device)`` many at once; :func:`select` and :func:`select_batch` dispatch
by name and reject unknown names with the list of valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hullft.config import METHOD_NAMES, SelectionConfig
from hullft.selection.methods import hullft_fw, hullft_round, hullft_select
from hullft.selection.nearest import knn
from hullft.selection.result import Selection
from hullft.selection.sift_greedy import sift

SingleFn = Callable[[Any, Any, SelectionConfig], Selection]


@dataclass(frozen=True)
class Method:
    """One selection method: how to run it for one query and for a batch."""

    name: str
    """Registry key (one of ``hullft.config.METHOD_NAMES``)."""
    summary: str
    """One line for reports and ``--help``."""
    repeats: bool
    """Whether the multiset can use a row more than once."""
    weighted: bool
    """Whether ``Selection.weights`` is set."""
    single: SingleFn
    """``(pool (K, d), query (d,), cfg) -> Selection``."""

    def select(self, pool: Any, query: Any, cfg: SelectionConfig) -> Selection:
        return self.single(pool, query, _check_cfg(cfg))

    def select_batch(
        self,
        pools: Any,
        queries: Any,
        cfg: SelectionConfig,
        device: Any = None,
        vectorised: bool | None = None,
    ) -> list[Selection]:
        from hullft.selection.batch import run_batch  # torch is imported only here

        cfg = _check_cfg(cfg)
        return run_batch(self.name, pools, queries, cfg, device=device, vectorised=vectorised)


def _knn(pool: Any, query: Any, cfg: SelectionConfig) -> Selection:
    return knn(pool, query, cfg.n)


def _sift(pool: Any, query: Any, cfg: SelectionConfig) -> Selection:
    return sift(pool, query, cfg.n, lam=cfg.sift_lambda)


def _hullft(pool: Any, query: Any, cfg: SelectionConfig) -> Selection:
    return hullft_select(
        pool,
        query,
        cfg.n,
        max_iter=cfg.fw_max_iter,
        tol=cfg.fw_tol,
        swap_passes=cfg.swap_passes,
    )


def _hullft_fw(pool: Any, query: Any, cfg: SelectionConfig) -> Selection:
    return hullft_fw(pool, query, cfg.n, max_iter=cfg.fw_max_iter, tol=cfg.fw_tol)


def _hullft_round(pool: Any, query: Any, cfg: SelectionConfig) -> Selection:
    return hullft_round(pool, query, cfg.n, max_iter=cfg.fw_max_iter, tol=cfg.fw_tol)


METHODS: Mapping[str, Method] = MappingProxyType(
    {
        "knn": Method("knn", "top-n rows by cosine similarity, each once", False, False, _knn),
        "sift": Method(
            "sift",
            "greedy posterior-variance minimisation (SIFT), repeats counted",
            True,
            False,
            _sift,
        ),
        "hullft": Method(
            "hullft", "Frank-Wolfe + geometric integerization to exactly n", True, True, _hullft
        ),
        "hullft_fw": Method(
            "hullft_fw",
            "ablation: Frank-Wolfe support (<= n rows), each once",
            False,
            True,
            _hullft_fw,
        ),
        "hullft_round": Method(
            "hullft_round",
            "ablation: Frank-Wolfe weights rounded by largest remainder, no swaps",
            True,
            True,
            _hullft_round,
        ),
    }
)
if tuple(METHODS) != METHOD_NAMES:  # pragma: no cover - guarded by a test too
    raise RuntimeError(f"selection registry {list(METHODS)} != config.METHOD_NAMES {METHOD_NAMES}")


def get_method(name: Any) -> Method:
    """The registered method ``name``; ValueError listing the valid names otherwise."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise ValueError(f"unknown selection method {name!r}; choose from {list(METHODS)}")
    return method


def _check_cfg(cfg: Any) -> SelectionConfig:
    if not isinstance(cfg, SelectionConfig):
        raise ValueError(
            f"cfg must be a hullft.config.SelectionConfig, got {type(cfg).__name__}; "
            "build one with build_config(SelectionConfig, {...})"
        )
    return cfg


def select(method: str, pool: Any, query: Any, cfg: SelectionConfig) -> Selection:
    """Run selection method ``method`` for one query: pool (K, d), query (d,)."""
    return get_method(method).select(pool, query, cfg)


def select_batch(
    method: str,
    pools: Any,
    queries: Any,
    cfg: SelectionConfig,
    *,
    device: Any = None,
    vectorised: bool | None = None,
) -> list[Selection]:
    """Run ``method`` for B queries at once: pools (B, K, d), queries (B, d).

    Element b of the result equals ``select(method, pools[b], queries[b], cfg)`` (same
    rows and counts; weights up to rounding), independently of the rest of the batch.

    ``device``: where the vectorised path runs (default: the device of ``pools`` if it
    is a torch tensor, else the CPU). ``vectorised``: ``True`` runs the whole batch
    through float64 torch kernels (B x K x K Gram matrices, masked loops), ``False``
    loops over :func:`select`; ``None`` (default) vectorises on accelerators, and on a
    CPU where that measured faster (kNN, and SIFT with n >= K/8; see
    :func:`hullft.selection.batch.vectorise_on_cpu` and docs/selection.md).
    """
    return get_method(method).select_batch(pools, queries, cfg, device, vectorised)
