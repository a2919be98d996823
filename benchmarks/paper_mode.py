"""How far hullft's default finetuning is from the published procedure, on the same inputs.

Every query of the ``bench_ttft`` workload (minipile test queries, each with a
kNN-like and a HullFT-like multiset of training sequences from its domain) is
finetuned and scored four ways, from the same base weights:

- ``default``: ``train_tokenization=bos``, ``bpb_mode=rolling`` (hullft's default);
- ``paper-tokens``: ``train_tokenization=paper``, ``bpb_mode=rolling`` — the
  effect of the training tokenization alone, on hullft's BPB;
- ``bos-paper-bpb``: ``train_tokenization=bos``, ``bpb_mode=paper``;
- ``paper``: ``finetune=paper`` (both published), next to ``PublishedProcedure``
  (hullft.reference: the published loop, padded to ``max_length``).

It prints per (query, method) the BPB after finetuning under each, and the
relative deviations: default vs paper-tokens (rolling BPB), bos-paper-bpb vs paper
(published BPB), and paper vs the published loop. BPBs under the two BPB modes
are not comparable with each other (different tokens and denominators); the
relative change vs base is, and is printed too.

    .venv/bin/python benchmarks/paper_mode.py --model tiny --seq-len 256 --n 16 --queries 6
    .venv/bin/python benchmarks/paper_mode.py --model smollm2 --seq-len 256 --n 8 --queries 3
"""

from __future__ import annotations

import argparse
import copy
import logging
import random
import statistics
from collections.abc import Sequence

import torch
from bench_ttft import build_workload, load

from hullft.config import FinetuneConfig
from hullft.reference import PublishedProcedure
from hullft.ttft import TTFTEngine

VARIANTS = {
    "default": ("bos", "rolling"),
    "paper-tokens": ("paper", "rolling"),
    "bos-paper-bpb": ("bos", "paper"),
    "paper": ("paper", "paper"),
}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", choices=["tiny", "tiny-bpe", "smollm2"], default="tiny")
    ap.add_argument("--seq-len", type=int, default=256, help="max_length (tokens)")
    ap.add_argument("--queries", type=int, default=6)
    ap.add_argument("--n", type=int, default=16, help="support size N (steps per method)")
    ap.add_argument("--k", type=int, default=64, help="candidate pool per query")
    ap.add_argument("--lr", type=float, default=5e-5, help="Adam learning rate (hullft's default)")
    ap.add_argument("--refresh-interval", type=int, default=2)
    ap.add_argument("--split", choices=["sequences", "document"], default="document")
    ap.add_argument("--query-bytes", type=int, default=1500)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--corpus", nargs="*", default=[])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok, max_length, name = load(args, "cpu")
    queries = build_workload(tok, max_length, args, random.Random(args.seed))
    configs = {
        v: FinetuneConfig(
            lr=args.lr,
            refresh_interval=args.refresh_interval,
            seed=args.seed,
            train_tokenization=t,  # type: ignore[arg-type]
            bpb_mode=b,  # type: ignore[arg-type]
        )
        for v, (t, b) in VARIANTS.items()
    }
    # The engines share one model (each restores the base weights after every run);
    # the published procedure leaves its weights finetuned, so it gets a copy.
    published = PublishedProcedure(copy.deepcopy(model), tok, max_length, configs["paper"], "cpu")
    engines = {v: TTFTEngine(model, tok, c, "cpu", max_length) for v, c in configs.items()}
    print(f"model {name}, max_length {max_length}, lr {args.lr}, r {args.refresh_interval}")
    print(f"{len(queries)} queries x {list(queries[0].methods)}, N={args.n}, split={args.split}")
    header = (
        f"{'domain':<22}{'method':<8}"
        + "".join(f"{v:>15}" for v in VARIANTS)
        + f"{'published':>11}{'dflt/ptok':>11}{'bos/paper':>11}{'paper/pub':>11}"
    )
    print(header)
    dev_tok, dev_bpb, dev_pub = [], [], []
    gain: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for q in queries:
        for method, (texts, counts) in q.methods.items():
            after = {}
            for v, engine in engines.items():
                res = engine.run(q.text, texts, counts)
                assert res.ok, res.error
                after[v] = res.bpb_after
                gain[v].append(res.bpb_after / res.bpb_before - 1)
            pub = published.run(q.text, texts, counts)["after"]
            dev_tok.append(after["default"] / after["paper-tokens"] - 1)
            dev_bpb.append(after["bos-paper-bpb"] / after["paper"] - 1)
            dev_pub.append(after["paper"] / pub - 1)
            print(
                f"{q.domain[:21]:<22}{method:<8}"
                + "".join(f"{after[v]:>15.5f}" for v in VARIANTS)
                + f"{pub:>11.5f}{dev_tok[-1]:>+11.2e}{dev_bpb[-1]:>+11.2e}{dev_pub[-1]:>+11.2e}"
            )

    def summary(xs: list[float]) -> str:
        return (
            f"mean {statistics.fmean(xs):+.3e}, mean |.| {statistics.fmean(map(abs, xs)):.3e}, "
            f"max |.| {max(map(abs, xs)):.3e}"
        )

    print(f"\ndefault vs paper tokenization, rolling BPB after:  {summary(dev_tok)}")
    print(f"bos vs paper tokenization, published BPB after:    {summary(dev_bpb)}")
    print(f"finetune=paper vs the published loop:              {summary(dev_pub)}")
    for v, g in gain.items():
        print(f"change vs base, {v:<14} mean {100 * statistics.fmean(g):+.3f} %")


if __name__ == "__main__":
    main()
