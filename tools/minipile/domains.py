"""minipile's domains: which sources each takes and how they become items.

A domain lists its `SourceItem`s (one per source file, or per generated unit);
`build.domain_documents` takes them in seeded order, packs each item's segments
into documents and stops at the domain's target size.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.minipile.formats import (
    devil_entries,
    html_to_text,
    kjv_verses,
    man_license,
    parse_wordnet_line,
    read_text,
    render_man,
    split_man,
    split_marked_headings,
    split_python,
    split_rst,
    wordnet_lexnames,
)
from tools.minipile.mathgen import DM_MODULES, generate_problems
from tools.minipile.params import SEED
from tools.minipile.sources import SourceTree


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


# ---- Github: CPython standard library sources ----------------------------------------

_PY_EXCLUDED_DIRS = {"test", "tests", "idle_test", "pydoc_data", "__phello__", "site-packages"}
_PY_EXCLUDED_FILES = {"_distutils_system_mod.py", "this.py", "__hello__.py"}


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
                load=lambda p=path: split_python(read_text(p)),  # type: ignore[misc]
            )
        )
    return items


# ---- Python Docs: reStructuredText sources of the 3.11 documentation -----------------


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
                load=lambda p=path: split_rst(read_text(p)),  # type: ignore[misc]
            )
        )
    return items


# ---- SQLite Docs: the HTML documentation, converted to text --------------------------

_SQLITE_EXCLUDED = re.compile(
    r"^(releaselog/|syntax/|search\.d/|doc_|changes\.html|chronology\.html|requirements\.html"
    r"|syntaxdiagrams\.html|sitemap\.html|toc\.html|keyword_index\.html|capi3ref\.html"
    r"|index\.html|docs\.html|news\.html|c3ref/(intro|funclist|objlist|constlist)\.html)"
)


def _sqlite_load(path: Path) -> list[str]:
    title, text = html_to_text(read_text(path))
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


# ---- Man Pages: Linux man-pages rendered with groff ----------------------------------


def _man_items(tree: SourceTree) -> list[SourceItem]:
    base = tree.package("manpages") / "usr/share/man"
    items = []
    for path in sorted(base.glob("man*/*")):
        if path.is_symlink() or not path.is_file():
            continue
        source = read_text(path)
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


# ---- WordNet: synset glosses ---------------------------------------------------------

_WORDNET_SYNSETS_PER_DOC = 40


def _wordnet_items(tree: SourceTree) -> list[SourceItem]:
    base = tree.package("wordnet-base") / "usr/share/wordnet"
    lexnames = wordnet_lexnames(tree)
    by_lexname: dict[str, list[str]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        for line in read_text(base / f"data.{pos}").splitlines():
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


# ---- Gutenberg (PG-19): the King James Bible -----------------------------------------


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


# ---- The Devil's Dictionary ----------------------------------------------------------


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


# ---- Licenses: the licence texts Debian ships in /usr/share/common-licenses ----------


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
                    para + "\n\n" for para in re.split(r"\n\s*\n", read_text(p))
                ],
            )
        )
    return items


# ---- DM Mathematics: generated, no sources -------------------------------------------

DM_CANDIDATE_DOCS = 3000


def _dm_items(tree: SourceTree) -> list[SourceItem]:
    del tree  # generated, no sources
    names = sorted(DM_MODULES)
    items = []
    for k in range(DM_CANDIDATE_DOCS):
        module = names[k % len(names)]
        count = random.Random(f"minipile-dm-count:{SEED}:{k}").randint(20, 50)
        items.append(
            SourceItem(
                name=f"{module}/{k:04d}",
                # The generator lived in hullft.data.minipile when the corpus was built;
                # this string is part of the committed records, so it stays as it is.
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


# ---- The domain table ----------------------------------------------------------------

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
