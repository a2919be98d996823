"""Result rows and the exactly-once Parquet sink (docs/design.md §5).

One row per (run_id, query_id, method). Only the driver writes. Rows are
buffered and written as part files of many queries each (``ResultSink``): written
under a temporary name with page checksums, fsynced, then renamed into place, so
a part is either complete or absent; a completed run's parts are compacted into a
few files. On a rerun with the same run_id the sink reports which (query_id,
method) pairs are done and the driver skips them; a pair is never written twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal, Protocol

log = logging.getLogger(__name__)

BASE_METHOD = "base"
STATUS_OK: Final = "ok"
STATUS_FAILED: Final = "failed"
SCORED_STATUSES: Final = (STATUS_OK, "budget_exhausted")
"""Statuses whose ``bpb_after`` is a meaningful score: finetuning ran to its last
step, or to the end of its time budget."""

RowStatus = Literal["ok", "empty_query", "nonfinite_loss", "budget_exhausted", "failed"]
"""How a row ended: the engine's statuses (``hullft.ttft.TTFTStatus``) or ``failed``
(no selection, or the query failed for good after its last attempt)."""

BLANK_QUERY_ERROR = "the query is empty or whitespace-only; there is nothing to score"


def is_blank(text: str) -> bool:
    """The one rule for a query that cannot be scored: empty or whitespace only."""
    return not text.strip()


@dataclass(frozen=True)
class Outcome:
    """What finetuning and scoring one query with one multiset measured.

    The engine's :class:`hullft.ttft.TTFTResult` is this class, and every
    :class:`ResultRow` carries these fields: they are declared, documented and
    defaulted here only. Primitives only, so results pickle cheaply.
    """

    status: RowStatus = STATUS_OK
    """See :data:`RowStatus` and ``hullft.ttft.TTFTStatus``."""
    error: str | None = None
    """What went wrong, for every status but ``ok`` and ``budget_exhausted``."""
    bpb_before: float = math.nan
    """BPB of the query under the base weights (NaN for an empty query)."""
    bpb_after: float = math.nan
    """BPB after finetuning (equal to ``bpb_before`` when no step ran, and for the
    ``base`` method; NaN when a loss was non-finite)."""
    query_bytes: int = 0
    """UTF-8 bytes of the query (the BPB denominator)."""
    query_tokens: int = 0
    """Query tokens scored per evaluation."""
    query_windows: int = 0
    """Forward-pass rows per evaluation (more than one for queries past the context)."""
    query_replaced_chars: int = 0
    """Invalid UTF-8 in the query, replaced by U+FFFD."""
    unique_sequences: int = 0
    """Distinct training sequences in the multiset."""
    planned_steps: int = 0
    """N = Σ J_k: optimizer steps the multiset asks for."""
    planned_passes: int = 0
    """Σ ⌈J_k / r⌉ over sequences with tokens: forward/backward passes planned."""
    optimizer_steps: int = 0
    """Optimizer steps taken."""
    fwd_bwd_passes: int = 0
    """Forward/backward passes taken."""
    skipped_steps: int = 0
    """Steps not taken because their sequence has no tokens to train on."""
    truncated_sequences: int = 0
    """Distinct training sequences cut at ``max_length`` tokens."""
    train_replaced_chars: int = 0
    """Invalid UTF-8 in the training sequences, replaced by U+FFFD."""
    tokens_trained: int = 0
    """Tokens through forward/backward passes (BOS included)."""
    tokens_scored: int = 0
    """Tokens through evaluation forward passes (BOS and window context included;
    for a method, 0 for the before-score when the base score was shared)."""
    mean_train_loss: float = math.nan
    """Mean token cross-entropy (nats) over the passes taken; NaN if none."""
    finetune_s: float = 0.0
    """Seconds tokenizing the multiset and taking the steps."""
    evaluate_s: float = 0.0
    """Seconds scoring the query (before, unless shared, and after)."""
    reset_s: float = 0.0
    """Seconds restoring the base weights."""
    batch_size: int = 1
    """Finetuning jobs trained together with this one, itself included (1 = one at a time)."""

    @property
    def ok(self) -> bool:
        """True when the BPBs are meaningful (``ok`` or ``budget_exhausted``)."""
        return self.status in SCORED_STATUSES


OUTCOME_FIELDS = tuple(f.name for f in fields(Outcome))


class QueryScore(Protocol):
    """What the ``base`` row needs of a query's base score (``hullft.bpb.BPBResult``)."""

    @property
    def bpb(self) -> float: ...
    @property
    def n_bytes(self) -> int: ...
    @property
    def n_tokens(self) -> int: ...
    @property
    def n_windows(self) -> int: ...
    @property
    def n_input_tokens(self) -> int: ...
    @property
    def replaced_chars(self) -> int: ...
    @property
    def seconds(self) -> float: ...


def base_outcome(query: str, score: QueryScore) -> Outcome:
    """The ``base`` method's outcome: ``query`` scored with the base weights, no
    finetuning; a blank query (:func:`is_blank`) has nothing to score."""
    if is_blank(query):
        return Outcome(status="empty_query", error=BLANK_QUERY_ERROR, query_bytes=score.n_bytes)
    return Outcome(
        bpb_before=score.bpb,
        bpb_after=score.bpb,
        query_bytes=score.n_bytes,
        query_tokens=score.n_tokens,
        query_windows=score.n_windows,
        query_replaced_chars=score.replaced_chars,
        tokens_scored=score.n_input_tokens,
        evaluate_s=score.seconds,
    )


@dataclass(frozen=True, kw_only=True)
class ResultRow(Outcome):
    """One (run_id, query_id, method) row: who and what (below) plus the
    :class:`Outcome` fields. Times are seconds."""

    run_id: str
    query_id: str
    method: str
    domain: str
    k: int = 0
    n: int = 0
    support_ids: tuple[int, ...] = ()
    """Sequence ids of the unique selected training sequences, in selection order."""
    support_counts: tuple[int, ...] = ()
    """Multiplicity of each support sequence (sums to the multiset size)."""
    embed_s: float = 0.0
    search_s: float = 0.0
    select_s: float = 0.0
    worker_id: str = ""
    node_id: str = ""
    device: str = ""
    """Torch device of the model replica that produced the row (``cuda``, ``cpu``)."""
    attempt: int = 1

    @property
    def key(self) -> tuple[str, str]:
        return (self.query_id, self.method)

    def with_outcome(
        self,
        outcome: Outcome,
        *,
        method: str,
        support_ids: tuple[int, ...] = (),
        support_counts: tuple[int, ...] = (),
        select_s: float = 0.0,
    ) -> ResultRow:
        """This row's identity (run, query, worker, ...) with ``method``'s outcome:
        how an engine result becomes a row, field for field."""
        measured = {name: getattr(outcome, name) for name in OUTCOME_FIELDS}
        return dataclasses.replace(
            self,
            method=method,
            support_ids=support_ids,
            support_counts=support_counts,
            select_s=select_s,
            **measured,
        )

    def to_record(self) -> dict[str, Any]:
        rec = {name: getattr(self, name) for name in ROW_COLUMNS}
        rec["support_ids"] = list(self.support_ids)
        rec["support_counts"] = list(self.support_counts)
        return rec


_ROW_KEY = ("run_id", "query_id", "method", "domain")
ROW_COLUMNS = (*_ROW_KEY, *(f.name for f in fields(ResultRow) if f.name not in _ROW_KEY))
"""Parquet columns, in order: who and what first, then the rest as declared."""


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
        # pyarrow: see _schema
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
        # pyarrow: see _schema
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
        # pyarrow: see _schema
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
    # pyarrow: see _schema
    import pyarrow as pa

    return pa.Table.from_pylist([r.to_record() for r in rows], schema=_schema())


def _open(part: Path, read: Callable[[Path], Any]) -> Any:
    """``read(part)``, with any decoding error turned into one that names the file."""
    # pyarrow: see _schema
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
    # pyarrow: see _schema
    import pyarrow as pa
    import pyarrow.parquet as pq

    def read(p: Path) -> Any:
        # Page checksums cover the data pages; the footer (column names and types)
        # has none, so check it against the row schema: a damaged name or type is a
        # column no row schema has.
        want = {f.name: f.type for f in _schema()}
        want["extra"] = pa.string()  # hullft 0.1 parts; read_results lifts it into columns
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
    """Load every committed part of a run as a DataFrame with the :class:`ResultRow`
    columns (in that order; columns of other versions follow them).

    Parts written by hullft 0.1 kept some outcome fields in a JSON ``extra`` column;
    they are lifted into their typed columns, and the columns those parts never had
    (e.g. ``query_bytes``, ``batch_size``) are NaN there: unknown, not zero. Such a run
    resumes like any other (only ``query_id`` and ``method`` decide what is done).
    """
    # pandas, pyarrow: only reading results needs them
    import pandas as pd
    import pyarrow as pa

    tables = list(iter_result_tables(run_dir, columns))
    if not tables:
        return pd.DataFrame(columns=list(columns or ROW_COLUMNS))
    # Parts written by another hullft version may lack newer columns: fill with nulls.
    df = _upgrade(pa.concat_tables(tables, promote_options="default").to_pandas(), run_dir)
    known = [c for c in ROW_COLUMNS if c in df.columns]
    return df[known + [c for c in df.columns if c not in ROW_COLUMNS]]


def _upgrade(df: Any, run_dir: str | os.PathLike[str]) -> Any:
    """Rows of 0.1 parts in the current schema: their ``extra`` JSON becomes columns."""
    if "extra" not in df.columns:
        return df
    lifted = [json.loads(x) if isinstance(x, str) and x else {} for x in df["extra"]]
    for name in OUTCOME_FIELDS:
        values = [d.get(name, math.nan) for d in lifted]
        df[name] = df[name].where(df[name].notna(), values) if name in df.columns else values
    unknown = sorted({k for d in lifted for k in d} - set(OUTCOME_FIELDS))
    if unknown:
        log.warning("%s: dropping unknown 'extra' keys %s (hullft 0.1)", run_dir, unknown)
    return df.drop(columns=["extra"])


def _schema() -> Any:
    # pyarrow: only Parquet reading and writing need it (workers import this module for rows)
    import pyarrow as pa

    types: dict[str, Any] = {
        "support_ids": pa.list_(pa.int64()),
        "support_counts": pa.list_(pa.int32()),
        "error": pa.string(),
    }
    cols = []
    by_name = {f.name: f for f in fields(ResultRow)}
    for f in (by_name[name] for name in ROW_COLUMNS):
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


@dataclass
class RunSummary:
    """What one invocation of a run did (``actors.driver.run_pipeline`` returns it;
    the report reads it)."""

    run_id: str
    run_dir: Path
    complete: bool
    queries_total: int
    queries_processed: int
    rows_written: int
    failed_rows: int
    retried_queries: int
    workers_replaced: int
    elapsed_s: float
    loop_s: float = 0.0
    """Seconds in the streaming loop (actor start-up and model loading included)."""
    report: Path | None = None
    message: str = ""
