"""Query sets: deterministic, stratified, stable ids, byte-bounded texts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fixtures.pile import make_records, write_jsonl

from hullft.config import QueryConfig
from hullft.data.queries import cut_utf8, load_queries


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "q.jsonl", make_records(15))


def test_stratified_deterministic_and_stable(corpus: Path, tmp_path: Path) -> None:
    cfg = QueryConfig(paths=(str(corpus),), per_domain=3, min_bytes=300, max_bytes=500)
    qs = load_queries(cfg)
    assert [q.domain for q in qs] == [
        d for d in sorted(["Alpha", "Beta", "Delta", "Gamma"]) for _ in range(3)
    ]
    assert qs == load_queries(cfg)
    assert len({q.query_id for q in qs}) == len(qs)
    assert all(q.query_id.startswith(q.domain.lower() + "-") for q in qs)
    by_id = {r["meta"]["doc_id"]: r["text"] for r in make_records(15)}
    for q in qs:
        full = by_id[q.doc_id]
        assert len(full.encode()) >= 300
        assert len(q.text.encode()) <= 500 and full.startswith(q.text)

    # Another seed draws other documents; file order does not matter.
    assert {q.doc_id for q in load_queries(replace(cfg, seed=1))} != {q.doc_id for q in qs}
    shuffled = write_jsonl(tmp_path / "r.jsonl", list(reversed(make_records(15))))
    assert load_queries(replace(cfg, paths=(str(shuffled),))) == qs
    # Adding documents keeps a query's id for the same document.
    more = write_jsonl(tmp_path / "more.jsonl", make_records(30))
    ids = {q.doc_id: q.query_id for q in load_queries(replace(cfg, paths=(str(more),)))}
    assert all(ids.get(q.doc_id, q.query_id) == q.query_id for q in qs)


def test_domain_restriction_and_errors(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = QueryConfig(paths=(str(corpus),), per_domain=2, domains=("Gamma",))
    assert {q.domain for q in load_queries(cfg)} == {"Gamma"}
    with pytest.raises(ValueError, match=r"domain\(s\) \['Nope'\]"):
        load_queries(replace(cfg, domains=("Nope",)))
    with pytest.raises(ValueError, match="min_bytes"):
        load_queries(replace(cfg, domains=(), min_bytes=10**6, max_bytes=10**6))
    assert len(load_queries(replace(cfg, per_domain=40))) == 15
    assert "fewer than queries.per_domain=40" in caplog.text


def test_cut_never_splits_a_character() -> None:
    assert cut_utf8("abc", 10) == "abc"
    assert cut_utf8("aé東🙂", 4) == "aé"
    assert cut_utf8("aé東🙂", 6) == "aé東"
    assert cut_utf8("🙂", 3) == ""


def test_embedded_test_split() -> None:
    qs = load_queries(QueryConfig(per_domain=2))
    assert len({q.domain for q in qs}) >= 8
    assert all(len(q.text.encode()) <= 4096 for q in qs)
