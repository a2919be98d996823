"""hullft's operational metrics, exported through Ray (``ray.util.metrics``).

Every metric is declared once, in :data:`METRICS` (docs/metrics.md lists the same
names, and a test keeps the two in step). Ray adds a ``ray_`` prefix on export:
``hullft_results_total`` is scraped as ``ray_hullft_results_total``.

The driver records everything, from what reaches it anyway (result rows, search
results, its own retry and scheduling decisions), so a counter counts exactly what
was written and nothing is lost when an actor is torn down before Ray exported
its last values. Tags stay low-cardinality (method, status, stage, worker, reason);
never a query id.

Recording never fails or stalls a query: metric objects are created lazily, once
per process, on first use inside a Ray session (outside one, every call is a
no-op), and any exception in a ``record_*`` function is logged once and swallowed.

Row-derived histograms are a table (:data:`ROW_SERIES`): a new numeric
``ResultRow`` field becomes a metric with one line there (and its entry in
docs/metrics.md), as ``batch_size`` did.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from hullft.results import BASE_METHOD, STATUS_FAILED, ResultRow

log = logging.getLogger(__name__)

SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    60.0,
    150.0,
    600.0,
)
"""Histogram boundaries for durations: a millisecond (selection) to ten minutes (a
large model finetuned on a large support)."""
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Histogram boundaries for counts of things (batch sizes)."""

QUERY_STAGE_METHOD = "all"
"""``method`` tag of the per-query stages (embed, search), which all methods share."""


@dataclass(frozen=True)
class Metric:
    """One exported metric: its name, type, tags and meaning (as in docs/metrics.md)."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


RESULTS = Metric(
    "hullft_results_total",
    "counter",
    "(query, method) result rows written, by method and row status.",
    ("method", "status"),
)
QUERIES = Metric(
    "hullft_queries_total",
    "counter",
    "Queries whose rows were written: status=ok (results) or failed (failure rows "
    "after the last attempt).",
    ("status",),
)
RETRIES = Metric(
    "hullft_attempts_retried_total",
    "counter",
    "Query attempts that failed and were retried, by reason (task_error, worker_died, "
    "worker_hung, restarting, collateral).",
    ("reason",),
)
WORKERS_REPLACED = Metric(
    "hullft_workers_replaced_total",
    "counter",
    "Model workers started to replace one that died.",
)
IN_FLIGHT = Metric(
    "hullft_worker_jobs_in_flight",
    "gauge",
    "Queries handed to a model worker and not yet returned (at most "
    "cluster.max_in_flight_per_worker).",
    ("worker",),
)
STAGE_SECONDS = Metric(
    "hullft_stage_seconds",
    "histogram",
    "Seconds per stage and method, from the result rows. embed and search are per "
    f"query (method={QUERY_STAGE_METHOD!r}; a search batch's time shared equally by "
    "its queries); select, finetune, evaluate and reset per row. A row contributes "
    "only the stages it ran.",
    ("stage", "method"),
    SECONDS_BUCKETS,
)
TOKENS_TRAINED = Metric(
    "hullft_tokens_trained_total",
    "counter",
    "Tokens in fresh forward/backward passes, per model worker.",
    ("worker",),
)
TOKENS_SCORED = Metric(
    "hullft_tokens_scored_total",
    "counter",
    "Tokens scored for BPB, per model worker.",
    ("worker",),
)
TRAIN_TOKENS_PER_S = Metric(
    "hullft_worker_train_tokens_per_second",
    "gauge",
    "Trained tokens per second of finetuning time of the worker's latest row.",
    ("worker",),
)
SCORE_TOKENS_PER_S = Metric(
    "hullft_worker_score_tokens_per_second",
    "gauge",
    "Scored tokens per second of evaluation time of the worker's latest row.",
    ("worker",),
)
INDEX_SEARCHES = Metric(
    "hullft_index_searches_total",
    "counter",
    "Search calls to the index actors (one per batch of queries), by status (ok, failed).",
    ("status",),
)
INDEX_QUERIES = Metric(
    "hullft_index_queries_searched_total",
    "counter",
    "Queries embedded and searched by the index actors.",
)
INDEX_SEARCH_SECONDS = Metric(
    "hullft_index_search_seconds",
    "histogram",
    "Seconds of index search (FAISS, embedding excluded) per search call.",
    (),
    SECONDS_BUCKETS,
)

BATCH_SIZE = Metric(
    "hullft_worker_batch_size",
    "histogram",
    "Finetuning jobs a model worker trained together with each job (itself included; "
    "1 = one at a time), observed once per finetuned row.",
    ("worker",),
    SIZE_BUCKETS,
)

# ---------------------------------------------------------------------------
# Histograms observed from result-row fields.

METHOD = (("method", "method"),)
"""Tag ``method`` from ``ResultRow.method``."""
WORKER = (("worker", "worker_id"),)
"""Tag ``worker`` from ``ResultRow.worker_id``."""


@dataclass(frozen=True)
class RowSeries:
    """A histogram observed from the numeric ``ResultRow`` field ``attr``, for rows
    that are not failure rows and where the field is positive (the stage ran)."""

    metric: Metric
    attr: str
    fixed: Mapping[str, str] = field(default_factory=dict)
    """Tags with a constant value (``stage``)."""
    by: tuple[tuple[str, str], ...] = ()
    """(tag, row attribute) pairs."""
    per_query: bool = False
    """Observed once per query (from its first row), not once per row."""
    finetuned_only: bool = False
    """Skip ``base`` rows (nothing was finetuned for them)."""


def _stage(name: str, *, per_query: bool = False) -> RowSeries:
    if per_query:
        return RowSeries(
            STAGE_SECONDS,
            f"{name}_s",
            {"stage": name, "method": QUERY_STAGE_METHOD},
            per_query=True,
        )
    return RowSeries(STAGE_SECONDS, f"{name}_s", {"stage": name}, by=METHOD)


ROW_SERIES: tuple[RowSeries, ...] = (
    _stage("embed", per_query=True),
    _stage("search", per_query=True),
    _stage("select"),
    _stage("finetune"),
    _stage("evaluate"),
    _stage("reset"),
    RowSeries(BATCH_SIZE, "batch_size", by=WORKER, finetuned_only=True),
)

METRICS: tuple[Metric, ...] = tuple(
    dict.fromkeys(
        (
            RESULTS,
            QUERIES,
            RETRIES,
            WORKERS_REPLACED,
            IN_FLIGHT,
            *(s.metric for s in ROW_SERIES),
            TOKENS_TRAINED,
            TOKENS_SCORED,
            TRAIN_TOKENS_PER_S,
            SCORE_TOKENS_PER_S,
            INDEX_SEARCHES,
            INDEX_QUERIES,
            INDEX_SEARCH_SECONDS,
        )
    )
)
"""Every metric hullft exports, each once."""

# ---------------------------------------------------------------------------
# Lazily created Ray metric objects, one per name per process.

_objects: dict[str, Any] = {}
_failed_once: set[str] = set()


def _ray_ready() -> bool:
    # Only a process that already imported Ray can be in a Ray session; checking
    # sys.modules keeps `hullft config` and the library free of a Ray import.
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _get(metric: Metric) -> Any:
    obj = _objects.get(metric.name)
    if obj is None:
        # Ray: imported only once _ray_ready() found it loaded (see there)
        from ray.util import metrics as rm

        if metric.kind == "counter":
            obj = rm.Counter(metric.name, description=metric.description, tag_keys=metric.tags)
        elif metric.kind == "gauge":
            obj = rm.Gauge(metric.name, description=metric.description, tag_keys=metric.tags)
        else:
            obj = rm.Histogram(
                metric.name,
                description=metric.description,
                boundaries=list(metric.boundaries),
                tag_keys=metric.tags,
            )
        _objects[metric.name] = obj
    return obj


F = TypeVar("F", bound=Callable[..., None])


def _never_fails(fn: F) -> F:
    """Run ``fn`` only inside a Ray session; log its first exception, swallow all."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            if _ray_ready():
                fn(*args, **kwargs)
        except Exception:
            if fn.__name__ not in _failed_once:
                _failed_once.add(fn.__name__)
                log.warning(
                    "metrics: %s failed; the run goes on without it (logged once)",
                    fn.__name__,
                    exc_info=True,
                )

    return wrapper  # type: ignore[return-value]


def _tags(series: RowSeries, row: ResultRow) -> dict[str, str]:
    tags = dict(series.fixed)
    for tag, attr in series.by:
        tags[tag] = str(getattr(row, attr))
    return tags


@_never_fails
def record_rows(rows: Sequence[ResultRow], *, failed: bool = False) -> None:
    """One query's rows, as the driver writes them (``failed``: failure rows)."""
    if not rows:
        return
    _get(QUERIES).inc(1, tags={"status": "failed" if failed else "ok"})
    results = _get(RESULTS)
    for row in rows:
        results.inc(1, tags={"method": row.method, "status": row.status})
    for series in ROW_SERIES:
        hist = _get(series.metric)
        for row in rows[:1] if series.per_query else rows:
            value = getattr(row, series.attr)
            if series.finetuned_only and row.method == BASE_METHOD:
                continue
            if row.status != STATUS_FAILED and value > 0:
                hist.observe(float(value), tags=_tags(series, row))
    for row in rows:
        if row.status == STATUS_FAILED or not row.worker_id:
            continue
        worker = {"worker": row.worker_id}
        if row.tokens_trained:
            _get(TOKENS_TRAINED).inc(row.tokens_trained, tags=worker)
            if row.finetune_s > 0:
                _get(TRAIN_TOKENS_PER_S).set(row.tokens_trained / row.finetune_s, tags=worker)
        if row.tokens_scored:
            _get(TOKENS_SCORED).inc(row.tokens_scored, tags=worker)
            if row.evaluate_s > 0:
                _get(SCORE_TOKENS_PER_S).set(row.tokens_scored / row.evaluate_s, tags=worker)


@_never_fails
def record_retry(reason: str) -> None:
    """A failed attempt that the failure policy retries."""
    _get(RETRIES).inc(1, tags={"reason": reason})


@_never_fails
def record_worker_replaced() -> None:
    _get(WORKERS_REPLACED).inc(1)


@_never_fails
def set_in_flight(worker_id: str, jobs: int) -> None:
    """Queries currently handed to ``worker_id``."""
    _get(IN_FLIGHT).set(jobs, tags={"worker": worker_id})


@_never_fails
def record_search(candidates: Iterable[Any]) -> None:
    """One successful index search call, from its per-query ``Candidates``."""
    cands = list(candidates)
    _get(INDEX_SEARCHES).inc(1, tags={"status": "ok"})
    _get(INDEX_QUERIES).inc(len(cands))
    # retrieve() shares the batch's search time equally among its queries.
    _get(INDEX_SEARCH_SECONDS).observe(float(sum(c.search_s for c in cands)))


@_never_fails
def record_search_failed() -> None:
    _get(INDEX_SEARCHES).inc(1, tags={"status": "failed"})
