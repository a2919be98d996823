"""Selection methods by name: the one table that configs, reports and dispatch read.

``METHODS[name]`` is a :class:`Method` that carries what a run of it needs: how to
call it with a config, and the facts reports need (does it repeat rows, does it set
weights). :class:`hullft.config.SelectionConfig` validates ``selection.methods``
against these keys, so adding a method here is the whole registration.

This module does not import :mod:`hullft.config` (the config imports this table); what
a method reads from a config is the :class:`SelectionParams` protocol, which
``SelectionConfig`` satisfies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from hullft.selection.methods import hullft_fw, hullft_round, hullft_select
from hullft.selection.nearest import knn
from hullft.selection.result import Selection
from hullft.selection.sift_greedy import sift


@runtime_checkable
class SelectionParams(Protocol):
    """The settings the methods read (a :class:`hullft.config.SelectionConfig`)."""

    @property
    def n(self) -> int: ...
    @property
    def fw_max_iter(self) -> int: ...
    @property
    def fw_tol(self) -> float: ...
    @property
    def swap_passes(self) -> int: ...
    @property
    def sift_lambda(self) -> float: ...


RunFn = Callable[[Any, Any, SelectionParams], Selection]


@dataclass(frozen=True)
class Method:
    """One selection method: how to run it, and what its multisets look like."""

    name: str
    """Registry key, the name configs and result rows use."""
    summary: str
    """One line for reports and ``--help``."""
    repeats: bool
    """Whether the multiset can use a row more than once."""
    weighted: bool
    """Whether ``Selection.weights`` is set."""
    run: RunFn
    """``(pool (K, d), query (d,), cfg) -> Selection``."""

    def select(self, pool: Any, query: Any, cfg: SelectionParams) -> Selection:
        """Run this method for one query: pool (K, d), query (d,)."""
        return self.run(pool, query, _check_cfg(cfg))


def _knn(pool: Any, query: Any, cfg: SelectionParams) -> Selection:
    return knn(pool, query, cfg.n)


def _sift(pool: Any, query: Any, cfg: SelectionParams) -> Selection:
    return sift(pool, query, cfg.n, lam=cfg.sift_lambda)


def _hullft(pool: Any, query: Any, cfg: SelectionParams) -> Selection:
    return hullft_select(
        pool,
        query,
        cfg.n,
        max_iter=cfg.fw_max_iter,
        tol=cfg.fw_tol,
        swap_passes=cfg.swap_passes,
    )


def _hullft_fw(pool: Any, query: Any, cfg: SelectionParams) -> Selection:
    return hullft_fw(pool, query, cfg.n, max_iter=cfg.fw_max_iter, tol=cfg.fw_tol)


def _hullft_round(pool: Any, query: Any, cfg: SelectionParams) -> Selection:
    return hullft_round(pool, query, cfg.n, max_iter=cfg.fw_max_iter, tol=cfg.fw_tol)


METHODS: Mapping[str, Method] = MappingProxyType(
    {
        m.name: m
        for m in (
            Method("knn", "top-n rows by cosine similarity, each once", False, False, _knn),
            Method(
                "sift",
                "greedy posterior-variance minimisation (SIFT), repeats counted",
                True,
                False,
                _sift,
            ),
            Method(
                "hullft",
                "Frank-Wolfe + geometric integerization to exactly n",
                True,
                True,
                _hullft,
            ),
            Method(
                "hullft_fw",
                "ablation: Frank-Wolfe support (<= n rows), each once",
                False,
                True,
                _hullft_fw,
            ),
            Method(
                "hullft_round",
                "ablation: Frank-Wolfe weights rounded by largest remainder, no swaps",
                True,
                True,
                _hullft_round,
            ),
        )
    }
)
"""Every selection method, by name, in the order reports list them."""


def get_method(name: Any) -> Method:
    """The registered method ``name``; ValueError listing the valid names otherwise."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise ValueError(f"unknown selection method {name!r}; choose from {list(METHODS)}")
    return method


def _check_cfg(cfg: Any) -> SelectionParams:
    if not isinstance(cfg, SelectionParams):
        raise ValueError(
            f"cfg must be a hullft.config.SelectionConfig, got {type(cfg).__name__}; "
            "build one with build_config(SelectionConfig, {...})"
        )
    return cfg


def select(method: str, pool: Any, query: Any, cfg: SelectionParams) -> Selection:
    """Run selection method ``method`` for one query: pool (K, d), query (d,)."""
    return get_method(method).select(pool, query, cfg)
