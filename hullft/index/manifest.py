"""The index manifest: what an index holds and what it was built from.

``identity`` is every setting that changes the bytes of the index (inputs,
sequencing, tokenizer, embedder, index kind and its build parameters) and
``config_hash`` its digest: the default index directory is named after it, a
rebuild with the same identity is a no-op, and loading with a config whose
identity differs is refused with the list of differences. Search-time settings
(``nprobe``, ``ef_search``, GPU use) and build mechanics (shard size, Ray or not)
are deliberately not part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hullft.config import HASHING_EMBEDDER, EmbedderConfig, IndexConfig, RunConfig
from hullft.data.fingerprint import DIGEST_NAME, file_digests
from hullft.data.readers import InputFile, resolve_inputs
from hullft.index.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from hullft.paths import cache_root, expand

FORMAT_VERSION = 1
"""Bump on any change of the on-disk layout; older indexes are then refused."""
MANIFEST = "manifest.json"
FAISS_FILE = "index.faiss"
TEXT_DIR = "text"

_INDEX_PARAMS = {
    "flat": (),
    "ivf_flat": ("nlist",),
    "ivf_pq": ("nlist", "pq_m", "pq_bits", "opq"),
    "hnsw": ("hnsw_m", "ef_construction"),
}


def embedder_identity(cfg: EmbedderConfig) -> dict[str, Any]:
    """The embedder settings that change its vectors (not batch size or device)."""
    if cfg.name == HASHING_EMBEDDER:
        return {"name": cfg.name, "dim": cfg.dim}
    return {"name": cfg.name, "max_seq_length": cfg.max_seq_length}


def index_params(cfg: IndexConfig) -> dict[str, Any]:
    """The build parameters of ``cfg.kind`` (others do not affect the index)."""
    return {"kind": cfg.kind, **{k: getattr(cfg, k) for k in _INDEX_PARAMS[cfg.kind]}}


def index_identity(cfg: RunConfig, files: list[InputFile] | None = None) -> dict[str, Any]:
    """Everything that determines the bytes of the index built for ``cfg``."""
    if files is None:
        files = resolve_inputs(cfg.data.paths, "train")
    d = cfg.data
    # By content, not only name and size: an in-place edit or another file of the
    # same name and size must not be served from the old index.
    digests = file_digests([f.path for f in files])
    return {
        "format_version": FORMAT_VERSION,
        "inputs": [
            {"source": f.source, "bytes": f.size, DIGEST_NAME: digest}
            for f, digest in zip(files, digests, strict=True)
        ],
        "data": {
            "domains": sorted(d.domains),
            "max_docs_per_domain": d.max_docs_per_domain,
            "sequence_length": d.sequence_length,
            "split": d.split,
            "max_doc_bytes": d.max_doc_bytes,
        },
        "tokenizer": cfg.model.name,
        "embedder": embedder_identity(cfg.embedder),
        "index": {**index_params(cfg.index), "embedding_dtype": cfg.index.embedding_dtype},
    }


def config_hash(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def index_dir(cfg: RunConfig, identity: dict[str, Any] | None = None) -> Path:
    """``cfg.index.dir``, or ``<cache>/index/<config hash>``."""
    if cfg.index.dir:
        return expand(cfg.index.dir)
    return cache_root() / "index" / config_hash(identity or index_identity(cfg))


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in (
        "hullft",
        "faiss-cpu",
        "faiss-gpu-cu12",
        "numpy",
        "tokenizers",
        "transformers",
        "sentence-transformers",
        "torch",
        "zstandard",
        "pyarrow",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class Manifest:
    """Contents of ``manifest.json``. ``domains`` maps each domain to its
    ``documents``, ``sequences``, ``tokens`` and ``bytes``; ``input`` holds the read
    accounting (``skipped`` / ``filtered`` per reason, first examples,
    truncation); ``build`` holds volatile facts (times, throughput, host)."""

    format_version: int
    config_hash: str
    identity: dict[str, Any]
    embedder: dict[str, Any]
    tokenizer: str
    dim: int
    embedding_dtype: str
    num_documents: int
    num_sequences: int
    num_tokens: int
    domains: dict[str, dict[str, int]]
    index: dict[str, Any]
    input: dict[str, Any]
    versions: dict[str, str]
    build: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data)
        if missing:
            raise IndexCorruptError(f"manifest lacks {sorted(missing)}")
        return cls(**{k: data[k] for k in names})


def write_manifest(directory: Path, manifest: Manifest) -> None:
    tmp = directory / (MANIFEST + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(manifest.to_dict(), fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / MANIFEST)


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and version-check the manifest of a complete index."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise IndexNotFoundError(
            f"no complete index at {directory} ({MANIFEST} missing); build it with "
            "`hullft index` (an interrupted build leaves nothing loadable there)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(f"{path} is unreadable: {exc}; rebuild the index") from exc
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index at {directory} has format version {version}, this hullft reads "
            f"version {FORMAT_VERSION}; rebuild it with `hullft index`"
        )
    return Manifest.from_dict(data)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def inputs_diff(built: Any, wanted: Any) -> list[str]:
    """Which input files were added, removed or changed (by size or content)."""
    have = {e.get("source"): e for e in built or [] if isinstance(e, dict)}
    want = {e.get("source"): e for e in wanted or [] if isinstance(e, dict)}
    out = []
    for source in sorted(set(have) | set(want), key=str):
        a, b = have.get(source), want.get(source)
        if a is None:
            out.append(f"input {source} is not in the index")
        elif b is None:
            out.append(f"input {source} is in the index but no longer an input")
        elif DIGEST_NAME not in a:
            out.append(f"input {source}: the index predates content digests")
        elif a != b:
            what = "size" if a.get("bytes") != b.get("bytes") else "content"
            out.append(f"input {source} changed since the index was built ({what} differs)")
    return out


def identity_diff(built: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``key: built X, wanted Y`` for every leaf that differs (lists compared whole;
    input files by name)."""
    out = inputs_diff(built.get("inputs"), wanted.get("inputs"))
    a, b = _flatten(built), _flatten(wanted)
    a.pop("inputs", None)
    b.pop("inputs", None)
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            out.append(
                f"{key}: index has {a.get(key, '<absent>')!r}, config wants {b.get(key, '<absent>')!r}"
            )
    return out


def check_identity(manifest: Manifest, identity: dict[str, Any], where: Path) -> None:
    """Refuse an index whose identity differs from the config's."""
    if manifest.config_hash == config_hash(identity):
        return
    diff = identity_diff(manifest.identity, identity)
    shown = "; ".join(diff[:6]) + ("; ..." if len(diff) > 6 else "")
    raise IndexMismatchError(
        f"the index at {where} was built from a different config or from inputs that "
        f"have changed since ({shown}); it is not used. " + rebuild_hint(where)
    )


def rebuild_hint(where: Path) -> str:
    """What a user does about an index that does not match the config."""
    return (
        f"To rebuild it for this config, remove it (`rm -r {where}`) and run "
        "`hullft index` with the same overrides; or point index.dir elsewhere. "
        "(From Python: build_index(cfg, overwrite=True).)"
    )


def check_embedder(manifest: Manifest, cfg: EmbedderConfig, where: Path) -> None:
    """Refuse an index whose vectors come from another embedder or dimension."""
    built = manifest.identity.get("embedder", {})
    wanted = embedder_identity(cfg)
    if built != wanted:
        diff = identity_diff(built, wanted)
        raise IndexMismatchError(
            f"the index at {where} was built with embedder {built}, but the config uses "
            f"{wanted} ({'; '.join(diff)}): query vectors would not be comparable. "
            "Rebuild the index with `hullft index` for this embedder"
        )
