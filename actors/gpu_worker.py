"""ModelWorker: one model replica. Builds the model lazily, on the first query,
so that Ray has already set CUDA_VISIBLE_DEVICES for this actor; runs the base
score once and each method's TTFT for a query; the engine resets the weights
between queries."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from hullft.config import FinetuneConfig, ModelConfig
from hullft.pipeline import Candidates, MethodSelection, RowContext, finetune_and_score
from hullft.results import ResultRow

log = logging.getLogger(__name__)


class ModelWorker:
    def __init__(
        self,
        index_dir: str | Path,
        model_cfg: ModelConfig,
        finetune_cfg: FinetuneConfig,
        worker_id: str,
        num_threads: int | None = None,
    ):
        self.index_dir = Path(index_dir)
        self.model_cfg = model_cfg
        self.finetune_cfg = finetune_cfg
        self.worker_id = worker_id
        self.num_threads = num_threads
        self._engine: Any = None
        self._texts: Any = None
        self.node_id = _node_id()

    def ping(self) -> str:
        return self.worker_id

    def _ensure_ready(self) -> None:
        if self._engine is not None:
            return
        import torch

        from hullft.index import load_index
        from hullft.models import load_model
        from hullft.ttft import TTFTEngine

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        log.info(
            "worker %s: loading %s on %s (CUDA_VISIBLE_DEVICES=%s)",
            self.worker_id,
            self.model_cfg.name,
            device,
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
        lm = load_model(self.model_cfg, device=device)
        self._engine = TTFTEngine(
            lm.model, lm.tokenizer, self.finetune_cfg, device, max_length=lm.max_length
        )
        compiled_s = self._engine.warm_up()
        if compiled_s:
            log.info("worker %s: compiled the training step in %.1f s", self.worker_id, compiled_s)
        self._texts = load_index(self.index_dir).texts

    def run(
        self,
        cands: Candidates,
        selections: list[MethodSelection],
        ctx: RowContext,
        with_base: bool = True,
    ) -> list[ResultRow]:
        self._ensure_ready()
        ctx = dataclasses.replace(ctx, worker_id=self.worker_id, node_id=self.node_id)
        return finetune_and_score(
            self._engine, cands, selections, self._texts.get_many, ctx, with_base=with_base
        )


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())[:12]
    except Exception:  # not inside Ray
        return "local"
