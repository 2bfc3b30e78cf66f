"""Training text from the user's sources: the shipped Wikipedia sample, a .txt or .jsonl file, or a HF dataset.

Every loader returns a non-empty list of stripped, non-empty strings or raises CorpusError with a message
that says what was wrong and what is accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

from unimae.errors import UserError
from unimae.io import not_unicode, split_lines

ACCEPTED_FORMS = (
    '"wiki" (the Wikipedia sample shipped with gensim), '
    "a .txt file (one text per line), "
    "a .jsonl file (one JSON object per line, text under text_field, default 'text'), "
    '"hf:NAME" or "hf:NAME:SPLIT" (a Hugging Face dataset; needs the datasets package and the hub)'
)


class CorpusError(UserError):
    """A text source could not be loaded: missing, unreadable, malformed, empty, or unknown."""


def load_texts(
    source: str = "wiki",
    *,
    split: str = "train",
    text_field: str = "text",
    max_texts: int | None = None,
) -> list[str]:
    """Texts from ``source``: "wiki", a path to a .txt or .jsonl file, or "hf:NAME[:SPLIT]".

    ``split`` selects the wiki split ("train", "heldout", "all") or the HF split when the source names none;
    it is ignored for files. ``text_field`` is the JSONL key / HF column holding the text. ``max_texts``
    keeps the first N texts. Texts are stripped; blank ones are skipped. Never returns an empty list:
    raises CorpusError instead (also for missing/unreadable files, bad JSON lines, unknown sources).
    """
    if max_texts is not None and max_texts < 1:
        raise CorpusError(f"max_texts must be a positive integer or None, got {max_texts!r}")
    source = source.strip()
    if source == "wiki":
        texts = _load_wiki(split)
        where = f"wiki split {split!r}"
    elif source.startswith("hf:"):
        texts = _load_hf(source, split, text_field, max_texts)
        where = source
    else:
        path = _resolve_path(source)
        texts = _load_txt(path) if path.suffix.lower() == ".txt" else _load_jsonl(path, text_field)
        where = str(path)
    if not texts:
        raise CorpusError(f"{where} holds no texts (empty, or only blank texts)")
    return texts[:max_texts] if max_texts is not None else texts


def _load_wiki(split: str) -> list[str]:
    from unimae.data.wiki import wiki_sentences

    try:
        return wiki_sentences(split)
    except ValueError as e:
        raise CorpusError(str(e)) from e


def _resolve_path(source: str) -> Path:
    """The .txt/.jsonl file named by ``source``; CorpusError when it is missing or of another kind."""
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".txt", ".jsonl"):
        if not path.exists():
            raise CorpusError(f"text file not found: {path}")
        if not path.is_file():
            raise CorpusError(f"cannot read {path}: not a regular file")
        return path
    if path.exists():
        raise CorpusError(
            f"unsupported file type {path.suffix or '(none)'!r} for {path}; accepted: {ACCEPTED_FORMS}"
        )
    if suffix or "/" in source or "\\" in source:
        raise CorpusError(f"{source} not found; accepted sources: {ACCEPTED_FORMS}")
    raise CorpusError(f"unknown text source {source!r}; accepted: {ACCEPTED_FORMS}")


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark dropped; any line ending); CorpusError naming the
    path when it cannot be read or decoded."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return split_lines(f.read())
    except UnicodeDecodeError as e:
        raise CorpusError(f"cannot read {path}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or e}") from e


def _load_txt(path: Path) -> list[str]:
    """One text per line, stripped, blank lines skipped."""
    return [line.strip() for line in _read_lines(path) if line.strip()]


def _load_jsonl(path: Path, text_field: str) -> list[str]:
    """``text_field`` of each JSON object, one per line; blank lines and blank texts skipped."""
    texts: list[str] = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}, line {number}: invalid JSON ({e.msg})") from e
        if not isinstance(record, dict):
            raise CorpusError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        if text_field not in record:
            keys = ", ".join(sorted(map(str, record))) or "none"
            raise CorpusError(f"{path}, line {number}: no field {text_field!r} (fields: {keys})")
        value = record[text_field]
        if not isinstance(value, str):
            raise CorpusError(
                f"{path}, line {number}: field {text_field!r} is {type(value).__name__}, expected a string"
            )
        why = not_unicode(value)  # a JSON "\\ud800" escape
        if why is not None:
            raise CorpusError(f"{path}, line {number}: field {text_field!r}: {why}")
        if value.strip():
            texts.append(value.strip())
    return texts


def parse_hf_source(source: str, default_split: str) -> tuple[str, str]:
    """("NAME", "SPLIT") from "hf:NAME" or "hf:NAME:SPLIT" (the split defaults to ``default_split``)."""
    rest = source[len("hf:") :]
    name, _, split = rest.partition(":")
    name, split = name.strip(), split.strip()
    if not name:
        raise CorpusError(f"{source!r} names no dataset; write hf:NAME or hf:NAME:SPLIT")
    return name, split or default_split


def _load_hf(source: str, default_split: str, text_field: str, max_texts: int | None) -> list[str]:
    """The ``text_field`` column of a Hugging Face dataset split, stripped, blank texts skipped."""
    name, split = parse_hf_source(source, default_split)
    try:
        import datasets
    except ImportError as e:
        raise CorpusError(
            f"{source} needs the 'datasets' package: pip install datasets (or pip install 'unimae[hub]')"
        ) from e
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as e:  # hub offline, dataset or split not found, auth: all surface the same way
        raise CorpusError(
            f"could not load the Hugging Face dataset {name!r} (split {split!r}): {type(e).__name__}: {e}. "
            'The hub may be unreachable from here; use a local .txt/.jsonl file or "wiki" instead.'
        ) from e
    columns = list(getattr(dataset, "column_names", None) or [])
    if text_field not in columns:
        raise CorpusError(
            f"the Hugging Face dataset {name!r} has no column {text_field!r} (columns: {', '.join(columns)})"
        )
    texts: list[str] = []
    for row, value in enumerate(dataset[text_field]):
        if not isinstance(value, str):
            raise CorpusError(
                f"{name!r} row {row}: column {text_field!r} is {type(value).__name__}, expected a string"
            )
        if value.strip():
            texts.append(value.strip())
            if max_texts is not None and len(texts) >= max_texts:
                break
    return texts
