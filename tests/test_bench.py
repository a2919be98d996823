"""`hullft bench`: the real entrypoint, end to end, on the smoke experiment with every
sweep cut to one or two points (one Ray invocation shared by the tests of this module);
the report directory holds what the report promises (sections, ratios measured in the
run, the naive-vs-hullft comparison, plots, ``bench.json``, the runs' results), and a
CPU-only run says MFU n/a. Also ``hullft.bench_report.on_cuda``, which decides whether an MFU
figure is computed at all, on small DataFrames."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hullft.bench_report import on_cuda
from hullft.results import BASE_METHOD, ROW_COLUMNS, read_results
from tests.conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["knn", "sift", "hullft"]
ALL_METHODS = [BASE_METHOD, *METHODS]
STAGES = ("embed_s", "search_s", "select_s", "finetune_s", "evaluate_s", "reset_s")
LIMIT = 1
"""Queries per sweep point: each point is dominated by actor start-up, not queries."""
PLOTS = {
    "bpb_vs_n.png",
    "frontier.png",
    "bpb_at_budget.png",
    "stages.png",
    "reuse.png",
    "scaling.png",
}
RATIOS = {
    "selection: SIFT / HullFT time",
    "selection: HullFT / kNN time",
    "finetuning: r=1 / r=2 time",
    "finetunes/s: batch_jobs=4 / batch_jobs=1",
    "pipeline: naive published / hullft time per query",
}
SECTIONS = [
    "Ratios measured in this run",
    "BPB vs N",
    "BPB at fixed finetuning budgets (N = 2)",
    "Per-stage latency (seconds per query)",
    "Finetuning speed vs refresh interval r",
    "Throughput vs workers",
    "Throughput vs jobs per replica (`finetune.batch_jobs`)",
    "Model throughput",
    "hullft vs the published procedure (same model, same multisets)",
    "Provenance",
]


@dataclass(frozen=True)
class BenchRun:
    """One ``hullft bench`` invocation and what it left behind."""

    report_dir: Path
    """``bench.report_dir`` as passed on the command line."""
    out: Path
    """The report directory the command wrote (``<report_dir>/smoke-<UTC time>``)."""
    stdout: str
    wall_s: float
    figures: dict[str, Any]
    """``bench.json``."""
    report: str
    """``report.md``."""


@pytest.fixture(scope="module")
def bench_run(smoke_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    """``hullft bench experiment=smoke`` with one N, one budget, one worker count,
    r in {1, 2} and batch_jobs in {1, 4} (r=2 and workers=1 are the N=2 run): five
    pipeline runs through a local Ray, then the report."""
    report_dir = tmp_path_factory.mktemp("bench") / "reports"
    cmd = [
        sys.executable,
        "-m",
        "actors.cli",
        "bench",
        "experiment=smoke",
        f"index.dir={smoke_index_dir}",
        "cluster.num_cpus=2",
        "queries.per_domain=1",
        f"experiment.limit={LIMIT}",
        "bench.n_values=[2]",
        "bench.time_budgets_s=[0.0]",
        "bench.workers=[1]",
        "bench.refresh_intervals=[1,2]",
        "bench.batch_jobs=[1,4]",
        "bench.naive_queries=1",
        f"bench.report_dir={report_dir}",
    ]
    env = {**os.environ, "HULLFT_LOG_LEVEL": "WARNING", "RAY_ADDRESS": ""}
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    wall_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = list(report_dir.iterdir())
    assert len(outs) == 1 and re.fullmatch(r"smoke-\d{8}-\d{6}", outs[0].name), outs
    out = outs[0]
    return BenchRun(
        report_dir=report_dir,
        out=out,
        stdout=proc.stdout,
        wall_s=wall_s,
        figures=json.loads((out / "bench.json").read_text(encoding="utf-8")),
        report=(out / "report.md").read_text(encoding="utf-8"),
    )


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def _table(report: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after ``## heading``, one dict per row."""
    lines = report.split(f"## {heading}\n", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    block = list(itertools.takewhile(lambda ln: ln.startswith("|"), lines[start:]))
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in block]
    header, rows = cells[0], cells[2:]  # cells[1] is the |---| rule
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.mark.ray
@pytest.mark.timeout(HANG_GUARD_S)
def test_bench_writes_report_files_and_per_point_runs(bench_run: BenchRun) -> None:
    out = bench_run.out
    assert f"benchmark report: {out / 'report.md'}" in bench_run.stdout
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # every image the report links to is one of the plots it wrote
    assert set(re.findall(r"!\[\]\(([^)]+)\)", bench_run.report)) == PLOTS

    runs = {p.name: read_results(p) for p in (out / "runs").iterdir() if p.is_dir()}
    # One run per distinct run: r=2 (the default) and workers=1 (one worker is what a
    # CPU-only cluster plans anyway) are the N=2 point, measured once and reported
    # under every label (no run resumes another's rows).
    assert sorted(runs) == [
        "smoke-B-1",
        "smoke-B-4",
        "smoke-N-2",
        "smoke-budget-0-0s",
        "smoke-r-1",
    ]
    assert set(runs["smoke-B-1"]["batch_size"]) == {1}
    assert runs["smoke-B-4"]["batch_size"].max() > 1  # the query's methods trained together
    for name, rows in runs.items():
        assert len(rows) == LIMIT * len(ALL_METHODS), name
        assert set(rows["method"]) == set(ALL_METHODS), name
        assert (rows["status"] != "failed").all(), (name, rows["error"].tolist())
        # the workers ran on CPU, so no MFU figure may be estimated from these rows
        assert (rows["device"] == "cpu").all(), (name, rows["device"].tolist())
        assert not on_cuda(rows)
    print(f"\nhullft bench subprocess: {bench_run.wall_s:.1f} s")


@pytest.mark.ray
@pytest.mark.timeout(HANG_GUARD_S)
def test_bench_json_holds_finite_figures_and_consistent_ratios(bench_run: BenchRun) -> None:
    fig = bench_run.figures
    assert fig["n_max"] == 2 and fig["methods"] == METHODS
    assert 0 < fig["bench_seconds"] <= bench_run.wall_s

    bpb = fig["bpb_vs_n"]["2"]
    assert set(bpb) == set(ALL_METHODS) and all(_positive(v) for v in bpb.values()), bpb
    for m in METHODS:
        seconds, frontier_bpb = fig["frontier"]["2"][m]
        assert _positive(seconds) and frontier_bpb == pytest.approx(bpb[m])

    # a zero finetuning budget fits no optimizer step: every method scores as the base model
    at_budget = fig["bpb_at_budget"]["0.0"]
    assert set(at_budget) == set(ALL_METHODS)
    for m in METHODS:
        assert at_budget[m] == pytest.approx(at_budget[BASE_METHOD], rel=1e-6), at_budget
    assert fig["steps_at_budget"]["0.0"] == {m: 0.0 for m in ALL_METHODS}

    assert set(fig["stages"]) == set(ALL_METHODS)
    for m, stages in fig["stages"].items():
        assert set(stages) == set(STAGES)
        for s, (p50, p95) in stages.items():
            assert math.isfinite(p50) and 0 <= p50 <= p95, (m, s, p50, p95)
        assert stages["evaluate_s"][0] > 0, m
        if m != BASE_METHOD:
            assert stages["finetune_s"][0] > 0, m
    assert set(fig["select_median_s"]) == set(METHODS)
    assert all(_positive(v) for v in fig["select_median_s"].values()), fig["select_median_s"]

    assert set(fig["reuse"]) == {"1", "2"}
    for r, point in fig["reuse"].items():
        assert _positive(point["finetune_s"]), r
        assert 1 <= point["passes"] <= point["steps"], (r, point)
        assert set(point["bpb"]) == set(ALL_METHODS)
    assert fig["reuse"]["1"]["passes"] == fig["reuse"]["1"]["steps"]  # r=1 reuses nothing
    assert fig["reuse"]["2"]["bpb"] == fig["bpb_vs_n"]["2"]  # one run serves both points

    batch = fig["throughput_vs_batch"]
    assert set(batch) == {"1", "4"}
    assert batch["1"]["ran_at"] == 1 and batch["4"]["ran_at"] > 1
    for point in batch.values():
        assert _positive(point["finetunes_per_s"]) and _positive(point["queries_per_s"])
        assert point["finetunes_per_s"] == pytest.approx(len(METHODS) * point["queries_per_s"])

    assert set(fig["throughput_qps"]) == {"1"} and _positive(fig["throughput_qps"]["1"])
    assert _positive(fig["tokens_per_s"]["train"]) and _positive(fig["tokens_per_s"]["score"])
    assert isinstance(fig["params"], int) and fig["params"] > 0
    assert "mfu" not in fig  # CPU workers: no MFU estimate

    naive = fig["naive"]
    assert naive["queries"] == 1
    assert _positive(naive["hullft_s_per_query"]) and _positive(naive["naive_s_per_query"])
    assert naive["speedup"] == pytest.approx(
        naive["naive_s_per_query"] / naive["hullft_s_per_query"]
    )

    ratios = fig["ratios"]
    assert set(ratios) == RATIOS and all(_positive(v) for v in ratios.values()), ratios
    sel = fig["select_median_s"]
    assert ratios["selection: SIFT / HullFT time"] == pytest.approx(sel["sift"] / sel["hullft"])
    assert ratios["selection: HullFT / kNN time"] == pytest.approx(sel["hullft"] / sel["knn"])
    reuse = fig["reuse"]
    assert ratios["finetuning: r=1 / r=2 time"] == pytest.approx(
        reuse["1"]["finetune_s"] / reuse["2"]["finetune_s"]
    )
    assert ratios["finetunes/s: batch_jobs=4 / batch_jobs=1"] == pytest.approx(
        batch["4"]["finetunes_per_s"] / batch["1"]["finetunes_per_s"]
    )
    assert ratios["pipeline: naive published / hullft time per query"] == naive["speedup"]


@pytest.mark.ray
@pytest.mark.timeout(HANG_GUARD_S)
def test_bench_report_renders_every_section_from_the_figures(bench_run: BenchRun) -> None:
    report, fig = bench_run.report, bench_run.figures
    assert report.startswith("# hullft benchmark `smoke`\n")
    assert re.findall(r"^## (.+)$", report, re.M) == SECTIONS

    ratios = {row["ratio"]: float(row["value"]) for row in _table(report, SECTIONS[0])}
    assert ratios.keys() == fig["ratios"].keys()
    for k, v in ratios.items():
        assert v == pytest.approx(fig["ratios"][k], rel=5e-3), k  # printed to 3 digits

    (bpb_row,) = _table(report, "BPB vs N")
    assert bpb_row["N"] == "2"
    for m in ALL_METHODS:
        assert float(bpb_row[m]) == pytest.approx(fig["bpb_vs_n"]["2"][m], rel=5e-3), m
    (budget_row,) = _table(report, SECTIONS[2])
    assert budget_row["budget_s"] == "0" and all(np.isfinite(float(budget_row[m])) for m in METHODS)

    stage_rows = _table(report, SECTIONS[3])
    assert {row["method"] for row in stage_rows} == set(ALL_METHODS)
    assert all(" / " in row["finetune p50/p95"] for row in stage_rows)
    assert [row["r"] for row in _table(report, SECTIONS[4])] == ["1", "2"]
    (scaling_row,) = _table(report, SECTIONS[5])
    assert scaling_row["workers"] == "1" and float(scaling_row["queries/s"]) > 0
    batch_rows = _table(report, SECTIONS[6])
    assert [row["batch_jobs"] for row in batch_rows] == ["1", "4"]
    assert all(float(row["finetunes/s"]) > 0 for row in batch_rows)

    assert f"- parameters: {fig['params']}\n" in report
    tokens = re.search(r"- trained tokens/s: ([\d.]+); scored tokens/s: ([\d.]+)\n", report)
    assert tokens and float(tokens[1]) > 0 and float(tokens[2]) > 0
    assert "\n- MFU: n/a (no CUDA device)\n" in report

    nv = fig["naive"]
    assert (
        f"1 HullFT multisets: hullft {nv['hullft_s_per_query']:.2f} s/query, "
        f"naive {nv['naive_s_per_query']:.2f} s/query → **{nv['speedup']:.2f}×**."
    ) in report

    block = re.search(r"## Provenance\n\n```json\n(.*?)\n```", report, re.S)
    assert block, report[-2000:]
    provenance = json.loads(block[1])
    config = provenance["config"]
    assert config["experiment"]["name"] == "smoke" and config["experiment"]["limit"] == LIMIT
    assert config["bench"]["n_values"] == [2]
    assert config["bench"]["report_dir"] == str(bench_run.report_dir)
    assert provenance["provenance"]["date"]


# ---------------------------------------------------------------------------
# on_cuda


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        (["cuda:0", "cuda:0", "cuda:0"], True),
        (["cuda:0", "cuda:1"], True),
        (["cpu", "cpu"], False),
        (["cuda:0", "cpu"], False),
        (["", ""], False),  # ResultRow's default: the device was never recorded
        ([np.nan, np.nan], False),  # parts written before rows carried a device
        ([None], False),
    ],
)
def test_on_cuda_only_when_every_row_ran_on_cuda(devices: list[Any], expected: bool) -> None:
    rows = pd.DataFrame({"method": ["knn"] * len(devices), "device": devices})
    assert on_cuda(rows) is expected


def test_on_cuda_is_false_for_no_rows() -> None:
    assert on_cuda(pd.DataFrame(columns=list(ROW_COLUMNS))) is False  # what read_results gives
    assert on_cuda(pd.DataFrame({"device": pd.Series([], dtype=str)})) is False


def test_on_cuda_is_false_when_older_parts_lack_the_device() -> None:
    """Parts from before rows carried a device concatenate with newer ones as NaN."""
    old = pd.DataFrame({"query_id": ["q0"], "method": ["knn"]})
    new = pd.DataFrame({"query_id": ["q1"], "method": ["knn"], "device": ["cuda:0"]})
    rows = pd.concat([old, new], ignore_index=True)
    assert rows["device"].isna().sum() == 1
    assert on_cuda(rows) is False
    # and rows from older parts alone have no device column at all
    assert on_cuda(old) is False
