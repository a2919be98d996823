"""Typed configuration: one frozen dataclass per stage, every field defaulted.

Hydra (in ``actors/cli.py``) composes the YAML in ``hullft/configs/`` (package data:
nothing in hullft reads it) and hands a plain dict to :func:`build_config`; nothing
below ever sees a ``DictConfig``. Unknown keys and wrong types are errors that name
the key and the valid choices, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from hullft.selection.registry import METHODS

EMBEDDED_MODEL = "smollm2-135m"
EMBEDDED_EMBEDDER = "all-minilm-l6-v2"
TINY_MODEL = "tiny-llama"
HASHING_EMBEDDER = "hashing"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _require_finite(section: Any, where: str) -> None:
    """Refuse NaN and ±inf in every float field (and float tuple) of ``section``.

    ``inf`` parses as a float from the command line, and no setting here means
    "unbounded" by infinity (``null`` does): an infinite learning rate only shows
    up later as a non-finite loss on every query.
    """
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        items = value if isinstance(value, tuple) else (value,)
        for v in items:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(
                    f"{where}.{f.name} must be a finite number, got {value!r}; "
                    "use a finite value (or null where the key allows it)"
                )


def _require_path_component(value: str, key: str) -> None:
    """``value`` names one file or directory inside an output directory.

    Run ids and experiment names become directory names under
    ``experiment.output_dir`` (and ``bench.report_dir``): a separator, ``..`` or
    an absolute path would write outside it.
    """
    bad = (
        not value
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or "\0" in value
        or (os.altsep is not None and os.altsep in value)
    )
    _require(
        not bad,
        f"{key}={value!r} must be a single path component (a name without '/', '\\', "
        "NUL, and not '.' or '..'): it names a directory inside experiment.output_dir",
    )


@dataclass(frozen=True)
class ModelConfig:
    """The causal LM that is finetuned and scored."""

    name: str = EMBEDDED_MODEL
    """``smollm2-135m`` (embedded, offline), ``tiny-llama`` (random 2-layer model
    built in-process, for tests), a Hugging Face model id, or a local path."""
    cache_dir: str | None = None
    """Where the embedded model is converted to safetensors once
    (default ``$HULLFT_CACHE/models``, i.e. ``~/.cache/hullft/models``)."""
    max_length: int | None = None
    """Context used for training sequences and BPB windows; ``None`` = the model's."""
    trust_remote_code: bool = False
    """Passed to ``from_pretrained`` for hub models that need it."""

    def __post_init__(self) -> None:
        _require_finite(self, "model")
        _require(bool(self.name), "model.name must not be empty")
        _require(
            self.max_length is None or self.max_length >= 2,
            f"model.max_length must be >= 2 or null, got {self.max_length}",
        )


@dataclass(frozen=True)
class EmbedderConfig:
    """Sentence embedder used for the index and for queries (L2-normalised)."""

    name: str = EMBEDDED_EMBEDDER
    """``all-minilm-l6-v2`` (embedded), ``hashing`` (fast deterministic n-gram
    embedder for tests), or a sentence-transformers / Hugging Face encoder id or path."""
    batch_size: int = 64
    """Texts per encoder forward pass."""
    max_seq_length: int = 128
    """Encoder truncation in word pieces (MiniLM was trained at 128; 256 is its max)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:i]``."""
    dim: int = 256
    """Output dimension of the ``hashing`` embedder (ignored by real encoders)."""

    def __post_init__(self) -> None:
        _require_finite(self, "embedder")
        _require(self.batch_size >= 1, f"embedder.batch_size must be >= 1, got {self.batch_size}")
        _require(
            self.max_seq_length >= 8,
            f"embedder.max_seq_length must be >= 8, got {self.max_seq_length}",
        )
        _require(self.dim >= 8, f"embedder.dim must be >= 8, got {self.dim}")


@dataclass(frozen=True)
class DataConfig:
    """The training corpus that is sequenced, embedded and indexed."""

    paths: tuple[str, ...] = ()
    """Pile-format ``.jsonl``, ``.jsonl.zst`` or ``.parquet`` files, directories or
    globs. Empty = the embedded minipile training split."""
    domains: tuple[str, ...] = ()
    """Keep only these ``meta.pile_set_name`` values (empty = all)."""
    max_docs_per_domain: int | None = None
    """Cap on documents read per domain (``None`` = no cap)."""
    sequence_length: int = 256
    """Maximum tokens per training sequence (tokenizer of the finetuned model)."""
    split: Literal["sequences", "document"] = "sequences"
    """``sequences``: split documents into chunks of ``sequence_length`` tokens;
    ``document``: one sequence per document, truncated (as in the paper)."""
    max_doc_bytes: int = 10_000_000
    """Documents larger than this are skipped and counted as ``too_large``."""

    def __post_init__(self) -> None:
        _require_finite(self, "data")
        _require(
            self.sequence_length >= 8,
            f"data.sequence_length must be >= 8, got {self.sequence_length}",
        )
        _require(
            self.max_docs_per_domain is None or self.max_docs_per_domain >= 1,
            "data.max_docs_per_domain must be >= 1 or null",
        )
        _require(self.max_doc_bytes >= 1, "data.max_doc_bytes must be >= 1")


@dataclass(frozen=True)
class QueryConfig:
    """Held-out queries: stratified by domain, deterministic for a seed."""

    paths: tuple[str, ...] = ()
    """Pile-format query documents. Empty = the embedded minipile test split."""
    per_domain: int = 2
    """Queries drawn per domain."""
    domains: tuple[str, ...] = ()
    """Restrict to these domains (empty = all)."""
    min_bytes: int = 200
    """Skip documents shorter than this (too little text to score)."""
    max_bytes: int = 4096
    """Queries are cut to this many UTF-8 bytes at a character boundary."""
    seed: int = 0
    """Seed of the stratified draw."""

    def __post_init__(self) -> None:
        _require_finite(self, "queries")
        _require(self.per_domain >= 1, f"queries.per_domain must be >= 1, got {self.per_domain}")
        _require(self.min_bytes >= 1, "queries.min_bytes must be >= 1")
        _require(self.max_bytes >= self.min_bytes, "queries.max_bytes must be >= queries.min_bytes")


@dataclass(frozen=True)
class IndexConfig:
    """FAISS index over the embedding store."""

    dir: str | None = None
    """Index directory (default ``$HULLFT_CACHE/index/<config hash>``)."""
    kind: Literal["flat", "ivf_flat", "ivf_pq", "hnsw"] = "flat"
    """``flat`` = exact inner product (default for small corpora)."""
    nlist: int = 1024
    """IVF lists (capped at sqrt-ish of the corpus size when the corpus is small)."""
    nprobe: int = 32
    """IVF lists probed per query."""
    pq_m: int = 32
    """IVF-PQ sub-quantisers (bytes per vector at 8 bits)."""
    pq_bits: int = 8
    """Bits per PQ code."""
    opq: bool = False
    """Rotate with OPQ before IVF-PQ."""
    hnsw_m: int = 32
    """HNSW neighbours per node."""
    ef_construction: int = 200
    """HNSW build beam."""
    ef_search: int = 256
    """HNSW search beam (must be >= K for good recall)."""
    refine_factor: int = 4
    """For ``ivf_pq``: fetch refine_factor·k candidates by PQ code and re-rank them
    exactly against the embedding store (1 = off)."""
    embedding_dtype: Literal["float16", "float32"] = "float16"
    """On-disk dtype of the embedding store."""
    use_gpu: Literal["auto", "never", "always"] = "auto"
    """Build/search on GPU FAISS when present (``always`` fails without one)."""
    distributed: bool = False
    """Embed with Ray Data (one embedder per GPU/CPU actor) instead of in-process."""
    embed_actors: int = 2
    """Actor-pool size for the distributed embedding path."""
    shard_docs: int = 2000
    """Documents per build shard (the unit of resumption)."""

    def __post_init__(self) -> None:
        _require_finite(self, "index")
        for name in (
            "nlist",
            "nprobe",
            "pq_m",
            "hnsw_m",
            "ef_construction",
            "ef_search",
            "refine_factor",
        ):
            _require(getattr(self, name) >= 1, f"index.{name} must be >= 1")
        _require(self.pq_bits in (4, 6, 8, 10, 12), "index.pq_bits must be one of 4, 6, 8, 10, 12")
        _require(self.embed_actors >= 1, "index.embed_actors must be >= 1")
        _require(self.shard_docs >= 1, "index.shard_docs must be >= 1")


@dataclass(frozen=True)
class SelectionConfig:
    """Support selection from the K retrieved candidates."""

    methods: tuple[str, ...] = ("knn", "sift", "hullft")
    """Methods to run per query, keys of :data:`hullft.selection.METHODS` (``base``, no
    finetuning, is always scored)."""
    k: int = 200
    """Candidates retrieved per query."""
    n: int = 50
    """Support budget: multiset size = optimizer steps per query."""
    fw_max_iter: int = 250
    """Frank–Wolfe iterations at most."""
    fw_tol: float = 1e-5
    """Frank–Wolfe stops when the residual norm is below this."""
    swap_passes: int = 2
    """Local-swap passes of geometric integerization."""
    sift_lambda: float = 0.01
    """SIFT regulariser λ (the HullFT paper ran 0.2)."""

    def __post_init__(self) -> None:
        _require_finite(self, "selection")
        unknown = [m for m in self.methods if m not in METHODS]
        _require(
            not unknown,
            f"selection.methods has unknown {unknown}; choose from {list(METHODS)}",
        )
        _require(len(set(self.methods)) == len(self.methods), "selection.methods has duplicates")
        _require(self.k >= 1, f"selection.k must be >= 1, got {self.k}")
        _require(self.n >= 1, f"selection.n must be >= 1, got {self.n}")
        _require(self.fw_max_iter >= 1, "selection.fw_max_iter must be >= 1")
        _require(self.fw_tol >= 0, "selection.fw_tol must be >= 0")
        _require(self.swap_passes >= 0, "selection.swap_passes must be >= 0")
        _require(
            self.sift_lambda >= 1e-8,
            f"selection.sift_lambda must be >= 1e-8 (below, SIFT's posterior update is "
            f"rounding noise), got {self.sift_lambda}",
        )
        _require(
            "knn" not in self.methods or self.n <= self.k,
            f"selection.n={self.n} > selection.k={self.k}: kNN cannot pick more than K "
            "distinct candidates; lower n or raise k",
        )


@dataclass(frozen=True)
class FinetuneConfig:
    """Per-query finetuning (docs/design.md §4.5) and scoring (§4.6)."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    """Optimizer, fresh for every query."""
    lr: float = 5e-5
    """Learning rate."""
    eps: float = 1e-8
    """Adam epsilon."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    weight_decay: float = 0.0
    """Weight decay (decoupled for AdamW)."""
    momentum: float = 0.0
    """SGD momentum."""
    grad_clip: float | None = None
    """Clip the gradient norm to this (``None`` = no clipping)."""
    refresh_interval: int = 2
    """Gradient reuse: fresh forward/backward every r-th repeat (1 = plain finetuning)."""
    time_budget_s: float | None = None
    """Stop finetuning a query once this many seconds are spent (``None`` = no budget)."""
    bf16: bool = True
    """bf16 autocast on CUDA (ignored on CPU, which runs fp32)."""
    fused: bool = True
    """Fused optimizer kernels (one kernel for all parameters), on CUDA and CPU."""
    compile: bool = False
    """Compile the training forward/backward with ``torch.compile`` (dynamic sequence
    lengths, compiled once per worker at start). On CPU it needs a C++ compiler."""
    bpb_mode: Literal["rolling", "paper"] = "rolling"
    """``rolling``: every token scored (docs/design.md §4.6); ``paper``: the published
    computation (truncate, skip first token), for comparison only."""
    train_tokenization: Literal["bos", "paper"] = "bos"
    """Training sequences: ``bos`` = ``[BOS] + tokens`` (the prefix and tokens BPB scores
    with); ``paper`` = the published code's tokenizer call (its defaults, no prefix,
    special-token strings matched). Both truncate to the context (``hullft.train_tokens``)."""
    seed: int = 0
    """Seed for anything stochastic in finetuning (dropout is off in eval/train here)."""
    batch_jobs: int | Literal["auto"] = "auto"
    """Finetuning jobs — one (query, method) multiset each, every job with its own
    weights and optimizer state — that one model replica trains at once. ``1`` is the
    one-at-a-time engine; ``auto`` sizes it from the device (docs/ttft.md). It never
    changes a result (each job is exact), so it is not part of the run id."""

    def __post_init__(self) -> None:
        _require_finite(self, "finetune")
        _require(
            self.batch_jobs == "auto"
            or (isinstance(self.batch_jobs, int) and self.batch_jobs >= 1),
            f"finetune.batch_jobs must be an integer >= 1 or auto, got {self.batch_jobs!r}",
        )
        _require(self.lr > 0, f"finetune.lr must be > 0, got {self.lr}")
        _require(
            self.train_tokenization in ("bos", "paper"),
            f"finetune.train_tokenization must be bos or paper, got {self.train_tokenization!r}",
        )
        _require(
            self.bpb_mode in ("rolling", "paper"),
            f"finetune.bpb_mode must be rolling or paper, got {self.bpb_mode!r}",
        )
        _require(self.eps > 0, "finetune.eps must be > 0")
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "finetune.betas must be two numbers in [0, 1)",
        )
        _require(self.weight_decay >= 0, "finetune.weight_decay must be >= 0")
        _require(self.momentum >= 0, "finetune.momentum must be >= 0")
        _require(
            self.grad_clip is None or self.grad_clip > 0, "finetune.grad_clip must be > 0 or null"
        )
        _require(
            self.refresh_interval >= 1,
            f"finetune.refresh_interval must be >= 1, got {self.refresh_interval}",
        )
        _require(
            self.time_budget_s is None or self.time_budget_s >= 0,
            "finetune.time_budget_s must be >= 0 or null",
        )


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how the Ray actors run."""

    address: str | None = None
    """Ray address: ``None`` = attach to ``RAY_ADDRESS`` if set, else start a local Ray;
    ``auto`` = an existing cluster."""
    num_workers: int | None = None
    """Model-replica workers; ``None`` = one per GPU, or 1 on a CPU-only cluster."""
    gpus_per_worker: float = 1.0
    """GPUs per worker (fractional packs several workers on one GPU; 0 = CPU)."""
    cpus_per_worker: float | None = None
    """CPUs reserved per model worker (its torch threads on CPU); ``None`` = 1 on a
    GPU cluster, an equal share of all CPUs on a CPU-only one."""
    num_selectors: int = 1
    """CPU selector actors."""
    index_replicas: int = 1
    """Index actors (each loads the index once)."""
    max_in_flight_per_worker: int = 2
    """Queries queued per worker (bounds memory and keeps workers busy)."""
    max_attempts: int = 3
    """Attempts per query before a failure row is written."""
    num_cpus: int | None = None
    """CPUs for a Ray started locally (``None`` = all)."""
    num_gpus: int | None = None
    """GPUs for a Ray started locally (``None`` = detected; set on CPU to fake logical GPUs)."""
    connect_timeout_s: float = 30.0
    """How long to wait for the Ray at ``address`` (or ``RAY_ADDRESS``) to answer before
    failing with an error that names it."""
    attempt_timeout_s: float | None = 1800.0
    """Seconds a model worker may work on one query (times the queries it runs
    together) without finishing before it is treated as hung: killed, replaced, and
    its queries retried. ``None`` = wait forever. Model loading is not counted."""
    retry_backoff_s: float = 1.0
    """Delay before the first retry of a failed query; it doubles with every retry
    (up to 30 s)."""
    restart_wait_s: float = 300.0
    """How long a query may wait, in total, for a restarting selector or index actor
    without spending one of its ``max_attempts``."""

    def __post_init__(self) -> None:
        _require_finite(self, "cluster")
        _require(
            self.num_workers is None or self.num_workers >= 1,
            "cluster.num_workers must be >= 1 or null",
        )
        _require(self.gpus_per_worker >= 0, "cluster.gpus_per_worker must be >= 0")
        _require(
            self.cpus_per_worker is None or self.cpus_per_worker >= 0,
            "cluster.cpus_per_worker must be >= 0 or null",
        )
        _require(self.num_selectors >= 1, "cluster.num_selectors must be >= 1")
        _require(self.index_replicas >= 1, "cluster.index_replicas must be >= 1")
        _require(
            self.max_in_flight_per_worker >= 1, "cluster.max_in_flight_per_worker must be >= 1"
        )
        _require(self.max_attempts >= 1, "cluster.max_attempts must be >= 1")
        _require(
            math.isfinite(self.connect_timeout_s) and self.connect_timeout_s > 0,
            f"cluster.connect_timeout_s must be a finite number > 0, got {self.connect_timeout_s}",
        )
        _require(
            self.attempt_timeout_s is None
            or (math.isfinite(self.attempt_timeout_s) and self.attempt_timeout_s > 0),
            "cluster.attempt_timeout_s must be a finite number > 0 or null (no limit), "
            f"got {self.attempt_timeout_s}",
        )
        _require(
            math.isfinite(self.retry_backoff_s) and self.retry_backoff_s >= 0,
            f"cluster.retry_backoff_s must be a finite number >= 0, got {self.retry_backoff_s}",
        )
        _require(
            math.isfinite(self.restart_wait_s) and self.restart_wait_s >= 0,
            f"cluster.restart_wait_s must be a finite number >= 0, got {self.restart_wait_s}",
        )


@dataclass(frozen=True)
class ExperimentConfig:
    """Run identity and outputs."""

    name: str = "default"
    """Experiment name (used in report titles)."""
    run_id: str | None = None
    """Results are keyed by run_id; rerunning the same id resumes. ``None`` = derived
    from the config hash, so an identical rerun resumes by default."""
    output_dir: str = "runs"
    """Results go to ``<output_dir>/<run_id>/``."""
    limit: int | None = None
    """Process at most this many queries (``None`` = all)."""
    results_part_rows: int = 2000
    """Result rows buffered before the driver writes them as one Parquet part."""
    results_part_s: float = 60.0
    """...or once the oldest buffered row is this many seconds old (checked as rows
    arrive). A driver killed before a write loses at most this much work, which a
    rerun recomputes; a completed run's parts are compacted into a few files."""

    def __post_init__(self) -> None:
        _require_finite(self, "experiment")
        _require(self.results_part_rows >= 1, "experiment.results_part_rows must be >= 1")
        _require(self.results_part_s >= 0, "experiment.results_part_s must be >= 0")
        _require_path_component(self.name, "experiment.name")
        if self.run_id:  # "" falls back to the derived id, like None
            _require_path_component(self.run_id, "experiment.run_id")
        _require(self.limit is None or self.limit >= 1, "experiment.limit must be >= 1 or null")


@dataclass(frozen=True)
class BenchConfig:
    """``hullft bench`` sweeps (each point is a real run through the Ray runtime)."""

    n_values: tuple[int, ...] = (2, 4, 8)
    """Support budgets N for the BPB-vs-N sweep (and the quality/time frontier)."""
    time_budgets_s: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    """Per-query finetuning budgets for BPB at fixed time (run at the largest N)."""
    workers: tuple[int, ...] = (1, 2)
    """Worker counts for the throughput-scaling sweep."""
    refresh_intervals: tuple[int, ...] = (1, 2, 4)
    """Gradient-reuse intervals r for the finetuning-speed sweep (1 = no reuse)."""
    batch_jobs: tuple[int, ...] = ()
    """``finetune.batch_jobs`` values for the throughput-vs-B sweep (one worker, the
    smallest N; finetunes/s per B). Empty: no such sweep."""
    naive_baseline: bool = True
    """Also time the published procedure (padding, fp32, gradient copies, host reload)
    on the same model and multisets."""
    naive_queries: int = 2
    """Queries timed through the naive procedure (it is slow by design)."""
    peak_flops: float = 989e12
    """Accelerator peak (FLOP/s) for the MFU estimate (H100 SXM dense bf16)."""
    report_dir: str = "reports"
    """The report goes to ``<report_dir>/<experiment.name>-<date>/``."""

    def __post_init__(self) -> None:
        _require_finite(self, "bench")
        _require(
            len(self.n_values) >= 1 and all(n >= 1 for n in self.n_values),
            "bench.n_values must be >= 1",
        )
        _require(all(b >= 0 for b in self.time_budgets_s), "bench.time_budgets_s must be >= 0")
        _require(
            len(self.workers) >= 1 and all(w >= 1 for w in self.workers),
            "bench.workers must be >= 1",
        )
        _require(
            len(self.refresh_intervals) >= 1 and all(r >= 1 for r in self.refresh_intervals),
            "bench.refresh_intervals must be >= 1",
        )
        _require(all(b >= 1 for b in self.batch_jobs), "bench.batch_jobs must be >= 1")
        _require(self.naive_queries >= 0, "bench.naive_queries must be >= 0")
        _require(self.peak_flops > 0, "bench.peak_flops must be > 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything a ``hullft`` command needs, one object per stage."""

    model: ModelConfig = field(default_factory=ModelConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    queries: QueryConfig = field(default_factory=QueryConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)


# ---------------------------------------------------------------------------
# Strict dict -> dataclass conversion.

T = TypeVar("T")


def build_config(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    ``where`` is the dotted prefix used in error messages (``"finetune"``).
    """
    data = dict(data or {})
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; "
            f"valid keys{' under ' + where if where else ''}: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(hints[name], value, key)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return build_config(tp, value, key)  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key} must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: " + "; ".join(errors))
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key} must have {len(args)} elements, got {len(value)}")
        return tuple(
            _convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # pragma: no cover


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, JSON-able dict of a config dataclass (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
