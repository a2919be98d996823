"""hullft's TTFT engine against a naive implementation of the published procedure.

    # CPU, the project's tiny model (what docs/ttft.md records):
    .venv/bin/python benchmarks/bench_ttft.py --model tiny --seq-len 256
    # GPU, the embedded SmolLM2-135M at the paper's setting:
    .venv/bin/python benchmarks/bench_ttft.py --model smollm2 --seq-len 1024 --n 50

Both implementations get the same model weights, queries and support multisets
in one process, and are timed query by query, alternating which goes first:

- **hullft**: :class:`hullft.ttft.TTFTEngine`: the base BPB of a query is scored
  once and shared by all its methods; sequences are unpadded; gradient reuse
  steps on ``.grad`` in place; weights are reset on the device; fused Adam; bf16
  autocast on CUDA; with ``--compile``, a ``torch.compile``d training step.
- **naive**: :class:`hullft.reference.PublishedProcedure`, written the way the issue
  describes the published code: every sequence tokenized and padded to
  ``max_length`` on every pass, fp32, the gradient cloned after every fresh pass
  and copied back for every reuse, the state dict reloaded from a host copy for
  every query, and the query scored before and after for every method.

Per query it prints seconds for each and their ratio; on CUDA also tokens/s and
an MFU estimate: (6·P·trained tokens + 2·P·scored tokens) / (seconds · peak),
with P the parameters that do matrix work (a tied embedding counted once) and
attention FLOPs left out, so MFU is a slight underestimate.

Workload: queries from the embedded minipile's test split (one domain each, cut
to 4096 bytes as ``QueryConfig`` does); for each, a pool of K training sequences
of the query's domain from the train split, cut by hullft's ``Sequencer`` to
``max_length`` tokens with BOS (``--split document`` keeps one truncated sequence
per document, as the paper did). Two multisets per query: ``knn`` (the first N of
the pool, each once) and ``hullft`` (N/4 of them with geometrically decaying
counts that sum to N, like a Frank–Wolfe support after integerization).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from hullft.config import FinetuneConfig, ModelConfig
from hullft.data.queries import cut_utf8
from hullft.data.readers import ReadStats, iter_documents, resolve_inputs
from hullft.data.sequencing import Sequencer
from hullft.models import build_tiny_model, embedded_model_dir, load_model, load_tokenizer
from hullft.reference import PublishedProcedure, synchronize
from hullft.ttft import TTFTEngine, build_optimizer

log = logging.getLogger("bench_ttft")
LN2 = math.log(2.0)


# ---------------------------------------------------------------------------
# Workload


def read_documents(paths: Sequence[str], split: str) -> list[tuple[str, str]]:
    """(domain, text) of Pile-format inputs; no paths = the embedded minipile split."""
    files = resolve_inputs(paths, split)
    return [(d.domain, d.text) for d in iter_documents(files, stats=ReadStats())]


def integerize(weights: Sequence[float], n: int) -> list[int]:
    """Counts summing to n in proportion to weights (largest remainder)."""
    total = sum(weights)
    raw = [w / total * n for w in weights]
    counts = [math.floor(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass(frozen=True)
class Query:
    text: str
    domain: str
    methods: dict[str, tuple[list[str], list[int]]]


def build_workload(
    tok: Any, max_length: int, args: argparse.Namespace, rng: random.Random
) -> list[Query]:
    """Queries from the test split (one per domain, cut to --query-bytes) and, per
    query, a K-candidate pool of training sequences from the query's domain (where
    retrieval finds most neighbours), cut by hullft's own sequencer."""
    sequencer = Sequencer(tok, max_length - 1, mode=args.split)  # + BOS = max_length
    by_domain: dict[str, list[str]] = {}
    for domain, text in read_documents(args.corpus, "train"):
        data = text.encode("utf-8")
        for span in sequencer.split(text):
            piece = data[span.start : span.end].decode("utf-8")
            if piece.strip():
                by_domain.setdefault(domain, []).append(piece)
    tests: dict[str, list[str]] = {}
    for domain, text in read_documents(args.corpus, "test"):
        if len(text.encode("utf-8")) >= 200 and domain in by_domain:
            tests.setdefault(domain, []).append(text)
    domains = sorted(tests)
    rng.shuffle(domains)
    queries = []
    for q in range(args.queries):
        domain = domains[q % len(domains)]
        query = cut_utf8(rng.choice(tests[domain]), args.query_bytes)
        pool = by_domain[domain]
        pool = rng.sample(pool, min(args.k, len(pool)))
        if len(pool) < args.n:
            pool += rng.sample([s for d in by_domain.values() for s in d], args.n - len(pool))
        m = max(1, args.n // 4)
        queries.append(
            Query(
                text=query,
                domain=domain,
                methods={
                    "knn": (pool[: args.n], [1] * args.n),
                    "hullft": (pool[:m], integerize([0.8**i for i in range(m)], args.n)),
                },
            )
        )
    return queries


# ---------------------------------------------------------------------------
# Timing


def matmul_params(model: Any) -> int:
    """Parameters that do matrix work per token: a tied input embedding counts once."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb
    return total if tied else total - emb.numel()


def optimizer_step_ms(model: Any, cfg: FinetuneConfig, engine: TTFTEngine) -> tuple[float, float]:
    """Median ms per Adam step on this model's parameters: the engine's kernel, and
    PyTorch's default (what the naive procedure runs), on a copy with random grads."""
    params = [p for p in copy.deepcopy(model).parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    out = []
    for opt in (
        build_optimizer(params, cfg, engine.policy),
        torch.optim.Adam(params, lr=cfg.lr, eps=cfg.eps),
    ):
        opt.step()  # state allocation, not timed
        times = []
        for _ in range(7):
            synchronize(engine.device)
            t0 = time.perf_counter()
            opt.step()
            synchronize(engine.device)
            times.append(time.perf_counter() - t0)
        out.append(statistics.median(times) * 1e3)
    return out[0], out[1]


def run_hullft(engine: TTFTEngine, q: Query) -> dict[str, Any]:
    t0 = time.perf_counter()
    base = engine.evaluate(q.text)
    results = {m: engine.run(q.text, t, c, base=base) for m, (t, c) in q.methods.items()}
    synchronize(engine.device)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "trained": sum(r.tokens_trained for r in results.values()),
        "scored": base.n_input_tokens + sum(r.tokens_scored for r in results.values()),
        "passes": sum(r.fwd_bwd_passes for r in results.values()),
        "finetune_s": sum(r.finetune_s for r in results.values()),
        "evaluate_s": base.seconds + sum(r.evaluate_s for r in results.values()),
        "reset_s": sum(r.reset_s for r in results.values()),
        "delta": {m: r.bpb_after - r.bpb_before for m, r in results.items()},
        "status": {m: r.status for m, r in results.items()},
    }


def run_naive(naive: PublishedProcedure, q: Query) -> dict[str, Any]:
    t0 = time.perf_counter()
    results = {m: naive.run(q.text, t, c) for m, (t, c) in q.methods.items()}
    synchronize(naive.device)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "trained": sum(r["processed"] for r in results.values()),
        "scored": sum(r["scored"] for r in results.values()),
        "passes": sum(r["passes"] for r in results.values()),
        "finetune_s": sum(r["finetune_s"] for r in results.values()),
        "evaluate_s": sum(r["evaluate_s"] for r in results.values()),
        "reset_s": sum(r["reload_s"] for r in results.values()),
        "delta": {m: r["after"] - r["before"] for m, r in results.items()},
    }


def tiny_bpe_model(hidden: int, layers: int, context: int) -> tuple[Any, Any]:
    """The tiny Llama shape over SmolLM2's 49k BPE vocabulary: like real small LMs,
    most of its parameters and FLOPs sit in the (tied) embedding / output layer."""
    tok = load_tokenizer(ModelConfig())
    return build_tiny_model(hidden=hidden, layers=layers, context=context, tokenizer=tok)


def smollm2_shape_model(shape_dir: str | None, context: int, seed: int) -> tuple[Any, Any]:
    """SmolLM2-135M's architecture and tokenizer with random weights: its config and
    tokenizer files only (a few MB; ``shape_dir``, default the embedded model's
    converted copy), for timing where the 98 MB weights cannot go. Speed does not
    depend on the weights' values; BPB does, so only the timing and the
    batched-vs-sequential columns mean anything."""
    path = shape_dir or str(embedded_model_dir())
    if not (Path(path) / "config.json").is_file():
        raise SystemExit(
            f"--shape-dir {path}: no config.json there. Give a folder with SmolLM2's "
            "config.json and tokenizer files (`bash benchmarks/gpu_session.sh prepare` "
            "writes one to .gpu/smollm2-shape)"
        )
    config = AutoConfig.from_pretrained(path)
    config.max_position_embeddings = max(config.max_position_embeddings, context)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(path)


MODELS = ("tiny", "tiny-bpe", "smollm2", "smollm2-shape")


def add_model_arguments(ap: argparse.ArgumentParser) -> None:
    """The model options both engine benchmarks take (``load`` reads them)."""
    ap.add_argument(
        "--model",
        choices=MODELS,
        default="tiny",
        help="tiny: the test model over bytes; tiny-bpe: the same over SmolLM2's vocabulary; "
        "smollm2: the embedded SmolLM2-135M; smollm2-shape: its architecture and tokenizer "
        "with random weights (timing only; see --shape-dir)",
    )
    ap.add_argument(
        "--shape-dir",
        default=None,
        help="smollm2-shape: a folder with SmolLM2's config.json and tokenizer files "
        "(default: the embedded model's converted copy)",
    )
    ap.add_argument("--hidden", type=int, default=64, help="tiny model width")
    ap.add_argument("--layers", type=int, default=2, help="tiny model depth")


def load(args: argparse.Namespace, device: str) -> tuple[Any, Any, int, str]:
    if args.model == "tiny":
        model, tok = build_tiny_model(hidden=args.hidden, layers=args.layers, context=args.seq_len)
        name = f"tiny-llama (hidden {args.hidden}, {args.layers} layers, byte tokenizer)"
        return model.to(device), tok, args.seq_len, name
    if args.model == "tiny-bpe":
        model, tok = tiny_bpe_model(args.hidden, args.layers, args.seq_len)
        name = f"tiny-llama (hidden {args.hidden}, {args.layers} layers, SmolLM2 BPE tokenizer)"
        return model.to(device), tok, args.seq_len, name
    if args.model == "smollm2-shape":
        model, tok = smollm2_shape_model(args.shape_dir, args.seq_len, args.seed)
        name = "SmolLM2-135M architecture and tokenizer, random weights (timing only)"
        return model.to(device), tok, args.seq_len, name
    loaded = load_model(ModelConfig(max_length=args.seq_len), device)
    return (
        loaded.model,
        loaded.tokenizer,
        loaded.max_length,
        "SmolLM2-135M (embedded, fp32 weights)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_arguments(ap)
    ap.add_argument("--seq-len", type=int, default=256, help="max_length (tokens)")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--n", type=int, default=50, help="support size N (steps per method)")
    ap.add_argument("--k", type=int, default=200, help="candidate pool per query")
    ap.add_argument("--refresh-interval", type=int, default=2)
    ap.add_argument(
        "--split",
        choices=["sequences", "document"],
        default="sequences",
        help="training sequences: documents cut into max_length pieces (hullft's default) "
        "or one truncated sequence per document (the paper's)",
    )
    ap.add_argument("--query-bytes", type=int, default=4096, help="queries cut to this many bytes")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    ap.add_argument("--peak-flops", type=float, default=989e12, help="peak bf16 FLOP/s (H100 SXM)")
    ap.add_argument(
        "--corpus",
        nargs="*",
        default=[],
        help="Pile-format inputs with train/test splits (default: the embedded minipile)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="runs per query; the median is kept")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--compile",
        action="store_true",
        help="hullft compiles its training step (finetune.compile); the one-time "
        "compilation is timed and printed, not counted per query",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = (
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    rng = random.Random(args.seed)
    model, tok, max_length, name = load(args, device)
    cfg = FinetuneConfig(
        refresh_interval=args.refresh_interval, seed=args.seed, compile=args.compile
    )
    naive = PublishedProcedure(copy.deepcopy(model), tok, max_length, cfg, device)
    engine = TTFTEngine(model, tok, cfg, device, max_length)
    queries = build_workload(tok, max_length, args, rng)

    train_lengths = [
        min(len(ids) + 1, max_length)
        for q in queries
        for texts, counts in q.methods.values()
        for ids, c in zip(
            tok(texts, add_special_tokens=False, verbose=False)["input_ids"], counts, strict=True
        )
        for _ in range(c)
    ]
    params = matmul_params(model)
    print(
        f"device   {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}),"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"model    {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params")
    print(
        f"workload {args.queries} queries x methods {list(queries[0].methods)}, N={args.n}, "
        f"r={args.refresh_interval}, max_length={max_length}, split={args.split}"
    )
    print(
        f"         support tokens per step: mean {statistics.mean(train_lengths):.0f} "
        f"of {max_length} ({statistics.mean(train_lengths) / max_length:.0%} filled)"
    )
    print(f"         query domains: {[q.domain for q in queries]}")
    print(f"         hullft multiset counts: {queries[0].methods['hullft'][1]}")
    print(f"         engine policy: {engine.policy}")
    fused_ms, default_ms = optimizer_step_ms(model, cfg, engine)
    print(
        f"         Adam step on this model: hullft {fused_ms:.2f} ms, "
        f"naive (PyTorch's default kernel) {default_ms:.2f} ms"
    )

    if args.compile:
        print(f"         compiling the training step (once per worker): {engine.warm_up():.1f} s")

    # Warm up both (lazy initialisation, allocator, kernels) on an untimed query.
    warm_texts = queries[0].methods["knn"][0][:4]
    warm = Query(queries[0].text, "", {"knn": (warm_texts, [1, 2, 1, 1][: len(warm_texts)])})
    run_hullft(engine, warm)
    run_naive(naive, warm)

    # Each query runs --repeats times per implementation, alternating which goes
    # first; the median repeat is reported (shared machines are noisy).
    rows = []
    header = f"{'query':>5} {'hullft s':>9} {'naive s':>9} {'ratio':>6} {'passes':>7}"
    if device.startswith("cuda"):
        header += f" {'tok/s':>9} {'MFU':>6} {'naive MFU':>9}"
    print("\n" + header)
    for i, q in enumerate(queries):
        hs_, ns_ = [], []
        for rep in range(args.repeats):
            if (i + rep) % 2 == 0:
                hs_.append(run_hullft(engine, q))
                ns_.append(run_naive(naive, q))
            else:
                ns_.append(run_naive(naive, q))
                hs_.append(run_hullft(engine, q))
        h = sorted(hs_, key=lambda r: r["seconds"])[len(hs_) // 2]
        n = sorted(ns_, key=lambda r: r["seconds"])[len(ns_) // 2]
        rows.append((h, n))
        line = (
            f"{i:>5} {h['seconds']:>9.3f} {n['seconds']:>9.3f} "
            f"{n['seconds'] / h['seconds']:>5.2f}x {h['passes']:>7}"
        )
        if device.startswith("cuda"):
            flops = 6 * params * h["trained"] + 2 * params * h["scored"]
            naive_flops = 6 * params * n["trained"] + 2 * params * n["scored"]
            line += (
                f" {h['trained'] / h['finetune_s']:>9.0f} "
                f"{flops / h['seconds'] / args.peak_flops:>6.1%} "
                f"{naive_flops / n['seconds'] / args.peak_flops:>9.1%}"
            )
        print(line)

    hs = [h["seconds"] for h, _ in rows]
    ns = [n["seconds"] for _, n in rows]
    print(
        f"\nper query: hullft {statistics.mean(hs):.3f} s, naive {statistics.mean(ns):.3f} s, "
        f"ratio {sum(ns) / sum(hs):.2f}x (median of per-query ratios "
        f"{statistics.median(n / h for h, n in zip(hs, ns, strict=True)):.2f}x)"
    )
    for label, restore, rs in (
        ("hullft", "reset", [h for h, _ in rows]),
        ("naive", "reload", [n for _, n in rows]),
    ):
        finetune = statistics.mean(r["finetune_s"] for r in rs)
        evaluate = statistics.mean(r["evaluate_s"] for r in rs)
        restored = statistics.mean(r["reset_s"] for r in rs)
        print(
            f"{label:>6} stages per query: finetune {finetune:.3f} s, "
            f"evaluate {evaluate:.3f} s, {restore} {restored * 1e3:.2f} ms"
        )
    trained = sum(h["trained"] for h, _ in rows)
    print(
        f"trained tokens: hullft {trained} (unpadded), naive "
        f"{sum(n['trained'] for _, n in rows)} (padded); hullft "
        f"{trained / sum(h['finetune_s'] for h, _ in rows):.0f} trained tokens/s while finetuning"
    )
    for method in queries[0].methods:
        hd = statistics.mean(h["delta"][method] for h, _ in rows)
        nd = statistics.mean(n["delta"][method] for _, n in rows)
        print(
            f"mean BPB change, {method}: hullft {hd:+.4f} (rolling BPB), naive {nd:+.4f} "
            "(published BPB)"
        )
    bad = [s for h, _ in rows for s in h["status"].values() if s != "ok"]
    if bad:
        print(f"non-ok statuses: {bad}")


if __name__ == "__main__":
    main()
