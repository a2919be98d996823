"""The result sink: atomic parts, exactly-once keys, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from hullft.results import DuplicateResultError, ResultRow, ResultSink, failure_rows, read_results


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
            extra={"x": 1},
        )
        for m in methods
    ]


def test_round_trip(tmp_path: Path) -> None:
    sink = ResultSink(tmp_path)
    sink.write(_rows("q1"))
    df = read_results(tmp_path)
    assert sorted(df["method"]) == ["base", "knn"]
    assert list(df["support_ids"][0]) == [3, 1] and list(df["support_counts"][0]) == [2, 1]
    assert df["bpb_after"].tolist() == [0.9, 0.9]


def test_resume_knows_what_is_done(tmp_path: Path) -> None:
    ResultSink(tmp_path).write(_rows("q1"))
    again = ResultSink(tmp_path)
    assert again.done == {("q1", "base"), ("q1", "knn")}
    with pytest.raises(DuplicateResultError):
        again.write(_rows("q1", methods=("knn",)))
    again.write(_rows("q2"))
    assert len(read_results(tmp_path)) == 4


def test_duplicate_within_one_write_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DuplicateResultError):
        ResultSink(tmp_path).write(_rows("q1", methods=("knn", "knn")))


def test_interrupted_write_leaves_no_result(tmp_path: Path) -> None:
    sink = ResultSink(tmp_path)
    sink.write(_rows("q1"))
    # what a driver killed between write and rename leaves behind
    (tmp_path / "results" / ".tmp-part-000001-dead.parquet").write_bytes(b"partial")
    again = ResultSink(tmp_path)
    assert again.done == {("q1", "base"), ("q1", "knn")}
    assert not list((tmp_path / "results").glob(".tmp-*"))


def test_hand_copied_part_is_detected(tmp_path: Path) -> None:
    sink = ResultSink(tmp_path)
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
