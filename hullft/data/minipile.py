"""minipile: the small multi-domain corpus embedded in hullft.

The Pile is too large to ship, so hullft embeds a ~8 MB stand-in in The Pile's
record format. Each line of ``hullft/assets/minipile/{train,test}.jsonl.zst`` is::

    {"meta": {"doc_id": ..., "license": ..., "pile_set_name": ..., "source": ...},
     "text": ...}

This module is both the reader for the committed files (`minipile_path`,
`iter_minipile`) and the deterministic builder that produced them from freely
licensed Debian bookworm packages plus a seeded DM-Mathematics-style generator::

    python -m hullft.data.minipile fetch --sources /tmp/minipile-src
    python -m hullft.data.minipile build --sources /tmp/minipile-src --out hullft/assets/minipile

Where the pinned package versions are present the build reproduces the committed
bytes exactly (see ``DATACARD.md`` in the asset folder for sources, licences,
sizes and caveats).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

import zstandard

from hullft.paths import cache_root

logger = logging.getLogger(__name__)

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")

# --------------------------------------------------------------------------------------
# Fixed parameters. Changing any of them changes the committed bytes.
# --------------------------------------------------------------------------------------

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

SOURCES_ENV = "HULLFT_MINIPILE_SOURCES"


# --------------------------------------------------------------------------------------
# Reading the committed corpus
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Documents, cleaning and packing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One corpus document; ``doc_id`` is ``<domain slug>/<source name>#<part>``."""

    pile_set_name: str
    doc_id: str
    text: str
    source: str
    license: str

    def record(self) -> dict:
        return {
            "text": self.text,
            "meta": {
                "pile_set_name": self.pile_set_name,
                "source": self.source,
                "license": self.license,
                "doc_id": self.doc_id,
            },
        }


def serialize(doc: Document) -> str:
    """The exact JSON line written for a document (without the newline)."""
    return json.dumps(doc.record(), ensure_ascii=False, sort_keys=True)


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MANY_BLANKS = re.compile(r"\n{3,}")


def clean_text(text: str, *, max_blank_lines: int = 1) -> str:
    """Normalise line endings, drop control characters and trailing whitespace.

    Runs of more than ``max_blank_lines`` blank lines are collapsed, leading and
    trailing blank lines removed, and the result ends with exactly one newline
    (or is empty).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text.replace("\t", "    "))
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines).strip("\n")
    if max_blank_lines >= 0:
        text = re.sub(f"\n{{{max_blank_lines + 2},}}", "\n" * (max_blank_lines + 1), text)
    return text + "\n" if text else ""


def _split_oversized(segment: str, limit: int, seps: tuple[str, ...] = ("\n\n", "\n")) -> list[str]:
    """Cut a segment longer than ``limit`` bytes at paragraph, else line, breaks."""
    if nbytes(segment) <= limit:
        return [segment]
    if not seps:
        # A single enormous line: hard cut on characters (never inside a code point).
        step = max(1, limit // 4)
        return [segment[i : i + step] for i in range(0, len(segment), step)]
    sep, finer = seps[0], seps[1:]
    pieces = segment.split(sep)
    units = [p + sep for p in pieces[:-1]] + [pieces[-1]]
    small = [u for unit in units if unit for u in _split_oversized(unit, limit, finer)]
    out: list[str] = []
    cur = ""
    for unit in small:
        if cur and nbytes(cur) + nbytes(unit) > limit:
            out.append(cur)
            cur = ""
        cur += unit
    if cur:
        out.append(cur)
    return out


def pack_segments(segments: Sequence[str], chunk_bytes: int) -> list[str]:
    """Greedily join consecutive segments into documents of about ``chunk_bytes``.

    Segments are concatenated verbatim, so they should end with their own line
    breaks. A segment larger than ``MAX_DOC_BYTES`` (or twice ``chunk_bytes``) is
    first cut at paragraph/line breaks; a too-short last document is merged into
    the one before it.
    """
    limit = min(MAX_DOC_BYTES, max(2 * chunk_bytes, MIN_DOC_BYTES))
    units = [piece for seg in segments if seg.strip() for piece in _split_oversized(seg, limit)]
    docs: list[str] = []
    cur = ""
    for unit in units:
        if cur and nbytes(cur) >= MIN_DOC_BYTES and nbytes(cur) + nbytes(unit) > chunk_bytes:
            docs.append(cur)
            cur = ""
        cur += unit
    if cur:
        if docs and nbytes(cur) < MIN_DOC_BYTES and nbytes(docs[-1]) + nbytes(cur) <= MAX_DOC_BYTES:
            docs[-1] += cur
        else:
            docs.append(cur)
    return docs


# --------------------------------------------------------------------------------------
# Seeded selection and train/test split
# --------------------------------------------------------------------------------------


def _hash_key(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def split_key(doc_id: str, seed: int = SEED) -> str:
    """The key that orders a domain's documents for the train/test split."""
    return _hash_key(seed, "split", doc_id)


def num_test_docs(num_docs: int) -> int:
    """How many of a domain's ``num_docs`` documents go to the test split."""
    return min(num_docs, max(MIN_TEST_DOCS, math.ceil(TEST_FRACTION * num_docs)))


def split_test_ids(doc_ids: Iterable[str], seed: int = SEED) -> set[str]:
    """The split rule, for one domain: the documents with the smallest `split_key`."""
    ordered = sorted(doc_ids, key=lambda d: (split_key(d, seed), d))
    return set(ordered[: num_test_docs(len(ordered))])


# --------------------------------------------------------------------------------------
# Source packages
# --------------------------------------------------------------------------------------


class MissingSourceError(RuntimeError):
    """A source package (or tool) the build needs is not present."""


def default_sources_dir() -> Path:
    """``$HULLFT_MINIPILE_SOURCES``, else ``<hullft cache>/minipile-src``."""
    env = os.environ.get(SOURCES_ENV)
    return Path(env).expanduser() if env else cache_root() / "minipile-src"


def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=False, capture_output=True, text=True, **kwargs)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _candidate_version(package: str) -> str:
    proc = _run(["apt-cache", "show", "--no-all-versions", package])
    match = re.search(r"^Version: (\S+)$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not match:
        raise MissingSourceError(
            f"apt knows no package {package!r}; run `apt-get update` on a Debian bookworm machine"
        )
    return match.group(1)


def fetch_sources(sources: Path, *, allow_other_versions: bool = False) -> dict[str, dict]:
    """Download and unpack the source packages into ``sources`` (no installation).

    Uses ``apt-get download PKG=VERSION`` into ``sources/debs`` (a ``.deb`` that is
    already there is reused, so one fetched by hand from snapshot.debian.org works
    too) and ``dpkg-deb -x`` into ``sources/root/PKG``; writes
    ``sources/manifest.json``. With ``allow_other_versions`` a package whose pinned
    version the mirror no longer has is fetched at apt's candidate version instead;
    the corpus built from it may then differ from the committed one.
    """
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise MissingSourceError(f"`{tool}` not found: fetching needs a Debian-based machine")
    debs = sources / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}
    for package, pinned in sorted(DEBIAN_PACKAGES.items()):
        deb = _find_deb(debs, package, pinned)
        if deb is None:
            proc = _run(["apt-get", "download", f"{package}={pinned}"], cwd=debs)
            deb = _find_deb(debs, package, pinned)
            if deb is None and allow_other_versions:
                version = _candidate_version(package)
                logger.warning("%s %s unavailable; using %s", package, pinned, version)
                proc = _run(["apt-get", "download", f"{package}={version}"], cwd=debs)
                deb = _find_deb(debs, package, version)
            if deb is None:
                raise MissingSourceError(
                    f"could not download {package}={pinned}: {proc.stderr.strip()[-400:]}\n"
                    f"Run `apt-get update`; if the mirror no longer carries that version, put "
                    f"{package}_{pinned.replace(':', '%3a')}_<arch>.deb from "
                    f"https://snapshot.debian.org into {debs} and fetch again, or fetch with "
                    f"--allow-other-versions (the corpus will then differ from the committed one)."
                )
        fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"]).stdout
        found = re.search(r"^Version: (\S+)$", fields, re.MULTILINE)
        dest = sources / "root" / package
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        proc = _run(["dpkg-deb", "-x", str(deb), str(dest)])
        if proc.returncode != 0:
            raise MissingSourceError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}")
        manifest[package] = {
            "version": found.group(1) if found else "",
            "deb": deb.name,
            "sha256": _sha256_file(deb),
        }
        logger.info("unpacked %s %s", package, manifest[package]["version"])
    (sources / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _find_deb(debs: Path, package: str, version: str) -> Path | None:
    quoted = version.replace(":", "%3a")
    matches = sorted(debs.glob(f"{package}_{quoted}_*.deb"))
    return matches[0] if matches else None


@dataclass(frozen=True)
class SourceTree:
    """The unpacked packages under ``root/root/<package>`` plus their manifest."""

    root: Path
    versions: dict[str, str]

    @classmethod
    def open(cls, root: Path) -> SourceTree:
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise MissingSourceError(
                f"no minipile sources at {root} (missing manifest.json). Fetch them with\n"
                f"  python -m hullft.data.minipile fetch --sources {root}"
            )
        manifest = json.loads(manifest_path.read_text())
        return cls(root=root, versions={k: v["version"] for k, v in manifest.items()})

    def package(self, name: str) -> Path:
        path = self.root / "root" / name
        if name not in self.versions or not path.is_dir():
            raise MissingSourceError(
                f"source package {name!r} is missing under {self.root}. Fetch it with\n"
                f"  python -m hullft.data.minipile fetch --sources {self.root}"
            )
        return path


# --------------------------------------------------------------------------------------
# Domains: each turns its sources into named items whose parts become documents
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceItem:
    """One source file (or generated unit); ``load`` returns its text segments."""

    name: str
    source: str
    license: str
    load: Callable[[], list[str]]


@dataclass(frozen=True)
class Domain:
    pile_set_name: str
    slug: str
    packages: tuple[str, ...]
    license: str
    description: str
    items: Callable[[SourceTree], list[SourceItem]]
    chunk_bytes: int = 4000
    max_blank_lines: int = 1


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").splitlines(keepends=True)


# ---- Github: CPython standard library sources ----------------------------------------

_PY_EXCLUDED_DIRS = {"test", "tests", "idle_test", "pydoc_data", "__phello__", "site-packages"}
_PY_EXCLUDED_FILES = {"_distutils_system_mod.py", "this.py", "__hello__.py"}
_PY_TOP_LEVEL = re.compile(r"^(def |class |async def |@|if __name__)")


def split_python(text: str) -> list[str]:
    """Cut a module before each top-level def/class (with its decorators and comments)."""
    lines = _lines(text)
    cuts = [0]
    for i, line in enumerate(lines):
        if i == 0 or not _PY_TOP_LEVEL.match(line):
            continue
        if line.startswith("@") or not lines[i - 1].startswith("@"):
            start = i
            # keep comment lines that directly precede the definition with it
            while start > 0 and lines[start - 1].startswith("#"):
                start -= 1
            if start > cuts[-1]:
                cuts.append(start)
    cuts.append(len(lines))
    return ["".join(lines[a:b]) for a, b in itertools.pairwise(cuts) if b > a]


def _github_items(tree: SourceTree) -> list[SourceItem]:
    base = tree.package("libpython3.11-stdlib") / "usr" / "lib" / "python3.11"
    items = []
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(base)
        if (
            _PY_EXCLUDED_DIRS.intersection(rel.parts[:-1])
            or rel.name in _PY_EXCLUDED_FILES
            or rel.name.startswith(("_sysconfigdata", "test_"))
        ):
            continue
        items.append(
            SourceItem(
                name=rel.as_posix(),
                source=f"debian:libpython3.11-stdlib:/usr/lib/python3.11/{rel.as_posix()}",
                license="PSF-2.0",
                load=lambda p=path: split_python(_read_text(p)),  # type: ignore[misc]
            )
        )
    return items


# ---- Python Docs: reStructuredText sources of the 3.11 documentation -------------------

_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_.:])\1{2,}\s*$")


def split_rst(text: str) -> list[str]:
    """Cut a reST document before each section title (over/underlined)."""
    lines = _lines(text)
    cuts = [0]
    for i in range(1, len(lines)):
        if (
            _RST_ADORNMENT.match(lines[i])
            and lines[i - 1].strip()
            and not _RST_ADORNMENT.match(lines[i - 1])
        ):
            start = i - 1
            if start > 0 and _RST_ADORNMENT.match(lines[start - 1]):
                start -= 1  # overline
            if start > cuts[-1]:
                cuts.append(start)
    cuts.append(len(lines))
    return ["".join(lines[a:b]) for a, b in itertools.pairwise(cuts) if b > a]


def _python_docs_items(tree: SourceTree) -> list[SourceItem]:
    base = tree.package("python3.11-doc") / "usr/share/doc/python3.11/html/_sources"
    items = []
    for path in sorted(base.rglob("*.rst.txt")):
        rel = path.relative_to(base).as_posix()
        if rel in {"whatsnew/changelog.rst.txt", "contents.rst.txt"}:
            continue
        items.append(
            SourceItem(
                name=rel.removesuffix(".txt"),
                source=f"debian:python3.11-doc:/usr/share/doc/python3.11/html/_sources/{rel}",
                license="PSF-2.0",
                load=lambda p=path: split_rst(_read_text(p)),  # type: ignore[misc]
            )
        )
    return items


# ---- SQLite Docs: the HTML documentation, converted to text ---------------------------

_HTML_SKIP_TAGS = {"script", "style", "svg", "head", "noscript", "form", "button", "map"}
_HTML_SKIP_CLASSES = {"nosearch", "imgcontainer", "menu", "searchmenu", "tagline"}
_HTML_BLOCK_TAGS = {
    "p",
    "div",
    "br",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "blockquote",
    "hr",
    "center",
    "section",
    "article",
    "tbody",
    "thead",
    "caption",
}
_HTML_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_HEADING_MARK = "\x01"


class _HtmlToText(HTMLParser):
    """A small HTML → plain-text converter: block structure kept, markup dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title: list[str] = []
        self._skip_tag: str | None = None
        self._skip_depth = 0
        self._in_title = False
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        classes = set((dict(attrs).get("class") or "").split())
        if tag == "title":
            self._in_title = True
        if tag in _HTML_SKIP_TAGS or (tag == "div" and classes & _HTML_SKIP_CLASSES):
            if tag != "head":
                self._skip_tag, self._skip_depth = tag, 1
            return
        if tag in _HTML_HEADINGS:
            self.out.append("\n\n" + _HEADING_MARK)
        elif tag == "pre":
            self._pre += 1
            self.out.append("\n\n")
        elif tag == "li":
            self.out.append("\n* ")
        elif tag in {"td", "th"}:
            self.out.append(" ")
        elif tag in _HTML_BLOCK_TAGS:
            self.out.append("\n\n" if tag in {"p", "blockquote", "table", "dl"} else "\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag == "title":
            self._in_title = False
        elif tag in _HTML_HEADINGS:
            self.out.append("\n\n")
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self.out.append("\n\n")
        elif tag in _HTML_BLOCK_TAGS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        if self._skip_tag is not None:
            return
        if self._pre:
            self.out.append(data.replace("\n", "\x02"))  # protected newline
        else:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> tuple[str, str]:
    """Return ``(title, text)``; headings in ``text`` start with ``\\x01``."""
    parser = _HtmlToText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines: list[str] = []
    for line in text.split("\n"):
        if "\x02" in line:
            lines.extend(part.rstrip() for part in line.split("\x02"))
        elif line.startswith(_HEADING_MARK):
            lines.append(_HEADING_MARK + re.sub(r" {2,}", " ", line[1:]).strip())
        else:
            lines.append(re.sub(r" {2,}", " ", line).strip())
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip()
    return title, _MANY_BLANKS.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"


def split_marked_headings(text: str) -> list[str]:
    """Cut text before each heading line marked with ``\\x01`` (and drop the marks)."""
    lines = _lines(text)
    segments: list[str] = []
    cur: list[str] = []
    for line in lines:
        if line.startswith(_HEADING_MARK) and cur:
            segments.append("".join(cur))
            cur = []
        cur.append(line.replace(_HEADING_MARK, ""))
    if cur:
        segments.append("".join(cur))
    return segments


_SQLITE_EXCLUDED = re.compile(
    r"^(releaselog/|syntax/|search\.d/|doc_|changes\.html|chronology\.html|requirements\.html"
    r"|syntaxdiagrams\.html|sitemap\.html|toc\.html|keyword_index\.html|capi3ref\.html"
    r"|index\.html|docs\.html|news\.html|c3ref/(intro|funclist|objlist|constlist)\.html)"
)


def _sqlite_load(path: Path) -> list[str]:
    title, text = html_to_text(_read_text(path))
    segments = split_marked_headings(text)
    if title and segments and title not in segments[0].splitlines()[:3]:
        segments[0] = f"{title}\n\n{segments[0]}"
    return segments


def _sqlite_items(tree: SourceTree) -> list[SourceItem]:
    base = tree.package("sqlite3-doc") / "usr/share/doc/sqlite3"
    items = []
    for path in sorted(base.rglob("*.html")):
        rel = path.relative_to(base).as_posix()
        if _SQLITE_EXCLUDED.match(rel):
            continue
        items.append(
            SourceItem(
                name=rel,
                source=f"debian:sqlite3-doc:/usr/share/doc/sqlite3/{rel}",
                license="public-domain",
                load=lambda p=path: _sqlite_load(p),  # type: ignore[misc]
            )
        )
    return items


# ---- Man Pages: Linux man-pages rendered with groff -----------------------------------

_GROFF_ARGS = ("groff", "-k", "-t", "-man", "-Tutf8", "-P-cbou", "-rHY=0", "-rLL=78n")


def groff_version() -> str:
    if shutil.which("groff") is None:
        raise MissingSourceError(
            "`groff` not found; the man-page domain is rendered with it "
            "(Debian: apt-get install groff-base)"
        )
    return _run(["groff", "--version"]).stdout.splitlines()[0].strip()


def render_man(source: str) -> str:
    """Render man(7) source to plain UTF-8 text: left-adjusted, no hyphenation, no SGR."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        list(_GROFF_ARGS),
        input=".ad l\n" + source,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"groff failed: {proc.stderr.strip()[:400]}")
    return proc.stdout


_MAN_LICENSE = re.compile(r"SPDX-License-Identifier:\s*(\S+)|%%%LICENSE_START\(([A-Z_0-9]+)\)")


def man_license(source: str) -> str:
    """The page's SPDX identifier, else its man-pages ``LICENSE_START`` tag."""
    match = _MAN_LICENSE.search(source)
    if not match:
        return "see debian/copyright of manpages"
    return match.group(1) or f"man-pages:{match.group(2)}"


def split_man(rendered: str) -> list[str]:
    """Drop the page header/footer lines and cut before each section heading."""
    lines = _lines(rendered)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) >= 2:
        lines = lines[1:-1]  # "signal(7)  Miscellaneous Information Manual  signal(7)" etc.
    segments: list[str] = []
    cur: list[str] = []
    for line in lines:
        if re.match(r"^[A-Z][A-Z0-9 ,/()-]*$", line.rstrip()) and cur:
            segments.append("".join(cur))
            cur = []
        cur.append(line)
    if cur:
        segments.append("".join(cur))
    return segments


def _man_items(tree: SourceTree) -> list[SourceItem]:
    base = tree.package("manpages") / "usr/share/man"
    items = []
    for path in sorted(base.glob("man*/*")):
        if path.is_symlink() or not path.is_file():
            continue
        source = _read_text(path)
        if source.lstrip().startswith(".so "):
            continue  # an alias of another page
        name = path.relative_to(base).as_posix().removesuffix(".gz")
        items.append(
            SourceItem(
                name=name,
                source=f"debian:manpages:/usr/share/man/{path.relative_to(base).as_posix()}",
                license=man_license(source),
                load=lambda s=source: split_man(render_man(s)),  # type: ignore[misc]
            )
        )
    return items


# ---- WordNet: synset glosses ----------------------------------------------------------


_WORDNET_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
_WORDNET_SYNSETS_PER_DOC = 40


def wordnet_lexnames(tree: SourceTree) -> dict[int, str]:
    """``lex_filenum -> lexicographer file name``, from the package's lexnames(5WN) page."""
    page = _read_text(tree.package("wordnet-base") / "usr/share/man/man5/lexnames.5WN.gz")
    names = {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d\d)\t(\S+)\s*\t", page, re.M)}
    if len(names) != 45:
        raise RuntimeError(f"expected 45 WordNet lexicographer files, found {len(names)}")
    return names


def parse_wordnet_line(line: str, lexnames: dict[int, str]) -> tuple[str, str] | None:
    """``(lexname, "words (pos): gloss")`` for one line of a WordNet ``data.*`` file."""
    if line.startswith("  ") or " | " not in line:
        return None
    head, gloss = line.split(" | ", 1)
    fields = head.split()
    lex_filenum, ss_type, w_cnt = int(fields[1]), fields[2], int(fields[3], 16)
    words = []
    for k in range(w_cnt):
        word = re.sub(r"\([a-z]+\)$", "", fields[4 + 2 * k]).replace("_", " ")
        if word not in words:
            words.append(word)
    return lexnames[lex_filenum], (f"{', '.join(words)} ({_WORDNET_POS[ss_type]}): {gloss.strip()}")


def _wordnet_items(tree: SourceTree) -> list[SourceItem]:
    base = tree.package("wordnet-base") / "usr/share/wordnet"
    lexnames = wordnet_lexnames(tree)
    by_lexname: dict[str, list[str]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        for line in _read_text(base / f"data.{pos}").splitlines():
            parsed = parse_wordnet_line(line, lexnames)
            if parsed:
                by_lexname.setdefault(parsed[0], []).append(parsed[1])
    items = []
    for lexname in sorted(by_lexname):
        entries = by_lexname[lexname]
        for start in range(0, len(entries), _WORDNET_SYNSETS_PER_DOC):
            block = entries[start : start + _WORDNET_SYNSETS_PER_DOC]
            text = f"WordNet {lexname}\n\n" + "".join(e + "\n" for e in block)
            items.append(
                SourceItem(
                    name=f"{lexname}/{start // _WORDNET_SYNSETS_PER_DOC:04d}",
                    source=f"debian:wordnet-base:/usr/share/wordnet (lexicographer file {lexname})",
                    license="WordNet-3.0",
                    load=lambda t=text: [t],  # type: ignore[misc]
                )
            )
    return items


# ---- Gutenberg (PG-19): the King James Bible ------------------------------------------

KJV_BOOKS = (
    "Genesis",
    "Exodus",
    "Leviticus",
    "Numbers",
    "Deuteronomy",
    "Joshua",
    "Judges",
    "Ruth",
    "1 Samuel",
    "2 Samuel",
    "1 Kings",
    "2 Kings",
    "1 Chronicles",
    "2 Chronicles",
    "Ezra",
    "Nehemiah",
    "Esther",
    "Job",
    "Psalms",
    "Proverbs",
    "Ecclesiastes",
    "Song of Solomon",
    "Isaiah",
    "Jeremiah",
    "Lamentations",
    "Ezekiel",
    "Daniel",
    "Hosea",
    "Joel",
    "Amos",
    "Obadiah",
    "Jonah",
    "Micah",
    "Nahum",
    "Habakkuk",
    "Zephaniah",
    "Haggai",
    "Zechariah",
    "Malachi",
    "Matthew",
    "Mark",
    "Luke",
    "John",
    "Acts",
    "Romans",
    "1 Corinthians",
    "2 Corinthians",
    "Galatians",
    "Ephesians",
    "Philippians",
    "Colossians",
    "1 Thessalonians",
    "2 Thessalonians",
    "1 Timothy",
    "2 Timothy",
    "Titus",
    "Philemon",
    "Hebrews",
    "James",
    "1 Peter",
    "2 Peter",
    "1 John",
    "2 John",
    "3 John",
    "Jude",
    "Revelation",
)


def kjv_verses(tree: SourceTree) -> list[tuple[str, int, int, str]]:
    """All verses as ``(book, chapter, verse, text)``, decoded by bible-kjv's ``bible``.

    bible-kjv-text stores the text in its own compressed format; the ``bible``
    program from the bible-kjv package (run from the unpacked .deb) decodes it.
    """
    program = tree.package("bible-kjv") / "usr/bin/bible"
    data_dir = tree.package("bible-kjv-text") / "usr/lib"
    proc = subprocess.run(
        [str(program), "-f", "-p", str(data_dir), "-d", "bible.data", "Gen1:1-Rev22:21"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise MissingSourceError(
            f"{program} could not decode the KJV text (exit {proc.returncode}): "
            f"{proc.stderr.decode(errors='replace')[:300]}"
        )
    verses = []
    abbrevs: list[str] = []
    for line in proc.stdout.decode("utf-8", errors="replace").splitlines():
        match = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$", line)
        if not match:
            raise RuntimeError(f"unexpected line from bible: {line[:80]!r}")
        abbrev = match.group(1)
        if not abbrevs or abbrevs[-1] != abbrev:
            abbrevs.append(abbrev)
        verses.append((abbrev, int(match.group(2)), int(match.group(3)), match.group(4).strip()))
    if len(abbrevs) != len(KJV_BOOKS):
        raise RuntimeError(f"expected {len(KJV_BOOKS)} books from bible, got {len(abbrevs)}")
    names = dict(zip(abbrevs, KJV_BOOKS, strict=True))
    return [(names[a], c, v, t) for a, c, v, t in verses]


def _gutenberg_items(tree: SourceTree) -> list[SourceItem]:
    chapters: dict[tuple[str, int], list[str]] = {}
    order: list[tuple[str, int]] = []
    for book, chapter, verse, text in kjv_verses(tree):
        if (book, chapter) not in chapters:
            chapters[(book, chapter)] = []
            order.append((book, chapter))
        chapters[(book, chapter)].append(f"{chapter}:{verse} {text}\n")
    items = []
    for book, chapter in order:
        title = f"{book}, Chapter {chapter}\n\n"
        text = title + "\n".join(chapters[(book, chapter)])
        items.append(
            SourceItem(
                name=f"kjv/{book.replace(' ', '_')}/{chapter:03d}",
                source=f"debian:bible-kjv-text:/usr/lib/bible.data ({book} {chapter})",
                license="public-domain",
                load=lambda t=text: [t],  # type: ignore[misc]
            )
        )
    return items


# ---- The Devil's Dictionary -----------------------------------------------------------

_DICTD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(code: str) -> int:
    value = 0
    for ch in code:
        value = value * 64 + _DICTD_B64.index(ch)
    return value


def devil_entries(tree: SourceTree) -> list[tuple[str, str]]:
    """``(headword, text)`` for every entry of the dictd database, in file order."""
    base = tree.package("dict-devil") / "usr/share/dictd"
    data = gzip.decompress((base / "devil.dict.dz").read_bytes())
    spans: dict[tuple[int, int], str] = {}
    for line in _read_text(base / "devil.index").splitlines():
        word, offset, length = line.split("\t")
        span = (_dictd_number(offset), _dictd_number(length))
        if word.startswith("00database") and word != "00databaseinfo":
            continue
        spans.setdefault(span, word)
    entries = []
    for (start, size), word in sorted(spans.items()):
        text = data[start : start + size].decode("utf-8", errors="replace")
        if text.startswith("00-database"):
            text = text.split("\n", 1)[1]
        entries.append((word, text.strip("\n") + "\n\n"))
    return entries


def _devil_items(tree: SourceTree) -> list[SourceItem]:
    groups: dict[str, list[str]] = {}
    for word, text in devil_entries(tree):
        key = "preface" if word.startswith("00") else word[:1].upper()
        groups.setdefault(key, []).append(text)
    return [
        SourceItem(
            name=key,
            source=f"debian:dict-devil:/usr/share/dictd/devil.dict.dz ({key})",
            license="public-domain",
            load=lambda g=group: list(g),  # type: ignore[misc]
        )
        for key, group in sorted(groups.items())
    ]


# ---- Licenses: the licence texts Debian ships in /usr/share/common-licenses ------------


def _licenses_items(tree: SourceTree) -> list[SourceItem]:
    base = tree.package("base-files") / "usr/share/common-licenses"
    items = []
    for path in sorted(base.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        items.append(
            SourceItem(
                name=path.name,
                source=f"debian:base-files:/usr/share/common-licenses/{path.name}",
                license="verbatim-copying-permitted",
                load=lambda p=path: [  # type: ignore[misc]
                    para + "\n\n" for para in re.split(r"\n\s*\n", _read_text(p))
                ],
            )
        )
    return items


# --------------------------------------------------------------------------------------
# DM-Mathematics-style problems
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A question and its answer, in DeepMind Mathematics' textual style."""

    module: str
    question: str
    answer: str


_VARS = "abcdfghjklmnpqrstuvwxyz"  # no e/i (sympy's E and I) and no o (looks like 0)


def fmt_number(x: Fraction | Decimal | int) -> str:
    """DM-style numbers: integers plain, decimals without trailing zeros, else p/q."""
    if isinstance(x, int):
        return str(x)
    if isinstance(x, Decimal):
        text = format(x.normalize(), "f")
        return "0" if text in {"-0", "0"} else text
    if x.denominator == 1:
        return str(x.numerator)
    return f"{x.numerator}/{x.denominator}"


def _decimal_str(x: Fraction) -> str:
    """Exact decimal expansion of a fraction whose denominator divides a power of 10."""
    for k in range(40):
        scaled = x * 10**k
        if scaled.denominator == 1:
            return fmt_number(Decimal(scaled.numerator).scaleb(-k))
    raise ValueError(f"{x} has no finite decimal expansion")


def _rand_decimal(rng: random.Random, lo: int, hi: int, max_dp: int = 3) -> Decimal:
    dp = rng.randint(1, max_dp)
    return Decimal(rng.randint(lo * 10**dp, hi * 10**dp)).scaleb(-dp)


def _rand_value(rng: random.Random, lo: int = -1000, hi: int = 1000) -> Decimal:
    if rng.random() < 0.5:
        return Decimal(rng.randint(lo, hi))
    return _rand_decimal(rng, lo // 10, hi // 10)


def _nonzero(rng: random.Random, lo: int, hi: int) -> int:
    while True:
        value = rng.randint(lo, hi)
        if value:
            return value


def poly_str(coeffs: Sequence[int], var: str) -> str:
    """Format a polynomial (coefficients lowest degree first) in descending powers."""
    terms = []
    for power in range(len(coeffs) - 1, -1, -1):
        c = coeffs[power]
        if c == 0:
            continue
        mono = "" if power == 0 else var if power == 1 else f"{var}**{power}"
        if not mono:
            body = str(abs(c))
        elif abs(c) == 1:
            body = mono
        else:
            body = f"{abs(c)}*{mono}"
        terms.append((c < 0, body))
    if not terms:
        return "0"
    out = ("-" if terms[0][0] else "") + terms[0][1]
    for negative, body in terms[1:]:
        out += (" - " if negative else " + ") + body
    return out


def _terms_str(terms: Sequence[tuple[int, str]]) -> str:
    """Format ``[(coef, var_or_empty), ...]`` in the given order, e.g. ``-3*x + 7 - y``."""
    out = ""
    for k, (c, var) in enumerate(terms):
        body = str(abs(c)) if not var else var if abs(c) == 1 else f"{abs(c)}*{var}"
        if k == 0:
            out = ("-" if c < 0 else "") + body
        else:
            out += (" - " if c < 0 else " + ") + body
    return out or "0"


def _poly_mul(a: Sequence[int], b: Sequence[int]) -> list[int]:
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _poly_eval(coeffs: Sequence[int], x: int) -> int:
    return sum(c * x**k for k, c in enumerate(coeffs))


def _poly_diff(coeffs: Sequence[int]) -> list[int]:
    return [k * c for k, c in enumerate(coeffs)][1:] or [0]


def _rand_poly(rng: random.Random, degree: int, bound: int, density: float = 0.7) -> list[int]:
    coeffs = [rng.randint(-bound, bound) if rng.random() < density else 0 for _ in range(degree)]
    return [*coeffs, _nonzero(rng, -bound, bound)]


def _equation(rng: random.Random, terms: list[tuple[int, str]]) -> str:
    """Spread the terms of ``sum(terms) = 0`` over both sides of an equation."""
    lhs: list[tuple[int, str]] = []
    rhs: list[tuple[int, str]] = []
    for c, var in terms:
        if rng.random() < 0.5:
            lhs.append((c, var))
        else:
            rhs.append((-c, var))
    rng.shuffle(lhs)
    rng.shuffle(rhs)
    return f"{_terms_str(lhs)} = {_terms_str(rhs)}"


def _split_int(rng: random.Random, value: int, pieces: int) -> list[int]:
    out = []
    for _ in range(pieces - 1):
        part = _nonzero(rng, -abs(value) - 10, abs(value) + 10)
        out.append(part)
        value -= part
    return [*out, value]


def _q_add_or_sub(rng: random.Random) -> tuple[str, str]:
    a, b = _rand_value(rng), _rand_value(rng)
    templates = [
        ("What is {a} + {b}?", a + b),
        ("Calculate {a} + {b}.", a + b),
        ("Add {a} and {b}.", a + b),
        ("Sum {a} and {b}.", a + b),
        ("Total of {a} and {b}.", a + b),
        ("Put together {a} and {b}.", a + b),
        ("{a} + {b}", a + b),
        ("What is {a} - {b}?", a - b),
        ("Calculate {a} - {b}.", a - b),
        ("Subtract {b} from {a}.", a - b),
        ("What is {a} minus {b}?", a - b),
        ("What is {a} take away {b}?", a - b),
        ("{a} - {b}", a - b),
    ]
    template, answer = rng.choice(templates)
    return template.format(a=fmt_number(a), b=fmt_number(b)), fmt_number(answer)


@dataclass(frozen=True)
class _Expr:
    op: str  # "" for a leaf
    value: Fraction
    left: _Expr | None = None
    right: _Expr | None = None


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "": 3}


def _expr_str(e: _Expr, paren_negative_leaves: bool) -> str:
    if not e.op:
        text = fmt_number(e.value)
        return f"({text})" if paren_negative_leaves and e.value < 0 else text
    assert e.left is not None and e.right is not None
    left = _expr_str(e.left, paren_negative_leaves)
    right = _expr_str(e.right, paren_negative_leaves)
    if _PRECEDENCE[e.left.op] < _PRECEDENCE[e.op]:
        left = f"({left})"
    if _PRECEDENCE[e.right.op] <= _PRECEDENCE[e.op]:
        right = f"({right})"
    return f"{left} {e.op} {right}" if e.op in "+-" else f"{left}{e.op}{right}"


def _rand_expr(rng: random.Random, leaves: int, ops: str, lo: int, hi: int) -> _Expr:
    if leaves == 1:
        return _Expr("", Fraction(rng.randint(lo, hi)))
    k = rng.randint(1, leaves - 1)
    left, right = _rand_expr(rng, k, ops, lo, hi), _rand_expr(rng, leaves - k, ops, lo, hi)
    op = rng.choice(ops)
    if op == "/" and right.value == 0:
        op = "*"
    value = {
        "+": lambda: left.value + right.value,
        "-": lambda: left.value - right.value,
        "*": lambda: left.value * right.value,
        "/": lambda: left.value / right.value,
    }[op]()
    return _Expr(op, value, left, right)


def _q_add_sub_multiple(rng: random.Random) -> tuple[str, str]:
    expr = _rand_expr(rng, rng.randint(3, 6), "+-", -20, 20)
    text = _expr_str(expr, paren_negative_leaves=False)
    template = rng.choice(["What is {e}?", "Calculate {e}.", "Evaluate {e}.", "{e}"])
    return template.format(e=text), fmt_number(expr.value)


def _q_mixed(rng: random.Random) -> tuple[str, str]:
    while True:
        expr = _rand_expr(rng, rng.randint(3, 5), "+-*/", -15, 15)
        if expr.value.denominator <= 100 and abs(expr.value) <= 10**5:
            break
    text = _expr_str(expr, paren_negative_leaves=True)
    template = rng.choice(
        ["What is {e}?", "Calculate {e}.", "Evaluate {e}.", "What is the value of {e}?"]
    )
    return template.format(e=text), fmt_number(expr.value)


def _q_mul(rng: random.Random) -> tuple[str, str]:
    a = _rand_value(rng, -100, 100)
    b = Decimal(rng.randint(-50, 50)) if rng.random() < 0.6 else _rand_decimal(rng, -10, 10, 2)
    template = rng.choice(
        [
            "Multiply {a} and {b}.",
            "What is {a} times {b}?",
            "Calculate {a}*{b}.",
            "Product of {a} and {b}.",
            "{a} * {b}",
            "Work out {a} * {b}.",
        ]
    )
    return template.format(a=fmt_number(a), b=fmt_number(b)), fmt_number(a * b)


def _q_div(rng: random.Random) -> tuple[str, str]:
    b = _nonzero(rng, -60, 60)
    quotient = rng.randint(-500, 500)
    a = b * quotient
    template = rng.choice(
        [
            "Divide {a} by {b}.",
            "What is {a} divided by {b}?",
            "Calculate {a} divided by {b}.",
            "{a} divided by {b}",
            "What is {a} divided by {b}?",
        ]
    )
    return template.format(a=a, b=b), str(quotient)


def _q_linear_1d(rng: random.Random) -> tuple[str, str]:
    var = rng.choice(_VARS)
    solution = rng.randint(-25, 25)
    k = _nonzero(rng, -40, 40)
    var_terms = [(c, var) for c in _split_int(rng, k, rng.choice([1, 2, 2, 3]))]
    const_terms = [(c, "") for c in _split_int(rng, -k * solution, rng.choice([1, 2, 2]))]
    terms = [t for t in var_terms + const_terms if t[0] != 0]
    return f"Solve {_equation(rng, terms)} for {var}.", str(solution)


def _q_linear_2d(rng: random.Random) -> tuple[str, str]:
    x, y = rng.sample(_VARS, 2)
    sx, sy = rng.randint(-10, 10), rng.randint(-10, 10)
    while True:
        a1, b1, a2, b2 = (_nonzero(rng, -12, 12) for _ in range(4))
        if a1 * b2 - a2 * b1 != 0:
            break
    eqs = []
    for a, b in ((a1, b1), (a2, b2)):
        const = -(a * sx + b * sy)
        terms = [(a, x), (b, y)] + ([(const, "")] if const else [])
        eqs.append(_equation(rng, terms))
    return f"Solve {eqs[0]}, {eqs[1]} for {x}.", str(sx)


def _q_evaluate(rng: random.Random) -> tuple[str, str]:
    fname, var = rng.sample(_VARS, 2)
    coeffs = _rand_poly(rng, rng.randint(1, 3), 10)
    point = rng.randint(-6, 6)
    verb = rng.choice(
        [
            "What is {f}({x})?",
            "Calculate {f}({x}).",
            "Determine {f}({x}).",
            "Give {f}({x}).",
            "What is the value of {f}({x})?",
        ]
    )
    question = f"Let {fname}({var}) = {poly_str(coeffs, var)}. " + verb.format(f=fname, x=point)
    return question, str(_poly_eval(coeffs, point))


def _q_expand(rng: random.Random) -> tuple[str, str]:
    var = rng.choice(_VARS)
    product = [1]
    factors = []
    for _ in range(rng.choice([2, 2, 3])):
        a, b = _nonzero(rng, -5, 5), _nonzero(rng, -9, 9)
        product = _poly_mul(product, [b, a])
        terms = [(a, var), (b, "")]
        if rng.random() < 0.3:
            terms.reverse()
        factors.append(f"({_terms_str(terms)})")
    question = "*".join(factors)
    if rng.random() < 0.3:
        c, power = _nonzero(rng, -9, 9), rng.randint(1, len(product) - 1)
        product[power] += c
        question += (" - " if c < 0 else " + ") + _terms_str([(abs(c), _mono(var, power))])
    return f"Expand {question}.", poly_str(product, var)


def _mono(var: str, power: int) -> str:
    return var if power == 1 else f"{var}**{power}"


def _q_differentiate(rng: random.Random) -> tuple[str, str]:
    var = rng.choice(_VARS)
    order = rng.choice([1, 1, 1, 2, 2, 3])
    coeffs = _rand_poly(rng, rng.randint(max(2, order), 5), 60, density=0.5)
    derivative = list(coeffs)
    for _ in range(order):
        derivative = _poly_diff(derivative)
    p = poly_str(coeffs, var)
    nth = {1: "first", 2: "second", 3: "third"}[order]
    templates = [
        f"Find the {nth} derivative of {p} wrt {var}.",
        f"What is the {nth} derivative of {p} wrt {var}?",
        f"Calculate the {nth} derivative of {p} wrt {var}.",
    ]
    if order == 1:
        templates += [
            f"Differentiate {p} with respect to {var}.",
            f"What is the derivative of {p} wrt {var}?",
            f"Differentiate {p} wrt {var}.",
        ]
    return rng.choice(templates), poly_str(derivative, var)


def _q_gcd(rng: random.Random) -> tuple[str, str]:
    g = rng.randint(2, 120)
    m, n = rng.randint(1, 90), rng.randint(1, 90)
    a, b = g * m, g * n
    template = rng.choice(
        [
            "Calculate the greatest common divisor of {a} and {b}.",
            "What is the greatest common divisor of {a} and {b}?",
            "What is the highest common factor of {a} and {b}?",
            "Calculate the highest common factor of {a} and {b}.",
            "What is the greatest common factor of {a} and {b}?",
        ]
    )
    return template.format(a=a, b=b), str(math.gcd(a, b))


def _q_lcm(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(2, 300), rng.randint(2, 300)
    if rng.random() < 0.3:
        p, q = rng.randint(1, 30), rng.randint(1, 30)
        if math.gcd(p, a) == 1 and math.gcd(q, b) == 1:
            p, q = p * rng.choice([-1, 1]), q * rng.choice([-1, 1])
            question = f"Calculate the common denominator of {p}/{a} and {q}/{b}."
            return question, str(math.lcm(a, b))
    template = rng.choice(
        [
            "What is the least common multiple of {a} and {b}?",
            "Calculate the lowest common multiple of {a} and {b}.",
            "What is the smallest common multiple of {a} and {b}?",
            "Calculate the least common multiple of {a} and {b}.",
        ]
    )
    return template.format(a=a, b=b), str(math.lcm(a, b))


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def _q_is_prime(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        n = rng.randint(100, 200_000)
        while not is_prime(n):
            n += 1
    else:
        n = rng.choice([3, 7, 11, 13, 17, 19, 23, 29, 31]) * rng.randint(5, 9000)
    if rng.random() < 0.7:
        template = rng.choice(["Is {n} a prime number?", "Is {n} prime?"])
        return template.format(n=n), str(is_prime(n))
    template = rng.choice(["Is {n} a composite number?", "Is {n} composite?"])
    return template.format(n=n), str(not is_prime(n))


_PLACE_NAMES = (
    "units",
    "tens",
    "hundreds",
    "thousands",
    "ten thousands",
    "hundred thousands",
    "millions",
    "ten millions",
)


def _q_place_value(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(10**3, 10**8 - 1)
    place = rng.randint(0, len(str(n)) - 1)
    digit = (n // 10**place) % 10
    return f"What is the {_PLACE_NAMES[place]} digit of {n}?", str(digit)


def _q_div_remainder(rng: random.Random) -> tuple[str, str]:
    b = rng.randint(2, 400)
    a = rng.randint(b + 1, 200_000)
    template = rng.choice(
        [
            "What is the remainder when {a} is divided by {b}?",
            "Calculate the remainder when {a} is divided by {b}.",
            "What is the remainder of {a} divided by {b}?",
        ]
    )
    return template.format(a=a, b=b), str(a % b)


def _q_round(rng: random.Random) -> tuple[str, str]:
    while True:
        x = Fraction(rng.randint(-(10**7), 10**7), 10 ** rng.randint(0, 6))
        if rng.random() < 0.5:
            dp = rng.randint(0, 3)
            unit = Fraction(1, 10**dp)
            what = (
                "the nearest integer",
                "one decimal place",
                "two decimal places",
                "three decimal places",
            )[dp]
        else:
            power = rng.randint(1, 5)
            unit = Fraction(10**power)
            what = (
                "the nearest "
                + ("ten", "one hundred", "one thousand", "ten thousand", "one hundred thousand")[
                    power - 1
                ]
            )
        scaled = x / unit
        if scaled.denominator in (1, 2):
            continue  # nothing to round, or an exact tie (conventions differ): draw again
        template = rng.choice(["Round {x} to {w}.", "What is {x} rounded to {w}?"])
        return template.format(x=_decimal_str(x), w=what), _decimal_str(round(scaled) * unit)


_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def _q_prime_factors(rng: random.Random) -> tuple[str, str]:
    n = 1
    for _ in range(rng.randint(2, 6)):
        n *= rng.choice(_SMALL_PRIMES)
    if rng.random() < 0.3:
        big = rng.randint(100, 3000)
        while not is_prime(big):
            big += 1
        n *= big
    factors = sorted(_factorize(n))
    template = rng.choice(["What are the prime factors of {n}?", "List the prime factors of {n}."])
    return template.format(n=n), ", ".join(str(p) for p in factors)


def _factorize(n: int) -> set[int]:
    out, d = set(), 2
    while d * d <= n:
        while n % d == 0:
            out.add(d)
            n //= d
        d += 1
    if n > 1:
        out.add(n)
    return out


def _rand_comparable(rng: random.Random) -> tuple[Fraction, str]:
    kind = rng.random()
    if kind < 0.4:
        value = rng.randint(-20, 20)
        return Fraction(value), str(value)
    if kind < 0.7:
        dec = _rand_decimal(rng, -5, 5, 2)
        return Fraction(dec), fmt_number(dec)
    frac = Fraction(rng.randint(-40, 40), rng.randint(2, 13))
    return frac, fmt_number(frac)


def _distinct_values(rng: random.Random, count: int) -> list[tuple[Fraction, str]]:
    values: list[tuple[Fraction, str]] = []
    while len(values) < count:
        candidate = _rand_comparable(rng)
        if all(candidate[0] != v for v, _ in values):
            values.append(candidate)
    return values


def _q_pair(rng: random.Random) -> tuple[str, str]:
    (x, xs), (y, ys) = _distinct_values(rng, 2)
    kind = rng.randint(0, 5)
    if kind == 0:
        return f"Which is bigger: {xs} or {ys}?", xs if x > y else ys
    if kind == 1:
        return f"Which is greater: {xs} or {ys}?", xs if x > y else ys
    if kind == 2:
        return f"Which is smaller: {xs} or {ys}?", xs if x < y else ys
    if kind == 3:
        return f"Is {xs} greater than {ys}?", str(x > y)
    if kind == 4:
        return f"Is {xs} less than {ys}?", str(x < y)
    return f"Is {xs} at least {ys}?", str(x >= y)


def _q_sort(rng: random.Random) -> tuple[str, str]:
    values = _distinct_values(rng, rng.randint(3, 6))
    listed = ", ".join(s for _, s in values)
    descending = rng.random() < 0.5
    ordered = ", ".join(s for _, s in sorted(values, key=lambda v: v[0], reverse=descending))
    if descending:
        template = rng.choice(["Sort {l} in decreasing order.", "Put {l} in descending order."])
    else:
        template = rng.choice(
            ["Sort {l} in increasing order.", "Put {l} in ascending order.", "Sort {l}."]
        )
    return template.format(l=listed), ordered


def _q_closest(rng: random.Random) -> tuple[str, str]:
    while True:
        values = _distinct_values(rng, rng.randint(3, 5))
        target, target_str = _rand_comparable(rng)
        distances = sorted(abs(v - target) for v, _ in values)
        if distances[0] != distances[1]:
            break
    best = min(values, key=lambda v: abs(v[0] - target))[1]
    listed = ", ".join(s for _, s in values)
    template = rng.choice(
        [
            "What is the nearest to {t} in {l}?",
            "What is the closest to {t} in {l}?",
        ]
    )
    return template.format(t=target_str, l=listed), best


def _q_kth_biggest(rng: random.Random) -> tuple[str, str]:
    values = _distinct_values(rng, rng.randint(3, 6))
    k = rng.randint(1, len(values))
    biggest = rng.random() < 0.5
    ordered = sorted(values, key=lambda v: v[0], reverse=biggest)
    ordinal = ["", "second ", "third ", "fourth ", "fifth ", "sixth "][k - 1]
    word = "biggest" if biggest else "smallest"
    listed = ", ".join(s for _, s in values)
    if k == 1:
        question = f"What is the {word} value in {listed}?"
    else:
        question = f"What is the {ordinal}{word} value in {listed}?"
    return question, ordered[k - 1][1]


_UNITS: dict[str, dict[str, Fraction]] = {
    "length": {
        "kilometers": Fraction(1000),
        "meters": Fraction(1),
        "centimeters": Fraction(1, 100),
        "millimeters": Fraction(1, 1000),
        "micrometers": Fraction(1, 10**6),
        "nanometers": Fraction(1, 10**9),
    },
    "mass": {
        "tonnes": Fraction(10**6),
        "kilograms": Fraction(1000),
        "grams": Fraction(1),
        "milligrams": Fraction(1, 1000),
        "micrograms": Fraction(1, 10**6),
        "nanograms": Fraction(1, 10**9),
    },
    "volume": {"litres": Fraction(1), "millilitres": Fraction(1, 1000)},
    "time": {
        "weeks": Fraction(604800),
        "days": Fraction(86400),
        "hours": Fraction(3600),
        "minutes": Fraction(60),
        "seconds": Fraction(1),
        "milliseconds": Fraction(1, 1000),
        "microseconds": Fraction(1, 10**6),
        "nanoseconds": Fraction(1, 10**9),
    },
}


def _q_conversion(rng: random.Random) -> tuple[str, str]:
    quantity = rng.choice(sorted(_UNITS))
    units = _UNITS[quantity]
    while True:
        src, dst = rng.sample(sorted(units), 2)
        value = Fraction(_rand_decimal(rng, 0, 100, 3)) or Fraction(1, 2)
        answer = value * units[src] / units[dst]
        try:
            answer_str = _decimal_str(answer)
        except ValueError:
            continue  # e.g. minutes to weeks: not a finite decimal
        if len(answer_str) <= 16:
            break
    template = rng.choice(
        ["How many {d} are there in {v} {s}?", "What is {v} {s} in {d}?", "Convert {v} {s} to {d}."]
    )
    return template.format(d=dst, v=_decimal_str(value), s=src), answer_str


DM_MODULES: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "algebra__linear_1d": _q_linear_1d,
    "algebra__linear_2d": _q_linear_2d,
    "arithmetic__add_or_sub": _q_add_or_sub,
    "arithmetic__add_sub_multiple": _q_add_sub_multiple,
    "arithmetic__div": _q_div,
    "arithmetic__mixed": _q_mixed,
    "arithmetic__mul": _q_mul,
    "calculus__differentiate": _q_differentiate,
    "comparison__closest": _q_closest,
    "comparison__kth_biggest": _q_kth_biggest,
    "comparison__pair": _q_pair,
    "comparison__sort": _q_sort,
    "measurement__conversion": _q_conversion,
    "numbers__div_remainder": _q_div_remainder,
    "numbers__gcd": _q_gcd,
    "numbers__is_prime": _q_is_prime,
    "numbers__lcm": _q_lcm,
    "numbers__list_prime_factors": _q_prime_factors,
    "numbers__place_value": _q_place_value,
    "numbers__round_number": _q_round,
    "polynomials__evaluate": _q_evaluate,
    "polynomials__expand": _q_expand,
}
"""Generators named after the DeepMind Mathematics modules whose style they follow."""


def generate_problems(module: str, seed: int | str, count: int) -> list[Problem]:
    """``count`` problems of one module from ``random.Random(seed)`` (process-independent)."""
    if module not in DM_MODULES:
        raise ValueError(f"unknown module {module!r}; choose from {sorted(DM_MODULES)}")
    rng = random.Random(f"minipile-dm:{module}:{seed}")
    make = DM_MODULES[module]
    return [Problem(module, *make(rng)) for _ in range(count)]


_DM_CANDIDATE_DOCS = 3000


def _dm_items(tree: SourceTree) -> list[SourceItem]:
    del tree  # generated, no sources
    names = sorted(DM_MODULES)
    items = []
    for k in range(_DM_CANDIDATE_DOCS):
        module = names[k % len(names)]
        count = random.Random(f"minipile-dm-count:{SEED}:{k}").randint(20, 50)
        items.append(
            SourceItem(
                name=f"{module}/{k:04d}",
                source=f"hullft.data.minipile DM-Mathematics-style generator ({module})",
                license="Apache-2.0",
                load=lambda m=module, k=k, n=count: [  # type: ignore[misc]
                    "".join(
                        f"{p.question}\n{p.answer}\n"
                        for p in generate_problems(m, f"{SEED}:{k}", n)
                    )
                ],
            )
        )
    return items


# --------------------------------------------------------------------------------------
# The domain table
# --------------------------------------------------------------------------------------

DOMAINS: tuple[Domain, ...] = (
    Domain(
        pile_set_name="DM Mathematics",
        slug="dm-mathematics",
        packages=(),
        license="Apache-2.0",
        description="Generated question/answer pairs in the style of 22 DeepMind Mathematics "
        "modules (arithmetic, algebra, polynomials, calculus, numbers, comparison, measurement), "
        "20-50 per document, from this module's seeded generator.",
        items=_dm_items,
    ),
    Domain(
        pile_set_name="Devil's Dictionary",
        slug="devils-dictionary",
        packages=("dict-devil",),
        license="public-domain",
        description="Ambrose Bierce, The Devil's Dictionary (1911), from the dictd database; "
        "consecutive entries grouped into documents.",
        items=_devil_items,
        chunk_bytes=1500,
    ),
    Domain(
        pile_set_name="Github",
        slug="github",
        packages=("libpython3.11-stdlib",),
        license="PSF-2.0",
        description="CPython 3.11 standard-library modules (.py, tests excluded), cut at "
        "top-level def/class boundaries.",
        items=_github_items,
        max_blank_lines=2,
    ),
    Domain(
        pile_set_name="Gutenberg (PG-19)",
        slug="gutenberg-pg19",
        packages=("bible-kjv-text", "bible-kjv"),
        license="public-domain",
        description="The King James Bible, one chapter per document (decoded from "
        "bible-kjv-text with the bible-kjv program).",
        items=_gutenberg_items,
    ),
    Domain(
        pile_set_name="Licenses",
        slug="licenses",
        packages=("base-files",),
        license="verbatim-copying-permitted",
        description="The licence texts of /usr/share/common-licenses, cut at paragraphs.",
        items=_licenses_items,
        chunk_bytes=2000,
    ),
    Domain(
        pile_set_name="Man Pages",
        slug="man-pages",
        packages=("manpages",),
        license="various free (per-page SPDX id)",
        description="Linux man-pages 6.03 (sections 1-8 of the manpages package) rendered "
        "to text with groff, cut at section headings.",
        items=_man_items,
    ),
    Domain(
        pile_set_name="Python Docs",
        slug="python-docs",
        packages=("python3.11-doc",),
        license="PSF-2.0",
        description="reStructuredText sources of the Python 3.11 documentation "
        "(_sources/*.rst.txt, changelog excluded), cut at section titles.",
        items=_python_docs_items,
    ),
    Domain(
        pile_set_name="SQLite Docs",
        slug="sqlite-docs",
        packages=("sqlite3-doc",),
        license="public-domain",
        description="The SQLite 3.40 HTML documentation converted to text (navigation, "
        "scripts and diagrams dropped), cut at headings.",
        items=_sqlite_items,
    ),
    Domain(
        pile_set_name="WordNet",
        slug="wordnet",
        packages=("wordnet-base",),
        license="WordNet-3.0",
        description="WordNet 3.0 synsets (words, part of speech, gloss and examples), "
        f"{_WORDNET_SYNSETS_PER_DOC} consecutive synsets of one lexicographer file per document.",
        items=_wordnet_items,
    ),
)


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------


def domain_documents(domain: Domain, tree: SourceTree, *, progress: bool = True) -> list[Document]:
    """Select sources in seeded order and cut them into documents until the target size."""
    from tqdm import tqdm

    items = sorted(
        domain.items(tree),
        key=lambda it: (_hash_key(SEED, "select", domain.slug, it.name), it.name),
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
            "generated (`hullft.data.minipile`)"
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
        f"| `{_sha256_file(files[s])}` | `{hashlib.sha256(raw[s]).hexdigest()}` |"
        for s in SPLITS
    )
    package_rows = "\n".join(f"| `{p}` | {versions.get(p, '?')} |" for p in sorted(DEBIAN_PACKAGES))
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
  {_DM_CANDIDATE_DOCS} candidate generated documents), orders them by
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
  (`hullft.data.minipile.split_test_ids`).
- **Man pages** are rendered by {groff} with `LC_ALL=C.UTF-8`, the input
  prefixed with `.ad l`, and the page header and footer lines dropped:
  `{" ".join(_GROFF_ARGS)}`.
- **DM Mathematics** problems come from `hullft.data.minipile.generate_problems`
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
.venv/bin/python -m hullft.data.minipile fetch --sources /tmp/minipile-src
.venv/bin/python -m hullft.data.minipile build --sources /tmp/minipile-src --out hullft/assets/minipile
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


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hullft.data.minipile", description="Fetch sources for / build minipile."
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


if __name__ == "__main__":
    sys.exit(main())
