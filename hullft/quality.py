"""The quality study: which selection gives the lowest BPB for the compute (issue #14).

An experiment config (``experiment=quality``) names the sweep in its ``bench``
section: every N of ``bench.n_values`` at equal steps (no time budget), and every
budget of ``bench.time_budgets_s`` at the largest N (equal finetuning time). Each
sweep point is an ordinary run with its own run id (``<name>-n<N>`` or
``<name>-n<N>-t<B>s``) under ``experiment.output_dir``, so the study resumes
point by point and query by query after an interruption.

This module plans the points, reads their finished runs and writes the report:
``results.md`` with per-point tables (:mod:`hullft.stats`: mean BPB, paired
differences vs kNN with bootstrap 95 % CIs, wins, change vs base), and small PNG
plots (per-domain paired differences with CIs; BPB vs N; BPB vs finetuning
seconds). ``benchmarks/quality.py`` is its command line (``run`` and ``report``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hullft.config import RunConfig, config_to_dict
from hullft.report import format_table, provenance
from hullft.results import BASE_METHOD, SCORED_STATUSES, read_results
from hullft.stats import (
    REFERENCE_METHOD,
    PairedDifference,
    ScopeStats,
    compare_methods,
    stats_frame,
)

log = logging.getLogger(__name__)

WALL_LOG = "quality-invocations.jsonl"
"""Per study, one JSON line per point and invocation: seconds, queries processed."""
COLORS = {BASE_METHOD: "0.5", "knn": "C0", "sift": "C1", "hullft": "C2"}


@dataclass(frozen=True)
class QualityPoint:
    """One run of the study: N steps per query, optionally under a time budget."""

    n: int
    time_budget_s: float | None = None

    @property
    def label(self) -> str:
        if self.time_budget_s is None:
            return f"n{self.n}"
        return f"n{self.n}-t{self.time_budget_s:g}s"

    @property
    def title(self) -> str:
        if self.time_budget_s is None:
            return f"N = {self.n}, equal steps"
        return f"N = {self.n}, {self.time_budget_s:g} s finetuning budget per query"


def quality_points(cfg: RunConfig) -> tuple[QualityPoint, ...]:
    """Equal steps at every ``bench.n_values``; every ``bench.time_budgets_s`` at the largest N."""
    n_max = max(cfg.bench.n_values)
    return (
        *(QualityPoint(n) for n in sorted(set(cfg.bench.n_values))),
        *(QualityPoint(n_max, b) for b in sorted(set(cfg.bench.time_budgets_s))),
    )


def point_config(cfg: RunConfig, point: QualityPoint) -> RunConfig:
    """The run config of one point: its N, budget and run id (``<study>-<label>``)."""
    study = cfg.experiment.run_id or cfg.experiment.name
    return dataclasses.replace(
        cfg,
        selection=dataclasses.replace(cfg.selection, n=point.n),
        finetune=dataclasses.replace(cfg.finetune, time_budget_s=point.time_budget_s),
        experiment=dataclasses.replace(cfg.experiment, run_id=f"{study}-{point.label}"),
    )


def run_dir(cfg: RunConfig) -> Path:
    """Where a run of ``cfg`` (with its run id set) keeps its results."""
    assert cfg.experiment.run_id, "point_config sets the run id"
    return Path(cfg.experiment.output_dir).expanduser() / cfg.experiment.run_id


def record_invocation(
    cfg: RunConfig, point: QualityPoint, seconds: float, processed: int, complete: bool
) -> None:
    """Append one invocation of one point to the study's wall-time log: its seconds,
    the queries it finished, whether it ran to the end (an interrupted invocation
    is recorded too, with ``complete`` false)."""
    out = Path(cfg.experiment.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    entry = {
        "study": cfg.experiment.run_id or cfg.experiment.name,
        "point": point.label,
        "seconds": round(seconds, 3),
        "queries_processed": processed,
        "complete": complete,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hardware": hardware(),
    }
    with open(out / WALL_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def finished_queries(pcfg: RunConfig) -> int:
    """Queries with committed rows in the run of a point's config."""
    rows = read_results(run_dir(pcfg))
    return 0 if rows.empty else int(rows["query_id"].nunique())


def hardware() -> str:
    """One line naming the machine a point ran on (CPU cores, processor, GPU)."""
    import torch  # heavy; the report alone never needs it

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    proc = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPU cores ({proc}, {platform.system()}), {gpu}"


def invocations(cfg: RunConfig) -> list[dict[str, Any]]:
    """The study's wall-time log entries, oldest first."""
    path = Path(cfg.experiment.output_dir).expanduser() / WALL_LOG
    study = cfg.experiment.run_id or cfg.experiment.name
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [e for e in entries if e.get("study") == study]


@dataclass(frozen=True)
class WallTime:
    """What the wall-time log says about one point: over how many invocations, how
    long, and how many queries those invocations finished."""

    seconds: float = 0.0
    invocations: int = 0
    queries: int = 0

    def describe(self, finished: int) -> str:
        """One sentence for a point whose run holds ``finished`` queries; queries
        finished by invocations that recorded no time are counted as such."""
        if not self.invocations:
            return "wall time not recorded"
        text = (
            f"wall time {_hms(self.seconds)} over {self.invocations} recorded "
            f"invocation{'s' if self.invocations != 1 else ''}"
        )
        unrecorded = finished - self.queries
        if unrecorded > 0:
            text += (
                f", which finished {self.queries} of them ({unrecorded} were finished by "
                "invocations that recorded no time)"
            )
        return text


def wall_times(entries: Sequence[Mapping[str, Any]]) -> dict[str, WallTime]:
    """Per point label, the sum over the study's wall-time log ``entries``
    (:func:`invocations`)."""
    total: dict[str, WallTime] = {}
    for e in entries:
        w = total.get(e["point"], WallTime())
        total[e["point"]] = WallTime(
            w.seconds + e["seconds"], w.invocations + 1, w.queries + e["queries_processed"]
        )
    return total


@dataclass(frozen=True)
class PointResult:
    """A point's finished rows and their statistics."""

    point: QualityPoint
    run_id: str
    rows: Any  # pandas.DataFrame of ResultRow records
    scopes: tuple[ScopeStats, ...]

    @property
    def overall(self) -> ScopeStats:
        return self.scopes[0]


def load_points(cfg: RunConfig, *, n_resamples: int = 9999, seed: int = 0) -> list[PointResult]:
    """Every point of the study that has scored rows (a point not started is skipped)."""
    results = []
    for point in quality_points(cfg):
        pcfg = point_config(cfg, point)
        rows = read_results(run_dir(pcfg))
        if rows.empty or REFERENCE_METHOD not in set(rows["method"]):
            log.warning("point %s has no results yet in %s", point.label, run_dir(pcfg))
            continue
        scopes = compare_methods(rows, n_resamples=n_resamples, seed=seed)
        results.append(PointResult(point, str(pcfg.experiment.run_id), rows, scopes))
    return results


def verdict(d: PairedDifference) -> str:
    """Plain words for a paired difference vs kNN."""
    if math.isnan(d.ci_low):
        return "too few queries to say"
    name = {"hullft": "HullFT", "sift": "SIFT"}.get(d.method, d.method)
    if d.ci_high < 0:
        return f"{name} is below kNN (the 95 % CI excludes zero)"
    if d.ci_low > 0:
        return f"{name} is above kNN (the 95 % CI excludes zero)"
    words = (
        f"no significant difference in the mean between {name} and kNN (the 95 % CI covers zero)"
    )
    if d.sign_p < SIGN_TEST_ALPHA:
        side = "above" if d.worse > d.better else "below"
        words += (
            f", but {name} is {side} kNN on most queries "
            f"({max(d.better, d.worse)} of {d.better + d.worse}, sign test p = {d.sign_p:.2g})"
        )
    return words


def headline(result: PointResult) -> list[str]:
    """One line per compared method: the overall paired difference and its verdict."""
    lines = []
    for d in result.overall.differences:
        lines.append(
            f"- {result.point.title}: {d.method} − kNN = {d.mean:+.4f} BPB, 95 % CI "
            f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}] over {d.queries} queries "
            f"({d.better} better, {d.worse} worse; median {d.median:+.4f}): {verdict(d)}."
        )
    return lines


def compute_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean optimizer steps, forward/backward passes and seconds per method."""
    ok = rows[rows["status"].isin(SCORED_STATUSES) & (rows["method"] != BASE_METHOD)]
    table = (
        ok.groupby("method")
        .agg(
            queries=("query_id", "nunique"),
            steps=("optimizer_steps", "mean"),
            passes=("fwd_bwd_passes", "mean"),
            finetune_s=("finetune_s", "mean"),
            budget_exhausted=("status", lambda s: int((s == "budget_exhausted").sum())),
        )
        .reset_index()
    )
    return table


SIGN_TEST_ALPHA = 0.05
"""A sign test below this is reported beside a mean whose CI covers zero."""

STATS_FORMATS = {
    "bpb": ".4f",
    "vs_base_%": "+.2f",
    "diff_vs_ref": "+.4f",
    "ci_low": "+.4f",
    "ci_high": "+.4f",
    "median_diff": "+.4f",
    "sign_p": ".2g",
    "steps": ".1f",
    "passes": ".1f",
    "finetune_s": ".2f",
}


# ---------------------------------------------------------------------------
# Plots (matplotlib, Agg backend: no display needed)


def _pyplot() -> Any:
    # Imported here: the backend must be chosen before pyplot is first imported,
    # and reading results should not pay for matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    # after matplotlib.use: pyplot reads the backend when first imported
    import matplotlib.pyplot as plt

    return plt


def plot_differences(result: PointResult, path: Path) -> Path:
    """Per-domain (and overall) paired differences vs kNN with their 95 % CIs."""
    plt = _pyplot()
    scopes = list(result.scopes)
    methods = [d.method for d in result.overall.differences]
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(scopes) + 1.4))
    step = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        ys, xs, lo, hi = [], [], [], []
        for i, s in enumerate(scopes):
            d = s.difference(m)
            ys.append(i + (j - (len(methods) - 1) / 2) * step)
            xs.append(d.mean)
            lo.append(d.mean - d.ci_low if not math.isnan(d.ci_low) else 0.0)
            hi.append(d.ci_high - d.mean if not math.isnan(d.ci_high) else 0.0)
        ax.errorbar(
            xs, ys, xerr=[lo, hi], fmt="o", ms=4, capsize=3, color=COLORS.get(m), label=f"{m} − kNN"
        )
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.xaxis.set_major_locator(plt.MaxNLocator(5))
    ax.set_yticks(range(len(scopes)))
    ax.set_yticklabels([s.scope for s in scopes], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("paired BPB difference vs kNN (negative = better than kNN)")
    ax.set_title(result.point.title, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_bpb_vs_n(results: Sequence[PointResult], path: Path) -> Path | None:
    """Mean BPB per method against N, equal-steps points only."""
    steps = sorted((r for r in results if r.point.time_budget_s is None), key=lambda r: r.point.n)
    if not steps:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    methods = [m.method for m in steps[-1].overall.methods]
    for m in methods:
        ns = [r.point.n for r in steps if _has(r.overall, m)]
        bpb = [r.overall.method(m).mean_bpb for r in steps if _has(r.overall, m)]
        style = "--" if m == BASE_METHOD else "-o"
        ax.plot(ns, bpb, style, color=COLORS.get(m), label=m, ms=4)
    ax.set_xlabel("N (optimizer steps per query)")
    ax.set_ylabel("mean BPB over queries")
    ax.set_xticks([r.point.n for r in steps])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_bpb_vs_seconds(results: Sequence[PointResult], path: Path) -> Path | None:
    """Mean BPB against mean finetuning seconds per query, every point, per method."""
    if not results:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for m in ("knn", "sift", "hullft"):
        pts = []
        for r in results:
            sel = r.rows[(r.rows["method"] == m) & r.rows["status"].isin(SCORED_STATUSES)]
            if len(sel) and _has(r.overall, m):
                pts.append((float(sel["finetune_s"].mean()), r.overall.method(m).mean_bpb))
        if pts:
            pts.sort()
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], "-o", ms=4, color=COLORS.get(m), label=m
            )
    base = [r.overall.method(BASE_METHOD).mean_bpb for r in results if _has(r.overall, BASE_METHOD)]
    if base:
        ax.axhline(base[0], ls="--", color=COLORS[BASE_METHOD], label="base")
    ax.set_xlabel("mean finetuning seconds per query")
    ax.set_ylabel("mean BPB over queries")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _has(scope: ScopeStats, method: str) -> bool:
    return any(m.method == method for m in scope.methods)


# ---------------------------------------------------------------------------
# The report


def write_report(
    cfg: RunConfig,
    out: Path,
    *,
    command: str,
    results: Sequence[PointResult] | None = None,
    extra_provenance: Mapping[str, str] | None = None,
) -> Path:
    """Write ``out`` (markdown) and its PNGs in ``<out stem>/`` next to it."""
    results = list(load_points(cfg) if results is None else results)
    out = Path(out)
    fig_dir = out.parent / out.stem
    fig_dir.mkdir(parents=True, exist_ok=True)
    logged = invocations(cfg)
    wall = wall_times(logged)
    points = quality_points(cfg)
    lines = [
        f"# Quality study `{cfg.experiment.run_id or cfg.experiment.name}`",
        "",
        "Does HullFT give a lower BPB than kNN for the same compute? Every method "
        "finetunes the same held-out queries; differences are paired per query "
        "(method − kNN, in bits per byte; negative = better than kNN) with bootstrap "
        "95 % confidence intervals over queries (`hullft.stats`).",
        "",
        "```",
        command,
        "```",
        "",
        "## Headline",
        "",
    ]
    if not results:
        lines += ["No point of the study has results yet.", ""]
    for r in results:
        lines += headline(r)
    done = {r.point.label for r in results}
    missing = [p.label for p in points if p.label not in done]
    lines += [
        "",
        f"Points with results: {len(results)} of {len(points)}"
        + (f" (missing: {', '.join(missing)})" if missing else "")
        + ".",
    ]
    counts = {r.point.label: int(r.rows["query_id"].nunique()) for r in results}
    most = max(counts.values(), default=0)
    behind = [f"{label} ({k} of {most} queries)" for label, k in counts.items() if k < most]
    if behind:
        lines.append(f"In progress: {', '.join(behind)}.")
    if missing or behind:
        lines.append(
            "The study is not finished: the command above resumes it, and "
            "`python benchmarks/quality.py report` rewrites this page."
        )
    lines.append("")
    figures = []
    p = plot_bpb_vs_n(results, fig_dir / "bpb_vs_n.png")
    if p:
        figures.append(("BPB vs N (equal steps)", p))
    p = plot_bpb_vs_seconds(results, fig_dir / "bpb_vs_seconds.png")
    if p:
        figures.append(("BPB vs finetuning seconds (every point)", p))
    for title, path in figures:
        lines += [f"![{title}]({path.relative_to(out.parent).as_posix()})", ""]
    for r in results:
        png = plot_differences(r, fig_dir / f"diff_{r.point.label}.png")
        n_queries = counts[r.point.label]
        lines += [
            f"## {r.point.title}",
            "",
            f"Run `{r.run_id}`: {n_queries} queries; "
            f"{wall.get(r.point.label, WallTime()).describe(n_queries)}.",
            "",
            format_table(stats_frame(r.scopes), formats=STATS_FORMATS, missing="—"),
            "",
            "`diff_vs_ref`: mean paired difference vs kNN with its 95 % CI (`ci_low`, "
            "`ci_high`); `better/worse`: queries below/above kNN; `median_diff`: median "
            "paired difference; `sign_p`: two-sided exact sign test of better against "
            "worse; `wins`: queries where "
            "the method has the lowest BPB of the compared methods (ties count for each); "
            "—: not applicable (kNN is the reference; base is not compared).",
            "",
            format_table(compute_table(r.rows), formats=STATS_FORMATS),
            "",
            f"![paired differences, {r.point.title}]({png.relative_to(out.parent).as_posix()})",
            "",
        ]
    total = sum(w.seconds for w in wall.values())
    info = {**provenance(), **dict(extra_provenance or {})}
    machines = sorted({e.get("hardware", "not recorded") for e in logged})
    lines += [
        "## Provenance",
        "",
        f"Recorded wall time over all points: {_hms(total)} "
        f"({len(logged)} point invocations, interrupted ones included). Ran on: "
        + ("; ".join(machines) if machines else "not recorded")
        + ". The report was written on the machine below.",
        "",
        "```json",
        json.dumps({"provenance": info, "config": config_to_dict(cfg)}, indent=2),
        "```",
        "",
    ]
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def _hms(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"
