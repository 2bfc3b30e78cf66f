"""Chunks of a document: windows of words that overlap, cut further by tokens so each is embedded whole."""

from __future__ import annotations

import re
from dataclasses import dataclass

from unimae.encoding.encoder import Encoder
from unimae.encoding.pooling import layout
from unimae.errors import UserError

DEFAULT_CHUNK_WORDS = 120
DEFAULT_OVERLAP = 30


@dataclass
class Chunk:
    """One indexed piece of a document, as saved in ``chunks-g.jsonl``."""

    id: int
    source: str  # what to cite: "file.md#3" (3rd chunk), or "file.jsonl:12#1"
    file: str  # the file's key in the manifest
    text: str


def source_parts(source: str) -> tuple[str, int]:
    """``("file.md", 3)`` for the source ``"file.md#3"`` (its 3rd chunk); ``(source, 1)`` for a document that
    is one chunk (its source has no ``#k``). A one-chunk document whose own name ends in ``#<digits>``
    reads as that chunk of the name before it."""
    match = re.fullmatch(r"(.*)#(\d+)", source, flags=re.DOTALL)
    return (match.group(1), int(match.group(2))) if match else (source, 1)


def chunk_text(
    text: str,
    chunk_words: int = DEFAULT_CHUNK_WORDS,
    overlap: int = DEFAULT_OVERLAP,
    tokenizer=None,
    max_tokens: int | None = None,
) -> list[str]:
    """Windows of ``chunk_words`` words, each sharing ``overlap`` words with the previous one.

    Chunks are slices of ``text`` (its line breaks kept); the last window ends at the last word. With a
    ``tokenizer`` and ``max_tokens``, a window longer than ``max_tokens`` tokens (one huge "word": a
    minified line, a text without spaces) is cut further into windows of at most ``max_tokens`` tokens.
    """
    if chunk_words < 1 or not 0 <= overlap < chunk_words:
        raise UserError(f"need chunk_words >= 1 and 0 <= overlap < chunk_words, got {chunk_words}, {overlap}")
    words = [m.span() for m in re.finditer(r"\S+", text)]
    chunks, step = [], chunk_words - overlap
    for start in range(0, len(words), step):
        window = words[start : start + chunk_words]
        chunks.append(text[window[0][0] : window[-1][1]])
        if start + chunk_words >= len(words):
            break
    if tokenizer is None or max_tokens is None:
        return chunks
    return [piece for chunk in chunks for piece in split_by_tokens(chunk, tokenizer, max_tokens)]


def token_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """Character span of each token of ``text`` (control-token text counted as text).

    A tokenizer without offsets (a slow one) gets one span per character, which over-counts tokens.
    """
    try:
        enc = tokenizer(
            text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True
        )
        return [tuple(span) for span in enc["offset_mapping"]]
    except NotImplementedError:
        return [(i, i + 1) for i in range(len(text))]


def split_by_tokens(text: str, tokenizer, max_tokens: int) -> list[str]:
    """``text`` as slices of at most ``max_tokens`` tokens, neighbours sharing an eighth of that."""
    spans = token_spans(tokenizer, text)
    if len(spans) <= max_tokens:
        return [text]
    step = max_tokens - max_tokens // 8
    pieces = []
    for start in range(0, len(spans), step):
        window = spans[start : start + max_tokens]
        pieces.append(text[window[0][0] : window[-1][1]])
        if start + max_tokens >= len(spans):
            break
    return [p for p in pieces if p.strip()]


def chunk_token_limit(encoder: Encoder) -> int:
    """Most text tokens one chunk may have so that its embedding (BOS, EOS, pooling prompt) sees all of it."""
    one = len(
        layout(
            encoder.pooling, encoder.tokenizer, "a", encoder.max_length, encoder.eos_id, encoder.bos_id
        ).ids
    )
    copies = 2 if encoder.pooling == "echo" else 1  # echo embeds the text twice
    room = encoder.max_length - (one - copies * len(token_spans(encoder.tokenizer, "a")))
    return max(1, room // copies)
