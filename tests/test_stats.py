"""Paired method comparison (hullft.stats) on synthetic result rows with a known effect."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hullft.stats import (
    compare_methods,
    paired_difference,
    relative_change_pct,
    scored_bpb,
    stats_frame,
)

DOMAINS = ("code", "law", "math")


def synthetic_rows(
    effect: dict[str, float], *, per_domain: int = 30, noise: float = 0.02, seed: int = 0
) -> pd.DataFrame:
    """Result rows for base, kNN and the methods in ``effect``: per query a kNN BPB
    between 0.8 and 1.6, base 10 % above it, and each method's BPB = kNN + effect +
    N(0, noise²)."""
    rng = np.random.default_rng(seed)
    records = []
    for domain in DOMAINS:
        for i in range(per_domain):
            qid = f"{domain}-{i}"
            knn = rng.uniform(0.8, 1.6)
            bpbs = {"base": knn * 1.1, "knn": knn}
            for m, e in effect.items():
                bpbs[m] = knn + e + rng.normal(0.0, noise)
            for m, b in bpbs.items():
                records.append(
                    {"query_id": qid, "method": m, "domain": domain, "status": "ok", "bpb_after": b}
                )
    return pd.DataFrame.from_records(records)


def test_ci_covers_a_known_effect_and_excludes_zero():
    rows = synthetic_rows({"hullft": -0.03, "sift": 0.0})
    overall, *domains = compare_methods(rows)
    assert overall.scope == "ALL" and [d.scope for d in domains] == list(DOMAINS)
    h = overall.difference("hullft")
    assert h.queries == 90 and h.reference == "knn"
    assert h.ci_low < -0.03 < h.ci_high
    assert h.ci_high < 0 and h.significant
    assert h.mean == pytest.approx(-0.03, abs=0.005)
    # Zero effect: the interval covers zero.
    s = overall.difference("sift")
    assert s.ci_low < 0 < s.ci_high and not s.significant
    for d in domains:
        assert d.difference("hullft").queries == 30
        assert d.difference("hullft").ci_high < 0  # 30 queries resolve a 1.5-sigma effect


@pytest.mark.parametrize("effect", [0.0, -0.01])
def test_ci_coverage_is_close_to_nominal(effect):
    """Over 200 synthetic studies of 20 queries the 95 % interval covers the true
    mean difference about 95 % of the time (binomial sd 1.5 %)."""
    rng = np.random.default_rng(1)
    covered = 0
    for seed in range(200):
        knn = rng.uniform(0.8, 1.6, 20)
        other = knn + effect + rng.standard_t(5, 20) * 0.02  # heavier tails than normal
        d = paired_difference(other, knn, n_resamples=999, seed=seed)
        covered += d.ci_low <= effect <= d.ci_high
    assert 0.88 <= covered / 200 <= 0.99


def test_interval_is_deterministic_and_narrows_with_more_queries():
    small = compare_methods(synthetic_rows({"hullft": -0.03}, per_domain=10))[0]
    again = compare_methods(synthetic_rows({"hullft": -0.03}, per_domain=10))[0]
    large = compare_methods(synthetic_rows({"hullft": -0.03}, per_domain=60))[0]
    assert small == again
    width = lambda s: s.difference("hullft").ci_high - s.difference("hullft").ci_low  # noqa: E731
    assert width(large) < width(small)


def test_wins_means_and_change_vs_base_on_a_hand_example():
    rows = pd.DataFrame.from_records(
        [
            {"query_id": q, "method": m, "domain": "d", "status": "ok", "bpb_after": b}
            for q, vals in {
                "q1": {"base": 2.0, "knn": 1.0, "hullft": 0.9, "sift": 1.1},
                "q2": {"base": 2.0, "knn": 1.0, "hullft": 1.2, "sift": 1.0},
                "q3": {"base": 4.0, "knn": 2.0, "hullft": 1.0, "sift": 3.0},
            }.items()
            for m, b in vals.items()
        ]
    )
    overall = compare_methods(rows, n_resamples=999)[0]
    assert overall.contested == 3
    assert {m.method: m.wins for m in overall.methods} == {
        "base": 0,
        "knn": 1,  # q2, tied with sift
        "sift": 1,
        "hullft": 2,
    }
    hullft = overall.method("hullft")
    assert hullft.mean_bpb == pytest.approx((0.9 + 1.2 + 1.0) / 3)
    assert hullft.vs_base_pct == pytest.approx(100 * np.mean([0.9 / 2 - 1, 1.2 / 2 - 1, -0.75]))
    assert overall.method("base").vs_base_pct == 0.0
    d = overall.difference("hullft")
    assert d.mean == pytest.approx(np.mean([-0.1, 0.2, -1.0]))
    assert (d.better, d.worse) == (2, 1)
    assert overall.difference("sift").better == 0 and overall.difference("sift").worse == 2


def test_failed_and_unpaired_rows_are_left_out():
    rows = synthetic_rows({"hullft": -0.03}, per_domain=5)
    rows.loc[(rows["query_id"] == "code-0") & (rows["method"] == "hullft"), "status"] = "failed"
    rows.loc[(rows["query_id"] == "law-1") & (rows["method"] == "knn"), "bpb_after"] = math.nan
    rows = rows[~((rows["query_id"] == "math-2") & (rows["method"] == "hullft"))]
    overall = compare_methods(rows, n_resamples=999)[0]
    assert overall.queries == 15
    assert overall.contested == 12
    assert overall.difference("hullft").queries == 12
    assert overall.method("knn").queries == 14
    table = scored_bpb(rows)
    assert math.isnan(table.loc["code-0", "hullft"]) and table.loc["code-0", "domain"] == "code"


def test_degenerate_samples_and_bad_input():
    one = paired_difference(np.array([1.0]), np.array([2.0]))
    assert one.queries == 1 and one.mean == -1.0 and math.isnan(one.ci_low)
    few = paired_difference(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 2.5, 2.0, 4.5]))
    assert few.queries == 4 and math.isnan(few.ci_low) and math.isnan(few.ci_high)
    flat = paired_difference(np.arange(5.0), np.arange(5.0) - 0.5)
    assert (flat.ci_low, flat.ci_high) == (0.5, 0.5) and flat.significant
    with pytest.raises(ValueError, match="shape"):
        paired_difference(np.zeros(2), np.zeros(3))
    rows = synthetic_rows({"hullft": 0.0}, per_domain=2)
    with pytest.raises(ValueError, match="two rows"):
        compare_methods(pd.concat([rows, rows.iloc[:1]]))
    with pytest.raises(ValueError, match="'knn'"):
        compare_methods(rows[rows["method"] != "knn"])
    with pytest.raises(ValueError, match="columns"):
        compare_methods(rows.drop(columns=["status"]))


def test_stats_frame_has_one_row_per_scope_and_method():
    scopes = compare_methods(synthetic_rows({"hullft": -0.03}, per_domain=4), n_resamples=999)
    frame = stats_frame(scopes)
    assert len(frame) == 4 * 3  # ALL + 3 domains, × base/knn/hullft
    row = frame[(frame["domain"] == "ALL") & (frame["method"] == "hullft")].iloc[0]
    assert row["diff_vs_ref"] == pytest.approx(scopes[0].difference("hullft").mean)
    assert math.isnan(frame[(frame["method"] == "knn")]["diff_vs_ref"].iloc[0])


def test_relative_change_uses_shared_queries_only():
    values = pd.Series({"a": 1.1, "b": 0.9, "c": 2.0, "d": math.nan})
    reference = pd.Series({"a": 1.0, "b": 1.0, "d": 1.0, "e": 5.0})
    # shared and finite: a (+10 %) and b (-10 %); c and e unpaired, d NaN
    assert relative_change_pct(values, reference) == pytest.approx(0.0, abs=1e-12)
    assert relative_change_pct(values[["a"]], reference) == pytest.approx(10.0)
    assert math.isnan(relative_change_pct(values[["c"]], reference))


def test_a_few_large_gains_swing_the_mean_but_not_the_sign_test():
    """15 queries a little worse, 5 much better: the mean says "better", the median
    and the sign test say "worse on most queries" — both are reported."""
    ref = np.linspace(0.8, 1.2, 20)
    d = np.array([0.01] * 15 + [-0.5] * 5)
    got = paired_difference(ref + d, ref, n_resamples=999)
    assert got.mean == pytest.approx(d.mean()) and got.mean < 0
    assert got.median == pytest.approx(0.01) and (got.better, got.worse) == (5, 15)
    # Two-sided exact binomial tail of 5 of 20 at 1/2, written out.
    tail = sum(math.comb(20, k) for k in range(6)) / 2**20
    assert got.sign_p == pytest.approx(2 * tail)
    assert 0.02 < got.sign_p < 0.05

    even = paired_difference(ref + np.array([0.01, -0.01] * 10), ref, n_resamples=999)
    assert even.sign_p == pytest.approx(1.0) and even.median == pytest.approx(0.0)
    ties = paired_difference(ref, ref, n_resamples=999)
    assert math.isnan(ties.sign_p) and (ties.better, ties.worse) == (0, 0)
