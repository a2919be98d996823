"""Readers: formats, inputs, defect accounting, filters."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from fixtures.pile import dump_jsonl, make_records, write_jsonl, write_parquet, write_zst

from hullft.data.readers import (
    ReadStats,
    _split_lines,
    embedded_split,
    expand_inputs,
    iter_documents,
)

FIXTURES = Path(__file__).parent / "fixtures"


def read(paths, **kw):
    stats = ReadStats()
    docs = list(iter_documents(expand_inputs([str(p) for p in paths]), stats=stats, **kw))
    return docs, stats


def test_every_format_reads_the_same_documents(tmp_path: Path) -> None:
    recs = make_records(5)
    outs = []
    for name, write in [
        ("c.jsonl", write_jsonl),
        ("c.jsonl.zst", lambda p, r: write_zst(p, r, frames=3)),
        ("c.parquet", write_parquet),
    ]:
        docs, stats = read([write(tmp_path / name, recs)])
        assert stats.total_skipped == 0
        outs.append([(d.doc_id, d.domain, d.text) for d in docs])
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(dump_jsonl(recs)))
    outs.append([(d.doc_id, d.domain, d.text) for d in read([gz])[0]])
    want = [(r["meta"]["doc_id"], r["meta"]["pile_set_name"], r["text"]) for r in recs]
    assert all(o == want for o in outs)


def test_defect_fixture_is_counted_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    docs, stats = read([FIXTURES / "defects.jsonl"], max_doc_bytes=2000)
    assert [d.doc_id for d in docs] == [
        "good-1",
        "defects.jsonl:13",  # no meta: id derived from file and line
        "defects.jsonl:14",
        "good-4",
    ]
    assert [d.domain for d in docs] == ["Alpha", "unknown", "unknown", "Beta"]
    assert docs[-1].text.endswith("with a é escape.")
    assert dict(stats.skipped) == {
        "malformed_json": 2,
        "not_an_object": 1,
        "missing_text": 1,
        "non_string_text": 2,
        "invalid_utf8": 2,
        "empty": 2,
        "too_large": 1,
        "blank_line": 1,
    }
    # 16 lines, each either kept or counted exactly once.
    assert stats.total_documents + stats.total_skipped == 16
    assert "defects.jsonl:2: malformed_json" in caplog.text
    assert stats.examples["invalid_utf8"][0].startswith("defects.jsonl:7: invalid_utf8")
    assert stats.examples["too_large"] == [
        "defects.jsonl:11: too_large (3000 bytes > max_doc_bytes 2000)"
    ]


def test_truncated_zst_keeps_what_was_decoded_and_counts_the_file(tmp_path: Path) -> None:
    recs = make_records(40)
    whole = write_zst(tmp_path / "whole.jsonl.zst", recs, frames=4)
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(whole.read_bytes()[:-20])
    docs, stats = read([cut])
    assert dict(stats.skipped) == {"truncated_file": 1}
    assert 0 < len(docs) < len(recs)
    assert [d.text for d in docs] == [r["text"] for r in recs[: len(docs)]]


def test_corrupt_and_unreadable_files_are_counted_and_reading_goes_on(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", make_records(2))
    (corpus / "b.jsonl.zst").write_bytes(b"this is not zstd" * 10)
    (corpus / "c.parquet").write_bytes(b"PAR1 garbage")
    os.symlink(corpus / "missing.jsonl", corpus / "d.jsonl")  # broken link
    gz = corpus / "e.jsonl.gz"
    gz.write_bytes(gzip.compress(dump_jsonl(make_records(3)))[:-30])
    write_jsonl(corpus / "f.jsonl", make_records(1))
    docs, stats = read([corpus])
    assert stats.skipped["corrupt_file"] == 2
    assert stats.skipped["unreadable_file"] == 1
    assert stats.skipped["truncated_file"] == 1
    assert stats.files == 6
    sources = {d.source for d in docs}
    assert {"a.jsonl", "f.jsonl"} <= sources


def test_domain_filter_and_cap_are_counted_and_stop_early(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", make_records(10))
    docs, stats = read([path], max_docs_per_domain=3)
    assert dict(stats.documents) == {d: 3 for d in ("Alpha", "Beta", "Gamma", "Delta")}
    assert stats.filtered["over_domain_cap"] == 40 - 12
    assert stats.stopped_early is None

    docs, stats = read([path], domains=("Beta",), max_docs_per_domain=2)
    assert [d.doc_id for d in docs] == ["beta-0000", "beta-0001"]
    assert stats.stopped_early is not None  # the rest could only be filtered
    assert stats.filtered["domain_not_selected"] == 4  # Alpha, Gamma, Delta, Alpha


def test_inputs_expand_sorted_and_refuse_typos(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.jsonl", "a.jsonl", "sub/c.jsonl.zst", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    files = expand_inputs([str(tmp_path)])
    assert [f.source for f in files] == ["a.jsonl", "b.jsonl", "sub/c.jsonl.zst"]
    assert [f.source for f in expand_inputs([str(tmp_path / "*.jsonl")])] == [
        "a.jsonl",
        "b.jsonl",
    ]
    # The same file twice is read once.
    assert len(expand_inputs([str(tmp_path / "a.jsonl"), str(tmp_path)])) == 3
    with pytest.raises(FileNotFoundError, match="does not exist"):
        expand_inputs([str(tmp_path / "nope.jsonl")])
    with pytest.raises(FileNotFoundError, match=r"no .* file matches"):
        expand_inputs([str(tmp_path / "*.parquet")])
    with pytest.raises(ValueError, match="unsupported format"):
        expand_inputs([str(tmp_path / "notes.txt")])


def test_overlong_lines_are_skipped_without_being_buffered() -> None:
    chunks = [b"ab\ncd", b"efghij", b"klmn\nop\n", b"q"]
    assert list(_split_lines(chunks, limit=5)) == [b"ab", None, b"op", b"q"]
    assert list(_split_lines([b"x" * 10], limit=5)) == [None]
    assert list(_split_lines([b"a\n\nb\n"], limit=5)) == [b"a", b"", b"b"]


def test_embedded_corpus_reads_cleanly() -> None:
    docs, stats = read([embedded_split("test")])
    assert stats.total_skipped == 0
    assert len(stats.documents) >= 8
    assert len({d.doc_id for d in docs}) == len(docs)
