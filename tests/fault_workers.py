"""Model workers with injected faults, importable by Ray worker processes (the
Ray fixtures put this folder on the workers' PYTHONPATH). Tests subclass them
with ``type(name, (Base,), {"TARGET": query_id})``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from actors.gpu_worker import ModelWorker


class CrashOnFirstAttempt(ModelWorker):
    """Kills its own process on the first attempt at query ``TARGET``."""

    TARGET = ""

    def run(self, cands: Any, selections: Any, ctx: Any, with_base: bool = True) -> Any:
        if ctx.attempt == 1 and cands.query_id == self.TARGET:
            os._exit(1)
        return super().run(cands, selections, ctx, with_base)


class AlwaysOOM(ModelWorker):
    """Raises an out-of-memory error on every attempt at query ``TARGET``."""

    TARGET = ""

    def run(self, cands: Any, selections: Any, ctx: Any, with_base: bool = True) -> Any:
        if cands.query_id == self.TARGET:
            raise RuntimeError("CUDA out of memory (injected by the test)")
        return super().run(cands, selections, ctx, with_base)


class StallOnNode(ModelWorker):
    """On node ``NODE`` (a Ray node id): writes the query id to ``MARKER`` and stalls,
    so that the test can remove the node while it certainly holds a query. On other
    nodes: waits (at most ``WAIT_S``) for that marker before the first query, so that
    the stalling node receives a query before the others finish."""

    NODE = ""
    MARKER = ""
    WAIT_S = 300.0

    def run(self, cands: Any, selections: Any, ctx: Any, with_base: bool = True) -> Any:
        marker = Path(self.MARKER)
        if self.node_id and self.NODE.startswith(self.node_id):  # rows carry a prefix
            marker.write_text(cands.query_id)
            time.sleep(3600)  # until the node is removed, which kills this process
        deadline = time.monotonic() + self.WAIT_S
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().run(cands, selections, ctx, with_base)
