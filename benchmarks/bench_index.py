"""Index benchmark: build time and peak memory, search latency, recall, bytes/vector.

    .venv/bin/python benchmarks/bench_index.py                     # embedded corpus, defaults
    .venv/bin/python benchmarks/bench_index.py --max-docs-per-domain 50 --out /tmp/bench.json

1. Builds the default index (embedded minipile train split, SmolLM2 tokenizer,
   256-token sequences, all-MiniLM-L6-v2, exact ``flat``) in a fresh directory and
   reports wall time, throughput and the process' peak RSS.
2. Re-indexes the same stored embeddings with every index kind at its default
   parameters (fitted to the corpus size) and, for the held-out minipile queries,
   reports recall@K against exact search, search latency per query batch and
   bytes per vector (on disk, and the analytic figure).

Numbers depend on the machine and its load; the docs record the ones measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hullft.config import DataConfig, IndexConfig, QueryConfig, RunConfig
from hullft.data.queries import load_queries
from hullft.embedder import Embedder
from hullft.index import build_index, faiss_index, load_index, recall_at_k


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_build(cfg: RunConfig) -> tuple[Path, dict]:
    rss0 = peak_rss_mib()
    t = time.perf_counter()
    path = build_index(cfg, progress=True)
    seconds = time.perf_counter() - t
    m = load_index(path).manifest
    return path, {
        "documents": m.num_documents,
        "sequences": m.num_sequences,
        "tokens": m.num_tokens,
        "dim": m.dim,
        "seconds": round(seconds, 1),
        "embed_seconds": m.build["seconds"]["embed"],
        "sequences_per_second": round(m.num_sequences / m.build["seconds"]["embed"], 1),
        "peak_rss_mib_before": round(rss0, 0),
        "peak_rss_mib": round(peak_rss_mib(), 0),
        "stage_seconds": m.build["seconds"],
    }


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q @ x.T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, ids, 1), ids


def bench_kinds(vectors: np.ndarray, queries: np.ndarray, k: int, batch: int) -> list[dict]:
    n, d = vectors.shape
    es, eids = exact_top(vectors, queries, k)
    rows = []
    kinds = [
        ("flat", IndexConfig(kind="flat"), 1),
        ("ivf_flat", IndexConfig(kind="ivf_flat"), 1),
        ("ivf_pq", IndexConfig(kind="ivf_pq"), 1),
        ("ivf_pq+refine", IndexConfig(kind="ivf_pq"), IndexConfig().refine_factor),
        ("opq_ivf_pq+refine", IndexConfig(kind="ivf_pq", opq=True), IndexConfig().refine_factor),
        ("hnsw", IndexConfig(kind="hnsw"), 1),
    ]
    for name, cfg, rf in kinds:
        spec = faiss_index.fit_spec(cfg, n, d)
        t = time.perf_counter()
        index = faiss_index.build(spec, vectors)
        build_s = time.perf_counter() - t
        faiss_index.set_search_params(index, nprobe=cfg.nprobe, ef_search=cfg.ef_search)
        fetch = min(k * rf, n)

        def search(q: np.ndarray, index=index, fetch=fetch, rf=rf) -> np.ndarray:
            _, ids = index.search(q, fetch)
            if rf > 1:  # exact re-ranking against the stored vectors
                s = np.einsum("bkd,bd->bk", vectors[np.maximum(ids, 0)], q)
                s[ids < 0] = -np.inf
                ids = np.take_along_axis(ids, np.argsort(-s, axis=1)[:, :k], 1)
            return ids

        ids = search(queries)
        true = np.einsum("bkd,bd->bk", vectors[np.maximum(ids, 0)], queries)
        recall = recall_at_k(ids, eids, approx_true_scores=true, exact_scores=es)
        batches = [queries[a : a + batch] for a in range(0, len(queries), batch)]
        for b in batches[:2]:
            search(b)  # warm up
        times = []
        for _ in range(3):
            for b in batches:
                t = time.perf_counter()
                search(b)
                times.append(time.perf_counter() - t)
        rows.append(
            {
                "index": name,
                "factory": spec.factory(),
                "recall_at_k": round(recall, 4),
                "build_s": round(build_s, 2),
                "ms_per_batch_median": round(1000 * float(np.median(times)), 2),
                "batch": batch,
                "bytes_per_vector": round(len(faiss_index.serialize(index)) / n, 1),
                "analytic_bytes_per_vector": round(spec.bytes_per_vector, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--max-docs-per-domain", type=int, default=None)
    p.add_argument("--embedder", default="all-minilm-l6-v2")
    p.add_argument("--model", default="smollm2-135m", help="tokenizer of the sequences")
    p.add_argument("--queries-per-domain", type=int, default=20)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dir", default=None, help="index directory (default: a fresh temp dir)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    tmp = tempfile.mkdtemp(prefix="bench-index-")
    cfg = RunConfig()
    cfg = replace(
        cfg,
        model=replace(cfg.model, name=args.model),
        embedder=replace(cfg.embedder, name=args.embedder),
        data=DataConfig(max_docs_per_domain=args.max_docs_per_domain),
        index=replace(cfg.index, dir=args.dir or os.path.join(tmp, "index")),
    )
    path, build = bench_build(cfg)
    print(json.dumps({"build": build}), flush=True)

    index = load_index(path)
    vectors = index.embeddings.get(np.arange(len(index)))
    qs = load_queries(QueryConfig(per_domain=args.queries_per_domain))
    embedder = Embedder.from_config(cfg.embedder)
    queries = embedder.encode([q.text for q in qs])
    k = min(args.k, len(index))
    rows = bench_kinds(vectors, queries, k, args.batch)

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "build": build,
        "queries": len(qs),
        "k": k,
        "kinds": rows,
    }
    print(f"\n| index | recall@{k} | ms / batch of {args.batch} | bytes/vector (disk) | analytic |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['index']} ({r['factory']}) | {r['recall_at_k']:.3f} | "
            f"{r['ms_per_batch_median']} | {r['bytes_per_vector']} | {r['analytic_bytes_per_vector']} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
