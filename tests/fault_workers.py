"""Model workers with injected faults, importable by Ray worker processes (the
Ray fixtures put this folder on the workers' PYTHONPATH). Tests subclass them
with ``type(name, (Base,), {"TARGET": query_id})``."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
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
    """Trains ``B`` queries' jobs at once (``B`` x the smoke config's 3 methods, so
    the driver sends up to ``B`` queries per call) and tags each row's worker id with
    the number of queries in its call."""

    B = 3
    METHODS = 3

    def _ensure_ready(self) -> None:
        super()._ensure_ready()
        self._engine.batch_jobs = self.B * self.METHODS

    def run_batch(self, work: list[QueryWork], *selections: Any) -> list[list[ResultRow]]:
        rows = super().run_batch(work, *selections)
        tag = f":{len(work)}"
        return [[dataclasses.replace(r, worker_id=r.worker_id + tag) for r in rs] for rs in rows]


class StallOnNode(ModelWorker):
    """On node ``NODE`` (a Ray node id): writes the query id to ``MARKER`` and stalls,
    so that the test can remove the node while it certainly holds a query. On other
    nodes: waits (at most ``WAIT_S``) for that marker before the first query, so that
    the stalling node receives a query before the others finish."""

    NODE = ""
    MARKER = ""
    WAIT_S = 300.0

    def run_batch(self, work: list[QueryWork], *selections: Any) -> list[list[ResultRow]]:
        marker = Path(self.MARKER)
        if self.node_id and self.NODE.startswith(self.node_id):  # rows carry a prefix
            marker.write_text(work[0].cands.query_id)
            time.sleep(3600)  # until the node is removed, which kills this process
        deadline = time.monotonic() + self.WAIT_S
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().run_batch(work, *selections)
