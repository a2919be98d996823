"""ModelWorker: one model replica. Builds the model in :meth:`prepare`, inside the
actor, so that Ray has already set CUDA_VISIBLE_DEVICES; then runs calls of up to
``batch_size`` queries through :func:`hullft.pipeline.finetune_and_score_batch`
(every (query, method) job of the call in one ``engine.run_batch``); the engine
resets the weights between jobs."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from hullft.config import FinetuneConfig, ModelConfig
from hullft.index import load_index
from hullft.models import load_model
from hullft.pipeline import (
    Candidates,
    MethodSelection,
    RowContext,
    WorkItem,
    finetune_and_score_batch,
)
from hullft.results import ResultRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker reports once its model is built."""

    worker_id: str
    actor_id: str
    """Ray's id of this actor: errors that name it report this worker's death."""
    batch_size: int
    """Finetuning jobs — (query, method) pairs — its replica trains at once (the
    engine's resolved ``finetune.batch_jobs``; 1 for the one-at-a-time engine)."""
    device: str


@dataclass(frozen=True)
class QueryWork:
    """One query of a call, without its selections (they travel as references)."""

    cands: Candidates
    ctx: RowContext
    with_base: bool = True


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
        """This actor's Ray id, at once (before the model is built)."""
        return ray.get_runtime_context().get_actor_id() or ""

    def prepare(self) -> WorkerInfo:
        """Build the model (once) and say who this worker is and its batch size."""
        self._ensure_ready()
        return WorkerInfo(
            worker_id=self.worker_id,
            actor_id=ray.get_runtime_context().get_actor_id() or "",
            batch_size=int(getattr(self._engine, "batch_jobs", 1)),
            device=str(self._engine.device),
        )

    def _ensure_ready(self) -> None:
        if self._engine is not None:
            return
        # torch loads in the actor process only: the driver imports this module to
        # make the actor class remote and must stay free of it.
        import torch

        from hullft.batched import make_engine

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
        # The batched engine when finetune.batch_jobs and the architecture allow it,
        # else the one-at-a-time engine (make_engine logs which, and why).
        self._engine = make_engine(
            lm.model, lm.tokenizer, self.finetune_cfg, device, max_length=lm.max_length
        )
        compiled_s = self._engine.warm_up()
        if compiled_s:
            log.info("worker %s: compiled the training step in %.1f s", self.worker_id, compiled_s)
        self._texts = load_index(self.index_dir).texts

    def run_batch(
        self, work: list[QueryWork], *selections: list[MethodSelection]
    ) -> list[list[ResultRow]]:
        """Rows for each query of ``work``; ``selections[i]`` are query i's (Ray
        resolves them, as top-level arguments, from the selectors' results)."""
        self._ensure_ready()
        items = [
            WorkItem(
                w.cands,
                tuple(sels),
                dataclasses.replace(w.ctx, worker_id=self.worker_id, node_id=self.node_id),
                w.with_base,
            )
            for w, sels in zip(work, selections, strict=True)
        ]
        return finetune_and_score_batch(self._engine, items, self._texts.get_many)

    def run(
        self,
        cands: Candidates,
        selections: list[MethodSelection],
        ctx: RowContext,
        with_base: bool = True,
    ) -> list[ResultRow]:
        """One query (the batch of one)."""
        return self.run_batch([QueryWork(cands, ctx, with_base)], selections)[0]


def _node_id() -> str:
    try:
        return str(ray.get_runtime_context().get_node_id())[:12]
    except Exception:  # not inside Ray
        return "local"
