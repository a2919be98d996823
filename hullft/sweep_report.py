"""One summary across the runs of a sweep: per combination and method, mean BPB,
change vs base, rows and failures (``summary.parquet`` and ``summary.md``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hullft.report import format_table, summary_table
from hullft.results import STATUS_FAILED, read_results


@dataclass(frozen=True)
class SweepRun:
    """One combination of a sweep and where its run wrote its results."""

    swept: Mapping[str, str]
    """The swept keys and this combination's values (``{"selection.n": "8"}``)."""
    run_id: str
    run_dir: Path
    complete: bool
    error: str = ""
    """Why the run stopped, if it raised."""


SWEEP_FORMATS = {"bpb": ".4f", "vs_base_%": "+.2f"}


def sweep_table(runs: Sequence[SweepRun]) -> Any:
    """A DataFrame with a row per (combination, method): the swept keys' values,
    ``run_id``, ``method``, ``queries`` (with a non-failed row), ``rows``,
    ``failures`` (failure rows), ``bpb`` (mean BPB after finetuning) and
    ``vs_base_%`` (mean paired relative change vs the base model), ``complete``."""
    # pandas (~0.5 s): only a written summary needs it
    import pandas as pd

    keys = list(dict.fromkeys(k for r in runs for k in r.swept))
    records = []
    for run in runs:
        df = read_results(run.run_dir)
        overall = summary_table(df)
        if len(overall):
            overall = overall[overall["domain"] == "ALL"].set_index("method")
        for method, g in df.groupby("method", sort=False):
            ok = g[g["status"] != STATUS_FAILED]
            have = len(overall) and method in overall.index
            records.append(
                {
                    **{k: run.swept.get(k, "") for k in keys},
                    "run_id": run.run_id,
                    "method": method,
                    "queries": ok["query_id"].nunique(),
                    "rows": len(g),
                    "failures": int((g["status"] == STATUS_FAILED).sum()),
                    "bpb": float(overall.loc[method, "bpb"]) if have else float("nan"),
                    "vs_base_%": float(overall.loc[method, "vs_base_%"]) if have else float("nan"),
                    "complete": run.complete,
                }
            )
    columns = [*keys, "run_id", "method", "queries", "rows", "failures", "bpb", "vs_base_%"]
    table = pd.DataFrame.from_records(records, columns=[*columns, "complete"])
    return table.astype({k: str for k in keys})


def write_sweep_summary(
    sweep_dir: Path, runs: Sequence[SweepRun], command: str
) -> tuple[Path, Path, str]:
    """Write ``summary.parquet`` and ``summary.md`` under ``sweep_dir``; returns both
    paths and the rendered Markdown table."""
    table = sweep_table(runs)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    parquet = sweep_dir / "summary.parquet"
    tmp = parquet.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(parquet)
    rendered = format_table(table, formats=SWEEP_FORMATS)
    incomplete = [r for r in runs if not r.complete]
    lines = [
        f"# hullft sweep `{sweep_dir.name}`",
        "",
        f"`{command}`: {len(runs)} run(s), {len(runs) - len(incomplete)} complete.",
        "",
        "BPB = bits per byte of the held-out query after finetuning (lower is better); "
        "`vs_base_%` = mean paired relative change vs the base model; `failures` = "
        "failure rows (the query failed after its last attempt).",
        "",
        rendered,
        "",
        "## Runs",
        "",
    ]
    for r in runs:
        combo = " ".join(f"{k}={v}" for k, v in r.swept.items()) or "(no swept keys)"
        state = "complete" if r.complete else f"incomplete{': ' + r.error if r.error else ''}"
        lines.append(f"- `{combo}` → `{r.run_dir}` ({state})")
    md = sweep_dir / "summary.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return parquet, md, rendered
