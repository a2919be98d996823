"""Source formats to text segments, one reader per kind of source.

Each ``split_*`` function cuts a text at its natural boundaries (top-level
definitions, section titles, headings); the others decode the packages' own
formats (gzip, man(7) via groff, WordNet ``data.*`` lines, dictd, the KJV).
Segments keep their line breaks, so ``"".join(segments)`` is the input text.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from tools.minipile.sources import MissingSourceError, SourceTree


def read_text(path: Path) -> str:
    """A source file's text (gunzipped if ``.gz``), undecodable bytes replaced."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").splitlines(keepends=True)


# ---- Python sources ------------------------------------------------------------------

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


# ---- reStructuredText ----------------------------------------------------------------

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


# ---- HTML ----------------------------------------------------------------------------

_MANY_BLANKS = re.compile(r"\n{3,}")
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


# ---- Man pages, rendered with groff --------------------------------------------------

GROFF_ARGS = ("groff", "-k", "-t", "-man", "-Tutf8", "-P-cbou", "-rHY=0", "-rLL=78n")


def groff_version() -> str:
    if shutil.which("groff") is None:
        raise MissingSourceError(
            "`groff` not found; the man-page domain is rendered with it "
            "(Debian: apt-get install groff-base)"
        )
    proc = subprocess.run(["groff", "--version"], check=False, capture_output=True, text=True)
    return proc.stdout.splitlines()[0].strip()


def render_man(source: str) -> str:
    """Render man(7) source to plain UTF-8 text: left-adjusted, no hyphenation, no SGR."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        list(GROFF_ARGS),
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


# ---- WordNet -------------------------------------------------------------------------

_WORDNET_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}


def wordnet_lexnames(tree: SourceTree) -> dict[int, str]:
    """``lex_filenum -> lexicographer file name``, from the package's lexnames(5WN) page."""
    page = read_text(tree.package("wordnet-base") / "usr/share/man/man5/lexnames.5WN.gz")
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


# ---- The King James Bible ------------------------------------------------------------

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


# ---- dictd (The Devil's Dictionary) --------------------------------------------------

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
    for line in read_text(base / "devil.index").splitlines():
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
