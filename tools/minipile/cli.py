"""``python -m tools.minipile fetch|build``: fetch sources, build the corpus."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hullft.data.minipile import SPLITS, minipile_dir
from tools.minipile.build import build
from tools.minipile.documents import nbytes
from tools.minipile.sources import (
    MissingSourceError,
    default_sources_dir,
    fetch_sources,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.minipile",
        description="Fetch sources for / build minipile.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download and unpack the pinned Debian packages")
    fetch.add_argument("--sources", type=Path, default=default_sources_dir())
    fetch.add_argument(
        "--allow-other-versions",
        action="store_true",
        help="fall back to apt's candidate version when a pin is unavailable",
    )
    build_cmd = sub.add_parser("build", help="build train/test .jsonl.zst and DATACARD.md")
    build_cmd.add_argument("--sources", type=Path, default=default_sources_dir())
    build_cmd.add_argument("--out", type=Path, default=minipile_dir())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "fetch":
            manifest = fetch_sources(args.sources, allow_other_versions=args.allow_other_versions)
            for name, info in sorted(manifest.items()):
                print(f"{name:24s} {info['version']}")
            return 0
        result = build(args.sources, args.out)
    except MissingSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split in SPLITS:
        docs = result.docs[split]
        size = sum(nbytes(d.text) for d in docs)
        print(
            f"{split}: {len(docs)} docs, {size:,} text bytes -> "
            f"{result.files[split]} ({result.files[split].stat().st_size:,} bytes)"
        )
    return 0
