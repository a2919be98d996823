"""Actors kept across the runs of one Ray session (``hullft bench`` sweep points).

Each kind of actor is keyed by what it was built from; a run whose key matches
reuses them (no index load, no model load), a run whose key differs gets new ones
and the old ones are killed first, so that their CPUs and GPUs are free for it.
Selectors are keyed by the index only: each ``select`` call carries its run's
selection config. Model workers are keyed by the model, finetuning config, worker
plan and worker class, and are only reused once ready (their model built).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.index_actor import IndexService
from actors.selector import SelectorService
from hullft.config import RunConfig, config_to_dict

log = logging.getLogger(__name__)

ACTOR_NAMESPACE = "hullft"


def worker_actor_name(run_id: str, worker_id: str) -> str:
    return f"{run_id}/{worker_id}"


@dataclass
class _Kept:
    key: str = ""
    actors: list[Any] = field(default_factory=list)

    def take(self, key: str) -> list[Any] | None:
        if self.key == key and self.actors:
            return self.actors
        self.drop()
        self.key = key
        return None

    def drop(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []


@dataclass
class ActorPool:
    """The index actors, selectors and idle model workers of one Ray session."""

    _index: _Kept = field(default_factory=_Kept)
    _selectors: _Kept = field(default_factory=_Kept)
    _workers: _Kept = field(default_factory=_Kept)

    def index_actors(self, cfg: RunConfig, index_dir: Path) -> list[Any]:
        key = repr((str(index_dir), config_to_dict(cfg.embedder), config_to_dict(cfg.index)))
        key += f"x{cfg.cluster.index_replicas}"
        kept = self._index.take(key)
        if kept is not None:
            return kept
        # Index and selector actors are light and mostly idle: they reserve no CPU
        # so that the model workers can have every core.
        self._index.actors = [
            ray.remote(num_cpus=0, max_restarts=3)(IndexService).remote(
                str(index_dir), cfg.embedder, cfg.index
            )
            for _ in range(cfg.cluster.index_replicas)
        ]
        return self._index.actors

    def selectors(self, cfg: RunConfig, index_dir: Path, run_id: str) -> list[Any]:
        key = f"{index_dir}x{cfg.cluster.num_selectors}"
        kept = self._selectors.take(key)
        if kept is not None:
            return kept
        self._selectors.actors = [
            ray.remote(num_cpus=0, max_restarts=3)(SelectorService)
            .options(name=f"{run_id}/selector{i}", namespace=ACTOR_NAMESPACE)
            .remote(str(index_dir), cfg.selection)
            for i in range(cfg.cluster.num_selectors)
        ]
        return self._selectors.actors

    def idle_workers(self, key: str) -> list[Any]:
        """Ready workers kept for ``key`` (taken out of the pool); workers kept for
        another key are killed."""
        kept = self._workers.take(key)
        self._workers.actors = []
        return list(kept or [])

    def keep_workers(self, key: str, actors: list[Any]) -> None:
        self._workers.take(key)
        self._workers.actors = list(actors)

    def drop_workers(self) -> None:
        """Kill the idle model workers kept here (the next run starts its own)."""
        self._workers.drop()
        self._workers.key = ""

    def close(self) -> None:
        """Kill every actor kept here."""
        for kept in (self._workers, self._selectors, self._index):
            kept.drop()
            kept.key = ""
