"""The default training corpus: clean English sentences from the Wikipedia sample shipped with gensim.

The gensim 4.4.0 wheel ships ``gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-
shortened.bz2``: 106 English Wikipedia articles (plus 100 redirects) in MediaWiki XML. This module strips the
markup, splits the prose into sentences, and splits the articles deterministically into ``train`` and
``heldout`` (about 10% of the articles; a heldout article never contributes a sentence to train). The result
is cached as JSON under ``cache_dir() / "data"`` so that only the first call parses the XML (a few seconds).
"""

from __future__ import annotations

import bz2
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from unimae.errors import UserError
from unimae.io import atomic_write_json
from unimae.paths import cache_dir, package_file

WIKI_RELATIVE_PATH = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WIKI_SHA256 = "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
GENSIM_VERSION = "4.4.0"
CACHE_VERSION = 1
CACHE_NAME = f"wiki_sentences_v{CACHE_VERSION}.json"

SPLITS = ("train", "heldout", "all")
HELDOUT_PERCENT = 10
MIN_WORDS = 5
MAX_WORDS = 80

# Sections whose content is references, links or bibliographies rather than prose.
_SKIP_SECTIONS = frozenset(
    {
        "references",
        "notes",
        "footnotes",
        "citations",
        "sources",
        "bibliography",
        "further reading",
        "external links",
        "see also",
        "notes and references",
        "references and notes",
        "works cited",
        "primary sources",
        "secondary sources",
    }
)

# Words that end with a period without ending the sentence (compared lower-case, without the period).
_ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "rev",
        "gen",
        "col",
        "lt",
        "sgt",
        "capt",
        "cmdr",
        "gov",
        "sen",
        "rep",
        "pres",
        "hon",
        "vs",
        "v",
        "c",
        "ca",
        "cf",
        "approx",
        "fig",
        "figs",
        "no",
        "nos",
        "vol",
        "vols",
        "pp",
        "p",
        "ed",
        "eds",
        "inc",
        "ltd",
        "co",
        "corp",
        "bros",
        "dept",
        "univ",
        "est",
        "mt",
        "ft",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "al",  # et al.
    }
)

# Inline templates whose text belongs in the sentence; every other template is dropped by filter_wiki.
_INLINE_TEMPLATE = re.compile(
    r"\{\{\s*(convert|cvt|lang|transl|nowrap|small|smaller|nihongo|as of)\s*\|([^{}]*)\}\}", re.IGNORECASE
)
_RANGE_WORDS = frozenset({"to", "-", "–", "and", "or", "by", "x", "×"})
_UNITS = {
    "sqmi": "square miles",
    "sqkm": "square kilometres",
    "km2": "square kilometres",
    "mi2": "square miles",
    "acre": "acres",
    "ha": "hectares",
    "c": "°C",
    "f": "°F",
}
_HEADING = re.compile(r"^\s*(=+)\s*(.*?)\s*\1\s*$")
_LIST_OR_TABLE = re.compile(r"^\s*[*#:;|!{}]")
_BOLD_ITALIC = re.compile(r"'{2,}")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)\]])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[])\s+")
_EMPTY_PARENS = re.compile(r"\(\s*[,;:]*\s*\)|\[\s*\]")
_LEADING_PUNCT_IN_PARENS = re.compile(r"\(\s*[,;:]\s*")
_REPEATED_PUNCT = re.compile(r"([,;])(\s*[,;])+")
_WHITESPACE = re.compile(r"\s+")
# A candidate sentence end: terminal punctuation, optional closing quotes/brackets, whitespace, then
# something that can start a sentence.
_BOUNDARY = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_WORD_BEFORE = re.compile(r"(\S+)$")
_MARKUP_LEFTOVER = re.compile(r"\{\{|\}\}|\[\[|\]\]|\||<|>|=|\bhttps?:|\bwww\.|&[a-z]+;")
_SENTENCE_START = re.compile(r"^[\"'“‘(]?[A-Z0-9]")
_SENTENCE_END = re.compile(r"[.!?][\"'”’)]*$")


class WikiDataError(UserError):
    """The shipped Wikipedia sample is missing or is not the file this module was written for."""


def wiki_source_path() -> Path:
    """Path of the Wikipedia sample inside the installed gensim package (FileNotFoundError if absent)."""
    return package_file("gensim", WIKI_RELATIVE_PATH)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_source(path: Path) -> None:
    """Raise WikiDataError unless ``path`` has the sha256 of the file shipped with gensim 4.4.0."""
    actual = sha256_file(path)
    if actual != WIKI_SHA256:
        raise WikiDataError(
            f"{path} has sha256 {actual}, expected {WIKI_SHA256} (the file shipped with gensim "
            f"{GENSIM_VERSION}); install that version: pip install gensim=={GENSIM_VERSION}"
        )


def is_heldout_title(title: str) -> bool:
    """Whether an article goes to the heldout split: a stable hash of the title, ~HELDOUT_PERCENT% of titles."""
    value = int(hashlib.sha256(title.encode("utf-8")).hexdigest()[:8], 16)
    return value % 100 < HELDOUT_PERCENT


def _raw_articles(path: Path) -> Iterator[tuple[str, str]]:
    """(title, raw wikitext) of each main-namespace article in the dump, redirects left out."""
    from gensim.corpora.wikicorpus import extract_pages

    with bz2.open(path, "rb") as f:
        for title, text, _pageid in extract_pages(f):
            if text and not text.lstrip().lower().startswith("#redirect"):
                yield title, text


def _expand_inline_template(match: re.Match[str]) -> str:
    """Plain text of one inline template ({{convert|5|km}} -> "5 km", {{lang|fr|texte}} -> "texte")."""
    name = match.group(1).lower()
    body = match.group(2)
    if name in ("nowrap", "small", "smaller"):
        return body
    args = [a.strip() for a in body.split("|") if "=" not in a]
    if not args:
        return ""
    if name in ("convert", "cvt"):
        words = [args[0]]
        rest = args[1:]
        while len(rest) >= 2 and rest[0].lower() in _RANGE_WORDS:
            words += [rest[0], rest[1]]
            rest = rest[2:]
        if rest:
            words.append(_UNITS.get(rest[0].lower(), rest[0]))
        return " ".join(words)
    if name == "lang":
        return args[-1] if len(args) >= 2 else ""
    if name == "transl":
        return args[-1]
    if name == "nihongo":
        return args[0]
    # "as of": {{as of|2014}} -> "As of 2014", {{as of|2014|lc=y}} -> "as of 2014"
    prefix = "as of" if re.search(r"\blc\s*=\s*y", body) else "As of"
    return f"{prefix} {args[0]}"


def expand_inline_templates(wikitext: str) -> str:
    """Replace the few inline templates that carry sentence text (units, foreign words, dates) by that text."""
    for _ in range(2):  # innermost first, then templates that contained them
        wikitext = _INLINE_TEMPLATE.sub(_expand_inline_template, wikitext)
    return wikitext


def _prose_paragraphs(plain: str) -> list[str]:
    """Prose lines of markup-stripped wikitext: headings, lists, tables and reference sections dropped."""
    paragraphs: list[str] = []
    skipping = False
    for line in plain.splitlines():
        heading = _HEADING.match(line)
        if heading:
            skipping = heading.group(2).strip().lower() in _SKIP_SECTIONS
            continue
        if skipping or not line.strip() or _LIST_OR_TABLE.match(line):
            continue
        paragraphs.append(line)
    return paragraphs


def clean_paragraph(text: str) -> str:
    """Normalise one paragraph of markup-stripped text: no bold/italic quotes, tidy spaces and brackets."""
    text = text.replace("\xa0", " ")
    text = _BOLD_ITALIC.sub("", text)
    text = _WHITESPACE.sub(" ", text)
    for _ in range(2):
        text = _EMPTY_PARENS.sub("", text)
        text = _LEADING_PUNCT_IN_PARENS.sub("(", text)
        text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
        text = _SPACE_AFTER_OPEN.sub(r"\1", text)
        text = _REPEATED_PUNCT.sub(r"\1", text)
    return _WHITESPACE.sub(" ", text).strip()


def _is_abbreviation(word: str) -> bool:
    """Whether ``word`` (the token carrying a final period) is an abbreviation or an initial, not a sentence end."""
    core = word.lstrip("\"'“‘([").rstrip(".")
    if not core:
        return False
    if core.lower() in _ABBREVIATIONS:
        return True
    if len(core) == 1 and core.isalpha():  # an initial: "J. R. R. Tolkien"
        return True
    # dotted abbreviations: "e.g", "i.e", "U.S", "a.m" (their last period is the one matched)
    return bool(re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", core))


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences at ``.``/``!``/``?`` followed by a capital or digit.

    Does not break after common abbreviations ("Mr.", "e.g.", "U.S.", "et al.") or single-letter initials.
    """
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.start() + 1
        if text[match.start()] == ".":
            word = _WORD_BEFORE.search(text[start:end])
            if word and _is_abbreviation(word.group(1)):
                continue
        piece = text[start : match.end()].strip()
        if piece:
            sentences.append(piece)
        start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def keep_sentence(sentence: str) -> bool:
    """Whether a sentence is clean prose: MIN_WORDS..MAX_WORDS words, capitalised, punctuated, no markup."""
    n_words = len(sentence.split())
    return (
        MIN_WORDS <= n_words <= MAX_WORDS
        and bool(_SENTENCE_START.match(sentence))
        and bool(_SENTENCE_END.search(sentence))
        and not _MARKUP_LEFTOVER.search(sentence)
    )


def article_sentences(wikitext: str) -> list[str]:
    """Clean, deduplicated sentences (in order of appearance) of one article's raw wikitext."""
    from gensim.corpora.wikicorpus import filter_wiki

    seen: set[str] = set()
    out: list[str] = []
    for paragraph in _prose_paragraphs(filter_wiki(expand_inline_templates(wikitext))):
        for sentence in split_sentences(clean_paragraph(paragraph)):
            if keep_sentence(sentence) and sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return out


def build_articles(path: Path | None = None) -> dict[str, list[str]]:
    """Parse the dump (verified by sha256) into {title: sentences}, titles sorted, empty articles left out."""
    path = wiki_source_path() if path is None else path
    verify_source(path)
    articles: dict[str, list[str]] = {}
    for title, text in _raw_articles(path):
        sentences = article_sentences(text)
        if sentences:
            articles[title] = sentences
    return dict(sorted(articles.items()))


def _dedupe(sentences: Iterable[str], exclude: set[str] | None = None) -> list[str]:
    """Sentences in order, each once, leaving out those in ``exclude``."""
    seen = set(exclude or ())
    out: list[str] = []
    for sentence in sentences:
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def _cache_path() -> Path:
    return cache_dir() / "data" / CACHE_NAME


def _write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON to ``path`` atomically (``unimae.io``: the umask's permissions, stale temporaries removed)."""
    atomic_write_json(path, payload, indent=None)


def _read_cache(path: Path) -> dict[str, list[str]] | None:
    """The cached articles, or None when the cache is absent, unreadable or from another source/version."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(payload, dict)
        or payload.get("version") != CACHE_VERSION
        or payload.get("source_sha256") != WIKI_SHA256
        or not isinstance(payload.get("articles"), dict)
    ):
        return None
    return payload["articles"]


def wiki_articles() -> dict[str, list[str]]:
    """All articles as {title: clean sentences}, titles sorted; built once, then read from the JSON cache."""
    path = _cache_path()
    articles = _read_cache(path)
    if articles is None:
        articles = build_articles()
        _write_json_atomic(
            path, {"version": CACHE_VERSION, "source_sha256": WIKI_SHA256, "articles": articles}
        )
    return articles


def split_titles(titles: Iterable[str]) -> tuple[list[str], list[str]]:
    """(train titles, heldout titles), each sorted; the split depends only on each title."""
    ordered = sorted(titles)
    return (
        [t for t in ordered if not is_heldout_title(t)],
        [t for t in ordered if is_heldout_title(t)],
    )


def wiki_sentences(split: str = "train") -> list[str]:
    """Clean English sentences of the Wikipedia sample for ``split`` in {"train", "heldout", "all"}.

    Sentences come article by article (titles sorted), deduplicated; a heldout sentence that also occurs
    in a train article is left out of heldout, so the splits share neither an article nor a sentence.
    "all" is train followed by heldout. Raises ValueError for any other split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown wiki split {split!r}; expected one of {', '.join(SPLITS)}")
    articles = wiki_articles()
    train_titles, heldout_titles = split_titles(articles)
    train = _dedupe(s for t in train_titles for s in articles[t])
    if split == "train":
        return train
    heldout = _dedupe((s for t in heldout_titles for s in articles[t]), exclude=set(train))
    return heldout if split == "heldout" else train + heldout
