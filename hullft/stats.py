"""Paired comparison of selection methods over the queries of a run.

Every method of a run scores the same held-out queries, so methods are compared
query by query: for each query the difference ``BPB(method) − BPB(reference)``
(reference: kNN), then the mean of those differences with a bootstrap 95 %
confidence interval over queries (``scipy.stats.bootstrap``, BCa). A negative
difference means the method left the query with fewer bits per byte than kNN.

What counts:

- a row enters only with a finite ``bpb_after`` and a status whose BPB is
  meaningful (``ok``, ``budget_exhausted``); failed, empty and non-finite rows
  are left out;
- a pair needs both methods on the same query; queries missing either side are
  not paired (``PairedDifference.queries`` says how many were);
- ``wins``: queries, among those where every compared method has a BPB, on which
  the method has the lowest BPB (ties count as a win for each tied method);
- relative change vs base: the mean over queries of
  ``(BPB(method) − BPB(base)) / BPB(base)``, in percent;
- beside the mean: the median paired difference, and an exact two-sided sign test
  of the queries where the method is below the reference against those where it
  is above (``scipy.stats.binomtest``; ties left out). The mean answers "how many
  bits on average"; the sign test answers "on how many queries", which a few
  queries with large differences cannot swing.

The CI resamples queries with replacement ("ALL" pools every domain's queries).
With fewer than :data:`MIN_CI_QUERIES` pairs there is no interval (NaN): a
bootstrap over two or three queries has a handful of distinct resamples and its
"interval" means nothing. Identical differences give the degenerate interval
``[d, d]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest, bootstrap

from hullft.results import BASE_METHOD, SCORED_STATUSES

REFERENCE_METHOD = "knn"
ALL_DOMAINS = "ALL"
MIN_CI_QUERIES = 5
"""Fewest paired queries for which a bootstrap CI is reported."""
METHOD_ORDER = (BASE_METHOD, "knn", "sift", "hullft", "hullft_fw", "hullft_round")


@dataclass(frozen=True)
class PairedDifference:
    """Mean over queries of ``BPB(method) − BPB(reference)`` with its bootstrap CI."""

    method: str
    reference: str
    queries: int
    """Queries where both methods have a BPB."""
    mean: float
    """Mean paired difference (bits per byte); negative = method better."""
    ci_low: float
    """Lower end of the 95 % bootstrap CI (NaN with fewer than ``MIN_CI_QUERIES`` pairs)."""
    ci_high: float
    """Upper end of the 95 % bootstrap CI."""
    better: int
    """Queries where the method's BPB is below the reference's."""
    worse: int
    """Queries where it is above."""
    median: float = math.nan
    """Median paired difference (bits per byte)."""
    sign_p: float = math.nan
    """Two-sided exact sign test of ``better`` against ``worse`` (ties left out):
    the chance of a split at least this uneven if either method were as likely to
    win a query. Where a few queries carry the mean, the mean's CI can cover zero
    while most queries go one way; this says so."""

    @property
    def significant(self) -> bool:
        """True when the CI excludes zero."""
        return self.ci_high < 0 or self.ci_low > 0


@dataclass(frozen=True)
class MethodStats:
    """One method over the queries of one scope."""

    method: str
    queries: int
    """Queries with a BPB for this method."""
    mean_bpb: float
    """Mean BPB after finetuning (for ``base``: the base model's BPB)."""
    vs_base_pct: float
    """Mean relative change vs base over the queries both have, in percent."""
    wins: int
    """Queries with the lowest BPB among the compared methods (ties: all win)."""


@dataclass(frozen=True)
class ScopeStats:
    """Every method in one domain, or over all domains (``scope == "ALL"``)."""

    scope: str
    queries: int
    """Distinct queries with at least one scored row."""
    contested: int
    """Queries where every compared method has a BPB (the ones ``wins`` counts)."""
    methods: tuple[MethodStats, ...]
    differences: tuple[PairedDifference, ...]
    """One per non-reference method, vs the reference (kNN)."""

    def method(self, name: str) -> MethodStats:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(f"no method {name!r} in scope {self.scope!r}")

    def difference(self, name: str) -> PairedDifference:
        for d in self.differences:
            if d.method == name:
                return d
        raise KeyError(f"no difference for {name!r} in scope {self.scope!r}")


def scored_bpb(rows: pd.DataFrame) -> pd.DataFrame:
    """A (query_id × method) table of ``bpb_after`` from result rows, scored rows only,
    with a ``domain`` column. Raises if a (query, method) pair appears twice."""
    needed = {"query_id", "method", "domain", "status", "bpb_after"}
    missing = needed - set(rows.columns)
    if missing:
        raise ValueError(f"result rows lack columns {sorted(missing)}")
    ok = rows[rows["status"].isin(SCORED_STATUSES) & np.isfinite(rows["bpb_after"])]
    dup = ok.duplicated(["query_id", "method"])
    if dup.any():
        first = ok[dup].iloc[0]
        raise ValueError(
            f"query {first['query_id']!r} has two rows for method {first['method']!r}; "
            "compare one run (one N, one budget) at a time"
        )
    table = ok.pivot(index="query_id", columns="method", values="bpb_after")
    domains = ok.drop_duplicates("query_id").set_index("query_id")["domain"]
    table.insert(0, "domain", domains.reindex(table.index))
    return table


def relative_change_pct(values: pd.Series, reference: pd.Series) -> float:
    """Mean over the queries both have (index labels, NaN pairs dropped) of
    ``(value − reference) / reference``, in percent; NaN when they share none."""
    joined = pd.concat({"v": values, "r": reference}, axis=1, join="inner").dropna()
    if joined.empty:
        return math.nan
    return float(((joined["v"] - joined["r"]) / joined["r"]).mean() * 100)


def paired_difference(
    values: np.ndarray,
    reference: np.ndarray,
    *,
    method: str = "method",
    reference_name: str = REFERENCE_METHOD,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> PairedDifference:
    """Mean of ``values − reference`` (paired, NaN pairs dropped) with a BCa bootstrap CI."""
    v = np.asarray(values, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if v.shape != r.shape:
        raise ValueError(f"paired arrays differ in shape: {v.shape} vs {r.shape}")
    keep = np.isfinite(v) & np.isfinite(r)
    d = v[keep] - r[keep]
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    if n < MIN_CI_QUERIES:
        low = high = math.nan
    elif np.all(d == d[0]):
        low = high = float(d[0])  # no spread: the bootstrap distribution is a point
    else:
        with warnings.catch_warnings():
            # BCa warns (and falls back) on nearly degenerate samples; the interval
            # it returns is still the right one to report.
            warnings.simplefilter("ignore", RuntimeWarning)
            res = bootstrap(
                (d,),
                np.mean,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method="BCa",
                rng=np.random.default_rng(seed),
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    better, worse = int((d < 0).sum()), int((d > 0).sum())
    return PairedDifference(
        method=method,
        reference=reference_name,
        queries=n,
        mean=mean,
        ci_low=low,
        ci_high=high,
        better=better,
        worse=worse,
        median=float(np.median(d)) if n else math.nan,
        sign_p=float(binomtest(better, better + worse).pvalue) if better + worse else math.nan,
    )


def compare_methods(
    rows: pd.DataFrame,
    *,
    methods: Sequence[str] | None = None,
    reference: str = REFERENCE_METHOD,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[ScopeStats, ...]:
    """Per-domain and overall statistics of one run's result rows (see module doc).

    ``methods``: the finetuning methods to compare (default: every method in the
    rows except ``base``, in the usual order). ``base`` is summarised too when
    present but takes no part in wins and differences. The first element is
    ``ALL``, then the domains in sorted order.
    """
    table = scored_bpb(rows)
    present = [c for c in table.columns if c != "domain"]
    if methods is None:
        methods = sorted(
            (m for m in present if m != BASE_METHOD),
            key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else 99, m),
        )
    compared = [m for m in methods if m in present]
    if reference not in compared:
        raise ValueError(
            f"no scored {reference!r} rows to compare against (methods with scores: {present})"
        )
    scopes: list[tuple[str, pd.DataFrame]] = [(ALL_DOMAINS, table)]
    scopes += [(str(d), g) for d, g in sorted(table.groupby("domain"), key=lambda x: str(x[0]))]
    out = []
    for scope, part in scopes:
        out.append(_scope_stats(scope, part, compared, reference, confidence, n_resamples, seed))
    return tuple(out)


def _scope_stats(
    scope: str,
    part: pd.DataFrame,
    compared: Sequence[str],
    reference: str,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> ScopeStats:
    full = part[list(compared)].dropna()
    best = full.min(axis=1)
    has_base = BASE_METHOD in part.columns
    stats = []
    for m in ([BASE_METHOD] if has_base else []) + list(compared):
        col = part[m]
        rel = relative_change_pct(col, part[BASE_METHOD]) if has_base else math.nan
        stats.append(
            MethodStats(
                method=m,
                queries=int(col.notna().sum()),
                mean_bpb=float(col.mean()),
                vs_base_pct=float(rel) if np.isfinite(rel) else math.nan,
                wins=int((full[m] == best).sum()) if m in compared else 0,
            )
        )
    diffs = tuple(
        paired_difference(
            part[m].to_numpy(),
            part[reference].to_numpy(),
            method=m,
            reference_name=reference,
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )
        for m in compared
        if m != reference
    )
    return ScopeStats(
        scope=scope,
        queries=len(part),
        contested=len(full),
        methods=tuple(stats),
        differences=diffs,
    )


def stats_frame(scopes: Sequence[ScopeStats]) -> pd.DataFrame:
    """One row per (scope, method): mean BPB, change vs base, wins, and the paired
    difference vs the reference with its CI (blank for the reference and base)."""
    records: list[dict[str, Any]] = []
    for s in scopes:
        diffs = {d.method: d for d in s.differences}
        for m in s.methods:
            d = diffs.get(m.method)
            records.append(
                {
                    "domain": s.scope,
                    "method": m.method,
                    "queries": m.queries,
                    "bpb": m.mean_bpb,
                    "vs_base_%": m.vs_base_pct,
                    "wins": m.wins if m.method != BASE_METHOD else None,
                    "diff_vs_ref": d.mean if d else math.nan,
                    "ci_low": d.ci_low if d else math.nan,
                    "ci_high": d.ci_high if d else math.nan,
                    "better/worse": f"{d.better}/{d.worse}" if d else "",
                    "median_diff": d.median if d else math.nan,
                    "sign_p": d.sign_p if d else math.nan,
                }
            )
    return pd.DataFrame.from_records(records)
