"""`hullft run -m`: Hydra's sweep grammar expanded by Hydra's parser, one run per
combination in one Ray session, one summary; rerun and interrupted sweeps resume
without writing a row twice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from actors.cli import main
from actors.sweep import expand, run_sweep
from hullft.config import ConfigError
from hullft.results import ResultRow, ResultSink, read_results
from hullft.sweep_report import SweepRun, sweep_table

# ---------------------------------------------------------------------------
# Expansion (no Ray)


def test_expand_is_the_cartesian_product_in_hydra_order() -> None:
    combos = expand(["experiment=smoke", "selection.n=range(2,8,2)", "finetune=default,plain"])
    assert [c.overrides for c in combos] == [
        ("experiment=smoke", f"selection.n={n}", f"finetune={f}")
        for n in (2, 4, 6)
        for f in ("default", "plain")
    ]
    assert combos[1].swept == {"selection.n": "2", "finetune": "plain"}


def test_expand_keeps_quoted_and_list_values_whole() -> None:
    combos = expand(["experiment.name='a,b'", "selection.methods=[knn,hullft]"])
    assert len(combos) == 1 and combos[0].swept == {}
    assert combos[0].overrides == ("experiment.name='a,b'", "selection.methods=[knn,hullft]")


@pytest.mark.parametrize(
    ("override", "message"),
    [("finetune.lr=interval(0,1)", "enumerate values"), ("selection.n=1,,2", "selection.n")],
)
def test_expand_refuses_what_it_cannot_enumerate(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expand([override])


def test_bad_combination_or_shared_run_is_refused_before_anything_runs(tmp_path) -> None:
    fixed = ["experiment=smoke", f"experiment.output_dir={tmp_path}"]
    with pytest.raises(ConfigError, match=r"selection\.n=0"):
        run_sweep([*fixed, "selection.n=0,2"])
    with pytest.raises(ConfigError, match="same run"):
        run_sweep([*fixed, "cluster.num_workers=1,2"])
    assert not (tmp_path / "sweeps").exists()


def test_multirun_is_only_for_run(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["config", "-m", "selection.n=1,2"])
    assert "sweeps `hullft run` only" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Summary (no Ray): an oracle over hand-made rows


def _row(qid: str, method: str, bpb: float, status: str = "ok") -> ResultRow:
    return ResultRow(
        run_id="r", query_id=qid, method=method, domain="d", status=status, bpb_after=bpb
    )


def test_sweep_table_means_changes_and_failures(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    sink = ResultSink(a)
    sink.write([_row("q1", "base", 2.0), _row("q1", "knn", 1.0)])
    sink.write([_row("q2", "base", 4.0), _row("q2", "knn", 3.0)])
    sink.close()
    other = ResultSink(b)
    other.write([_row("q1", "base", 2.0), _row("q1", "knn", math.nan, "failed")])
    other.close()
    table = sweep_table(
        [
            SweepRun({"selection.n": "4"}, "ra", a, complete=True),
            SweepRun({"selection.n": "8"}, "rb", b, complete=False),
        ]
    ).set_index(["selection.n", "method"])
    knn4 = table.loc[("4", "knn")]
    assert knn4["bpb"] == pytest.approx(2.0)
    assert knn4["vs_base_%"] == pytest.approx(((1 - 2) / 2 + (3 - 4) / 4) / 2 * 100)
    assert (knn4["rows"], knn4["failures"], knn4["queries"]) == (2, 0, 2)
    knn8 = table.loc[("8", "knn")]
    assert (knn8["rows"], knn8["failures"], knn8["queries"]) == (1, 1, 0)
    assert math.isnan(knn8["bpb"]) and not knn8["complete"]


# ---------------------------------------------------------------------------
# Sweeps through Ray


@pytest.fixture
def sweep_args(smoke_index_dir, tmp_path, monkeypatch) -> list[str]:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return [
        "experiment=smoke",
        f"index.dir={smoke_index_dir}",
        f"experiment.output_dir={tmp_path}",
        "queries.per_domain=1",
        "experiment.limit=2",
        "cluster.num_cpus=2",
        "selection.n=4,6",
        "finetune=default,plain",
    ]


def _count_ray_inits(monkeypatch) -> list[int]:
    import ray

    calls: list[int] = []
    real = ray.init

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ray, "init", counting)
    return calls


def _sweep_dirs(out: Path) -> list[Path]:
    return sorted((out / "sweeps").iterdir())


def _runs(sweep_dir: Path) -> list[dict]:
    return json.loads((sweep_dir / "sweep.json").read_text())["runs"]


def _rows(run_dir: str) -> pd.DataFrame:
    """A run's committed rows in a fixed order (empty before the run started)."""
    if not Path(run_dir).exists():
        return pd.DataFrame(columns=["query_id", "method"])
    df = read_results(run_dir)
    return df.sort_values(["query_id", "method"]).reset_index(drop=True)


def _unchanged(before: pd.DataFrame, after: pd.DataFrame) -> bool:
    """Every row committed before is still there with the same values, timings
    included: it was kept, not computed again."""
    cols = ["query_id", "method", "finetune_s", "evaluate_s", "bpb_after", "attempt"]
    if before.empty:
        return True
    merged = before[cols].merge(after[cols], on=["query_id", "method"], suffixes=("", "_now"))
    return len(merged) == len(before) and all(
        merged[c].equals(merged[f"{c}_now"]) for c in cols[2:]
    )


@pytest.mark.ray
def test_two_by_two_sweep_interrupted_resumed_and_rerun(sweep_args, tmp_path, monkeypatch) -> None:
    """Interrupted in its second run, restarted: four runs, one summary, each run
    resumed where it stopped; started once more: no row added."""
    import ray

    done: list[str] = []

    def stop_after_three(query_id: str) -> None:
        done.append(query_id)
        if len(done) == 3:  # the second run, after its first query
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep_args, progress=False, on_query_done=stop_after_three)
    assert not ray.is_initialized()
    (sweep_dir,) = _sweep_dirs(tmp_path)
    runs = _runs(sweep_dir)
    before = [_rows(r["run_dir"]) for r in runs]
    # Queries committed per run: the first run finished (2), the second stopped after one.
    assert [len(df) // 4 for df in before] == [2, 1, 0, 0]

    inits = _count_ray_inits(monkeypatch)
    assert main(["run", "-m", *sweep_args]) == 0
    assert len(inits) == 1 and not ray.is_initialized()  # one session, shut down after
    assert _sweep_dirs(tmp_path) == [sweep_dir]
    assert len({r["run_id"] for r in runs}) == 4
    assert {(r["swept"]["selection.n"], r["swept"]["finetune"]) for r in runs} == {
        (n, f) for n in ("4", "6") for f in ("default", "plain")
    }
    after = [_rows(r["run_dir"]) for r in runs]
    assert after[0].equals(before[0])  # the finished run was left alone
    assert _unchanged(before[1], after[1]) and len(after[1]) > len(before[1])  # resumed
    for r in runs:
        df = read_results(r["run_dir"])
        keys = list(zip(df["query_id"], df["method"], strict=True))
        assert len(keys) == len(set(keys)) == 2 * 4 and (df["status"] == "ok").all()
        config = r["config"]
        assert config["selection"]["n"] == int(r["swept"]["selection.n"])
        plain = r["swept"]["finetune"] == "plain"
        assert config["finetune"]["refresh_interval"] == (1 if plain else 2)
    summary = pd.read_parquet(sweep_dir / "summary.parquet")
    assert len(summary) == 4 * 4  # combinations × methods (base included)
    assert (summary["rows"] == 2).all() and (summary["failures"] == 0).all()
    assert summary["complete"].all() and summary["bpb"].notna().all()
    assert (sweep_dir / "summary.md").read_text().count("(complete)") == 4

    assert main(["run", "-m", *sweep_args]) == 0
    assert _sweep_dirs(tmp_path) == [sweep_dir]
    assert all(_rows(r["run_dir"]).equals(df) for r, df in zip(runs, after, strict=True))
    pd.testing.assert_frame_equal(pd.read_parquet(sweep_dir / "summary.parquet"), summary)
