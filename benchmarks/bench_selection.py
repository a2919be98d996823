"""Selection speed: milliseconds per query and ratios to the baselines.

    .venv/bin/python benchmarks/bench_selection.py            # full run (~2 minutes)
    .venv/bin/python benchmarks/bench_selection.py --quick    # fewer pools and repeats (~40 s)

Everything runs single-threaded (BLAS, OpenMP, torch, faiss) and in one process, so
the ratios compare like with like. Times are CPU time of the process
(``time.process_time``, all threads: activeft runs SIFT in a worker thread), i.e.
milliseconds on one core; on a shared machine, wall-clock time would also count the
time other processes hold the core. For K = 200 candidates, d in {384, 1024} and
N in {1, 10, 50} it times, per query (best of the repeats for each of many distinct
synthetic retrieval pools, median over the pools):

- every registered method through ``hullft.selection.select``;
- the naive transcription of Frank–Wolfe + integerization from
  :mod:`hullft.selection.oracle` (numpy, no Gram tricks; the oracle tests check the
  fast code against the same functions) -> ratio to ``hullft``;
- activeft 0.1.1 ``Retriever(IndexFlatIP over the pool, fast=False).search`` -> ratio
  to ``sift`` (same lambda, same pools).

Pools are float32 (what faiss and most encoders hand over) unless ``--dtype`` says
otherwise; conversion to float64 is part of every timing.
"""

# ruff: noqa: E402  (thread counts must be set in the environment before numpy loads)
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hullft.config import SelectionConfig
from hullft.selection import METHODS, select
from hullft.selection.fw import run_frank_wolfe
from hullft.selection.integerization import integerize_problem, support_gram
from hullft.selection.oracle import naive_frank_wolfe, naive_integerize
from hullft.selection.problem import Gram, prepare

K = 200
METHOD_NAMES = tuple(METHODS)


def retrieval_pools(
    n_pools: int, d: int, dtype: str, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synthetic retrieval results: K unit rows around a unit query, in topical clusters.

    Cosine similarities to the query spread over ~0.3-0.8, as for nearest neighbours
    of a sentence embedding; rows fall into 8 clusters so that the candidates are
    redundant, which is what selection is for.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_pools):
        t = rng.standard_normal(d)
        t /= np.linalg.norm(t)
        topics = rng.standard_normal((8, d))
        z = topics[rng.integers(0, 8, K)] + 0.6 * rng.standard_normal((K, d))
        z -= np.outer(z @ t, t)  # orthogonal to the query
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        cos = rng.uniform(0.3, 0.8, size=(K, 1))
        X = cos * t + np.sqrt(1 - cos**2) * z
        out.append((X.astype(dtype), t.astype(dtype)))
    return out


clock = time.process_time


def time_per_query(fn: Callable[[np.ndarray, np.ndarray], Any], pools, repeats: int) -> float:
    """Milliseconds of ``fn(pool, query)``: best of ``repeats`` per pool, median over pools.

    Repeats cycle through all pools (so no pool stays in cache); the best of a pool's
    repeats is its cost with the least interference from other processes.
    """
    fn(*pools[0])  # warm-up
    best = [float("inf")] * len(pools)
    for _ in range(repeats):
        for i, (X, t) in enumerate(pools):
            start = clock()
            fn(X, t)
            best[i] = min(best[i], clock() - start)
    return 1e3 * statistics.median(best)


def activeft_search(lam: float, n: int) -> Callable[[np.ndarray, np.ndarray], Any] | None:
    try:
        import faiss
        import torch
        from activeft.sift import Retriever
    except ImportError:
        return None
    faiss.omp_set_num_threads(1)
    cpu = torch.device("cpu")

    def run(X: np.ndarray, t: np.ndarray) -> Any:
        index = faiss.IndexFlatIP(X.shape[1])
        index.add(np.ascontiguousarray(X, dtype=np.float32))
        retriever = Retriever(index, llambda=lam, fast=False, also_query_opposite=False, device=cpu)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return retriever.search(np.asarray(t, dtype=np.float32)[None, :], N=n, K=K)

    return run


def fmt(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pools and repeats")
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 1024])
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--pools", type=int, default=None, help="distinct pools per setting")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    parser.add_argument("--no-baselines", action="store_true", help="skip naive and activeft")
    args = parser.parse_args()
    n_pools = args.pools or (8 if args.quick else 24)
    repeats = args.repeats or (2 if args.quick else 5)
    base_pools = max(2, n_pools // 4)
    base_repeats = min(repeats, 3)

    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(1)
    except ImportError:
        pass
    torch: Any = None
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass

    print("# hullft selection benchmark")
    print(f"command : {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine : {platform.processor() or platform.machine()}, {_cpu_name()}")
    print(
        f"versions: python {platform.python_version()}, numpy {np.__version__}"
        + (f", torch {torch.__version__}" if torch is not None else "")
    )
    print(
        f"setup   : K={K}, pools={args.dtype}, single thread, process CPU time; per setting the"
        f" median over {n_pools} pools of the best of {repeats} repeats"
        f" (baselines: {base_pools} pools, best of {base_repeats})"
    )
    print(f"load    : {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start")
    print()
    header = (
        f"{'d':>5} {'N':>3} | "
        + " ".join(f"{m:>12}" for m in METHOD_NAMES)
        + f" | {'naive FW+int':>12} {'activeft':>9} | {'naive/hullft':>12} {'activeft/sift':>13}"
    )
    headline: dict[str, float] = {}
    print("milliseconds per query")
    print(header)
    print("-" * len(header))
    for d in args.dims:
        pools = retrieval_pools(n_pools, d, args.dtype, seed=d)
        for n in args.ns:
            cfg = SelectionConfig(methods=METHOD_NAMES, n=n, k=K)
            ms = {m: time_per_query(partial(_select, m, cfg), pools, repeats) for m in METHOD_NAMES}
            if (d, n) == (1024, 50):
                headline = ms
            naive = act = None
            if not args.no_baselines:

                def naive_fw_int(X: np.ndarray, t: np.ndarray, n: int = n) -> Any:
                    rows, w = naive_frank_wolfe(X, t, n)
                    return naive_integerize(X, t, rows, w, n)

                naive = time_per_query(naive_fw_int, pools[:base_pools], base_repeats)
                search = activeft_search(cfg.sift_lambda, n)
                if search is not None:
                    act = time_per_query(search, pools[:base_pools], base_repeats)
            ratio_naive = f"{naive / ms['hullft']:.0f}x" if naive else "-"
            ratio_act = f"{act / ms['sift']:.0f}x" if act else "-"
            print(
                f"{d:>5} {n:>3} | "
                + " ".join(f"{fmt(ms[m]):>12}" for m in METHOD_NAMES)
                + f" | {fmt(naive):>12} {fmt(act):>9} | {ratio_naive:>12} {ratio_act:>13}",
                flush=True,
            )
    if headline:
        print(
            f"\ntargets at K=200, d=1024, N=50: hullft {headline['hullft']:.2f} ms "
            f"({'met' if headline['hullft'] <= 2 else 'MISSED'}, <= 2 ms), sift "
            f"{headline['sift']:.2f} ms ({'met' if headline['sift'] <= 10 else 'MISSED'}, <= 10 ms)"
        )
        if 1024 in args.dims and 50 in args.ns:
            print_breakdown(retrieval_pools(n_pools, 1024, args.dtype, seed=1024), repeats)
    print()
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f} (this machine: {os.cpu_count()} cores)"
    )


def print_breakdown(pools: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> None:
    """Where HullFT's time goes at d = 1024, N = 50 (each stage timed on its own)."""
    n, max_iter, tol = 50, 250, 1e-5
    problems = {id(X): prepare(X, t) for X, t in pools}
    cached = {}  # Gram objects whose columns one Frank–Wolfe run has filled
    runs = {}
    for X, _ in pools:
        p = problems[id(X)]
        cached[id(X)] = Gram(p, 0)
        runs[id(X)] = run_frank_wolfe(p, cached[id(X)], n, max_iter, tol)

    def integerization(X: np.ndarray, t: np.ndarray) -> Any:
        p, fw = problems[id(X)], runs[id(X)]
        w = fw.weights / fw.weights.sum()
        return integerize_problem(p, support_gram(p, fw.support), fw.support, w, n, 2)

    stages = {
        "preparation (float64, norms, b = X t, duplicates)": lambda X, t: prepare(X, t),
        "Frank-Wolfe, Gram columns included": lambda X, t: run_frank_wolfe(
            problems[id(X)], Gram(problems[id(X)], 0), n, max_iter, tol
        ),
        "Frank-Wolfe iterations alone (columns cached)": lambda X, t: run_frank_wolfe(
            problems[id(X)], cached[id(X)], n, max_iter, tol
        ),
        "integerization (support block + counts)": integerization,
        "one Gram column (matrix-vector product)": lambda X, t: Gram(problems[id(X)], 0).column(0),
        "whole 200 x 200 Gram matrix (syrk)": lambda X, t: Gram(problems[id(X)], 0).matrix(),
    }
    support = statistics.mean(r.support.size for r in runs.values())
    iters = statistics.mean(r.n_iter for r in runs.values())
    print(
        f"\nwhere hullft's time goes at d=1024, N=50 (ms per query, same pools; "
        f"support {support:.1f} rows, {iters:.0f} iterations on average):"
    )
    for label, fn in stages.items():
        print(f"  {label:<52} {time_per_query(fn, pools, repeats):.3f}")


def _select(method: str, cfg: SelectionConfig, X: np.ndarray, t: np.ndarray) -> Any:
    return select(method, X, t, cfg)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
