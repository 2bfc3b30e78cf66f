"""Texts from a file and embeddings to a file, row i always from input record i.

Input formats (by suffix): ``.txt`` one text per line; ``.jsonl`` one JSON object per line, the text under
``text_field``; ``.csv`` / ``.tsv`` a header row naming ``text_field``, then one text per row. Any line ending
(``\\n``, ``\\r\\n``, ``\\r``) and a UTF-8 byte-order mark are accepted in every format. A blank line,
or a record whose text is missing or blank, would silently shift every later row, so it is refused with
a ``UserError`` naming the file and line, as is text that is not UTF-8.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unimae.errors import UserError
from unimae.io import (
    atomic_write_bytes,
    check_writable,
    disk_errors,
    iter_jsonl,
    not_unicode,
    require_regular_file,
    split_lines,
)

INPUT_SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv")


class InputFileError(UserError):
    """An input file of texts cannot be read row for row; the message names the file and line."""


def read_inputs(path: str | Path, text_field: str = "text") -> list[str]:
    """One stripped text per record of ``path`` (.txt, .jsonl, .csv, .tsv), in file order.

    Raises ``InputFileError`` naming the file and line for a blank line, a record without a non-blank
    ``text_field`` string, bytes that are not UTF-8, or an unknown suffix; never drops a record.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise InputFileError(f"{path}: unsupported input type {suffix or '(none)'!r}; use {INPUT_SUFFIXES}")
    require_regular_file(path, InputFileError)  # a FIFO or /dev/zero would block or never end
    text = _decode(path)
    if suffix == ".txt":
        records = enumerate(_lines(text), start=1)
    elif suffix == ".jsonl":
        records = _jsonl_texts(path, text_field)
    else:
        records = _table_texts(path, text, text_field, "\t" if suffix == ".tsv" else ",")
    texts = [_checked(path, number, value) for number, value in records]
    if not texts:
        raise InputFileError(f"{path}: holds no texts")
    return texts


def _decode(path: Path) -> str:
    """The file as UTF-8 text; InputFileError naming the line of the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # tolerate a BOM, as editors on Windows write one
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputFileError(f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _lines(text: str) -> list[str]:
    """Lines split on \\n, \\r\\n or \\r only (str.splitlines also splits on form feeds, \\u2028...)."""
    return split_lines(text)


def _jsonl_texts(path: Path, text_field: str) -> Iterator[tuple[int, object]]:
    for number, record in iter_jsonl(path, skip_blank=False):
        if not isinstance(record, dict):
            raise InputFileError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record.get(text_field)


def _table_texts(path: Path, text: str, text_field: str, delimiter: str) -> Iterator[tuple[int, object]]:
    """``(line, text)`` of each row; a field may be as long as the file (csv's own cap is 131,072
    characters); a row csv cannot parse is an InputFileError naming its line."""
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header or text_field not in header:
            raise InputFileError(f"{path}:1: the header row has no {text_field!r} column (got {header})")
        column = header.index(text_field)
        for row in reader:
            yield reader.line_num, row[column] if column < len(row) else None
    except csv.Error as e:
        raise InputFileError(f"{path}:{reader.line_num}: not a valid {path.suffix[1:]} row ({e})") from None


def _checked(path: Path, number: int, value: object) -> str:
    if value is None:
        raise InputFileError(f"{path}:{number}: no text (a blank row, or the text field is missing)")
    if not isinstance(value, str):
        raise InputFileError(f"{path}:{number}: the text is a {type(value).__name__}, not a string")
    if not value.strip():
        raise InputFileError(f"{path}:{number}: blank text; remove the line or give it text, so rows align")
    why = not_unicode(value)  # a JSON "\\ud800" escape
    if why is not None:
        raise InputFileError(f"{path}:{number}: {why}; fix the record, so rows align")
    return value.strip()


@dataclass(frozen=True)
class EncodedFile:
    """A ``.npy`` file ``encode_to_file`` wrote: ``str()`` is the line ``unimae encode`` prints."""

    path: Path
    rows: int  # texts embedded, one row each
    dim: int  # columns: the embedding size, or ``truncate_dim``
    pooling: str

    def __str__(self) -> str:
        return f"wrote {self.rows} x {self.dim} embeddings ({self.pooling} pooling) to {self.path}"


def encode_to_file(
    encoder,
    texts: list[str],
    output: str | Path = "embeddings.npy",
    *,
    batch_size: int = 32,
    normalize_embeddings: bool = True,
    truncate: bool = True,
    truncate_dim: int | None = None,
    show_progress_bar: bool | None = True,
) -> Path:
    """Embed ``texts`` with ``encoder`` (an ``Encoder``) into a ``.npy`` file; returns the path written.

    Row i of the ``(n, d)`` float32 array is ``texts[i]``. ``output`` gets a ``.npy`` suffix when it has
    another (as ``numpy.save`` does), and the returned path says so. The options and the target are
    checked before any text is embedded (``check_encode_options``); the file is written atomically, and a
    disk error while writing is a one-line ``DiskError``.
    """
    output = check_encode_options(output, batch_size, truncate_dim, encoder.dim)
    vecs = encoder.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=normalize_embeddings,
        show_progress_bar=show_progress_bar,
        truncate=truncate,
        truncate_dim=truncate_dim,
    )
    buffer = io.BytesIO()
    np.save(buffer, vecs)
    with disk_errors(output):
        return atomic_write_bytes(output, buffer.getvalue())


def npy_path(output: str | Path) -> Path:
    """``output`` with the ``.npy`` suffix ``numpy.save`` would give it."""
    output = Path(output)
    return output if output.suffix == ".npy" else output.with_name(output.name + ".npy")


def check_encode_options(
    output: str | Path, batch_size: int, truncate_dim: int | None, dim: int | None = None
) -> Path:
    """The ``.npy`` path ``encode_to_file`` writes, after checking before any work: ``batch_size >= 1``,
    ``1 <= truncate_dim <= dim`` (``dim`` when known), and that the file can be written there
    (``unimae.io.check_writable``: not a folder, not on a read-only disk)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if truncate_dim is not None and (truncate_dim < 1 or (dim is not None and truncate_dim > dim)):
        limit = f"between 1 and {dim}" if dim else ">= 1"
        raise UserError(f"truncate_dim must be {limit}, got {truncate_dim}")
    return check_writable(npy_path(output))
