"""Summaries of a run's results: a table per domain × method and ``report.md``."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hullft.config import config_to_dict
from hullft.results import BASE_METHOD, RunSummary, read_results

log = logging.getLogger(__name__)

STAGES = ("select_s", "finetune_s", "evaluate_s")


def summary_table(df: Any) -> Any:
    """Per (domain, method) and overall: queries, mean BPB, change vs base and vs kNN
    (mean over queries of the paired difference), p50/p95 seconds per stage."""
    # pandas (~0.5 s, and hullft.stats with it): only a written report needs it
    import pandas as pd

    from hullft.stats import relative_change_pct

    ok = df[df["status"] != "failed"]
    if ok.empty:
        return pd.DataFrame()
    base = ok[ok["method"] == BASE_METHOD].set_index("query_id")["bpb_after"]
    knn = ok[ok["method"] == "knn"].set_index("query_id")["bpb_after"]
    records = []
    for scope, part in [("ALL", ok), *ok.groupby("domain")]:
        for method, g in part.groupby("method", sort=False):
            bpb = g.set_index("query_id")["bpb_after"]
            rec: dict[str, Any] = {
                "domain": scope,
                "method": method,
                "queries": len(g),
                "bpb": bpb.mean(),
                "vs_base_%": relative_change_pct(bpb, base),
                "vs_knn_%": relative_change_pct(bpb, knn) if method != "knn" else 0.0,
                "steps": g["optimizer_steps"].mean(),
                "passes": g["fwd_bwd_passes"].mean(),
            }
            for stage in STAGES:
                rec[f"{stage[:-2]}_p50"] = g[stage].quantile(0.5)
                rec[f"{stage[:-2]}_p95"] = g[stage].quantile(0.95)
            records.append(rec)
    table = pd.DataFrame.from_records(records)
    order = {
        m: i
        for i, m in enumerate([BASE_METHOD, "knn", "sift", "hullft", "hullft_fw", "hullft_round"])
    }
    table["_o"] = table["method"].map(lambda m: order.get(m, 99))
    table["_d"] = table["domain"].map(lambda d: (d != "ALL", d))
    return table.sort_values(["_d", "_o"]).drop(columns=["_o", "_d"]).reset_index(drop=True)


SUMMARY_FORMATS = {
    "bpb": ".4f",
    "vs_base_%": "+.2f",
    "vs_knn_%": "+.2f",
    "steps": ".1f",
    "passes": ".1f",
}
"""Column formats of the summary table (other float columns: seconds, 3 significant digits)."""


def format_table(
    table: Any,
    floatfmt: str = ".3g",
    formats: dict[str, str] | None = None,
    missing: str = "nan",
) -> str:
    """Markdown rendering without optional dependencies; ``formats`` per column,
    ``missing`` for a NaN cell."""
    formats = formats or {}
    if table is None or len(table) == 0:
        return "(no successful results)"
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float | np.floating):
                cells.append(missing if np.isnan(v) else format(float(v), formats.get(c, floatfmt)))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def provenance() -> dict[str, str]:
    """Versions, hardware, git revision and date for the report."""
    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    for mod in ("torch", "transformers", "faiss", "ray", "numpy"):
        try:
            info[mod] = str(__import__(mod).__version__)
        except Exception:
            info[mod] = "not installed"
    try:
        # torch: its version and the GPU are reported only when it is installed and asked
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:
        info["cuda"] = "unknown"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        info["git"] = rev.stdout.strip() or "unknown"
    except Exception:
        info["git"] = "unknown"
    return info


def provenance_section(cfg: Any) -> list[str]:
    """Markdown lines: versions, hardware, git revision, date and the full config."""
    payload = {"provenance": provenance(), "config": config_to_dict(cfg)}
    return ["## Provenance", "", "```json", json.dumps(payload, indent=2), "```", ""]


def summarize_run(run_dir: Path, cfg: Any, summary: RunSummary) -> Path:
    """Print the summary table and write ``report.md`` next to the results."""
    df = read_results(run_dir)
    table = summary_table(df)
    rendered = format_table(table, formats=SUMMARY_FORMATS)
    qps = summary.queries_processed / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    head = (
        f"run {summary.run_id}: {df['query_id'].nunique() if len(df) else 0}/{summary.queries_total} "
        f"queries with results, {summary.failed_rows} failure row(s) this invocation, "
        f"{summary.retried_queries} retried; {summary.queries_processed} processed in "
        f"{summary.elapsed_s:.1f}s ({qps:.3f} queries/s)"
    )
    print(
        f"\n{head}\n\n{rendered}\n\nresults: {run_dir / 'results'}\nreport:  {run_dir / 'report.md'}"
    )
    failed = df[df["status"] == "failed"] if len(df) else df
    lines = [
        f"# hullft run `{summary.run_id}`",
        "",
        head,
        "",
        "BPB = bits per byte of the held-out query after finetuning (lower is better); "
        "`vs_base_%`/`vs_knn_%` = mean paired relative change; `*_p50/p95` = seconds per query.",
        "",
        rendered,
        "",
    ]
    if len(failed):
        lines += [
            "## Failures",
            "",
            format_table(failed[["query_id", "method", "attempt", "error"]]),
            "",
        ]
    lines += provenance_section(cfg)
    out = run_dir / "report.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def print_corpus_table(index_dir: Path) -> None:
    """Documents, sequences and tokens per domain of an index (from its manifest)."""
    manifest = json.loads((Path(index_dir) / "manifest.json").read_text())
    domains = manifest.get("domains", {})
    lines = [
        f"corpus in {index_dir}:",
        f"{'domain':<24}{'documents':>10}{'sequences':>11}{'tokens':>11}",
    ]
    for name, d in sorted(domains.items()):
        lines.append(
            f"{name:<24}{d.get('documents', 0):>10}{d.get('sequences', 0):>11}{d.get('tokens', 0):>11}"
        )
    print("\n".join(lines))
