"""Streaming readers for Pile-format corpora.

A corpus is any mix of ``.jsonl``, ``.jsonl.zst``, ``.jsonl.gz`` and ``.parquet``
files, directories (searched recursively) and globs, whose records look like
``{"text": str, "meta": {"pile_set_name": str, ...}}``. Records are streamed one
at a time in a deterministic order (inputs sorted, then file order), so the whole
corpus is never in memory.

Nothing is dropped silently. Every record or file that cannot be used is
*skipped* and counted under a :class:`SkipReason`; records left out on purpose by
the config (domain filter, per-domain cap) are *filtered* and counted too. The
first few occurrences of each reason are logged as ``file:line: reason``.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import zstandard

from hullft.data.minipile import minipile_path
from hullft.paths import expand

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz", ".parquet")
"""Input formats, recognised by file name."""
UNKNOWN_DOMAIN = "unknown"
"""Domain of records without a string ``meta.pile_set_name``."""

_CHUNK = 1 << 20  # bytes read from disk per call
_PARQUET_BATCH = 64  # rows per parquet batch: bounded memory even for 10 MB documents
_LOGGED_PER_REASON = 5  # occurrences of each skip reason logged and kept as examples


class SkipReason(str, Enum):
    """Why an input record (or a whole file) was not used."""

    UNREADABLE_FILE = "unreadable_file"
    """The file cannot be opened or read (missing target, permissions, I/O error)."""
    CORRUPT_FILE = "corrupt_file"
    """Not a valid zstd / gzip / parquet stream; the rest of the file is unreadable."""
    TRUNCATED_FILE = "truncated_file"
    """A compressed stream ends mid-frame; lines up to the cut were used."""
    MALFORMED_JSON = "malformed_json"
    """The line is not valid JSON."""
    NOT_AN_OBJECT = "not_an_object"
    """The line is valid JSON but not an object."""
    MISSING_TEXT = "missing_text"
    """The record has no ``text`` field."""
    NON_STRING_TEXT = "non_string_text"
    """``text`` is not a string (number, null, list, ...)."""
    INVALID_UTF8 = "invalid_utf8"
    """The line is not UTF-8, or ``text`` holds a lone surrogate escape."""
    EMPTY = "empty"
    """``text`` is empty or only whitespace."""
    TOO_LARGE = "too_large"
    """``text`` exceeds ``data.max_doc_bytes`` (or its line is far larger still)."""
    BLANK_LINE = "blank_line"
    """An empty line between records."""


class FilterReason(str, Enum):
    """Why a valid record was left out on purpose (by the config)."""

    DOMAIN_NOT_SELECTED = "domain_not_selected"
    """Its domain is not in ``data.domains``."""
    OVER_DOMAIN_CAP = "over_domain_cap"
    """Its domain already has ``data.max_docs_per_domain`` documents."""


@dataclass(frozen=True)
class Document:
    """One usable input record."""

    doc_id: str
    """``meta.doc_id`` when present, else ``<source>:<line>`` (stable for the same inputs)."""
    domain: str
    """``meta.pile_set_name`` (or ``unknown``)."""
    text: str
    source: str
    """The input file, relative to the common parent of all inputs."""
    line: int
    """1-based line (JSON lines) or row (parquet) in ``source``."""


@dataclass(frozen=True)
class InputFile:
    """One input file and the stable name used for it in ids and messages."""

    path: Path
    source: str
    size: int | None
    """Bytes on disk (``None`` when it cannot be stat'ed; reading it will be counted)."""


@dataclass
class ReadStats:
    """Counts of what a read kept, skipped and filtered."""

    documents: Counter[str] = field(default_factory=Counter)
    """Documents kept, per domain."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Records (or files) skipped, per :class:`SkipReason` value."""
    filtered: Counter[str] = field(default_factory=Counter)
    """Valid records left out by the config, per :class:`FilterReason` value."""
    seen_domains: Counter[str] = field(default_factory=Counter)
    """Valid records per domain before filtering (to report a mistyped domain)."""
    examples: dict[str, list[str]] = field(default_factory=dict)
    """The first occurrences of each skip reason, as ``file:line: reason (detail)``."""
    files: int = 0
    """Input files opened."""
    stopped_early: str | None = None
    """Set when reading stopped before the end of the inputs, with the reason."""

    def skip(
        self, reason: SkipReason, source: str, line: int, detail: str = "", count: int = 1
    ) -> None:
        """Count ``count`` skipped records; log and keep the first occurrences of each
        reason."""
        key = reason.value
        self.skipped[key] += count
        if self.skipped[key] - count < _LOGGED_PER_REASON:
            where = f"{source}:{line}: {key}" + (f" ({detail})" if detail else "")
            self.examples.setdefault(key, []).append(where)
            log.warning("%s", where)
            if self.skipped[key] >= _LOGGED_PER_REASON:
                log.warning("further '%s' occurrences are counted but not logged", key)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def total_documents(self) -> int:
        return sum(self.documents.values())

    def summary(self) -> str:
        """One line: kept, skipped and filtered counts per reason."""
        parts = [f"{self.total_documents} documents kept"]
        if self.skipped:
            parts.append(
                "skipped " + ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
            )
        if self.filtered:
            parts.append(
                "filtered " + ", ".join(f"{k}={v}" for k, v in sorted(self.filtered.items()))
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "skipped": dict(sorted(self.skipped.items())),
            "filtered": dict(sorted(self.filtered.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
            "stopped_early": self.stopped_early,
        }


# ---------------------------------------------------------------------------
# Finding the input files.


def embedded_split(split: str) -> Path:
    """Path of a split (``train`` / ``test``) of the embedded minipile corpus."""
    path = minipile_path(split)  # type: ignore[arg-type]
    if not path.is_file():
        raise FileNotFoundError(
            f"the embedded corpus file {path} is missing; reinstall hullft "
            "(`make venv`) or point data.paths / queries.paths at Pile-format files"
        )
    return path


def _has_suffix(name: str) -> bool:
    return name.endswith(SUFFIXES)


def expand_inputs(paths: Sequence[str]) -> list[InputFile]:
    """Expand files, directories (recursively) and globs into a sorted, deduplicated
    list of input files.

    A path that does not exist, or a glob/directory with no supported file, is an
    error: a typo must not silently produce a smaller index. A file that exists but
    cannot be read is returned and will be counted as ``unreadable_file``.
    """
    if not paths:
        raise ValueError("no input paths given")
    found: list[Path] = []
    for spec in paths:
        text = os.fspath(expand(spec))
        if glob.has_magic(text):
            matches = sorted(p for p in glob.glob(text, recursive=True) if _has_suffix(p))
            matches = [p for p in matches if not os.path.isdir(p)]
            if not matches:
                raise FileNotFoundError(
                    f"no {'/'.join(SUFFIXES)} file matches the input glob {spec!r}"
                )
            found.extend(Path(p) for p in matches)
        elif os.path.isdir(text):
            files: list[Path] = []
            for root, dirs, names in os.walk(text):
                dirs.sort()
                files.extend(Path(root) / n for n in sorted(names) if _has_suffix(n))
            if not files:
                raise FileNotFoundError(
                    f"input directory {spec!r} holds no {'/'.join(SUFFIXES)} file"
                )
            found.extend(sorted(files))
        elif os.path.lexists(text):  # a file, or a broken link counted when read
            if not _has_suffix(text):
                raise ValueError(
                    f"input {spec!r} has an unsupported format; use one of {list(SUFFIXES)}"
                )
            found.append(Path(text))
        else:
            raise FileNotFoundError(f"input path {spec!r} does not exist")

    unique: list[Path] = []
    seen: set[str] = set()
    for p in found:
        key = os.path.realpath(p)
        if key in seen:
            log.warning("input %s is listed more than once; reading it once", p)
            continue
        seen.add(key)
        unique.append(p)

    absolute = [os.path.abspath(p) for p in unique]
    root = os.path.commonpath([os.path.dirname(a) for a in absolute])
    out = []
    for p, a in zip(unique, absolute, strict=True):
        try:
            size: int | None = os.stat(p).st_size
        except OSError:
            size = None
        out.append(InputFile(path=p, source=Path(os.path.relpath(a, root)).as_posix(), size=size))
    return out


def resolve_inputs(paths: Sequence[str], default_split: str) -> list[InputFile]:
    """``paths`` expanded, or the embedded corpus split when ``paths`` is empty."""
    if paths:
        return expand_inputs(paths)
    return expand_inputs([os.fspath(embedded_split(default_split))])


# ---------------------------------------------------------------------------
# Byte streams and lines.


class _FileError(Exception):
    """Reading a file failed part-way; carries the skip reason."""

    def __init__(self, reason: SkipReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _plain_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _zst_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes of every zstd frame in ``path``.

    ``zstandard``'s stream reader returns a short read without error when the last
    frame is cut off, so frames are decoded one by one here and an unfinished frame
    is reported as truncated.
    """
    # The Pile's shards were written with large windows; allow up to 2 GiB.
    dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
    dobj = dctx.decompressobj()
    pending = False  # the current frame has received input but not finished
    with open(path, "rb") as fh:
        while raw := fh.read(_CHUNK):
            while raw:
                try:
                    out = dobj.decompress(raw)
                except zstandard.ZstdError as exc:
                    raise _FileError(SkipReason.CORRUPT_FILE, f"zstd: {exc}") from exc
                pending = True
                if out:
                    yield out
                if dobj.eof:
                    raw = dobj.unused_data
                    dobj = dctx.decompressobj()
                    pending = False
                else:
                    raw = b""
    if pending:
        raise _FileError(SkipReason.TRUNCATED_FILE, "zstd stream ends mid-frame")


def _gz_chunks(path: Path) -> Iterator[bytes]:
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
    except EOFError as exc:
        raise _FileError(SkipReason.TRUNCATED_FILE, f"gzip: {exc}") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise _FileError(SkipReason.CORRUPT_FILE, f"gzip: {exc}") from exc


def _split_lines(chunks: Iterable[bytes], limit: int) -> Iterator[bytes | None]:
    """Lines (without the newline) of a byte stream; ``None`` for a line longer than
    ``limit`` bytes, which is skipped without ever being held in memory whole."""
    carry = bytearray()
    dropping = False
    for chunk in chunks:
        parts = chunk.split(b"\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if dropping:
                if not last:
                    dropping = False
                    yield None
                continue
            if last:
                carry += part
                if len(carry) > limit:
                    carry.clear()
                    dropping = True
                continue
            if carry:
                carry += part
                line = bytes(carry)
                carry.clear()
            else:
                line = part
            yield line if len(line) <= limit else None
    if dropping:
        yield None
    elif carry:
        yield bytes(carry)


# ---------------------------------------------------------------------------
# Records.


@dataclass
class _Reader:
    stats: ReadStats
    max_doc_bytes: int

    @property
    def line_limit(self) -> int:
        # JSON escapes can make a line up to 6x its text (\u0001); anything longer
        # cannot hold a document we would keep.
        return 6 * self.max_doc_bytes + (1 << 20)

    def records(self, f: InputFile) -> Iterator[tuple[int, Any]]:
        """``(line, record)`` for each parseable record of ``f``; defects are counted."""
        self.stats.files += 1
        name = f.path.name
        line = 0
        try:
            if name.endswith(".parquet"):
                yield from self._parquet_records(f)
                return
            if name.endswith(".zst"):
                chunks: Iterator[bytes] = _zst_chunks(f.path)
            elif name.endswith(".gz"):
                chunks = _gz_chunks(f.path)
            else:
                chunks = _plain_chunks(f.path)
            for raw in _split_lines(chunks, self.line_limit):
                line += 1
                rec = self._parse_line(raw, f.source, line)
                if rec is not None:
                    yield line, rec
        except _FileError as exc:
            self.stats.skip(exc.reason, f.source, line + 1, exc.detail)
        except OSError as exc:
            self.stats.skip(SkipReason.UNREADABLE_FILE, f.source, line + 1, str(exc))

    def _parse_line(self, raw: bytes | None, source: str, line: int) -> Any:
        if raw is None:
            self.stats.skip(SkipReason.TOO_LARGE, source, line, "line longer than the limit")
            return None
        if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # UTF-8 byte-order mark
        if not raw.strip():
            self.stats.skip(SkipReason.BLANK_LINE, source, line)
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.stats.skip(SkipReason.INVALID_UTF8, source, line, f"byte {exc.start}")
            return None
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            detail = getattr(exc, "msg", type(exc).__name__)
            self.stats.skip(SkipReason.MALFORMED_JSON, source, line, detail)
            return None

    def _parquet_records(self, f: InputFile) -> Iterator[tuple[int, Any]]:
        # pyarrow: only Parquet inputs need it
        import pyarrow as pa
        import pyarrow.parquet as pq

        row = 0
        try:
            pf = pq.ParquetFile(f.path)
            names = set(pf.schema_arrow.names)
            columns = [c for c in ("text", "meta", "pile_set_name", "doc_id") if c in names]
            if "text" not in names:
                rows = pf.metadata.num_rows
                if rows:
                    detail = f"no 'text' column; all {rows} rows skipped"
                    self.stats.skip(SkipReason.MISSING_TEXT, f.source, 1, detail, count=rows)
                return
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, columns=columns):
                cols = {c: batch.column(c).to_pylist() for c in columns}
                for i in range(batch.num_rows):
                    row += 1
                    yield row, self._parquet_row(cols, i, f.source, row)
        except (pa.ArrowException, ValueError) as exc:
            self.stats.skip(SkipReason.CORRUPT_FILE, f.source, row + 1, f"parquet: {exc}")

    def _parquet_row(self, cols: dict[str, list[Any]], i: int, source: str, row: int) -> Any:
        text = cols["text"][i]
        if isinstance(text, bytes):  # a binary column holding UTF-8
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = _InvalidUtf8(exc.start)
        meta = cols["meta"][i] if "meta" in cols else None
        if isinstance(meta, str):  # meta stored as a JSON string
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError:
                meta = None
        meta = dict(meta) if isinstance(meta, dict) else {}
        for key in ("pile_set_name", "doc_id"):
            if key in cols and cols[key][i] is not None and key not in meta:
                meta[key] = cols[key][i]
        return {"text": text, "meta": meta}

    def document(self, rec: Any, f: InputFile, line: int) -> Document | None:
        """Validate a parsed record; ``None`` (and a count) when it cannot be used."""
        src = f.source
        if not isinstance(rec, dict):
            self.stats.skip(SkipReason.NOT_AN_OBJECT, src, line, type(rec).__name__)
            return None
        if "text" not in rec:
            self.stats.skip(SkipReason.MISSING_TEXT, src, line)
            return None
        text = rec["text"]
        if isinstance(text, _InvalidUtf8):
            self.stats.skip(SkipReason.INVALID_UTF8, src, line, f"byte {text.position}")
            return None
        if not isinstance(text, str):
            self.stats.skip(SkipReason.NON_STRING_TEXT, src, line, type(text).__name__)
            return None
        try:
            nbytes = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:  # "\ud800" escapes decode to lone surrogates
            self.stats.skip(SkipReason.INVALID_UTF8, src, line, f"lone surrogate at {exc.start}")
            return None
        if not text.strip():
            self.stats.skip(SkipReason.EMPTY, src, line)
            return None
        if nbytes > self.max_doc_bytes:
            self.stats.skip(
                SkipReason.TOO_LARGE,
                src,
                line,
                f"{nbytes} bytes > max_doc_bytes {self.max_doc_bytes}",
            )
            return None
        meta = rec.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        domain = meta.get("pile_set_name")
        if not isinstance(domain, str) or not domain:
            domain = UNKNOWN_DOMAIN
        doc_id = meta.get("doc_id")
        if isinstance(doc_id, (str, int)) and not isinstance(doc_id, bool) and str(doc_id):
            doc_id = str(doc_id)
        else:
            doc_id = f"{src}:{line}"
        return Document(doc_id=doc_id, domain=domain, text=text, source=src, line=line)


@dataclass(frozen=True)
class _InvalidUtf8:
    position: int


def iter_documents(
    files: Sequence[InputFile],
    *,
    stats: ReadStats,
    domains: Sequence[str] = (),
    max_docs_per_domain: int | None = None,
    max_doc_bytes: int = 10_000_000,
) -> Iterator[Document]:
    """Stream the usable documents of ``files`` in order, counting everything else in
    ``stats``.

    With both ``domains`` and ``max_docs_per_domain`` set, reading stops once every
    selected domain is full (``stats.stopped_early`` says so): the rest of the
    input could only be filtered.
    """
    reader = _Reader(stats=stats, max_doc_bytes=max_doc_bytes)
    selected = set(domains)
    for f in files:
        for line, rec in reader.records(f):
            doc = reader.document(rec, f, line)
            if doc is None:
                continue
            stats.seen_domains[doc.domain] += 1
            if selected and doc.domain not in selected:
                stats.filtered[FilterReason.DOMAIN_NOT_SELECTED.value] += 1
                continue
            if (
                max_docs_per_domain is not None
                and stats.documents[doc.domain] >= max_docs_per_domain
            ):
                stats.filtered[FilterReason.OVER_DOMAIN_CAP.value] += 1
                continue
            stats.documents[doc.domain] += 1
            yield doc
            if (
                selected
                and max_docs_per_domain is not None
                and all(stats.documents[d] >= max_docs_per_domain for d in selected)
            ):
                stats.stopped_early = (
                    f"every selected domain reached max_docs_per_domain={max_docs_per_domain} "
                    f"at {f.source}:{line}; the rest of the input was not read"
                )
                log.info("%s", stats.stopped_early)
                return
