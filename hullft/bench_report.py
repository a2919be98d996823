"""The ``hullft bench`` report: figures from the sweep points' result rows,
PNG plots and ``report.md``. The sweeps themselves run in ``actors/bench.py``
(through the Ray runtime); this module only reads rows and writes files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from hullft.config import RunConfig
from hullft.report import format_table, provenance_section
from hullft.results import BASE_METHOD


@dataclasses.dataclass
class BenchPoint:
    """One sweep point: its config, its rows and how long its loop took."""

    label: str
    cfg: RunConfig
    rows: Any  # DataFrame
    loop_s: float
    queries: int


def ok_rows(df: Any) -> Any:
    return df[df["status"] != "failed"]


def _mean_bpb(df: Any) -> dict[str, float]:
    ok = ok_rows(df)
    return {m: float(g["bpb_after"].mean()) for m, g in ok.groupby("method")}


def _per_query_seconds(df: Any) -> dict[str, float]:
    """Mean seconds a query spends in selection + finetuning + evaluation + weight
    reset, per method."""
    ok = ok_rows(df)
    t = ok["select_s"] + ok["finetune_s"] + ok["evaluate_s"] + ok["reset_s"]
    return {m: float(v) for m, v in t.groupby(ok["method"]).mean().items()}


def figures(
    cfg: RunConfig,
    sweep_n: dict[int, BenchPoint],
    budgets: dict[float, BenchPoint],
    reuse: dict[int, BenchPoint],
    scaling: dict[int, BenchPoint],
    naive: dict[str, Any] | None,
    params: int | None,
    batching: dict[int, BenchPoint] | None = None,
) -> dict[str, Any]:
    """Every figure of the report, from the sweep points' rows (``bench.json``)."""
    n_max = max(sweep_n)
    main = ok_rows(sweep_n[n_max].rows)
    methods = [m for m in cfg.selection.methods]
    fig: dict[str, Any] = {"n_max": n_max, "methods": methods}

    fig["bpb_vs_n"] = {n: _mean_bpb(p.rows) for n, p in sweep_n.items()}
    fig["frontier"] = {
        n: {m: (_per_query_seconds(p.rows).get(m), _mean_bpb(p.rows).get(m)) for m in methods}
        for n, p in sweep_n.items()
    }
    fig["bpb_at_budget"] = {t: _mean_bpb(p.rows) for t, p in budgets.items()}
    fig["steps_at_budget"] = {
        t: {m: float(g["optimizer_steps"].mean()) for m, g in ok_rows(p.rows).groupby("method")}
        for t, p in budgets.items()
    }

    stages = {}
    for m, g in main.groupby("method"):
        stages[m] = {
            s: (float(g[s].quantile(0.5)), float(g[s].quantile(0.95)))
            for s in ("embed_s", "search_s", "select_s", "finetune_s", "evaluate_s", "reset_s")
        }
    fig["stages"] = stages

    sel = {m: float(g["select_s"].median()) for m, g in main.groupby("method") if m != BASE_METHOD}
    fig["select_median_s"] = sel
    ratios: dict[str, float] = {}
    if "sift" in sel and "hullft" in sel and sel["hullft"] > 0:
        ratios["selection: SIFT / HullFT time"] = sel["sift"] / sel["hullft"]
    if "knn" in sel and "hullft" in sel and sel["knn"] > 0:
        ratios["selection: HullFT / kNN time"] = sel["hullft"] / sel["knn"]

    ft: dict[int, dict[str, Any]] = {}
    for r, p in reuse.items():
        ok = ok_rows(p.rows)
        tuned = ok[ok["method"] != BASE_METHOD]
        ft[r] = {
            "finetune_s": float(tuned["finetune_s"].mean()),
            "passes": float(tuned["fwd_bwd_passes"].mean()),
            "steps": float(tuned["optimizer_steps"].mean()),
            "bpb": _mean_bpb(p.rows),
        }
    fig["reuse"] = ft
    if 1 in ft:
        for r in ft:
            if r != 1 and ft[r]["finetune_s"] > 0:
                ratios[f"finetuning: r=1 / r={r} time"] = ft[1]["finetune_s"] / ft[r]["finetune_s"]

    qps = {w: p.queries / p.loop_s for w, p in scaling.items() if p.loop_s > 0}
    fig["throughput_qps"] = qps
    w1 = min(qps) if qps else None
    if w1 is not None:
        for w, q in qps.items():
            if w != w1:
                ratios[f"scaling efficiency W={w}"] = q / (w / w1 * qps[w1])

    fig["throughput_vs_batch"] = batch = _batch_throughput(batching or {})
    if batch:
        b1 = min(batch)
        for j, v in batch.items():
            if j != b1 and batch[b1]["finetunes_per_s"] > 0:
                ratios[f"finetunes/s: batch_jobs={j} / batch_jobs={b1}"] = (
                    v["finetunes_per_s"] / batch[b1]["finetunes_per_s"]
                )

    tokens_trained = float(main["tokens_trained"].sum())
    tokens_scored = float(main["tokens_scored"].sum())
    ft_s = float(main["finetune_s"].sum())
    ev_s = float(main["evaluate_s"].sum())
    fig["tokens_per_s"] = {
        "train": tokens_trained / ft_s if ft_s else 0.0,
        "score": tokens_scored / ev_s if ev_s else 0.0,
    }
    fig["params"] = params
    if params and on_cuda(main):
        flops = 6 * params * tokens_trained + 2 * params * tokens_scored
        fig["mfu"] = flops / ((ft_s + ev_s) * cfg.bench.peak_flops)
    if naive:
        fig["naive"] = naive
        ratios["pipeline: naive published / hullft time per query"] = naive["speedup"]
    fig["ratios"] = ratios
    return fig


def _batch_throughput(batching: dict[int, BenchPoint]) -> dict[int, dict[str, float]]:
    """Per ``finetune.batch_jobs``: finetunes (non-base rows) and queries per second
    of the run's loop, and the largest batch a row ran in (the engine may fall back
    to 1, e.g. for an architecture it cannot stack)."""
    out = {}
    for jobs, p in sorted(batching.items()):
        ok = ok_rows(p.rows)
        tuned = ok[ok["method"] != BASE_METHOD]
        if p.loop_s <= 0:
            continue
        out[jobs] = {
            "finetunes_per_s": len(tuned) / p.loop_s,
            "queries_per_s": p.queries / p.loop_s,
            "ran_at": float(tuned["batch_size"].max()) if len(tuned) else float("nan"),
        }
    return out


def on_cuda(rows: Any) -> bool:
    """Whether the workers that produced ``rows`` ran on CUDA (not the driver)."""
    if not len(rows) or "device" not in rows:
        return False
    return bool(rows["device"].astype(str).str.startswith("cuda").all())


def write_plots(out: Path, fig: dict[str, Any]) -> None:
    # matplotlib (~0.5 s, and the backend must be set first): only plots need it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: pyplot reads the backend

    methods = [BASE_METHOD, *fig["methods"]]

    def save(name: str) -> None:
        plt.tight_layout()
        plt.savefig(out / name, dpi=120)
        plt.close()

    plt.figure(figsize=(5, 3.5))
    ns = sorted(fig["bpb_vs_n"])
    for m in methods:
        plt.plot(ns, [fig["bpb_vs_n"][n].get(m, np.nan) for n in ns], marker="o", label=m)
    plt.xlabel("support budget N")
    plt.ylabel("bits per byte")
    plt.title("BPB vs N")
    plt.legend()
    save("bpb_vs_n.png")

    plt.figure(figsize=(5, 3.5))
    for m in fig["methods"]:
        pts = [fig["frontier"][n][m] for n in ns if fig["frontier"][n][m][0] is not None]
        plt.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    plt.xlabel("seconds per query (select + finetune + evaluate + reset)")
    plt.ylabel("bits per byte")
    plt.title("quality vs time (N sweep)")
    plt.legend()
    save("frontier.png")

    plt.figure(figsize=(5, 3.5))
    ts = sorted(fig["bpb_at_budget"])
    for m in methods:
        plt.plot(ts, [fig["bpb_at_budget"][t].get(m, np.nan) for t in ts], marker="o", label=m)
    plt.xlabel("finetuning budget per query (s)")
    plt.ylabel("bits per byte")
    plt.title(f"BPB at fixed time (N={fig['n_max']})")
    plt.legend()
    save("bpb_at_budget.png")

    plt.figure(figsize=(6, 3.5))
    stage_names = ("embed_s", "search_s", "select_s", "finetune_s", "evaluate_s", "reset_s")
    ms = [m for m in methods if m in fig["stages"]]
    bottom = np.zeros(len(ms))
    for s in stage_names:
        vals = np.array([fig["stages"][m][s][0] for m in ms])
        plt.bar(ms, vals, bottom=bottom, label=s[:-2])
        bottom += vals
    plt.ylabel("seconds per query (p50)")
    plt.title("per-stage latency")
    plt.legend(fontsize=7)
    save("stages.png")

    plt.figure(figsize=(5, 3.5))
    ws = sorted(fig["throughput_qps"])
    plt.plot(ws, [fig["throughput_qps"][w] for w in ws], marker="o", label="measured")
    if ws:
        w1 = ws[0]
        plt.plot(ws, [fig["throughput_qps"][w1] * w / w1 for w in ws], "--", label="linear")
    plt.xlabel("model workers")
    plt.ylabel("queries / s")
    plt.title("throughput vs workers")
    plt.legend()
    save("scaling.png")

    plt.figure(figsize=(5, 3.5))
    rs = sorted(fig["reuse"])
    plt.plot(rs, [fig["reuse"][r]["finetune_s"] for r in rs], marker="o")
    plt.xlabel("refresh interval r (1 = no gradient reuse)")
    plt.ylabel("finetuning seconds per query")
    plt.title(f"gradient reuse (N={fig['n_max']})")
    save("reuse.png")


def write_report(out: Path, cfg: RunConfig, fig: dict[str, Any]) -> None:
    # pandas (~0.5 s): only a written report needs it
    import pandas as pd

    methods = [BASE_METHOD, *fig["methods"]]

    def by_method(d: dict[Any, dict[str, float]], key: str) -> str:
        rows = [{key: k, **{m: v.get(m, np.nan) for m in methods}} for k, v in sorted(d.items())]
        return format_table(pd.DataFrame(rows))

    stages = pd.DataFrame(
        [
            {
                "method": m,
                **{f"{s[:-2]} p50/p95": f"{v[0]:.3g} / {v[1]:.3g}" for s, v in st.items()},
            }
            for m, st in fig["stages"].items()
        ]
    )
    reuse = pd.DataFrame(
        [
            {"r": r, "finetune_s": v["finetune_s"], "passes": v["passes"], "steps": v["steps"]}
            for r, v in sorted(fig["reuse"].items())
        ]
    )
    scaling = pd.DataFrame(
        [{"workers": w, "queries/s": q} for w, q in sorted(fig["throughput_qps"].items())]
    )
    batch = pd.DataFrame(
        [
            {
                "batch_jobs": j,
                "ran at B": v["ran_at"],
                "finetunes/s": v["finetunes_per_s"],
                "queries/s": v["queries_per_s"],
            }
            for j, v in sorted(fig.get("throughput_vs_batch", {}).items())
        ]
    )
    ratios = pd.DataFrame([{"ratio": k, "value": v} for k, v in fig["ratios"].items()])
    lines = [
        f"# hullft benchmark `{cfg.experiment.name}`",
        "",
        f"Reproduce: `hullft bench` (experiment `{cfg.experiment.name}`); "
        f"{fig['bench_seconds']:.0f} s in all. Every run went through the Ray runtime; "
        "ratios come from numbers measured in this one invocation.",
        "",
        "## Ratios measured in this run",
        "",
        format_table(ratios),
        "",
        "## BPB vs N",
        "",
        by_method(fig["bpb_vs_n"], "N"),
        "",
        "![](bpb_vs_n.png) ![](frontier.png)",
        "",
        f"## BPB at fixed finetuning budgets (N = {fig['n_max']})",
        "",
        by_method(fig["bpb_at_budget"], "budget_s"),
        "",
        "Mean optimizer steps that fit the budget:",
        "",
        by_method(fig["steps_at_budget"], "budget_s"),
        "",
        "![](bpb_at_budget.png)",
        "",
        "## Per-stage latency (seconds per query)",
        "",
        format_table(stages),
        "",
        "![](stages.png)",
        "",
        "## Finetuning speed vs refresh interval r",
        "",
        format_table(reuse),
        "",
        "![](reuse.png)",
        "",
        "## Throughput vs workers",
        "",
        format_table(scaling),
        "",
        "![](scaling.png)",
        "",
        "## Throughput vs jobs per replica (`finetune.batch_jobs`)",
        "",
        "One model worker, N = the sweep's smallest; every (query, method) finetune of "
        "a call trains together (`hullft/batched/`). Loop time, so model loading is "
        "included alike at every B.",
        "",
        format_table(batch) if len(batch) else "(not swept: set `bench.batch_jobs`)",
        "",
        "## Model throughput",
        "",
        f"- parameters: {fig.get('params')}",
        f"- trained tokens/s: {fig['tokens_per_s']['train']:.1f}; scored tokens/s: {fig['tokens_per_s']['score']:.1f}",
        f"- MFU: {fig['mfu']:.3%}" if "mfu" in fig else "- MFU: n/a (no CUDA device)",
        "",
    ]
    if "naive" in fig:
        nv = fig["naive"]
        lines += [
            "## hullft vs the published procedure (same model, same multisets)",
            "",
            f"{nv['queries']} HullFT multisets: hullft {nv['hullft_s_per_query']:.2f} s/query, "
            f"naive {nv['naive_s_per_query']:.2f} s/query → **{nv['speedup']:.2f}×**.",
            "",
        ]
    lines += provenance_section(cfg)
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")


def jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)
