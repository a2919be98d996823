"""minipile: the small multi-domain corpus embedded in hullft.

The Pile is too large to ship, so hullft embeds a ~8 MB stand-in in The Pile's
record format. Each line of ``hullft/assets/minipile/{train,test}.jsonl.zst`` is::

    {"meta": {"doc_id": ..., "license": ..., "pile_set_name": ..., "source": ...},
     "text": ...}

This module only reads the committed files (`minipile_path`, `iter_minipile`).
They were built deterministically from freely licensed Debian bookworm packages
plus a seeded DM-Mathematics-style generator by the builder in ``tools/minipile/``
of the hullft repository (a developer tool, not installed with the package); from
the checkout root::

    python -m tools.minipile fetch --sources /tmp/minipile-src
    python -m tools.minipile build --sources /tmp/minipile-src --out hullft/assets/minipile

Where the pinned package versions are present the build reproduces the committed
bytes exactly (see ``DATACARD.md`` in the asset folder for sources, licences,
sizes and caveats).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import zstandard

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")


def minipile_dir() -> Path:
    """The folder holding the committed corpus (``hullft/assets/minipile``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "minipile"


def minipile_path(split: Split) -> Path:
    """Path of the committed ``{split}.jsonl.zst``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return minipile_dir() / f"{split}.jsonl.zst"


def iter_minipile(split: Split) -> Iterator[dict]:
    """Stream the records of one split, decoding zstd on the fly."""
    path = minipile_path(split)
    with (
        path.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as reader,
        io.TextIOWrapper(reader, encoding="utf-8", newline="\n") as text,
    ):
        for line in text:
            if line.strip():
                yield json.loads(line)
