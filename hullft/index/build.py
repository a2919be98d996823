"""Building an index: read -> sequence -> embed -> store -> FAISS -> manifest.

The build is atomic and resumable:

- everything is written under ``.<name>.partial/`` next to the index directory,
  which is renamed to its final name only once complete (manifest included), so
  an interrupted build never leaves a loadable half-index;
- documents are processed in shards of ``index.shard_docs``; a shard is written
  into ``shards/NNNNNN.tmp/`` and renamed when done, with a digest of its input
  documents. A rerun re-reads the input (cheap), skips every finished shard whose
  digest still matches and redoes the rest; a partial directory left by another
  config or format version is discarded;
- sequence ids are assigned at assembly in input order, so they do not depend on
  where a build was interrupted, and the stores, the FAISS index (seeded
  training) and the manifest identity are the same as an uninterrupted build's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hullft.config import RunConfig
from hullft.data.readers import Document, InputFile, ReadStats, iter_documents, resolve_inputs
from hullft.data.sequencing import Sequencer
from hullft.data.stores import EMBEDDINGS, TextStoreWriter, merge_text_stores, write_embeddings
from hullft.embedder import Embedder
from hullft.index import faiss_index
from hullft.index.errors import BuildLockedError, EmptyCorpusError, IndexMismatchError
from hullft.index.manifest import (
    FAISS_FILE,
    FORMAT_VERSION,
    MANIFEST,
    TEXT_DIR,
    Manifest,
    config_hash,
    identity_diff,
    index_dir,
    index_identity,
    library_versions,
    read_manifest,
    rebuild_hint,
    write_manifest,
)
from hullft.models import load_tokenizer

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], np.ndarray]
"""Texts -> ``(n, d)`` float32 unit rows; called once per shard (e.g. the Ray Data path)."""

_SHARD_META = "shard.json"
_BUILD_META = "build.json"


def build_index(
    cfg: RunConfig,
    *,
    embed_fn: EmbedFn | None = None,
    progress: bool = True,
    overwrite: bool = False,
    on_shard_done: Callable[[int], None] | None = None,
) -> Path:
    """Build the index for ``cfg`` (or resume an interrupted build) and return its
    directory. A no-op returning the existing directory when a complete index with
    the same config hash is already there.

    ``embed_fn`` replaces the in-process embedder (``actors.ray_embed`` passes the
    Ray Data path); it must return unit-norm float32 rows. ``overwrite`` replaces a
    complete index of another config at an explicit ``index.dir``.
    ``on_shard_done(j)`` is called after shard ``j`` is safely on disk.
    """
    t_start = time.perf_counter()
    files = resolve_inputs(cfg.data.paths, "train")
    identity = index_identity(cfg, files)
    digest = config_hash(identity)
    out = index_dir(cfg, identity)
    if _up_to_date(out, digest, identity, overwrite):
        return out
    if cfg.index.distributed and embed_fn is None:
        raise ValueError(
            "index.distributed=true embeds with Ray Data, which the Ray-free library "
            "cannot start: run `hullft index` or call "
            "actors.ray_embed.build_index_distributed(cfg)"
        )
    use_gpu = faiss_index.resolve_use_gpu(cfg.index.use_gpu)  # fail before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(out):
        if _up_to_date(out, digest, identity, overwrite):  # finished while we waited
            return out
        work = _workdir(out, digest, cfg.index.shard_docs)
        try:
            shards, stats, t_ingest = _ingest(cfg, files, work, embed_fn, progress, on_shard_done)
            stage = _assemble(cfg, identity, digest, work, shards, stats, use_gpu, progress)
        except BaseException:
            _drop_if_nothing_to_resume(work)
            raise
        build = stage["build"]
        build["seconds"]["ingest_embed"] = round(t_ingest, 3)
        build["seconds"]["total"] = round(time.perf_counter() - t_start, 3)
        build["embed"] = "custom" if embed_fn is not None else "in-process"
        manifest = Manifest(**stage)
        write_manifest(work / "out", manifest)
        _publish(work / "out", out)
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "index ready in %s: %d sequences from %d documents (%s), %.1f s",
        out,
        manifest.num_sequences,
        manifest.num_documents,
        cfg.index.kind,
        build["seconds"]["total"],
    )
    return out


def _up_to_date(out: Path, digest: str, identity: dict[str, Any], overwrite: bool) -> bool:
    """True when ``out`` already holds this index; raises when it holds another."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(
            f"index.dir {out} is an existing file, not a directory; it is left as it "
            "is. Set index.dir to a new or empty directory (or to an index directory)"
        )
    if (out / MANIFEST).is_file():
        try:
            manifest = read_manifest(out)
        except (IndexMismatchError, ValueError):
            manifest = None  # another format version: rebuild over it only if asked
        if manifest is not None and manifest.config_hash == digest:
            log.info("index %s is up to date (config hash %s)", out, digest)
            _remove_stale_workdir(out)
            return True
        if not overwrite:
            diff = identity_diff(manifest.identity, identity) if manifest else ["format version"]
            raise IndexMismatchError(
                f"{out} holds an index of a different config or of changed inputs "
                f"({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}). " + rebuild_hint(out)
            )
    elif out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f"index.dir {out} exists and is not a hullft index; choose an empty or new directory"
        )
    return False


def _drop_if_nothing_to_resume(work: Path) -> None:
    """After a failed build, keep the work directory only if a finished shard in it
    would spare a rerun some work."""
    finished = [p for p in (work / "shards").glob("[0-9]*") if not p.name.endswith(".tmp")]
    if finished:
        log.warning(
            "build failed; %d finished shard(s) kept in %s so that a rerun resumes "
            "(delete that directory to discard them)",
            len(finished),
            work,
        )
    else:
        shutil.rmtree(work, ignore_errors=True)


def _remove_stale_workdir(out: Path) -> None:
    work = _workdir_path(out)
    if work.exists():
        with contextlib.suppress(BuildLockedError), _build_lock(out):
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# Work directory, lock, publication.


def _workdir_path(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """An exclusive advisory lock per index; the OS drops it if the process dies.

    The lock file is removed when the build ends. Another process may have opened
    the file just before it was unlinked and lock the orphaned inode, so a lock
    only counts once the path still names the inode that was locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no concurrent-build protection
        yield
        return
    path = out.parent / f".{out.name}.lock"
    while True:
        fh = open(path, "a+")  # noqa: SIM115 - closed below, after the build
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.close()
            raise BuildLockedError(
                f"another process is building {out} right now (lock {path}); "
                "wait for it to finish, then rerun"
            ) from exc
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fh.fileno()).st_ino:
            break
        fh.close()  # we locked a lock file its owner had just removed: retry
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()


def _workdir(out: Path, digest: str, shard_docs: int) -> Path:
    """The partial-build directory, reused only if it is for the same build."""
    work = _workdir_path(out)
    want = {"format_version": FORMAT_VERSION, "config_hash": digest, "shard_docs": shard_docs}
    meta = work / _BUILD_META
    if work.exists():
        try:
            have = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            have = None
        if have == want:
            done = sorted(p.name for p in (work / "shards").glob("[0-9]*") if p.is_dir())
            done = [n for n in done if not n.endswith(".tmp")]
            log.info("resuming the build in %s: %d shard(s) already complete", work, len(done))
            shutil.rmtree(work / "out", ignore_errors=True)
            return work
        log.info("discarding the partial build in %s (other config or shard size)", work)
        shutil.rmtree(work)
    (work / "shards").mkdir(parents=True)
    _write_json(meta, want)
    return work


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem syncs directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(stage: Path, out: Path) -> None:
    """Atomically move the finished index into place (replacing an old one)."""
    _fsync_tree(stage)
    if out.exists():
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, trash)
        os.rename(stage, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(stage, out)
    _fsync_dir(out.parent)


# ---------------------------------------------------------------------------
# Ingest: documents -> shards of sequences and embeddings.


def _batched(docs: Iterable[Document], n: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _shard_digest(docs: list[Document]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for d in docs:
        for part in (d.doc_id.encode(), d.domain.encode(), d.text.encode("utf-8")):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    return h.hexdigest()


def _read_shard_meta(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((path / _SHARD_META).read_text()))
    except (OSError, json.JSONDecodeError):
        return None


class _Encoder:
    """The embedding step with a progress bar; loads the in-process embedder lazily."""

    def __init__(self, cfg: RunConfig, embed_fn: EmbedFn | None, bar: Any):
        self.cfg = cfg
        self.embed_fn = embed_fn
        self.bar = bar
        self.dim: int | None = None
        self._step = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        fn = self.embed_fn
        if fn is None:
            self.embed_fn = fn = Embedder.from_config(self.cfg.embedder).encode
            # Several encoder batches per call: the bar moves, the encoder stays busy.
            self._step = 8 * self.cfg.embedder.batch_size
        step = self._step or max(1, len(texts))
        parts = []
        for a in range(0, len(texts), step):
            part = _check_embeddings(fn(texts[a : a + step]), len(texts[a : a + step]), self.dim)
            self.dim = part.shape[1]
            parts.append(part)
            self.bar.update(len(part))
        if not parts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return np.concatenate(parts)


def _check_embeddings(emb: Any, n: int, dim: int | None) -> np.ndarray:
    arr = np.asarray(emb, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n or (dim is not None and arr.shape[1] != dim):
        want = f"({n}, {dim if dim is not None else 'd'})"
        raise ValueError(f"the embedder returned shape {arr.shape} for {n} texts, expected {want}")
    if not np.isfinite(arr).all():
        raise ValueError("the embedder returned non-finite values")
    norms = np.linalg.norm(arr, axis=1)
    if n and np.abs(norms - 1).max() > 1e-3:
        raise ValueError(
            f"the embedder must return L2-normalised rows (norms range "
            f"{norms.min():.4f}..{norms.max():.4f})"
        )
    return arr


def _ingest(
    cfg: RunConfig,
    files: list[InputFile],
    work: Path,
    embed_fn: EmbedFn | None,
    progress: bool,
    on_shard_done: Callable[[int], None] | None,
) -> tuple[list[Path], ReadStats, float]:
    t0 = time.perf_counter()
    stats = ReadStats()
    docs = iter_documents(
        files,
        stats=stats,
        domains=cfg.data.domains,
        max_docs_per_domain=cfg.data.max_docs_per_domain,
        max_doc_bytes=cfg.data.max_doc_bytes,
    )
    shards_dir = work / "shards"
    sequencer: Sequencer | None = None
    shards: list[Path] = []
    reused = 0
    bar = tqdm(desc="embedding", unit="seq", disable=not progress, dynamic_ncols=True)
    encoder = _Encoder(cfg, embed_fn, bar)
    try:
        for j, batch in enumerate(_batched(docs, cfg.index.shard_docs)):
            digest = _shard_digest(batch)
            final = shards_dir / f"{j:06d}"
            meta = _read_shard_meta(final)
            if meta is not None and meta.get("digest") == digest:
                shards.append(final)
                reused += 1
                bar.update(meta["sequences"])
                if encoder.dim is None:
                    encoder.dim = meta["dim"]
                continue
            if final.exists():
                log.info("shard %d changed since the interrupted build; redoing it", j)
                shutil.rmtree(final)
            if sequencer is None:
                sequencer = Sequencer(
                    load_tokenizer(cfg.model), cfg.data.sequence_length, cfg.data.split
                )
            _write_shard(j, batch, digest, shards_dir, sequencer, encoder, cfg)
            shards.append(final)
            bar.set_postfix(shard=j, docs=stats.total_documents)
            if on_shard_done is not None:
                on_shard_done(j)
    finally:
        bar.close()
    # Shards numbered past the end belong to an input that has since shrunk.
    for extra in shards_dir.iterdir():
        if extra not in shards:
            shutil.rmtree(extra, ignore_errors=True)
    if reused:
        log.info("reused %d finished shard(s) of an interrupted build", reused)
    log.info("read %d file(s): %s", stats.files, stats.summary())
    absent = sorted(set(cfg.data.domains) - set(stats.seen_domains))
    if absent and stats.total_documents:
        log.warning(
            "data.domains %s do not occur in the inputs (which have %s)",
            absent,
            sorted(stats.seen_domains),
        )
    if stats.total_documents == 0:
        raise EmptyCorpusError(_empty_message(cfg, stats))
    return shards, stats, time.perf_counter() - t0


def _empty_message(cfg: RunConfig, stats: ReadStats) -> str:
    msg = f"no usable document in the {stats.files} input file(s): {stats.summary()}"
    if stats.total_skipped:
        first = next(iter(v[0] for _, v in sorted(stats.examples.items()) if v), "")
        msg += f"; e.g. {first}"
    if cfg.data.domains and stats.seen_domains:
        msg += (
            f". data.domains={list(cfg.data.domains)} matched nothing; the inputs have "
            f"{sorted(stats.seen_domains)}"
        )
    return msg + ". Fix the inputs or data.paths / data.domains and rerun"


def _write_shard(
    j: int,
    docs: list[Document],
    digest: str,
    shards_dir: Path,
    sequencer: Sequencer,
    encoder: _Encoder,
    cfg: RunConfig,
) -> None:
    t0 = time.perf_counter()
    tmp = shards_dir / f"{j:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    writer = TextStoreWriter(tmp / TEXT_DIR)
    texts: list[str] = []
    per_domain: dict[str, Counter[str]] = {}
    truncated_docs = truncated_bytes = 0
    for doc in docs:
        data = doc.text.encode("utf-8")
        spans = sequencer.split(doc.text)
        writer.add_document(doc.doc_id, doc.domain, data, spans)
        texts.extend(data[s.start : s.end].decode("utf-8") for s in spans)
        c = per_domain.setdefault(doc.domain, Counter())
        c["documents"] += 1
        c["sequences"] += len(spans)
        c["tokens"] += sum(s.n_tokens for s in spans)
        c["bytes"] += sum(s.end - s.start for s in spans)
        kept = sum(s.end - s.start for s in spans)
        if kept < len(data):
            truncated_docs += 1
            truncated_bytes += len(data) - kept
    writer.close()
    t1 = time.perf_counter()
    emb = encoder(texts)
    t2 = time.perf_counter()
    with open(tmp / EMBEDDINGS, "wb") as fh:
        np.save(fh, emb.astype(cfg.index.embedding_dtype))
    meta = {
        "shard": j,
        "digest": digest,
        "documents": len(docs),
        "sequences": len(texts),
        "dim": int(emb.shape[1]),
        "domains": {d: dict(c) for d, c in sorted(per_domain.items())},
        "truncated_documents": truncated_docs,
        "truncated_bytes": truncated_bytes,
        "seconds": {"sequence": round(t1 - t0, 3), "embed": round(t2 - t1, 3)},
    }
    _write_json(tmp / _SHARD_META, meta)
    _fsync_tree(tmp)
    os.rename(tmp, shards_dir / f"{j:06d}")
    _fsync_dir(shards_dir)
    rate = len(texts) / max(t2 - t1, 1e-9)
    log.info(
        "shard %d: %d documents -> %d sequences (sequenced in %.1f s, embedded in %.1f s, "
        "%.1f seq/s)",
        j,
        len(docs),
        len(texts),
        t1 - t0,
        t2 - t1,
        rate,
    )


# ---------------------------------------------------------------------------
# Assembly: shards -> final stores, FAISS index and manifest (in work/out).


def _assemble(
    cfg: RunConfig,
    identity: dict[str, Any],
    digest: str,
    work: Path,
    shards: list[Path],
    stats: ReadStats,
    use_gpu: bool,
    progress: bool,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    stage = work / "out"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    metas = [_read_shard_meta(s) or {} for s in shards]
    m = sum(meta["sequences"] for meta in metas)
    dim = int(metas[0]["dim"])
    merge_text_stores([s / TEXT_DIR for s in shards], stage / TEXT_DIR)
    write_embeddings(
        stage / EMBEDDINGS,
        (np.load(s / EMBEDDINGS, mmap_mode="r") for s in shards),
        (m, dim),
        cfg.index.embedding_dtype,
    )
    t1 = time.perf_counter()

    vectors = np.load(stage / EMBEDDINGS, mmap_mode="r")
    spec = faiss_index.fit_spec(cfg.index, m, dim)
    with tqdm(total=m, desc=f"faiss {spec.factory()}", unit="vec", disable=not progress) as bar:
        index = faiss_index.build(spec, vectors, use_gpu=use_gpu, on_added=bar.update)
    faiss_index._faiss().write_index(index, os.fspath(stage / FAISS_FILE))
    t2 = time.perf_counter()
    del vectors

    domains: dict[str, Counter[str]] = {}
    for meta in metas:
        for name, counts in meta["domains"].items():
            domains.setdefault(name, Counter()).update(counts)
    index_bytes = (stage / FAISS_FILE).stat().st_size
    embedder: dict[str, Any] = {**identity["embedder"], "dim": dim}
    return {
        "format_version": FORMAT_VERSION,
        "config_hash": digest,
        "identity": identity,
        "embedder": embedder,
        "tokenizer": cfg.model.name,
        "dim": dim,
        "embedding_dtype": cfg.index.embedding_dtype,
        "num_documents": sum(meta["documents"] for meta in metas),
        "num_sequences": m,
        "num_tokens": sum(c["tokens"] for c in domains.values()),
        "domains": {name: dict(c) for name, c in sorted(domains.items())},
        "index": {
            **spec.to_dict(),
            "ntotal": int(index.ntotal),
            "file_bytes": index_bytes,
            "bytes_per_vector": round(index_bytes / m, 2),
            "analytic_bytes_per_vector": spec.bytes_per_vector,
            "embedding_bytes_per_vector": int(np.dtype(cfg.index.embedding_dtype).itemsize * dim),
            "search": {
                "nprobe": cfg.index.nprobe,
                "ef_search": cfg.index.ef_search,
                "refine_factor": cfg.index.refine_factor if spec.kind == "ivf_pq" else 1,
            },
        },
        "input": {
            **stats.to_dict(),
            "documents_kept": stats.total_documents,
            "truncated_documents": sum(meta["truncated_documents"] for meta in metas),
            "truncated_bytes": sum(meta["truncated_bytes"] for meta in metas),
            "sequencing": {"mode": cfg.data.split, "max_tokens": cfg.data.sequence_length},
        },
        "versions": library_versions(),
        "build": {
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "faiss_on_gpu": use_gpu and spec.kind not in ("flat", "hnsw"),
            "shards": len(shards),
            "shard_docs": cfg.index.shard_docs,
            "seconds": {
                "embed": round(sum(meta["seconds"]["embed"] for meta in metas), 3),
                "sequence": round(sum(meta["seconds"]["sequence"] for meta in metas), 3),
                "stores": round(t1 - t0, 3),
                "faiss": round(t2 - t1, 3),
            },
        },
    }
