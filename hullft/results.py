"""Result rows and the exactly-once Parquet sink (DESIGN.md §5).

One row per (run_id, query_id, method). Only the driver writes. All rows of one
query are written together as one part file: written under a temporary name,
fsynced, then renamed into place, so a part is either complete or absent. On a
rerun with the same run_id the sink reports which (query_id, method) pairs are
done and the driver skips them; a pair is never written twice.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
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


class ResultSink:
    """Parquet part files under ``run_dir``, keyed by (query_id, method)."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = Path(run_dir)
        self.parts_dir = self.run_dir / "results"
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._done: set[tuple[str, str]] = set()
        self._n_parts = 0
        self._clean_temporaries()
        for part in self._part_files():
            keys = self._read_keys(part)
            overlap = self._done & keys
            if overlap:
                raise DuplicateResultError(
                    f"{part} repeats results already present in another part "
                    f"(e.g. {sorted(overlap)[0]}); the run directory was edited by hand"
                )
            self._done |= keys
            self._n_parts += 1

    def _part_files(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def _clean_temporaries(self) -> None:
        # Left by a driver killed mid-write; never counted as results.
        for tmp in self.parts_dir.glob(".tmp-*"):
            log.warning("removing incomplete part %s left by an interrupted run", tmp.name)
            tmp.unlink()

    @staticmethod
    def _read_keys(part: Path) -> set[tuple[str, str]]:
        import pyarrow.parquet as pq

        table = pq.read_table(part, columns=["query_id", "method"])
        return set(
            zip(
                table.column("query_id").to_pylist(),
                table.column("method").to_pylist(),
                strict=True,
            )
        )

    @property
    def done(self) -> frozenset[tuple[str, str]]:
        """(query_id, method) pairs already written."""
        return frozenset(self._done)

    def write(self, rows: Sequence[ResultRow]) -> Path | None:
        """Atomically write ``rows`` as one part file. Refuses any duplicate key."""
        if not rows:
            return None
        keys = [r.key for r in rows]
        if len(set(keys)) != len(keys):
            raise DuplicateResultError(f"duplicate keys within one write: {keys}")
        again = self._done.intersection(keys)
        if again:
            raise DuplicateResultError(f"results already written for {sorted(again)}")

        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([r.to_record() for r in rows], schema=_schema())
        name = f"part-{self._n_parts:06d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.parts_dir / f".tmp-{name}"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        final = self.parts_dir / name
        os.replace(tmp, final)
        _fsync_dir(self.parts_dir)
        self._done.update(keys)
        self._n_parts += 1
        return final


def read_results(run_dir: str | os.PathLike[str]) -> Any:
    """Load every committed part of a run as a DataFrame."""
    import pandas as pd
    import pyarrow.parquet as pq

    parts = sorted((Path(run_dir) / "results").glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    frames = [pq.read_table(p).to_pandas() for p in parts]
    return pd.concat(frames, ignore_index=True)


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
