"""Memory-mapped stores: sequence texts (bytes + offsets) and embeddings (``.npy``).

Row ``i`` of every array is sequence id ``i``; ids are dense ``0..M-1``. Nothing
is read into memory when a store is opened: lookups touch only the pages they
need, so every actor on a node can open the same files cheaply.

Text store layout (one directory)::

    texts.bin          UTF-8 bytes of all sequences, back to back
    text_offsets.npy   int64 (M+1,)  sequence i = texts.bin[off[i]:off[i+1]]
    seq_doc.npy        int64 (M,)    document row of each sequence
    seq_span.npy       int64 (M, 2)  [start, end) byte offsets within the document
    seq_tokens.npy     int32 (M,)    tokens of the sequence (finetuned model's tokenizer)
    seq_domain.npy     int16 (M,)    index into domains.json
    doc_ids.bin        UTF-8 document ids, back to back
    doc_id_offsets.npy int64 (D+1,)
    domains.json       sorted list of domain names

In ``sequences`` mode a document's sequences partition it, so ``texts.bin`` holds
every kept document byte-for-byte.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hullft.data.sequencing import Span

TEXTS = "texts.bin"
TEXT_OFFSETS = "text_offsets.npy"
SEQ_DOC = "seq_doc.npy"
SEQ_SPAN = "seq_span.npy"
SEQ_TOKENS = "seq_tokens.npy"
SEQ_DOMAIN = "seq_domain.npy"
DOC_IDS = "doc_ids.bin"
DOC_ID_OFFSETS = "doc_id_offsets.npy"
DOMAINS = "domains.json"
EMBEDDINGS = "embeddings.npy"


@dataclass(frozen=True)
class SequenceRecord:
    """Everything the text store knows about one sequence."""

    id: int
    doc_id: str
    domain: str
    start: int
    """Byte offset of the sequence in its document."""
    end: int
    n_tokens: int
    text: str


def _check_ids(ids: Any, n: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"sequence ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = arr[(arr < 0) | (arr >= n)][0]
        raise IndexError(
            f"sequence id {int(bad)} is out of range [0, {n}); "
            "FAISS pads missing results with -1, drop those before a lookup"
        )
    return arr


def _open_bytes(path: Path) -> mmap.mmap | bytes:
    if path.stat().st_size == 0:
        return b""  # mmap cannot map an empty file
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


class TextStore:
    """Random access to sequence texts and their document id, domain and offsets."""

    def __init__(self, directory: str | os.PathLike[str]):
        d = Path(directory)
        self.path = d
        self._bytes = _open_bytes(d / TEXTS)
        self._offsets = np.load(d / TEXT_OFFSETS, mmap_mode="r")
        self._seq_doc = np.load(d / SEQ_DOC, mmap_mode="r")
        self._seq_span = np.load(d / SEQ_SPAN, mmap_mode="r")
        self._seq_tokens = np.load(d / SEQ_TOKENS, mmap_mode="r")
        self._seq_domain = np.load(d / SEQ_DOMAIN, mmap_mode="r")
        self._doc_bytes = _open_bytes(d / DOC_IDS)
        self._doc_offsets = np.load(d / DOC_ID_OFFSETS, mmap_mode="r")
        self.domains: list[str] = json.loads((d / DOMAINS).read_text())
        n = len(self._offsets) - 1
        sizes = {len(self._seq_doc), len(self._seq_span), len(self._seq_tokens)}
        if sizes | {len(self._seq_domain)} != {n}:
            raise ValueError(f"text store {d} is inconsistent: arrays of different lengths")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def num_documents(self) -> int:
        return len(self._doc_offsets) - 1

    def _raw(self, i: int) -> bytes:
        return bytes(self._bytes[int(self._offsets[i]) : int(self._offsets[i + 1])])

    def get_bytes(self, i: int) -> bytes:
        return self._raw(int(_check_ids(i, len(self))))

    def get(self, i: int) -> str:
        """The text of sequence ``i``."""
        return self.get_bytes(i).decode("utf-8")

    def get_many(self, ids: Iterable[int]) -> list[str]:
        """Texts of ``ids`` in order (an array of any shape is flattened)."""
        arr = _check_ids(ids if isinstance(ids, np.ndarray) else list(ids), len(self))
        return [self._raw(int(i)).decode("utf-8") for i in arr.ravel()]

    def domain(self, i: int) -> str:
        i = int(_check_ids(i, len(self)))
        return self.domains[int(self._seq_domain[i])]

    def domain_codes(self, ids: Any) -> np.ndarray:
        """Domain index (into :attr:`domains`) of each id, vectorised."""
        return np.asarray(self._seq_domain[_check_ids(ids, len(self))])

    def doc_id(self, i: int) -> str:
        i = int(_check_ids(i, len(self)))
        d = int(self._seq_doc[i])
        a, b = int(self._doc_offsets[d]), int(self._doc_offsets[d + 1])
        return bytes(self._doc_bytes[a:b]).decode("utf-8")

    def doc_ids(self, ids: Iterable[int]) -> list[str]:
        arr = _check_ids(ids if isinstance(ids, np.ndarray) else list(ids), len(self))
        return [self.doc_id(int(i)) for i in arr.ravel()]

    def span(self, i: int) -> tuple[int, int]:
        """``[start, end)`` byte offsets of sequence ``i`` in its document."""
        i = int(_check_ids(i, len(self)))
        return int(self._seq_span[i, 0]), int(self._seq_span[i, 1])

    def n_tokens(self, i: int) -> int:
        i = int(_check_ids(i, len(self)))
        return int(self._seq_tokens[i])

    def record(self, i: int) -> SequenceRecord:
        start, end = self.span(i)
        return SequenceRecord(
            id=int(i),
            doc_id=self.doc_id(i),
            domain=self.domain(i),
            start=start,
            end=end,
            n_tokens=self.n_tokens(i),
            text=self.get(i),
        )

    @property
    def nbytes(self) -> int:
        return int(self._offsets[-1])


class TextStoreWriter:
    """Writes one text store (a build shard); call :meth:`close` to finish it."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.path = Path(directory)
        self.path.mkdir(parents=True, exist_ok=True)
        self._texts = open(self.path / TEXTS, "wb")  # noqa: SIM115 - closed in close()
        self._doc_ids = open(self.path / DOC_IDS, "wb")  # noqa: SIM115
        self._offsets = [0]
        self._doc_offsets = [0]
        self._seq_doc: list[int] = []
        self._spans: list[tuple[int, int]] = []
        self._tokens: list[int] = []
        self._domains: list[str] = []

    def add_document(self, doc_id: str, domain: str, data: bytes, spans: Sequence[Span]) -> None:
        """Append a document's sequences (``data`` is its UTF-8 text)."""
        doc = len(self._doc_offsets) - 1
        ident = doc_id.encode("utf-8")
        self._doc_ids.write(ident)
        self._doc_offsets.append(self._doc_offsets[-1] + len(ident))
        for s in spans:
            self._texts.write(data[s.start : s.end])
            self._offsets.append(self._offsets[-1] + (s.end - s.start))
            self._seq_doc.append(doc)
            self._spans.append((s.start, s.end))
            self._tokens.append(s.n_tokens)
            self._domains.append(domain)

    def __len__(self) -> int:
        return len(self._seq_doc)

    def close(self) -> None:
        self._texts.close()
        self._doc_ids.close()
        names = sorted(set(self._domains))
        code = {d: i for i, d in enumerate(names)}
        _save(self.path / TEXT_OFFSETS, np.asarray(self._offsets, dtype=np.int64))
        _save(self.path / DOC_ID_OFFSETS, np.asarray(self._doc_offsets, dtype=np.int64))
        _save(self.path / SEQ_DOC, np.asarray(self._seq_doc, dtype=np.int64))
        _save(self.path / SEQ_SPAN, np.asarray(self._spans, dtype=np.int64).reshape(-1, 2))
        _save(self.path / SEQ_TOKENS, np.asarray(self._tokens, dtype=np.int32))
        _save(
            self.path / SEQ_DOMAIN,
            np.asarray([code[d] for d in self._domains], dtype=np.int16),
        )
        (self.path / DOMAINS).write_text(json.dumps(names))


def _save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr)


def merge_text_stores(parts: Sequence[Path], out: Path) -> list[str]:
    """Concatenate text stores in order into ``out`` (ids and document rows shifted,
    domain codes remapped to the sorted union of domains). Streams: memory is
    bounded by one part's arrays. Returns the domain list."""
    out.mkdir(parents=True, exist_ok=True)
    part_domains = [json.loads((p / DOMAINS).read_text()) for p in parts]
    names = sorted({d for ds in part_domains for d in ds})
    if len(names) > np.iinfo(np.int16).max:
        raise ValueError(f"{len(names)} domains do not fit the int16 domain codes")
    code = {d: i for i, d in enumerate(names)}
    lens = [len(np.load(p / SEQ_DOC, mmap_mode="r")) for p in parts]
    dlens = [len(np.load(p / DOC_ID_OFFSETS, mmap_mode="r")) - 1 for p in parts]
    m, nd = sum(lens), sum(dlens)

    def mm(name: str, dtype: Any, shape: tuple[int, ...]) -> Any:
        return np.lib.format.open_memmap(out / name, mode="w+", dtype=dtype, shape=shape)

    offsets = mm(TEXT_OFFSETS, np.int64, (m + 1,))
    doc_offsets = mm(DOC_ID_OFFSETS, np.int64, (nd + 1,))
    seq_doc = mm(SEQ_DOC, np.int64, (m,))
    seq_span = mm(SEQ_SPAN, np.int64, (m, 2))
    seq_tokens = mm(SEQ_TOKENS, np.int32, (m,))
    seq_domain = mm(SEQ_DOMAIN, np.int16, (m,))
    offsets[0] = 0
    doc_offsets[0] = 0
    row = doc = 0
    with open(out / TEXTS, "wb") as texts, open(out / DOC_IDS, "wb") as doc_ids:
        for p, n, nds, doms in zip(parts, lens, dlens, part_domains, strict=True):
            base, dbase = int(offsets[row]), int(doc_offsets[doc])
            offsets[row + 1 : row + n + 1] = np.load(p / TEXT_OFFSETS)[1:] + base
            doc_offsets[doc + 1 : doc + nds + 1] = np.load(p / DOC_ID_OFFSETS)[1:] + dbase
            seq_doc[row : row + n] = np.load(p / SEQ_DOC) + doc
            seq_span[row : row + n] = np.load(p / SEQ_SPAN)
            seq_tokens[row : row + n] = np.load(p / SEQ_TOKENS)
            remap = np.asarray([code[d] for d in doms], dtype=np.int16)
            local = np.load(p / SEQ_DOMAIN)
            seq_domain[row : row + n] = remap[local] if len(remap) else local
            with open(p / TEXTS, "rb") as src:
                shutil.copyfileobj(src, texts, 1 << 22)
            with open(p / DOC_IDS, "rb") as src:
                shutil.copyfileobj(src, doc_ids, 1 << 22)
            row += n
            doc += nds
    for arr in (offsets, doc_offsets, seq_doc, seq_span, seq_tokens, seq_domain):
        arr.flush()
    del offsets, doc_offsets, seq_doc, seq_span, seq_tokens, seq_domain
    (out / DOMAINS).write_text(json.dumps(names))
    return names


class EmbeddingStore:
    """The ``(M, d)`` embedding matrix (float16 or float32 on disk), memory-mapped."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.array: np.ndarray = np.load(self.path, mmap_mode="r")
        if self.array.ndim != 2:
            raise ValueError(f"{self.path} holds a {self.array.ndim}-d array, expected (M, d)")

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def get(self, ids: Any) -> np.ndarray:
        """float32 rows for ``ids`` (any shape; result has shape ``ids.shape + (d,)``)."""
        arr = _check_ids(ids, len(self))
        flat = arr.ravel()
        # Reading the memmap in ascending order touches each page once.
        order = np.argsort(flat, kind="stable")
        rows = np.empty((flat.size, self.dim), dtype=np.float32)
        rows[order] = self.array[flat[order]]
        return rows.reshape(*arr.shape, self.dim)


def write_embeddings(
    path: Path, chunks: Iterable[np.ndarray], shape: tuple[int, int], dtype: str
) -> None:
    """Write ``chunks`` (consecutive row blocks) into a new ``.npy`` of ``shape``."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=shape)
    row = 0
    for chunk in chunks:
        out[row : row + len(chunk)] = chunk
        row += len(chunk)
    if row != shape[0]:
        raise ValueError(f"wrote {row} embedding rows, expected {shape[0]}")
    out.flush()
    del out
