"""Result rows and the exactly-once Parquet sink (DESIGN.md §5).

One row per (run_id, query_id, method). Only the driver writes. Rows are
buffered and written as part files of many queries each (``ResultSink``): written
under a temporary name with page checksums, fsynced, then renamed into place, so
a part is either complete or absent; a completed run's parts are compacted into a
few files. On a rerun with the same run_id the sink reports which (query_id,
method) pairs are done and the driver skips them; a pair is never written twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BASE_METHOD = "base"
STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class ResultRow:
    """One (run_id, query_id, method) outcome. Times are seconds."""

    run_id: str
    query_id: str
    method: str
    domain: str
    status: str = STATUS_OK
    error: str | None = None
    k: int = 0
    n: int = 0
    support_ids: tuple[int, ...] = ()
    """Sequence ids of the unique selected training sequences, in selection order."""
    support_counts: tuple[int, ...] = ()
    """Multiplicity of each support sequence (sums to the multiset size)."""
    bpb_before: float = float("nan")
    bpb_after: float = float("nan")
    fwd_bwd_passes: int = 0
    optimizer_steps: int = 0
    planned_steps: int = 0
    tokens_trained: int = 0
    tokens_scored: int = 0
    truncated_sequences: int = 0
    embed_s: float = 0.0
    search_s: float = 0.0
    select_s: float = 0.0
    finetune_s: float = 0.0
    evaluate_s: float = 0.0
    reset_s: float = 0.0
    worker_id: str = ""
    node_id: str = ""
    device: str = ""
    """Torch device of the model replica that produced the row (``cuda``, ``cpu``)."""
    attempt: int = 1
    batch_size: int = 1
    """Finetuning jobs the model replica ran together with this one (itself included)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Method-specific details (JSON-encoded in Parquet)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.query_id, self.method)

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["support_ids"] = list(self.support_ids)
        rec["support_counts"] = list(self.support_counts)
        rec["extra"] = json.dumps(dict(self.extra), sort_keys=True)
        return rec


ROW_COLUMNS = tuple(f.name for f in fields(ResultRow))


class DuplicateResultError(RuntimeError):
    """A (query_id, method) pair would be written twice."""


class ResultFileCorruptError(ValueError):
    """A committed part file cannot be read (damaged bytes, failed page checksum)."""


PART_ROWS = 2000
"""Default rows buffered before they are written as one part."""
PART_SECONDS = 60.0
"""Default age (seconds) of the oldest buffered row that forces a part at the next write."""
COMPACT_ROWS = 1_000_000
"""Rows per file after compaction."""
_REPLACES = b"hullft.replaces"
"""Parquet key-value metadata of a compacted part: the JSON list of parts it replaces."""


class ResultSink:
    """Parquet part files under ``<run_dir>/results``, keyed by (query_id, method).

    Rows are buffered and written as one part per ``part_rows`` rows or once the
    oldest buffered row is ``part_seconds`` old (checked at each write), and on
    :meth:`flush` / :meth:`close`, which compacts the parts into a few files when
    asked. The number of result files is thus bounded by the run's rows and wall
    time, not its queries.

    Exactly-once across crashes: a part is written under a temporary name, fsynced
    and renamed, so it is complete or absent, and what is done is read back from
    the committed parts when a sink opens. Rows still buffered when the driver dies
    are simply not done and are recomputed; committed rows are never recomputed.
    A compacted file lists the parts it replaces in its metadata; its rename is the
    commit, and a sink that opens after a crash in between removes the replaced
    parts that are still present instead of counting their rows twice.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        part_rows: int = PART_ROWS,
        part_seconds: float = PART_SECONDS,
    ):
        if part_rows < 1 or not part_seconds >= 0:
            raise ValueError("part_rows must be >= 1 and part_seconds >= 0")
        self.run_dir = Path(run_dir)
        self.parts_dir = self.run_dir / "results"
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self.part_rows = part_rows
        self.part_seconds = part_seconds
        self._buffer: list[ResultRow] = []
        self._buffer_since = 0.0
        self._done: set[tuple[str, str]] = set()
        self._committed: set[tuple[str, str]] = set()
        self._clean_temporaries()
        self._finish_compaction()
        parts = self._part_files()
        self._next_seq = 1 + max((_seq(p) for p in parts), default=-1)
        for part in parts:
            keys = self._read_keys(part)
            overlap = self._committed & keys
            if overlap:
                raise DuplicateResultError(
                    f"{part} repeats results already present in another part "
                    f"(e.g. {sorted(overlap)[0]}); the run directory was edited by hand"
                )
            self._committed |= keys
        self._done = set(self._committed)

    def _part_files(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def _clean_temporaries(self) -> None:
        # Left by a driver killed mid-write; never counted as results.
        for tmp in self.parts_dir.glob(".tmp-*"):
            log.warning("removing incomplete part %s left by an interrupted run", tmp.name)
            tmp.unlink()

    def _finish_compaction(self) -> None:
        """Remove parts that a committed compacted file replaces (a crash came
        between its rename and the removal of its sources)."""
        import pyarrow.parquet as pq

        replaced: set[str] = set()
        for part in self._part_files():
            meta = _open(part, pq.read_schema).metadata or {}
            if _REPLACES in meta:
                replaced.update(json.loads(meta[_REPLACES]))
        stale = [p for p in self._part_files() if p.name in replaced]
        for p in stale:
            log.warning("removing %s: its rows are already in a compacted part", p.name)
            p.unlink()
        if stale:
            _fsync_dir(self.parts_dir)

    @staticmethod
    def _read_keys(part: Path) -> set[tuple[str, str]]:
        table = _read_part(part, columns=["query_id", "method"])
        return set(
            zip(
                table.column("query_id").to_pylist(),
                table.column("method").to_pylist(),
                strict=True,
            )
        )

    @property
    def done(self) -> frozenset[tuple[str, str]]:
        """(query_id, method) pairs accepted by this sink (committed or buffered)."""
        return frozenset(self._done)

    @property
    def committed(self) -> frozenset[tuple[str, str]]:
        """(query_id, method) pairs in committed part files (survive a crash)."""
        return frozenset(self._committed)

    @property
    def num_files(self) -> int:
        return len(self._part_files())

    def write(self, rows: Sequence[ResultRow]) -> Path | None:
        """Accept ``rows`` (refusing any duplicate key); returns the part written if
        this write filled the buffer (``part_rows``) or found it ``part_seconds`` old."""
        if not rows:
            return None
        keys = [r.key for r in rows]
        if len(set(keys)) != len(keys):
            raise DuplicateResultError(f"duplicate keys within one write: {keys}")
        again = self._done.intersection(keys)
        if again:
            raise DuplicateResultError(f"results already written for {sorted(again)}")
        if not self._buffer:
            self._buffer_since = time.monotonic()
        self._buffer.extend(rows)
        self._done.update(keys)
        full = len(self._buffer) >= self.part_rows
        old = time.monotonic() - self._buffer_since >= self.part_seconds
        return self.flush() if full or old else None

    def flush(self) -> Path | None:
        """Commit the buffered rows as one part file."""
        if not self._buffer:
            return None
        rows, self._buffer = self._buffer, []
        final = self._commit(_table(rows), replaces=())
        self._committed.update(r.key for r in rows)
        return final

    def close(self, *, compact: bool = False) -> None:
        """Flush; with ``compact``, merge all parts into files of ``COMPACT_ROWS`` rows."""
        self.flush()
        if compact:
            self.compact()

    def __enter__(self) -> ResultSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def compact(self, rows_per_file: int = COMPACT_ROWS) -> list[Path]:
        """Merge the committed parts into as few files as ``rows_per_file`` allows,
        streaming one part at a time. Crash-safe: see the class docstring."""
        import pyarrow.parquet as pq

        self.flush()
        parts = self._part_files()
        if len(parts) <= 1:
            return parts
        schema = _schema()
        older = [p for p in parts if not _open(p, pq.read_schema).equals(schema)]
        if older:
            log.warning(
                "not compacting the results in %s: %s has another row schema (written by "
                "another hullft version)",
                self.parts_dir,
                older[0].name,
            )
            return parts
        groups: list[list[Path]] = [[]]
        size = 0
        for part in parts:
            n = _open(part, lambda p: pq.ParquetFile(p).metadata.num_rows)
            if groups[-1] and size + n > rows_per_file:
                groups.append([])
                size = 0
            groups[-1].append(part)
            size += n
        out = []
        for group in groups:
            if len(group) == 1:
                out.append(group[0])
                continue
            out.append(self._commit(group, replaces=[p.name for p in group]))
            for p in group:
                p.unlink()
            _fsync_dir(self.parts_dir)
        log.info("compacted %d result parts into %d file(s)", len(parts), len(out))
        return out

    def _commit(self, source: Any, replaces: Sequence[str]) -> Path:
        """Write a table (or the concatenation of the parts in a list) atomically as
        the next part; ``replaces`` goes into its metadata."""
        import pyarrow.parquet as pq

        name = f"part-{self._next_seq:06d}-{uuid.uuid4().hex[:8]}.parquet"
        self._next_seq += 1
        tmp = self.parts_dir / f".tmp-{name}"
        schema = _schema()
        if replaces:
            schema = schema.with_metadata({_REPLACES: json.dumps(list(replaces)).encode()})
        with pq.ParquetWriter(tmp, schema, write_page_checksum=True) as writer:
            for table in [source] if not isinstance(source, list) else source:
                if isinstance(table, Path):
                    table = _read_part(table)
                writer.write_table(table.replace_schema_metadata(schema.metadata))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        final = self.parts_dir / name
        os.replace(tmp, final)
        _fsync_dir(self.parts_dir)
        return final


def _seq(part: Path) -> int:
    try:
        return int(part.name.split("-")[1])
    except (IndexError, ValueError):
        return -1


def _table(rows: Sequence[ResultRow]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist([r.to_record() for r in rows], schema=_schema())


def _open(part: Path, read: Callable[[Path], Any]) -> Any:
    """``read(part)``, with any decoding error turned into one that names the file."""
    import pyarrow as pa

    try:
        return read(part)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ResultFileCorruptError(
            f"result part {part} is damaged or was not written by this hullft ({exc}). "
            "Move it out of results/ and rerun the same command: its rows are then "
            "recomputed (the other parts are kept)"
        ) from exc


def _read_part(part: Path, columns: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    def read(p: Path) -> Any:
        # Page checksums cover the data pages; the footer (column names and types)
        # has none, so check it against the row schema: a damaged name or type is a
        # column no row schema has.
        want = {f.name: f.type for f in _schema()}
        have = pq.read_schema(p)
        bad = sorted(f"{f.name}: {f.type}" for f in have if want.get(f.name) != f.type)
        if bad:
            raise ValueError(f"column(s) not in the row schema: {bad}")
        table = pq.read_table(p, columns=columns, page_checksum_verification=True)
        return table.replace_schema_metadata(None)

    return _open(part, read)


def iter_result_tables(
    run_dir: str | os.PathLike[str], columns: list[str] | None = None
) -> Iterator[Any]:
    """The committed rows of a run as Arrow tables, one part at a time."""
    for part in sorted((Path(run_dir) / "results").glob("part-*.parquet")):
        yield _read_part(part, columns)


def read_results(run_dir: str | os.PathLike[str], columns: list[str] | None = None) -> Any:
    """Load every committed part of a run as a DataFrame."""
    import pandas as pd
    import pyarrow as pa

    tables = list(iter_result_tables(run_dir, columns))
    if not tables:
        return pd.DataFrame(columns=list(columns or ROW_COLUMNS))
    # Parts written by another hullft version may lack newer columns: fill with nulls.
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def _schema() -> Any:
    import pyarrow as pa

    types: dict[str, Any] = {
        "support_ids": pa.list_(pa.int64()),
        "support_counts": pa.list_(pa.int32()),
        "error": pa.string(),
        "extra": pa.string(),
    }
    cols = []
    for f in fields(ResultRow):
        if f.name in types:
            cols.append(pa.field(f.name, types[f.name]))
        elif f.type in ("int", int):
            cols.append(pa.field(f.name, pa.int64()))
        elif f.type in ("float", float):
            cols.append(pa.field(f.name, pa.float64()))
        else:
            cols.append(pa.field(f.name, pa.string()))
    return pa.schema(cols)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not supported on this platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def failure_rows(
    run_id: str,
    query_id: str,
    domain: str,
    methods: Iterable[str],
    *,
    error: str,
    attempt: int,
    k: int,
    n: int,
) -> list[ResultRow]:
    """Rows recording that a query failed for good after ``attempt`` attempts."""
    return [
        ResultRow(
            run_id=run_id,
            query_id=query_id,
            method=m,
            domain=domain,
            status=STATUS_FAILED,
            error=error,
            k=k,
            n=n,
            attempt=attempt,
        )
        for m in methods
    ]
