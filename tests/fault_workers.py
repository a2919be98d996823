"""Model workers with injected faults, importable by Ray worker processes (the
Ray fixtures put this folder on the workers' PYTHONPATH). Tests subclass them
with ``type(name, (Base,), {"TARGET": query_id})``."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from actors.gpu_worker import ModelWorker, QueryWork
from hullft.results import ResultRow


def _ids(work: list[QueryWork]) -> set[str]:
    return {w.cands.query_id for w in work}


class CrashOnFirstAttempt(ModelWorker):
    """Kills its own process on the first attempt at query ``TARGET``."""

    TARGET = ""

    def run_batch(self, work: list[QueryWork], *selections: Any) -> list[list[ResultRow]]:
        if any(w.ctx.attempt == 1 and w.cands.query_id == self.TARGET for w in work):
            os._exit(1)
        return super().run_batch(work, *selections)


class AlwaysOOM(ModelWorker):
    """Raises an out-of-memory error on every call that holds query ``TARGET``."""

    TARGET = ""

    def run_batch(self, work: list[QueryWork], *selections: Any) -> list[list[ResultRow]]:
        if self.TARGET in _ids(work):
            raise RuntimeError("CUDA out of memory (injected by the test)")
        return super().run_batch(work, *selections)


class BatchOf(ModelWorker):
    """Reports a batch size of ``B`` (its engine still runs the jobs one by one,
    exactly) and tags each row's worker id with the number of queries in its call."""

    B = 3

    def _ensure_ready(self) -> None:
        super()._ensure_ready()
        self._engine.batch_size = self.B

    def run_batch(self, work: list[QueryWork], *selections: Any) -> list[list[ResultRow]]:
        rows = super().run_batch(work, *selections)
        tag = f":{len(work)}"
        return [[dataclasses.replace(r, worker_id=r.worker_id + tag) for r in rs] for rs in rows]
