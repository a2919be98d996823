"""Building minipile: seeded selection, the train/test split, serialising, compressing.

`build(sources, out_dir)` writes ``train.jsonl.zst``, ``test.jsonl.zst`` and
``DATACARD.md``; with the pinned package versions the bytes equal the committed ones.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard

from hullft.data.minipile import SPLITS, Split
from tools.minipile.datacard import datacard
from tools.minipile.documents import (
    Document,
    clean_text,
    nbytes,
    pack_segments,
    serialize,
)
from tools.minipile.domains import DOMAINS, Domain
from tools.minipile.formats import groff_version
from tools.minipile.params import (
    DEBIAN_PACKAGES,
    DOMAIN_TARGET_BYTES,
    GROFF_VERSION,
    MIN_DOC_BYTES,
    MIN_TEST_DOCS,
    SEED,
    SOURCE_CAP_BYTES,
    TEST_FRACTION,
    ZSTD_LEVEL,
)
from tools.minipile.sources import SourceTree

logger = logging.getLogger(__name__)


# ---- Seeded selection and train/test split -------------------------------------------


def hash_key(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def split_key(doc_id: str, seed: int = SEED) -> str:
    """The key that orders a domain's documents for the train/test split."""
    return hash_key(seed, "split", doc_id)


def num_test_docs(num_docs: int) -> int:
    """How many of a domain's ``num_docs`` documents go to the test split."""
    return min(num_docs, max(MIN_TEST_DOCS, math.ceil(TEST_FRACTION * num_docs)))


def split_test_ids(doc_ids: Iterable[str], seed: int = SEED) -> set[str]:
    """The split rule, for one domain: the documents with the smallest `split_key`."""
    ordered = sorted(doc_ids, key=lambda d: (split_key(d, seed), d))
    return set(ordered[: num_test_docs(len(ordered))])


# ---- Documents, splits and files -----------------------------------------------------


def domain_documents(domain: Domain, tree: SourceTree, *, progress: bool = True) -> list[Document]:
    """Select sources in seeded order and cut them into documents until the target size."""
    from tqdm import tqdm

    items = sorted(
        domain.items(tree),
        key=lambda it: (hash_key(SEED, "select", domain.slug, it.name), it.name),
    )
    docs: list[Document] = []
    total = 0
    bar = tqdm(
        total=DOMAIN_TARGET_BYTES,
        desc=domain.pile_set_name,
        unit="B",
        unit_scale=True,
        disable=None if progress else True,
        leave=False,
    )
    with bar:
        for item in items:
            if total >= DOMAIN_TARGET_BYTES:
                break
            parts = [
                clean_text(part, max_blank_lines=domain.max_blank_lines)
                for part in pack_segments(item.load(), domain.chunk_bytes)
            ]
            taken = 0
            for k, text in enumerate(p for p in parts if nbytes(p) >= MIN_DOC_BYTES):
                if taken >= SOURCE_CAP_BYTES:
                    break
                size = nbytes(text)
                docs.append(
                    Document(
                        pile_set_name=domain.pile_set_name,
                        doc_id=f"{domain.slug}/{item.name}#{k:03d}",
                        text=text,
                        source=item.source,
                        license=item.license,
                    )
                )
                taken += size
            total += taken
            bar.update(min(taken, max(0, DOMAIN_TARGET_BYTES - bar.n)))
    return docs


def build_documents(tree: SourceTree, *, progress: bool = True) -> list[Document]:
    docs = [d for domain in DOMAINS for d in domain_documents(domain, tree, progress=progress)]
    return sorted(docs, key=lambda d: (d.pile_set_name, d.doc_id))


def split_documents(docs: Sequence[Document]) -> dict[Split, list[Document]]:
    test_ids: set[str] = set()
    for name in sorted({d.pile_set_name for d in docs}):
        test_ids |= split_test_ids(d.doc_id for d in docs if d.pile_set_name == name)
    return {
        "train": [d for d in docs if d.doc_id not in test_ids],
        "test": [d for d in docs if d.doc_id in test_ids],
    }


def jsonl_bytes(docs: Iterable[Document]) -> bytes:
    return "".join(serialize(d) + "\n" for d in docs).encode("utf-8")


def compress(data: bytes) -> bytes:
    """One zstd frame at a fixed level, single-threaded, with content size and checksum."""
    compressor = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True, write_content_size=True, threads=0
    )
    return compressor.compress(data)


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    files: dict[Split, Path]
    docs: dict[Split, list[Document]]


def build(sources: Path, out_dir: Path, *, progress: bool = True) -> BuildResult:
    """Build the corpus from ``sources`` into ``out_dir`` (jsonl.zst files and DATACARD.md)."""
    tree = SourceTree.open(sources)
    for domain in DOMAINS:
        for package in domain.packages:
            tree.package(package)
            if tree.versions[package] != DEBIAN_PACKAGES[package]:
                logger.warning(
                    "%s is %s, not the pinned %s: the corpus will differ from the committed one",
                    package,
                    tree.versions[package],
                    DEBIAN_PACKAGES[package],
                )
    groff = groff_version()
    if groff != GROFF_VERSION:
        logger.warning("%s is not %s: man pages may render differently", groff, GROFF_VERSION)

    docs = build_documents(tree, progress=progress)
    splits = split_documents(docs)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[Split, Path] = {}
    raw: dict[Split, bytes] = {}
    for split in SPLITS:
        raw[split] = jsonl_bytes(splits[split])
        files[split] = out_dir / f"{split}.jsonl.zst"
        files[split].write_bytes(compress(raw[split]))
    card = datacard(splits, raw, files, tree.versions, groff)
    (out_dir / "DATACARD.md").write_text(card, encoding="utf-8")
    return BuildResult(out_dir=out_dir, files=files, docs=splits)
