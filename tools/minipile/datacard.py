"""The generated ``DATACARD.md``: sizes, hashes, sources, licences and caveats."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import zstandard

from hullft.data.minipile import SPLITS, Split
from tools.minipile.documents import Document, nbytes
from tools.minipile.domains import DM_CANDIDATE_DOCS, DOMAINS
from tools.minipile.formats import GROFF_ARGS
from tools.minipile.params import (
    DEBIAN_PACKAGES,
    DOMAIN_TARGET_BYTES,
    GROFF_VERSION,
    MAX_DOC_BYTES,
    MIN_DOC_BYTES,
    MIN_TEST_DOCS,
    SEED,
    SOURCE_CAP_BYTES,
    TEST_FRACTION,
    ZSTD_LEVEL,
)
from tools.minipile.sources import sha256_file


def _kb(n: int) -> str:
    return f"{n / 1000:,.1f}"


def datacard(
    splits: dict[Split, list[Document]],
    raw: dict[Split, bytes],
    files: dict[Split, Path],
    versions: dict[str, str],
    groff: str,
) -> str:
    """The Markdown data card; deterministic given the built corpus."""
    rows = []
    totals = {s: [0, 0] for s in SPLITS}
    for domain in DOMAINS:
        cells = []
        for split in SPLITS:
            docs = [d for d in splits[split] if d.pile_set_name == domain.pile_set_name]
            size = sum(nbytes(d.text) for d in docs)
            totals[split][0] += len(docs)
            totals[split][1] += size
            cells += [str(len(docs)), _kb(size)]
        packages = ", ".join(f"`{p}` {versions.get(p, '?')}" for p in domain.packages) or (
            "generated (`tools.minipile.mathgen`)"
        )
        licenses = sorted(
            {
                d.license
                for s in SPLITS
                for d in splits[s]
                if d.pile_set_name == domain.pile_set_name
            }
        )
        license_cell = (
            domain.license
            if len(licenses) <= 1
            else (f"{domain.license}: " + ", ".join(f"`{x}`" for x in licenses))
        )
        rows.append(
            f"| {domain.pile_set_name} | {' | '.join(cells)} | {packages} | {license_cell} |"
        )
    total_cells = " | ".join(f"**{totals[s][0]}** | **{_kb(totals[s][1])}**" for s in SPLITS)
    rows.append(f"| **all** | {total_cells} | | |")
    descriptions = "\n".join(f"- **{d.pile_set_name}** — {d.description}" for d in DOMAINS)
    file_rows = "\n".join(
        f"| `{files[s].name}` | {len(splits[s])} | {len(raw[s]):,} | {files[s].stat().st_size:,} "
        f"| `{sha256_file(files[s])}` | `{hashlib.sha256(raw[s]).hexdigest()}` |"
        for s in SPLITS
    )
    package_rows = "\n".join(f"| `{p}` | {versions.get(p, '?')} |" for p in sorted(DEBIAN_PACKAGES))
    # This text reproduces the committed DATACARD.md byte for byte: a change here is a
    # change to hullft/assets/minipile/DATACARD.md too (the slow rebuild test compares).
    return f"""# minipile — data card

minipile is the small multi-domain text corpus embedded in hullft
(`hullft/assets/minipile/`), a stand-in for The Pile that every machine has
offline and byte for byte. Records use The Pile's format, one JSON object per
line, keys sorted, UTF-8:

```json
{{"meta": {{"doc_id": "...", "license": "...", "pile_set_name": "...", "source": "..."}}, "text": "..."}}
```

`doc_id` is `<domain slug>/<source name>#<part>`; `source` names the Debian
package and file (or the generator) the text comes from; `license` is the licence
of that text. Read it with `hullft.data.minipile.iter_minipile("train" | "test")`.

## Files

| file | docs | bytes (jsonl) | bytes (zstd) | SHA-256 (zstd file) | SHA-256 (jsonl) |
|---|---:|---:|---:|---|---|
{file_rows}

Both files are single zstd frames (level {ZSTD_LEVEL}, content size and checksum
written), records sorted by `pile_set_name` then `doc_id`.

## Domains

Text sizes are UTF-8 bytes of `text` in kB (1 kB = 1000 bytes).

| pile_set_name | train docs | train kB | test docs | test kB | source (Debian bookworm) | licence |
|---|---:|---:|---:|---:|---|---|
{chr(10).join(rows)}

{descriptions}

Licence identifiers are SPDX where one exists. `verbatim-copying-permitted`: the
licence texts themselves, which their authors allow to be copied verbatim.
`WordNet-3.0`: Princeton's WordNet 3.0 licence (permissive, BSD-style). Man pages
carry their own SPDX id, or the man-pages project's `LICENSE_START` tag where the
page has none. The generated problems are part of hullft (Apache-2.0).

## How it is built

- **Selection.** Each domain lists its source files (or, for DM Mathematics,
  {DM_CANDIDATE_DOCS} candidate generated documents), orders them by
  SHA-256(`{SEED}:select:<slug>:<name>`) and takes them in that order until the
  domain holds {DOMAIN_TARGET_BYTES:,} bytes of text; at most {SOURCE_CAP_BYTES:,}
  bytes (the leading parts) come from any one file.
- **Documents.** Sources are cut at natural boundaries (top-level def/class,
  section titles or headings, chapters, dictionary entries, paragraphs), and
  consecutive pieces are packed into documents of about 4 kB (1.5 kB for the
  Devil's Dictionary, 2 kB for Licenses); pieces over the limit are cut at
  paragraph or line breaks, so every document has {MIN_DOC_BYTES}–{MAX_DOC_BYTES:,}
  bytes. Text is cleaned: `\\n` line endings, tabs expanded to 4 spaces, control
  characters and trailing whitespace removed, runs of blank lines collapsed,
  exactly one final newline.
- **Split.** Per domain, documents are ordered by SHA-256(`{SEED}:split:<doc_id>`);
  the first max({MIN_TEST_DOCS}, ⌈{TEST_FRACTION:g}·n⌉) are `test`, the rest `train`
  (`tools.minipile.build.split_test_ids`).
- **Man pages** are rendered by {groff} with `LC_ALL=C.UTF-8`, the input
  prefixed with `.ad l`, and the page header and footer lines dropped:
  `{" ".join(GROFF_ARGS)}`.
- **DM Mathematics** problems come from `tools.minipile.mathgen.generate_problems`
  (pure Python, `random.Random` seeded with strings, exact `Fraction`/`Decimal`
  arithmetic), not from DeepMind's `mathematics-dataset`, which does not run on
  sympy 1.14 / numpy 2 and is not reproducible across processes.

### Source packages

| package | version |
|---|---|
{package_rows}

### Rebuild

```sh
# needs a Debian bookworm machine (apt-get, dpkg-deb, groff-base 1.22.4); nothing is installed
apt-get update
.venv/bin/python -m tools.minipile fetch --sources /tmp/minipile-src
.venv/bin/python -m tools.minipile build --sources /tmp/minipile-src --out hullft/assets/minipile
git diff --stat hullft/assets/minipile    # empty when the rebuild is byte-identical
HULLFT_MINIPILE_SOURCES=/tmp/minipile-src .venv/bin/python -m pytest -m slow tests/test_minipile.py
```

## Caveats

- Byte-for-byte reproduction needs the pinned package versions above. Debian
  drops superseded versions from its mirrors (`base-files` changes with every
  bookworm point release, `libpython3.11-stdlib`/`python3.11-doc` with security
  updates); fetch a pinned `.deb` from https://snapshot.debian.org into
  `<sources>/debs/`, or use `fetch --allow-other-versions` and accept a
  different corpus (the build warns).
- Man pages depend on groff's formatting ({GROFF_VERSION}, with Debian's
  `man.local`); another groff may break lines differently.
- The KJV text is decoded by running the `bible` program from the `bible-kjv`
  .deb (linked against libreadline8), so the build needs a matching architecture.
- The build ran on CPython {sys.version_info.major}.{sys.version_info.minor} (its `html.parser`
  converts the SQLite pages); other versions may convert some markup differently.
- The compressed bytes also depend on the libzstd inside the `zstandard` package
  (built here with zstandard {zstandard.__version__}, libzstd
  {".".join(map(str, zstandard.ZSTD_VERSION))}); the jsonl SHA-256 above does not.
- It is small: about 1 MB per domain (the Devil's Dictionary and Licenses are
  smaller: that is all the text there is), English only, and the code domain is
  Python only. Test documents share sources (files, books, licences) with train
  documents: the split is by document, not by source.
"""
