"""FAISS indexes over unit vectors with inner-product (= cosine) scores.

Kinds (``IndexConfig.kind``):

- ``flat``: exact search, 4·d bytes per vector; the default for small corpora.
- ``ivf_flat``: k-means coarse quantiser with ``nlist`` lists, ``nprobe`` probed.
- ``ivf_pq``: IVF plus product quantisation to ``pq_m`` codes of ``pq_bits`` bits
  (optionally OPQ-rotated); the codes are approximate, so search re-ranks
  ``refine_factor``·k candidates exactly against the embedding store.
- ``hnsw``: graph search (CPU only in FAISS); ``ef_search`` sets the beam.

Indexes are trained and filled on a GPU when one is present (``use_gpu``), and
always written to disk as CPU indexes. faiss is imported inside the functions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hullft.config import IndexConfig

log = logging.getLogger(__name__)

_ADD_CHUNK = 65_536  # vectors converted to float32 and added per call
_MIN_POINTS_PER_LIST = 39  # FAISS warns below this many training points per centroid
_MAX_POINTS_PER_CENTROID = 256  # FAISS's own subsampling bound for k-means
_TRAIN_SEED = 1234


def _faiss() -> Any:
    """The faiss module, imported on first use (typed loosely: SWIG objects)."""
    try:
        # faiss: loaded on first use, so configuring and reporting never need it
        import faiss
    except ImportError as exc:
        raise ModuleNotFoundError(
            "FAISS is not installed: install exactly one of the project's extras, "
            "`pip install -e '.[cpu]'` (faiss-cpu) or, on a CUDA machine, "
            "`pip install -e '.[gpu]'` (faiss-gpu-cu12); they share the `faiss` module, "
            "so never both"
        ) from exc
    return faiss


def gpu_available() -> bool:
    """A GPU build of FAISS and at least one visible GPU."""
    faiss = _faiss()

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_use_gpu(mode: str) -> bool:
    """``auto`` -> GPU when available; ``always`` without one is an error."""
    if mode == "never":
        return False
    available = gpu_available()
    if mode == "always" and not available:
        raise RuntimeError(
            "index.use_gpu=always but FAISS sees no GPU (faiss-cpu installed, or no CUDA "
            "device visible); install the `gpu` extra on a GPU machine or set "
            "index.use_gpu=auto"
        )
    return available


@dataclass(frozen=True)
class IndexSpec:
    """Effective build parameters (after fitting them to the corpus size)."""

    kind: str
    dim: int
    nlist: int = 0
    pq_m: int = 0
    pq_bits: int = 0
    opq: bool = False
    hnsw_m: int = 0
    ef_construction: int = 0

    def factory(self) -> str:
        """The ``faiss.index_factory`` string."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "ivf_flat":
            return f"IVF{self.nlist},Flat"
        if self.kind == "ivf_pq":
            pq = f"IVF{self.nlist},PQ{self.pq_m}x{self.pq_bits}"
            return f"OPQ{self.pq_m},{pq}" if self.opq else pq
        if self.kind == "hnsw":
            return f"HNSW{self.hnsw_m},Flat"
        raise ValueError(f"unknown index kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "factory": self.factory()}

    @property
    def bytes_per_vector(self) -> float:
        """Analytic memory per vector: codes + list ids / graph links (approximate for
        HNSW: level 0 holds 2·M links, upper levels add ~1/M of that again)."""
        if self.kind == "flat":
            return 4.0 * self.dim
        if self.kind == "ivf_flat":
            return 4.0 * self.dim + 8
        if self.kind == "ivf_pq":
            return self.pq_m * self.pq_bits / 8 + 8
        return 4.0 * self.dim + 4 * 2 * self.hnsw_m * (1 + 1 / self.hnsw_m)


def fit_spec(cfg: IndexConfig, n: int, dim: int) -> IndexSpec:
    """The build parameters of ``cfg`` fitted to ``n`` vectors of dimension ``dim``.

    ``nlist`` is capped so every list gets enough training points, and ``pq_bits``
    so a codebook has no more centroids than vectors; both with a warning.
    """
    if n < 1:
        raise ValueError("cannot build an index over zero vectors")
    if cfg.kind == "flat":
        return IndexSpec("flat", dim)
    if cfg.kind == "hnsw":
        return IndexSpec("hnsw", dim, hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction)
    nlist = cfg.nlist
    cap = max(1, n // _MIN_POINTS_PER_LIST)
    if nlist > cap:
        log.warning(
            "index.nlist=%d is too many lists for %d vectors; using %d "
            "(>= %d training points per list)",
            nlist,
            n,
            cap,
            _MIN_POINTS_PER_LIST,
        )
        nlist = cap
    if cfg.kind == "ivf_flat":
        return IndexSpec("ivf_flat", dim, nlist=nlist)
    if dim % cfg.pq_m:
        divisors = [m for m in range(1, dim + 1) if dim % m == 0 and m <= 96]
        raise ValueError(
            f"index.pq_m={cfg.pq_m} must divide the embedding dimension {dim}; "
            f"choose one of {divisors[-8:]}"
        )
    bits = cfg.pq_bits
    if 2**bits > n:
        bits = max(1, math.floor(math.log2(n)))
        log.warning(
            "index.pq_bits=%d needs >= %d vectors to train; using %d bits for %d vectors",
            cfg.pq_bits,
            2**cfg.pq_bits,
            bits,
            n,
        )
    elif n < _MIN_POINTS_PER_LIST * 2**bits:
        log.warning(
            "%d vectors under-train a %d-bit PQ codebook (FAISS suggests >= %d); "
            "index.kind=flat is exact and cheap at this size",
            n,
            bits,
            _MIN_POINTS_PER_LIST * 2**bits,
        )
    opq = cfg.opq
    if opq and n < 256:
        log.warning("OPQ needs >= 256 vectors to train; building IVF-PQ without it for %d", n)
        opq = False
    return IndexSpec("ivf_pq", dim, nlist=nlist, pq_m=cfg.pq_m, pq_bits=bits, opq=opq)


def _training_rows(n: int, spec: IndexSpec) -> np.ndarray | None:
    """Rows to train on (a deterministic sample), or ``None`` for no training."""
    if spec.kind in ("flat", "hnsw"):
        return None
    need = _MAX_POINTS_PER_CENTROID * max(spec.nlist, 2**spec.pq_bits if spec.pq_bits else 0)
    if n <= need:
        return np.arange(n)
    rng = np.random.default_rng(_TRAIN_SEED)
    return np.sort(rng.choice(n, size=need, replace=False))


def build(
    spec: IndexSpec,
    vectors: np.ndarray,
    *,
    use_gpu: bool = False,
    on_added: Callable[[int], None] | None = None,
) -> Any:
    """Create, train and fill an index over ``vectors`` (``(n, d)``, any float dtype,
    e.g. the memory-mapped float16 store); returns a CPU index."""
    faiss = _faiss()

    n, d = vectors.shape
    if d != spec.dim:
        raise ValueError(f"vectors have dim {d}, the spec says {spec.dim}")
    index = faiss.index_factory(d, spec.factory(), faiss.METRIC_INNER_PRODUCT)
    if spec.kind == "hnsw":
        faiss.downcast_index(index).hnsw.efConstruction = spec.ef_construction
    rows = _training_rows(n, spec)
    keep = _prepare_training(index) if rows is not None else []
    gpu_index = None
    if use_gpu and spec.kind != "flat":
        if spec.kind == "hnsw":
            log.info("FAISS has no GPU HNSW; building it on CPU")
        else:
            gpu_index = _to_gpu(index)
    work = gpu_index if gpu_index is not None else index
    if rows is not None:
        sample = np.ascontiguousarray(vectors[rows], dtype=np.float32)
        log.info("training %s on %d vectors", spec.factory(), len(sample))
        work.train(sample)
    for vt, _pq in keep:  # OPQ's training quantiser is ours; do not leave it dangling
        vt.pq = None
    for a in range(0, n, _ADD_CHUNK):
        chunk = np.ascontiguousarray(vectors[a : a + _ADD_CHUNK], dtype=np.float32)
        work.add(chunk)
        if on_added is not None:
            on_added(len(chunk))
    if gpu_index is not None:
        index = faiss.index_gpu_to_cpu(gpu_index)
    return index


def _prepare_training(index: Any) -> list[tuple[Any, Any]]:
    """Fix the seed of every clustering FAISS runs while training (same index bytes on
    every rerun) and silence its per-sub-quantiser "please provide at least N training
    points" lines: :func:`fit_spec` already logged one warning for a small corpus.
    Returns ``(transform, quantiser)`` pairs whose quantiser must outlive training.
    """
    faiss = _faiss()

    keep: list[tuple[Any, Any]] = []
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return keep
    ivf = faiss.downcast_index(ivf)
    ivf.cp.seed = _TRAIN_SEED
    ivf.cp.min_points_per_centroid = 1
    pq = getattr(ivf, "pq", None)
    if pq is not None:
        # index_factory turns on polysemous training (a slow annealing of code ids
        # that only Hamming-filtered search uses); we never search that way.
        ivf.do_polysemous_training = False
        pq.cp.seed = _TRAIN_SEED
        pq.cp.min_points_per_centroid = 1
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            vt = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(vt, faiss.OPQMatrix):
                # OPQ's own training assumes 8-bit codes (other sizes corrupt memory in
                # FAISS 1.x); fit_spec turns OPQ off below 256 vectors.
                opq_pq = faiss.ProductQuantizer(vt.d_out, vt.M, 8)
                opq_pq.cp.seed = _TRAIN_SEED
                opq_pq.cp.min_points_per_centroid = 1
                vt.pq = opq_pq
                keep.append((vt, opq_pq))
    return keep


_GPU_RESOURCES: Any = None


def _gpu_resources() -> Any:
    global _GPU_RESOURCES
    faiss = _faiss()

    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return _GPU_RESOURCES


def _to_gpu(index: Any) -> Any:
    faiss = _faiss()

    co = faiss.GpuClonerOptions()
    # Large PQ code sizes exceed the GPU's shared memory with float32 lookup tables.
    co.useFloat16 = True
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index, co)


def to_gpu_for_search(index: Any, mode: str) -> tuple[Any, bool]:
    """``(index, on_gpu)``: ``index`` moved to GPU 0 when ``mode`` allows and FAISS
    supports it for this kind (HNSW stays on CPU)."""
    if not resolve_use_gpu(mode):
        return index, False
    faiss = _faiss()

    if isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        if mode == "always":
            log.warning("FAISS has no GPU HNSW; searching on CPU")
        return index, False
    try:
        return _to_gpu(index), True
    except RuntimeError as exc:  # e.g. a PQ layout the GPU kernels do not support
        if mode == "always":
            raise
        log.warning("cannot move the index to GPU (%s); searching on CPU", exc)
        return index, False


def set_search_params(
    index: Any, *, nprobe: int | None, ef_search: int | None, on_gpu: bool = False
) -> None:
    """Apply search-time parameters that make sense for this index."""
    faiss = _faiss()

    if on_gpu:
        if nprobe is not None:
            # GpuParameterSpace reaches through pre-transforms (OPQ) to the GPU IVF.
            faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", nprobe)
        return
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and nprobe is not None:
        ivf.nprobe = min(nprobe, ivf.nlist)
    if ef_search is not None:
        inner = index
        if isinstance(inner, faiss.IndexPreTransform):
            inner = inner.index
        inner = faiss.downcast_index(inner)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = ef_search


def serialize(index: Any) -> bytes:
    """The index as FAISS writes it to disk."""
    return bytes(_faiss().serialize_index(index))
