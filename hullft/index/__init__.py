"""The retrieval index: build it from a corpus, load it, search it.

``build_index(cfg) -> Path`` and ``load_index(path_or_cfg) -> RetrievalIndex`` are
the public API; faiss is imported only when an index is built or searched.
"""

from hullft.index.build import EmbedFn, build_index
from hullft.index.errors import (
    BuildLockedError,
    EmptyCorpusError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
)
from hullft.index.manifest import (
    FORMAT_VERSION,
    Manifest,
    config_hash,
    index_dir,
    index_identity,
    read_manifest,
)
from hullft.index.recall import recall_at_k
from hullft.index.search import RetrievalIndex, load_index, search_settings

__all__ = [
    "FORMAT_VERSION",
    "BuildLockedError",
    "EmbedFn",
    "EmptyCorpusError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "Manifest",
    "RetrievalIndex",
    "build_index",
    "config_hash",
    "index_dir",
    "index_identity",
    "load_index",
    "read_manifest",
    "recall_at_k",
    "search_settings",
]
