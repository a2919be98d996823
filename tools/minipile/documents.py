"""Corpus documents: the record format, text cleaning and packing segments."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tools.minipile.params import MAX_DOC_BYTES, MIN_DOC_BYTES


@dataclass(frozen=True)
class Document:
    """One corpus document; ``doc_id`` is ``<domain slug>/<source name>#<part>``."""

    pile_set_name: str
    doc_id: str
    text: str
    source: str
    license: str

    def record(self) -> dict:
        return {
            "text": self.text,
            "meta": {
                "pile_set_name": self.pile_set_name,
                "source": self.source,
                "license": self.license,
                "doc_id": self.doc_id,
            },
        }


def serialize(doc: Document) -> str:
    """The exact JSON line written for a document (without the newline)."""
    return json.dumps(doc.record(), ensure_ascii=False, sort_keys=True)


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str, *, max_blank_lines: int = 1) -> str:
    """Normalise line endings, drop control characters and trailing whitespace.

    Runs of more than ``max_blank_lines`` blank lines are collapsed, leading and
    trailing blank lines removed, and the result ends with exactly one newline
    (or is empty).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text.replace("\t", "    "))
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines).strip("\n")
    if max_blank_lines >= 0:
        text = re.sub(f"\n{{{max_blank_lines + 2},}}", "\n" * (max_blank_lines + 1), text)
    return text + "\n" if text else ""


def _split_oversized(segment: str, limit: int, seps: tuple[str, ...] = ("\n\n", "\n")) -> list[str]:
    """Cut a segment longer than ``limit`` bytes at paragraph, else line, breaks."""
    if nbytes(segment) <= limit:
        return [segment]
    if not seps:
        # A single enormous line: hard cut on characters (never inside a code point).
        step = max(1, limit // 4)
        return [segment[i : i + step] for i in range(0, len(segment), step)]
    sep, finer = seps[0], seps[1:]
    pieces = segment.split(sep)
    units = [p + sep for p in pieces[:-1]] + [pieces[-1]]
    small = [u for unit in units if unit for u in _split_oversized(unit, limit, finer)]
    out: list[str] = []
    cur = ""
    for unit in small:
        if cur and nbytes(cur) + nbytes(unit) > limit:
            out.append(cur)
            cur = ""
        cur += unit
    if cur:
        out.append(cur)
    return out


def pack_segments(segments: Sequence[str], chunk_bytes: int) -> list[str]:
    """Greedily join consecutive segments into documents of about ``chunk_bytes``.

    Segments are concatenated verbatim, so they should end with their own line
    breaks. A segment larger than ``MAX_DOC_BYTES`` (or twice ``chunk_bytes``) is
    first cut at paragraph/line breaks; a too-short last document is merged into
    the one before it.
    """
    limit = min(MAX_DOC_BYTES, max(2 * chunk_bytes, MIN_DOC_BYTES))
    units = [piece for seg in segments if seg.strip() for piece in _split_oversized(seg, limit)]
    docs: list[str] = []
    cur = ""
    for unit in units:
        if cur and nbytes(cur) >= MIN_DOC_BYTES and nbytes(cur) + nbytes(unit) > chunk_bytes:
            docs.append(cur)
            cur = ""
        cur += unit
    if cur:
        if docs and nbytes(cur) < MIN_DOC_BYTES and nbytes(docs[-1]) + nbytes(cur) <= MAX_DOC_BYTES:
            docs[-1] += cur
        else:
            docs.append(cur)
    return docs
