"""The per-query stages as plain functions: retrieve → select → finetune/score.

The Ray actors in ``actors/`` are thin wrappers around exactly these functions,
and :func:`run_local` chains them in one process. A test checks that a run
through Ray gives the same rows as :func:`run_local` for the same config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hullft.config import RunConfig, SelectionConfig, config_to_dict
from hullft.data.queries import Query, load_queries
from hullft.embedder import Embedder
from hullft.index import build_index, load_index, search_settings
from hullft.models import load_model
from hullft.protocols import FinetuneEngine, SearchIndex, TextEmbedder
from hullft.results import BASE_METHOD, STATUS_FAILED, Outcome, ResultRow, base_outcome
from hullft.selection import Selection, select

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidates:
    """A query with its K retrieved candidates (what crosses the network: ids, not texts)."""

    query_id: str
    domain: str
    text: str
    ids: np.ndarray
    """(K,) int64 sequence ids, best first; -1 padding from FAISS already removed."""
    scores: np.ndarray
    """(K,) float32 inner products."""
    embedding: np.ndarray
    """(d,) float32 L2-normalised query embedding."""
    embed_s: float = 0.0
    search_s: float = 0.0


@dataclass(frozen=True)
class MethodSelection:
    """One method's selection for one query, or the reason it could not select."""

    method: str
    selection: Selection | None
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class RowContext:
    """Who produced a row (identity and provenance fields of ResultRow)."""

    run_id: str
    worker_id: str = "local"
    node_id: str = "local"
    attempt: int = 1
    k: int = 0
    n: int = 0


def retrieve(
    index: SearchIndex, embedder: TextEmbedder, queries: Sequence[Query], k: int
) -> list[Candidates]:
    """Embed a batch of queries and return their top-``k`` candidates.

    Stage times are measured for the batch and shared equally by its queries.
    """
    if not queries:
        return []
    t0 = time.perf_counter()
    emb = np.asarray(embedder.encode([q.text for q in queries]), dtype=np.float32)
    t1 = time.perf_counter()
    scores, ids = index.search(emb, k)
    t2 = time.perf_counter()
    per_embed, per_search = (t1 - t0) / len(queries), (t2 - t1) / len(queries)
    out = []
    for i, q in enumerate(queries):
        keep = ids[i] >= 0
        out.append(
            Candidates(
                query_id=q.query_id,
                domain=q.domain,
                text=q.text,
                ids=np.asarray(ids[i][keep], dtype=np.int64),
                scores=np.asarray(scores[i][keep], dtype=np.float32),
                embedding=emb[i],
                embed_s=per_embed,
                search_s=per_search,
            )
        )
    return out


def select_methods(
    pool: np.ndarray, query_embedding: np.ndarray, cfg: SelectionConfig, methods: Iterable[str]
) -> list[MethodSelection]:
    """Run each selection method on one query's candidate pool ``pool`` (K, d).

    A method that cannot select (e.g. fewer candidates than kNN's budget) yields
    a MethodSelection with ``error`` set instead of raising, so the other methods
    of the query still run and the failure is recorded in its row.
    """
    results = []
    for method in methods:
        t0 = time.perf_counter()
        try:
            sel = select(method, pool, query_embedding, cfg)
            results.append(MethodSelection(method, sel, time.perf_counter() - t0))
        except ValueError as exc:
            results.append(MethodSelection(method, None, time.perf_counter() - t0, error=str(exc)))
    return results


@dataclass(frozen=True)
class WorkItem:
    """One query's work for a model replica: its candidates, its methods' selections,
    who it is for, and whether the ``base`` row is still to be written."""

    cands: Candidates
    selections: tuple[MethodSelection, ...]
    ctx: RowContext
    with_base: bool = True


def finetune_and_score(
    engine: FinetuneEngine,
    cands: Candidates,
    selections: Sequence[MethodSelection],
    texts_of: Callable[[np.ndarray], list[str]],
    ctx: RowContext,
    *,
    with_base: bool = True,
) -> list[ResultRow]:
    """Score the query with the base model once, then finetune and score per method.

    ``texts_of`` maps sequence ids to their texts (the text store). Returns one
    row per method (plus ``base`` when ``with_base``), in a fixed order.
    """
    item = WorkItem(cands, tuple(selections), ctx, with_base)
    return finetune_and_score_batch(engine, [item], texts_of)[0]


def finetune_and_score_batch(
    engine: FinetuneEngine,
    items: Sequence[WorkItem],
    texts_of: Callable[[np.ndarray], list[str]],
) -> list[list[ResultRow]]:
    """:func:`finetune_and_score` for several queries, with every (query, method)
    finetuning job of all of them handed to ``engine.run_batch`` in one call, so a
    batched engine trains them together. Rows are those of one call per item."""
    # torch comes with the engine module; the driver, which imports this module
    # for its types, never needs it.
    from hullft.ttft import TTFTJob

    bases = [engine.evaluate(item.cands.text) for item in items]
    jobs: list[TTFTJob] = []
    support: list[np.ndarray] = []  # the sequence ids of each job, in job order
    for item, base in zip(items, bases, strict=True):
        for ms in item.selections:
            if ms.selection is None:
                continue
            seq_ids = item.cands.ids[np.asarray(ms.selection.indices)]
            counts = tuple(int(c) for c in ms.selection.counts)
            jobs.append(TTFTJob(item.cands.text, tuple(texts_of(seq_ids)), counts, base))
            support.append(seq_ids)
    results = iter(zip(engine.run_batch(jobs), support, strict=True))
    out: list[list[ResultRow]] = []
    for item, base in zip(items, bases, strict=True):
        cands, ctx = item.cands, item.ctx
        # Who produced the rows; every row of this query is this one with its outcome.
        template = ResultRow(
            run_id=ctx.run_id,
            query_id=cands.query_id,
            method=BASE_METHOD,
            domain=cands.domain,
            k=ctx.k,
            n=ctx.n,
            embed_s=cands.embed_s,
            search_s=cands.search_s,
            worker_id=ctx.worker_id,
            node_id=ctx.node_id,
            device=str(engine.device),
            attempt=ctx.attempt,
        )
        rows: list[ResultRow] = []
        if item.with_base:
            outcome = base_outcome(cands.text, base)
            rows.append(template.with_outcome(outcome, method=BASE_METHOD))
        for ms in item.selections:
            if ms.selection is None:
                failed = Outcome(status=STATUS_FAILED, error=ms.error, bpb_before=base.bpb)
                rows.append(template.with_outcome(failed, method=ms.method, select_s=ms.seconds))
                continue
            res, seq_ids = next(results)
            rows.append(
                template.with_outcome(
                    res,
                    method=ms.method,
                    support_ids=tuple(int(s) for s in seq_ids),
                    support_counts=tuple(int(c) for c in ms.selection.counts),
                    select_s=ms.seconds,
                )
            )
        out.append(rows)
    return out


ROW_NEUTRAL_SECTIONS = ("cluster", "experiment", "bench")
"""Config sections that never change a result row: not part of the run id, and they
may differ between the runs that resume one another."""
ROW_NEUTRAL_KEYS = (("finetune", "batch_jobs"),)
"""Single settings outside those sections that never change a row (likewise)."""


def row_config(config: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config (a RunConfig, or its dict as recorded in run.json) that
    can change a result row, as a plain dict: what the run id hashes and what runs
    resuming one another must agree on."""
    d = config_to_dict(config) if isinstance(config, RunConfig) else dict(config)
    for section in ROW_NEUTRAL_SECTIONS:
        d.pop(section, None)
    for section, key in ROW_NEUTRAL_KEYS:
        if isinstance(d.get(section), dict):
            d[section] = {k: v for k, v in d[section].items() if k != key}
    return d


def run_id_for(cfg: RunConfig) -> str:
    """The run id: ``experiment.run_id`` or a hash of everything that changes results.

    Cluster layout, output location and query limit do not change a row, so an
    identical rerun (on another cluster, or with a larger limit) resumes.
    """
    if cfg.experiment.run_id:
        return cfg.experiment.run_id
    key = json.dumps(row_config(cfg), sort_keys=True)
    return f"{cfg.experiment.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def queries_per_call(batch_jobs: int, methods_per_query: int) -> int:
    """Queries per call that fill a replica training ``batch_jobs`` jobs at once, when
    each query brings ``methods_per_query`` finetuning jobs: rounded up, so the
    engine's last group may be partly filled rather than the replica underused."""
    return max(1, -(-max(1, batch_jobs) // max(1, methods_per_query)))


def run_local(cfg: RunConfig, *, device: str = "cpu") -> list[ResultRow]:
    """The whole pipeline in this process, no Ray: the reference for the Ray runtime."""
    from hullft.batched import make_engine  # torch: the driver imports this module, never torch

    index_dir = build_index(cfg)
    index = load_index(index_dir, embedder=cfg.embedder, **search_settings(cfg.index))
    embedder = Embedder.from_config(cfg.embedder)
    lm = load_model(cfg.model, device=device)
    engine = make_engine(lm.model, lm.tokenizer, cfg.finetune, device, max_length=lm.max_length)
    engine.warm_up()
    queries = load_queries(cfg.queries)
    if cfg.experiment.limit is not None:
        queries = queries[: cfg.experiment.limit]
    ctx = RowContext(run_id=run_id_for(cfg), k=cfg.selection.k, n=cfg.selection.n)
    items = []
    for cands in retrieve(index, embedder, queries, cfg.selection.k):
        pool = index.embeddings.get(cands.ids)
        sels = select_methods(pool, cands.embedding, cfg.selection, cfg.selection.methods)
        items.append(WorkItem(cands, tuple(sels), ctx))
    # As a Ray model worker is given: enough queries per call to fill the engine.
    batch = queries_per_call(int(getattr(engine, "batch_jobs", 1)), len(cfg.selection.methods))
    rows: list[ResultRow] = []
    for i in range(0, len(items), batch):
        for query_rows in finetune_and_score_batch(
            engine, items[i : i + batch], index.texts.get_many
        ):
            rows.extend(query_rows)
    return rows
