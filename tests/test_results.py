"""The result sink: atomic parts, exactly-once keys, resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from hullft.results import (
    BLANK_QUERY_ERROR,
    OUTCOME_FIELDS,
    ROW_COLUMNS,
    DuplicateResultError,
    Outcome,
    ResultRow,
    ResultSink,
    base_outcome,
    failure_rows,
    read_results,
)
from tests.conftest import HANG_GUARD_S


def _rows(qid: str, methods=("base", "knn")) -> list[ResultRow]:
    return [
        ResultRow(
            run_id="r",
            query_id=qid,
            method=m,
            domain="d",
            bpb_before=1.0,
            bpb_after=0.9,
            support_ids=(3, 1),
            support_counts=(2, 1),
            unique_sequences=2,
            mean_train_loss=2.5,
        )
        for m in methods
    ]


def test_round_trip(tmp_path: Path) -> None:
    with ResultSink(tmp_path) as sink:
        sink.write(_rows("q1"))
    df = read_results(tmp_path)
    assert sorted(df["method"]) == ["base", "knn"]
    assert list(df["support_ids"][0]) == [3, 1] and list(df["support_counts"][0]) == [2, 1]
    assert df["bpb_after"].tolist() == [0.9, 0.9]
    assert tuple(df.columns) == ROW_COLUMNS and ROW_COLUMNS[:3] == ("run_id", "query_id", "method")
    assert df["unique_sequences"].tolist() == [2, 2] and df["mean_train_loss"].tolist() == [2.5] * 2
    assert str(df["unique_sequences"].dtype) == "int64"


def test_resume_knows_what_is_done(tmp_path: Path) -> None:
    with ResultSink(tmp_path) as sink:
        sink.write(_rows("q1"))
    again = ResultSink(tmp_path)
    assert again.done == {("q1", "base"), ("q1", "knn")}
    with pytest.raises(DuplicateResultError):
        again.write(_rows("q1", methods=("knn",)))
    again.write(_rows("q2"))
    with pytest.raises(DuplicateResultError):  # buffered rows count as written too
        again.write(_rows("q2", methods=("knn",)))
    again.close()
    assert len(read_results(tmp_path)) == 4


def test_duplicate_within_one_write_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DuplicateResultError):
        ResultSink(tmp_path).write(_rows("q1", methods=("knn", "knn")))


def test_interrupted_write_leaves_no_result(tmp_path: Path) -> None:
    with ResultSink(tmp_path) as sink:
        sink.write(_rows("q1"))
    # what a driver killed between write and rename leaves behind
    (tmp_path / "results" / ".tmp-part-000001-dead.parquet").write_bytes(b"partial")
    again = ResultSink(tmp_path)
    assert again.done == {("q1", "base"), ("q1", "knn")}
    assert not list((tmp_path / "results").glob(".tmp-*"))


def test_hand_copied_part_is_detected(tmp_path: Path) -> None:
    sink = ResultSink(tmp_path, part_rows=1)
    part = sink.write(_rows("q1"))
    assert part is not None
    (part.parent / "part-999999-copy.parquet").write_bytes(part.read_bytes())
    with pytest.raises(DuplicateResultError, match="edited by hand"):
        ResultSink(tmp_path)


def test_failure_rows_cover_every_method() -> None:
    rows = failure_rows("r", "q", "d", ["base", "knn"], error="boom", attempt=3, k=5, n=2)
    assert [(r.method, r.status, r.attempt) for r in rows] == [
        ("base", "failed", 3),
        ("knn", "failed", 3),
    ]


def test_empty_run_reads_as_empty_frame(tmp_path: Path) -> None:
    assert read_results(tmp_path).empty


# ---------------------------------------------------------------------------
# Rolled-up parts, compaction, crash safety, damaged files.


def _keys(df) -> list[tuple[str, str]]:
    return list(zip(df["query_id"], df["method"], strict=True))


def test_many_queries_make_few_files(tmp_path: Path) -> None:
    sink = ResultSink(tmp_path, part_rows=100, part_seconds=3600)
    for i in range(500):
        sink.write(_rows(f"q{i:04d}", methods=("base", "knn", "sift", "hullft")))
    assert sink.num_files == 20  # 2000 rows / 100 per part, not 500 parts
    sink.close(compact=True)
    assert sink.num_files == 1
    df = read_results(tmp_path)
    assert len(df) == 2000 and len(set(_keys(df))) == 2000
    assert ResultSink(tmp_path).done == set(_keys(df))


def test_old_buffer_is_written_at_the_next_write(tmp_path: Path) -> None:
    sink = ResultSink(tmp_path, part_rows=10**6, part_seconds=0)
    assert sink.write(_rows("q1")) is not None and sink.write(_rows("q2")) is not None
    assert sink.num_files == 2


def test_compaction_streams_into_files_of_bounded_rows(tmp_path: Path) -> None:
    sink = ResultSink(tmp_path, part_rows=4)
    for i in range(10):
        sink.write(_rows(f"q{i}", methods=("a", "b")))
    sink.flush()
    files = sink.compact(rows_per_file=8)
    assert len(files) == 3 and sink.num_files == 3
    assert sorted(_keys(read_results(tmp_path))) == sorted(
        (f"q{i}", m) for i in range(10) for m in ("a", "b")
    )


_CRASHER = """
import os, signal, sys
import hullft.results as results
from hullft.results import ResultRow, ResultSink

run_dir, kill_at, compact = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "compact"
calls = [0]
real = results._fsync_dir

def fsync_then_maybe_die(path):
    real(path)
    calls[0] += 1
    if calls[0] == kill_at:  # a part is renamed into place, nothing acknowledged yet
        os.kill(os.getpid(), signal.SIGKILL)

results._fsync_dir = fsync_then_maybe_die
sink = ResultSink(run_dir, part_rows=6, part_seconds=3600)
for i in range(40):
    sink.write([ResultRow(run_id="r", query_id=f"q{i:02d}", method=m, domain="d")
                for m in ("base", "knn", "sift")])
    print("acknowledged", i, flush=True)
sink.close(compact=compact)
print("closed", flush=True)
"""


@pytest.mark.parametrize(
    ("kill_at", "mode"),
    [(3, "plain"), (20, "plain"), (21, "compact"), (22, "compact")],
)
def test_a_driver_killed_between_commit_and_acknowledgement_loses_and_repeats_nothing(
    tmp_path: Path, kill_at: int, mode: str
) -> None:
    """SIGKILL right after a part (or a compacted file) is renamed into place: the
    rerun finds every committed row once, recomputes only what was never committed,
    and ends with every row exactly once."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(tmp_path), str(kill_at), mode],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert "closed" not in proc.stdout
    sink = ResultSink(tmp_path, part_rows=6)
    done = sink.done
    df = read_results(tmp_path)
    assert len(_keys(df)) == len(set(_keys(df))) == len(done)
    # rerun: compute what is not done
    for i in range(40):
        todo = [m for m in ("base", "knn", "sift") if (f"q{i:02d}", m) not in done]
        sink.write(
            [ResultRow(run_id="r", query_id=f"q{i:02d}", method=m, domain="d") for m in todo]
        )
    sink.close(compact=True)
    df = read_results(tmp_path)
    assert sorted(_keys(df)) == sorted(
        (f"q{i:02d}", m) for i in range(40) for m in ("base", "knn", "sift")
    )
    assert sink.num_files == 1


def test_a_crash_inside_compaction_is_finished_on_open(tmp_path: Path, monkeypatch) -> None:
    sink = ResultSink(tmp_path, part_rows=2)
    for i in range(6):
        sink.write(_rows(f"q{i}"))
    sink.flush()

    def boom(self: Path, missing_ok: bool = False) -> None:
        raise OSError("simulated crash before the replaced parts are removed")

    monkeypatch.setattr(Path, "unlink", boom)
    with pytest.raises(OSError, match="simulated"):
        sink.compact()
    monkeypatch.undo()
    assert sink.num_files == 7  # 6 parts + the committed compacted file
    again = ResultSink(tmp_path)
    assert again.num_files == 1
    df = read_results(tmp_path)
    assert len(df) == 12 and len(set(_keys(df))) == 12


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1 :]


def test_a_flipped_bit_never_silently_changes_a_result(tmp_path: Path) -> None:
    """Page checksums: a flipped bit anywhere in a part either fails to read, naming
    the file, or leaves every value as it was."""
    import random

    import pandas as pd

    from hullft.results import ResultFileCorruptError

    rng = random.Random(0)
    rows = [
        ResultRow(run_id="r", query_id=f"q{i}", method="knn", domain="d", bpb_after=rng.random())
        for i in range(50)
    ]
    src = tmp_path / "src"
    with ResultSink(src) as sink:
        sink.write(rows)
    (part,) = (src / "results").glob("part-*.parquet")
    data = part.read_bytes()
    want = read_results(src)
    silent = []
    for pos in range(4, len(data) - 8, 7):
        run = tmp_path / f"flip{pos}"
        (run / "results").mkdir(parents=True)
        (run / "results" / part.name).write_bytes(_flip(data, pos))
        try:
            got = read_results(run)
        except ResultFileCorruptError as exc:
            assert str(run / "results" / part.name) in str(exc)
            continue
        try:
            pd.testing.assert_frame_equal(got, want)
        except AssertionError:
            silent.append(pos)
    assert not silent, f"flips at {silent[:5]} changed values without an error"


def test_a_damaged_part_is_an_error_naming_it(tmp_path: Path) -> None:
    from hullft.results import ResultFileCorruptError

    with ResultSink(tmp_path) as sink:
        sink.write(_rows("q1"))
    (part,) = (tmp_path / "results").glob("part-*.parquet")
    part.write_bytes(part.read_bytes()[:-30])
    with pytest.raises(ResultFileCorruptError, match=str(part)):
        ResultSink(tmp_path)
    with pytest.raises(ResultFileCorruptError, match="Move it out of results/"):
        read_results(tmp_path)


def test_a_row_is_its_outcome_field_for_field() -> None:
    """One schema: every Outcome field is a row column, copied by with_outcome."""
    outcome = Outcome(
        **{
            f.name: (i + 1) * (1.5 if f.type == "float" else 1)
            for i, f in enumerate(dataclasses.fields(Outcome))
            if f.type in ("int", "float")
        },
        status="budget_exhausted",
        error="late",
    )
    template = ResultRow(run_id="r", query_id="q", method="base", domain="d", worker_id="w0")
    row = template.with_outcome(
        outcome, method="hullft", support_ids=(7,), support_counts=(3,), select_s=0.25
    )
    assert set(OUTCOME_FIELDS) < set(ROW_COLUMNS)
    for name in OUTCOME_FIELDS:
        assert getattr(row, name) == getattr(outcome, name), name
    assert (row.method, row.worker_id, row.support_counts, row.select_s) == (
        "hullft",
        "w0",
        (3,),
        0.25,
    )
    assert row.ok and not template.with_outcome(Outcome(status="failed"), method="x").ok


def test_the_blank_query_rule_is_shared_by_the_base_row() -> None:
    from hullft.bpb import BPBResult

    score = BPBResult(
        bpb=1.25,
        nll_bits=10.0,
        n_bytes=8,
        n_tokens=4,
        n_input_tokens=5,
        n_windows=1,
        n_texts=1,
        replaced_chars=1,
        unscored_tokens=0,
        truncated_texts=0,
        mode="rolling",
        max_length=64,
        fingerprint="x",
        seconds=0.5,
    )
    for blank in ("", "  \n\t"):
        out = base_outcome(blank, score)
        assert (out.status, out.error) == ("empty_query", BLANK_QUERY_ERROR)
        assert math.isnan(out.bpb_before) and math.isnan(out.bpb_after)
    out = base_outcome("text", score)
    assert (out.status, out.bpb_before, out.bpb_after) == ("ok", 1.25, 1.25)
    assert (out.query_bytes, out.query_tokens, out.query_windows) == (8, 4, 1)
    assert (out.query_replaced_chars, out.tokens_scored, out.evaluate_s) == (1, 5, 0.5)


def test_a_run_written_by_0_1_resumes_and_reads_in_the_current_schema(tmp_path: Path) -> None:
    """0.1 parts kept unique_sequences & co. in a JSON ``extra`` column and had no
    ``batch_size``/``query_bytes``: they still count as done, and read back typed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = tmp_path / "results"
    parts.mkdir()
    old = {
        "run_id": ["r", "r"],
        "query_id": ["q1", "q1"],
        "method": ["base", "knn"],
        "domain": ["d", "d"],
        "status": ["ok", "ok"],
        "error": pa.array([None, None], pa.string()),
        "bpb_before": [1.0, 1.0],
        "bpb_after": [1.0, 0.9],
        "fwd_bwd_passes": [0, 4],
        "extra": [
            "{}",
            json.dumps({"unique_sequences": 4, "mean_train_loss": 2.0, "skipped_steps": 0}),
        ],
    }
    pq.write_table(pa.table(old), parts / "part-000000-0123abcd.parquet")

    sink = ResultSink(tmp_path)
    assert sink.done == {("q1", "base"), ("q1", "knn")}
    sink.write(_rows("q2"))
    sink.close()
    df = read_results(tmp_path).set_index(["query_id", "method"])
    assert "extra" not in df.columns
    assert df.loc[("q1", "knn"), "unique_sequences"] == 4
    assert df.loc[("q1", "knn"), "mean_train_loss"] == 2.0
    assert df.loc[("q1", "knn"), "fwd_bwd_passes"] == 4
    assert math.isnan(df.loc[("q1", "base"), "unique_sequences"])  # not recorded in 0.1
    assert math.isnan(df.loc[("q1", "knn"), "batch_size"])
    assert df.loc[("q2", "knn"), "unique_sequences"] == 2
