"""Query documents for a result-storage scale run (10,000+ queries of experiment=smoke).

The embedded minipile has 2,600 documents, and a query is one document, so this
cuts every document of both splits into pieces of ``--piece-bytes`` (at character
boundaries; a short tail is dropped) and writes them as a Pile-format jsonl with
unique doc ids — about 16,000 queries at 512 bytes. ``benchmarks/scale_run.sh``
uses it for the 10,000-query scale check of docs/operating.md (a run, a driver
SIGKILL midway, the rerun; wall time, peak RSS, result files, exactly-once).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from hullft.data.minipile import iter_minipile


def pieces(text: str, size: int, min_size: int) -> list[str]:
    """``text`` cut into pieces of at most ``size`` UTF-8 bytes, whole characters."""
    out: list[str] = []
    cur: list[str] = []
    n = 0
    for ch in text:
        b = len(ch.encode("utf-8"))
        if n + b > size:
            out.append("".join(cur))
            cur, n = [], 0
        cur.append(ch)
        n += b
    if n >= min_size:
        out.append("".join(cur))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--piece-bytes", type=int, default=512)
    ap.add_argument("--min-bytes", type=int, default=200, help="queries.min_bytes of smoke")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    per_domain: Counter[str] = Counter()
    with open(args.out, "w", encoding="utf-8") as fh:
        for split in ("test", "train"):
            for rec in iter_minipile(split):
                meta = rec["meta"]
                for j, piece in enumerate(pieces(rec["text"], args.piece_bytes, args.min_bytes)):
                    doc = {
                        "text": piece,
                        "meta": {
                            "pile_set_name": meta["pile_set_name"],
                            "doc_id": f"{split}:{meta['doc_id']}#{j}",
                        },
                    }
                    fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
                    per_domain[meta["pile_set_name"]] += 1
    total = sum(per_domain.values())
    print(f"{total} query documents in {args.out}: {dict(sorted(per_domain.items()))}")


if __name__ == "__main__":
    main()
