"""An index is identified by the content of its inputs: edited or swapped corpora are
never served; index.dir naming a file is refused; builds leave no debris."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures.pile import make_records, tiny_config, write_jsonl

from actors.cli import main
from hullft.index import IndexMismatchError, build_index, load_index
from hullft.index.build import _build_lock


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HULLFT_CACHE", str(tmp_path / "cache"))


def _sed_same_size(path: Path, old: bytes, new: bytes) -> None:
    """What `sed -i s/old/new/g` does, keeping size and (here, to be hard) mtime."""
    assert len(old) == len(new)
    st = path.stat()
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_a_corpus_edited_in_place_is_not_served(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_records(3))
    cfg = tiny_config(tmp_path / "idx", [corpus])
    build_index(cfg, progress=False)
    data = corpus.read_bytes()
    i = data.index(b'"text": "') + 9
    _sed_same_size(corpus, data[i : i + 4], b"ZZZZ")

    with pytest.raises(IndexMismatchError) as err:
        build_index(cfg, progress=False)
    msg = str(err.value)
    assert "input c.jsonl changed since the index was built (content differs)" in msg
    assert f"rm -r {tmp_path / 'idx'}" in msg and "hullft index" in msg
    with pytest.raises(IndexMismatchError, match=r"input c\.jsonl changed"):
        load_index(cfg)


def test_default_index_dir_is_rebuilt_after_an_edit(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_records(3))
    cfg = tiny_config(tmp_path / "unused", [corpus])
    cfg = replace(cfg, index=replace(cfg.index, dir=None))
    old = build_index(cfg, progress=False)
    data = corpus.read_bytes()
    i = data.index(b'"text": "') + 9
    _sed_same_size(corpus, data[i : i + 4], b"ZZZZ")
    new = build_index(cfg, progress=False)
    assert new != old
    assert load_index(new).texts.get_bytes(0).startswith(b"ZZZZ")
    assert not load_index(old).texts.get_bytes(0).startswith(b"ZZZZ")


def test_another_file_with_the_same_name_and_size_is_not_served(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_jsonl(tmp_path / "a" / "c.jsonl", make_records(3, seed=1))
    b_data = bytearray(a.read_bytes())
    i = b_data.index(b'"text": "') + 9
    b_data[i : i + 4] = b"QQQQ"
    b = tmp_path / "b" / "c.jsonl"
    b.write_bytes(bytes(b_data))
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    build_index(tiny_config(tmp_path / "idx", [a]), progress=False)
    with pytest.raises(IndexMismatchError, match=r"input c\.jsonl changed.*content differs"):
        build_index(tiny_config(tmp_path / "idx", [b]), progress=False)


def test_index_dir_naming_a_file_is_refused_and_the_file_kept(tmp_path: Path, capsys) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_records(2))
    victim = tmp_path / "notes.txt"
    victim.write_text("precious")
    with pytest.raises(NotADirectoryError, match=r"index\.dir .*notes\.txt is an existing file"):
        build_index(tiny_config(victim, [corpus]), progress=False)
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "cache", "notes.txt"]


def test_builds_leave_no_lock_or_partial_behind(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_records(2))
    out = tmp_path / "idx"
    build_index(tiny_config(out, [corpus]), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "cache", "idx"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="no usable document"):
        build_index(tiny_config(tmp_path / "idx2", [bad]), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "c.jsonl", "cache", "idx"]


def test_a_concurrent_index_command_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_records(2))
    out = tmp_path / "idx"
    args = [
        "index",
        "model=tiny",
        "embedder=hashing",
        f"data.paths=[{corpus}]",
        f"index.dir={out}",
    ]
    with _build_lock(out):  # another build holds the index
        rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert "another process is building" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
