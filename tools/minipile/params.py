"""minipile's fixed build parameters. Changing any of them changes the committed bytes."""

from __future__ import annotations

SEED = 2026
"""Seeds document selection, the train/test split and the math generator."""
DOMAIN_TARGET_BYTES = 1_000_000
"""A domain stops taking sources once its documents reach this many UTF-8 bytes."""
MIN_DOC_BYTES = 300
"""Documents shorter than this (after cleaning) are merged into a neighbour or dropped."""
MAX_DOC_BYTES = 30_000
"""No document is longer than this; longer sections are split at paragraph/line breaks."""
SOURCE_CAP_BYTES = 64_000
"""At most this much text is taken from one source file (its leading parts), for variety."""
TEST_FRACTION = 0.10
MIN_TEST_DOCS = 30
"""Per domain, ``max(MIN_TEST_DOCS, ceil(TEST_FRACTION * n))`` documents go to test."""
ZSTD_LEVEL = 19

DEBIAN_PACKAGES: dict[str, str] = {
    "base-files": "12.4+deb12u15",
    "bible-kjv": "4.38",
    "bible-kjv-text": "4.38",
    "dict-devil": "1.0-13.1",
    "libpython3.11-stdlib": "3.11.2-6+deb12u9",
    "manpages": "6.03-2",
    "python3.11-doc": "3.11.2-6+deb12u9",
    "sqlite3-doc": "3.40.1-2+deb12u2",
    "wordnet-base": "1:3.0-37",
}
"""Debian bookworm packages the corpus is built from, pinned to exact versions."""
GROFF_VERSION = "GNU groff version 1.22.4"
"""The man pages are rendered with this groff (Debian bookworm's groff-base 1.22.4-10)."""
