"""Batched TTFT (hullft.batched) against the one-at-a-time engine: jobs/s vs B.

    # CPU, 2 threads, the tiny model and SmolLM2-135M (docs/ttft.md records these):
    .venv/bin/python benchmarks/bench_batched.py --model tiny --threads 2
    .venv/bin/python benchmarks/bench_batched.py --model smollm2 --threads 2 \\
        --seq-len 256 --n 8 --queries 4 --batch 1 2 4
    # GPU, SmolLM2-135M at the paper's setting (tokens/s and MFU per B):
    .venv/bin/python benchmarks/bench_batched.py --model smollm2 --seq-len 1024 --n 50 \\
        --queries 16 --batch 1 2 4 8 16 --peak-flops 989e12

One process, one workload, every engine on the same jobs: the workload of
``bench_ttft.py`` (minipile queries; per query a kNN multiset of N distinct
sequences and a HullFT-like multiset of N/4 sequences with decaying counts), i.e.
2 jobs per query, each given its query's base score (as the pipeline does). For
each B the batched engine runs all jobs ``B`` at a time; ``sequential`` is
:class:`hullft.ttft.TTFTEngine` (what B = 1 means in a run). Each configuration is
timed ``--repeats`` times, rotating the order, and the median is kept; the ratios
are against ``sequential`` in the same run. Every batched result is checked against
the sequential one (largest relative BPB difference printed). ``--profile`` then
prints where one run of the sequential engine and of the largest B spends its time.

jobs/s counts finetuning, scoring after and reset (the before-score is shared per
query and not timed). On CUDA it also prints trained tokens/s and MFU:
(6·P·trained + 2·P·scored tokens) / (seconds · peak), P as in bench_ttft.py.
A B whose weights, gradients and optimizer state (``hullft.batched.job_bytes``)
would not fit in the available memory is skipped and says so.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from bench_ttft import add_model_arguments, build_workload, load, matmul_params

from hullft.batched import BatchedTTFTEngine, job_bytes, stacked_arch
from hullft.config import FinetuneConfig
from hullft.reference import synchronize
from hullft.ttft import TTFTEngine, TTFTJob, TTFTResult

log = logging.getLogger("bench_batched")


def available_bytes(device: str) -> int:
    """Free device memory (CUDA) or MemAvailable (CPU)."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def timed(engine: Any, jobs: list[TTFTJob], device: str) -> tuple[float, list[TTFTResult]]:
    synchronize(torch.device(device))
    t0 = time.perf_counter()
    results = engine.run_batch(jobs)
    synchronize(torch.device(device))
    return time.perf_counter() - t0, results


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_arguments(ap)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="B values")
    ap.add_argument("--seq-len", type=int, default=256, help="max_length (tokens)")
    ap.add_argument("--queries", type=int, default=8, help="queries (2 jobs each)")
    ap.add_argument("--n", type=int, default=50, help="support size N (steps per job)")
    ap.add_argument("--k", type=int, default=200, help="candidate pool per query")
    ap.add_argument("--refresh-interval", type=int, default=2)
    ap.add_argument("--split", choices=["sequences", "document"], default="sequences")
    ap.add_argument("--query-bytes", type=int, default=4096)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    ap.add_argument("--peak-flops", type=float, default=989e12, help="peak bf16 FLOP/s (H100 SXM)")
    ap.add_argument("--corpus", nargs="*", default=[])
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration (median kept)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile", action="store_true", help="finetune.compile for both engines")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile one run of the sequential engine and of the largest B "
        "and print the operators that took the most time (torch.profiler, self time)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = (
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    model, tok, max_length, name = load(args, device)
    cfg = FinetuneConfig(
        refresh_interval=args.refresh_interval, seed=args.seed, compile=args.compile
    )
    queries = build_workload(tok, max_length, args, random.Random(args.seed))

    sequential = TTFTEngine(model, tok, cfg, device, max_length)
    jobs = []
    for q in queries:
        base = sequential.evaluate(q.text)
        jobs += [TTFTJob(q.text, tuple(t), tuple(c), base) for t, c in q.methods.values()]
    per_job = job_bytes(model, max_length)
    room = available_bytes(device)
    engines: dict[str, Any] = {"sequential": sequential}
    skipped = []
    for b in args.batch:
        if b * per_job > 0.8 * room:
            skipped.append(b)
            continue
        engines[f"B={b}"] = BatchedTTFTEngine(
            model, tok, cfg, device, max_length, arch=stacked_arch(model), batch_jobs=b
        )

    params = matmul_params(model)
    print(
        f"device   {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}),"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"model    {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params")
    print(
        f"workload {len(jobs)} jobs ({args.queries} queries x knn, hullft), N={args.n}, "
        f"r={args.refresh_interval}, max_length={max_length}"
    )
    print(f"memory   {per_job / 2**30:.2f} GiB per batched job, {room / 2**30:.1f} GiB available")
    if skipped:
        print(f"skipped  B={skipped}: would not fit")

    for label, engine in engines.items():  # untimed: allocation, lazy init, compile
        if args.compile:
            print(f"compile  {label}: {engine.warm_up():.1f} s")
        engine.run_batch(jobs[:2])

    times: dict[str, list[float]] = {k: [] for k in engines}
    results: dict[str, list[TTFTResult]] = {}
    labels = list(engines)
    for rep in range(args.repeats):
        order = labels[rep % len(labels) :] + labels[: rep % len(labels)]
        for label in order:
            seconds, res = timed(engines[label], jobs, device)
            times[label].append(seconds)
            results[label] = res

    want = results["sequential"]
    base_s = statistics.median(times["sequential"])
    header = f"{'engine':>10} {'seconds':>8} {'jobs/s':>8} {'vs seq':>7} {'max dBPB':>9}"
    if device.startswith("cuda"):
        header += f" {'tok/s':>10} {'MFU':>6}"
    print("\n" + header)
    trained = sum(r.tokens_trained for r in want)
    scored = sum(r.tokens_scored for r in want)
    for label in labels:
        s = statistics.median(times[label])
        diff = max(
            (
                abs(g.bpb_after - w.bpb_after) / abs(w.bpb_after)
                for g, w in zip(results[label], want, strict=True)
                if math.isfinite(w.bpb_after)
            ),
            default=0.0,
        )
        line = f"{label:>10} {s:>8.3f} {len(jobs) / s:>8.2f} {base_s / s:>6.2f}x {diff:>9.1e}"
        if device.startswith("cuda"):
            flops = 6 * params * trained + 2 * params * scored
            line += f" {trained / s:>10.0f} {flops / s / args.peak_flops:>6.1%}"
        print(line)
    bad = [r.status for r in want if r.status != "ok"]
    if bad:
        print(f"non-ok statuses: {bad}")
    if args.profile:
        for label in dict.fromkeys((labels[0], labels[-1])):  # sequential, the largest B
            print_profile(label, engines[label], jobs, device)


def print_profile(
    label: str, engine: Any, jobs: list[TTFTJob], device: str, rows: int = 12
) -> None:
    """Where one run of ``engine`` spends its time: the top operators by self time,
    as a share of the run's profiled total."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        timed(engine, jobs, device)
    events = prof.key_averages()
    key = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events) or 1
    print(f"\nprofile  {label}: top operators by {key.replace('_', ' ')}")
    for e in sorted(events, key=lambda e: -getattr(e, key))[:rows]:
        print(f"  {getattr(e, key) / total:>6.1%}  {e.count:>6} calls  {e.key[:70]}")


if __name__ == "__main__":
    main()
