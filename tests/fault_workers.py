"""Model workers with injected faults, importable by Ray worker processes (the
Ray fixtures put this folder on the workers' PYTHONPATH). Tests subclass them
with ``type(name, (Base,), {"TARGET": query_id})``."""

from __future__ import annotations

import os
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
