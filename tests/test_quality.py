"""The quality study's plan and report (hullft.quality) on synthetic runs written by the sink."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from actors.compose import load_config
from hullft.quality import (
    QualityPoint,
    WallTime,
    invocations,
    load_points,
    point_config,
    quality_points,
    record_invocation,
    run_dir,
    verdict,
    wall_times,
    write_report,
)
from hullft.results import ResultRow, ResultSink
from hullft.stats import PairedDifference

DOMAINS = ("code", "law")


def study(tmp_path, **bench):
    cfg = load_config(["experiment=quality", f"experiment.output_dir={tmp_path / 'runs'}"])
    return dataclasses.replace(cfg, bench=dataclasses.replace(cfg.bench, **bench))


def test_the_config_is_the_issues_study():
    cfg = load_config(["experiment=quality"])
    assert cfg.model.name == "smollm2-135m" and cfg.embedder.name == "all-minilm-l6-v2"
    assert cfg.queries.per_domain >= 8 and cfg.data.paths == () and cfg.queries.domains == ()
    assert cfg.selection.methods == ("knn", "sift", "hullft")
    labels = [p.label for p in quality_points(cfg)]
    assert labels == ["n8", "n24", "n24-t10s", "n24-t20s"]


def test_points_are_separate_runs_with_their_own_n_and_budget(tmp_path):
    cfg = study(tmp_path, n_values=(24, 8), time_budgets_s=(2.5,))
    points = quality_points(cfg)
    assert points == (QualityPoint(8), QualityPoint(24), QualityPoint(24, 2.5))
    pcfg = point_config(cfg, points[2])
    assert pcfg.selection.n == 24 and pcfg.finetune.time_budget_s == 2.5
    assert pcfg.experiment.run_id == "quality-n24-t2.5s"
    assert run_dir(pcfg) == tmp_path / "runs" / "quality-n24-t2.5s"
    assert point_config(cfg, points[0]).finetune.time_budget_s is None
    # Everything else is the study's config, so a point resumes like any run.
    assert pcfg.model == cfg.model and pcfg.queries == cfg.queries


def write_point(cfg, point, effect: float, queries: int = 6, seed: int = 0):
    """Rows of one point: kNN BPB per query, HullFT = kNN + effect + noise, SIFT = kNN."""
    rng = np.random.default_rng(seed)
    pcfg = point_config(cfg, point)
    sink = ResultSink(run_dir(pcfg))
    for d in DOMAINS:
        for i in range(queries):
            knn = rng.uniform(0.9, 1.3)
            bpbs = {"base": knn * 1.1, "knn": knn, "sift": knn, "hullft": knn + effect}
            bpbs["hullft"] += rng.normal(0, 0.005)
            rows = [
                ResultRow(
                    run_id=str(pcfg.experiment.run_id),
                    query_id=f"{d}-{i}",
                    method=m,
                    domain=d,
                    n=point.n,
                    bpb_before=knn * 1.1,
                    bpb_after=b,
                    optimizer_steps=0 if m == "base" else point.n,
                    fwd_bwd_passes=0 if m == "base" else point.n // (2 if m == "hullft" else 1),
                    finetune_s=0.0 if m == "base" else 0.1 * point.n,
                )
                for m, b in bpbs.items()
            ]
            sink.write(rows)
    sink.close()


def test_report_reads_finished_points_and_writes_tables_and_plots(tmp_path):
    cfg = study(tmp_path, n_values=(4, 8), time_budgets_s=(0.5,))
    write_point(cfg, QualityPoint(4), effect=-0.02)
    write_point(cfg, QualityPoint(8), effect=-0.04, seed=1)
    # The budget point has not started: the report says so instead of failing.
    record_invocation(cfg, QualityPoint(4), 61.0, 8, False)
    record_invocation(cfg, QualityPoint(4), 4.0, 0, True)
    assert wall_times(invocations(cfg)) == {"n4": WallTime(65.0, 2, 8)}

    results = load_points(cfg, n_resamples=999)
    assert [r.point.label for r in results] == ["n4", "n8"]
    h = results[1].overall.difference("hullft")
    assert h.queries == 12 and h.ci_high < 0 and h.ci_low < -0.04 < h.ci_high

    out = write_report(
        cfg, tmp_path / "docs" / "results.md", command="python x run", results=results
    )
    text = out.read_text(encoding="utf-8")
    assert "python x run" in text and "missing: n8-t0.5s" in text
    assert "The study is not finished" in text and "In progress" not in text
    assert "hullft − kNN = -0.03" in text or "hullft − kNN = -0.04" in text
    assert "HullFT is below kNN" in text
    assert "sift − kNN = +0.0000 BPB, 95 % CI [+0.0000, +0.0000]" in text  # no spread
    assert "## N = 8, equal steps" in text
    base_row = next(ln for ln in text.splitlines() if ln.startswith("| ALL | base |"))
    assert "nan" not in base_row and "| — |" in base_row  # not applicable, not missing
    # n4: 12 queries, 8 of them finished by the two recorded invocations.
    assert (
        "12 queries; wall time 1m 05s over 2 recorded invocations, which finished 8 of "
        "them (4 were finished by invocations that recorded no time)" in text
    )
    assert "12 queries; wall time not recorded" in text  # n8
    assert "2 point invocations, interrupted ones included). Ran on: " in text
    assert "CPU cores" in text
    figs = tmp_path / "docs" / "results"
    for name in ("bpb_vs_n.png", "bpb_vs_seconds.png", "diff_n4.png", "diff_n8.png"):
        assert (figs / name).stat().st_size > 1000, name
        assert f"results/{name}" in text


def test_verdict_words():
    def diff(low: float, high: float, n: int = 10) -> PairedDifference:
        return PairedDifference("hullft", "knn", n, (low + high) / 2, low, high, 0, 0)

    assert "below kNN" in verdict(diff(-0.2, -0.1))
    assert "above kNN" in verdict(diff(0.1, 0.2))
    assert "covers zero" in verdict(diff(-0.1, 0.1))
    assert verdict(diff(math.nan, math.nan, 4)) == "too few queries to say"
    # The mean's CI covers zero but most queries go one way: the verdict says both.
    lopsided = dataclasses.replace(diff(-0.015, 0.009, 72), better=16, worse=56, sign_p=2e-6)
    assert verdict(lopsided) == (
        "no significant difference in the mean between HullFT and kNN (the 95 % CI covers "
        "zero), but HullFT is above kNN on most queries (56 of 72, sign test p = 2e-06)"
    )
    assert "most queries" not in verdict(dataclasses.replace(lopsided, sign_p=0.2))


def test_an_empty_study_reports_no_results(tmp_path):
    cfg = study(tmp_path)
    out = write_report(cfg, tmp_path / "r.md", command="c")
    assert "No point of the study has results yet" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("budget", [0.05, 10.0])
def test_point_labels_are_stable(budget):
    assert QualityPoint(8, budget).label == f"n8-t{budget:g}s"


def _quality_script():
    spec = importlib.util.spec_from_file_location(
        "quality_script", Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_interrupted_invocation_records_its_time_and_the_queries_it_finished(
    tmp_path, monkeypatch
):
    script = _quality_script()
    cfg = study(tmp_path)
    write_point(cfg, QualityPoint(8), effect=0.0, queries=2)  # an earlier session: 4 queries

    def interrupted(pcfg):  # finishes 2 more queries, then Ctrl-C
        sink = ResultSink(run_dir(pcfg))
        for q in ("late-0", "late-1"):
            sink.write(
                [
                    ResultRow(
                        run_id=str(pcfg.experiment.run_id), query_id=q, method="knn", domain="code"
                    )
                ]
            )
        sink.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "run_pipeline", interrupted)
    assert script.main(["run", f"experiment.output_dir={tmp_path / 'runs'}"]) == 130
    [entry] = invocations(cfg)
    assert entry["point"] == "n8" and entry["complete"] is False
    assert entry["queries_processed"] == 2 and entry["seconds"] >= 0
    assert (
        wall_times(invocations(cfg))["n8"]
        .describe(6)
        .endswith("which finished 2 of them (4 were finished by invocations that recorded no time)")
    )


def test_report_says_which_points_are_still_running(tmp_path):
    cfg = study(tmp_path, n_values=(4, 8), time_budgets_s=())
    write_point(cfg, QualityPoint(4), effect=-0.02)  # 12 queries
    write_point(cfg, QualityPoint(8), effect=-0.02, queries=3)  # 6 so far
    text = write_report(cfg, tmp_path / "r.md", command="c").read_text(encoding="utf-8")
    assert "Points with results: 2 of 2." in text
    assert "In progress: n8 (6 of 12 queries)." in text and "The study is not finished" in text
