"""Errors of index building and loading; each says what to do."""

from __future__ import annotations


class IndexMismatchError(ValueError):
    """The index on disk was built with another embedder, dimension, format version
    or config than the one asking for it: rebuild it (``hullft index``)."""


class IndexNotFoundError(FileNotFoundError):
    """No complete index at the expected place (never built, or the build did not
    finish: a half-built index is never loadable)."""


class IndexCorruptError(ValueError):
    """The index files disagree with each other or with the manifest."""


class EmptyCorpusError(ValueError):
    """Every input record was skipped or filtered: there is nothing to index."""


class BuildLockedError(RuntimeError):
    """Another process is building the same index right now."""
