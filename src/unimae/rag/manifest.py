"""The index manifest (``DIR/manifest.json``): a typed record of what an index holds and how it was built.

It names the model and backend that embedded the chunks (with the embedding of a fixed probe text, to
recognise them again), the chunking, each indexed file's content hash and chunk ids, the current
generation ``g`` of the index files and their sha256. A writer replaces it last, atomically, so it always
names a whole generation. Every field is checked when it is read, before any other file is: a damaged
value is one ``RagIndexError`` line that names the field and says how to rebuild.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, model_validator
from pydantic.dataclasses import dataclass

from unimae import io as fileio
from unimae.errors import UserError
from unimae.records import Field, StrictInt, StrictStr, record_config, user_errors

MANIFEST = "manifest.json"
FORMAT = "unimae-rag"
FORMAT_VERSION = 1
REBUILD_HINT = "rebuild it from the documents: unimae rag index DOCS --index {path} --rebuild"

NonNegative = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[StrictInt, Field(ge=1)]


class RagIndexError(UserError):
    """An index folder is missing, truncated or corrupt; the message names the file and how to rebuild."""


def _finite_numbers(values: Any) -> Any:
    """A list passes if every item is a finite number (not a bool); one error names the first that is not."""
    if isinstance(values, list):
        for i, x in enumerate(values):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ValueError(f"item {i} is {x!r}, not a finite number")
    return values


def _whole_numbers(values: Any) -> Any:
    """A list passes if every item is a whole number >= 0 (not a bool); one error names the first that is not."""
    if isinstance(values, list):
        for i, x in enumerate(values):
            if isinstance(x, bool) or not isinstance(x, int) or x < 0:
                raise ValueError(f"item {i} is {x!r}, not a whole number >= 0")
    return values


Vector = Annotated[list[float], BeforeValidator(_finite_numbers)]
Ids = Annotated[list[int], BeforeValidator(_whole_numbers)]

# Unknown keys are refused, in all three records. The manifest is written by unimae alone, never by hand,
# and `version` is its compatibility contract: a writer that adds a field a reader must understand raises
# FORMAT_VERSION, and an older reader then refuses the index as "a version-N index" with the rebuild hint.
# At this version an unknown key is an edited or damaged file; ignoring it is no option either, since an
# update rewrites the manifest from this record and would silently drop it.


@user_errors(RagIndexError)
@dataclass(config=record_config(extra="forbid"))
class IndexedFile:
    """One indexed file (keyed by its resolved path in ``Manifest.files``). Unknown keys are refused, as in
    the whole manifest (the comment above says why)."""

    sha256: StrictStr
    """The hash of the file's bytes when it was indexed: an update re-indexes the file when it differs."""
    ids: Ids
    """The ids of its chunks (in the FAISS index and ``chunks-g.jsonl``), all below ``next_id``."""


@user_errors(RagIndexError)
@dataclass(config=record_config(extra="forbid"))
class FileHashes:
    """The sha256 of generation g's files, checked before FAISS or JSON parses a byte of them. Unknown keys
    are refused, as in the whole manifest."""

    index: StrictStr
    """Of ``index-g.faiss``."""
    chunks: StrictStr
    """Of ``chunks-g.jsonl``."""


@user_errors(RagIndexError)
@dataclass(kw_only=True, config=record_config(extra="forbid"))
class Manifest:
    """What ``manifest.json`` holds, field for field in the order written (see the comment above on
    unknown keys: refused). Fields added after the first indexes were written have defaults, so those
    indexes still open."""

    format: Literal["unimae-rag"] = FORMAT
    """Marks a folder as a unimae index (its files are then never indexed as documents)."""
    version: Literal[1] = FORMAT_VERSION
    """The layout version; a reader refuses any other."""
    generation: NonNegative
    """The current generation g: the files are ``index-g.faiss`` and ``chunks-g.jsonl``."""
    model: StrictStr
    """The model that embedded the chunks: `rag ask/search` load it unless told another."""
    backend: StrictStr = "torch"
    """What computed the embeddings (torch, onnx, ...): `rag ask/search` use it unless told another."""
    dim: Positive
    """The embedding size."""
    probe: Vector
    """The unit embedding of a fixed probe text (``dim`` numbers): another model is recognised by it."""
    chunk_words: Positive
    """Words per chunk."""
    overlap: NonNegative
    """Words a chunk shares with the previous one (below ``chunk_words``)."""
    max_chunk_tokens: Positive | None = None
    """Most tokens of one chunk (None in the oldest indexes: computed from the encoder)."""
    next_id: NonNegative
    """The id the next chunk gets (ids are never reused)."""
    files: dict[StrictStr, IndexedFile]
    """Each indexed file by its resolved path."""
    count: NonNegative | None = None
    """Chunks in the index (written with each save)."""
    sha256: FileHashes | None = None
    """The hashes of generation g's files (None in the oldest indexes: not checked)."""

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        problems = []
        if self.overlap >= self.chunk_words:
            problems.append(f"overlap: {self.overlap} is not below chunk_words ({self.chunk_words})")
        if len(self.probe) != self.dim:
            problems.append(f"probe: {len(self.probe)} numbers, not dim ({self.dim})")
        for key, entry in self.files.items():
            past = [i for i in entry.ids if i >= self.next_id]
            if past:
                problems.append(f"files[{key!r}].ids: {past[0]} is not below next_id ({self.next_id})")
        if problems:
            raise ValueError("; ".join(problems[:3]))
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``manifest.json`` (nested records as objects, keys in the order declared)."""
        return dataclasses.asdict(self)

    def save(self, folder: Path) -> None:
        """Write ``folder/manifest.json`` atomically (indented by one space, as every version wrote it)."""
        fileio.atomic_write_json(folder / MANIFEST, self.to_dict(), indent=1)


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the index in ``folder``; ``RagIndexError`` naming the file (and the field) and how to
    rebuild when it is missing, not JSON, not an index manifest, of another version, or damaged."""
    file = folder / MANIFEST
    if not file.is_file():
        raise RagIndexError(f"{folder} holds no index ({MANIFEST}); build one with `unimae rag index`")
    hint = REBUILD_HINT.format(path=folder)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RagIndexError(f"{file} is damaged (not JSON: {e}); {hint}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RagIndexError(f"{file} is not a unimae index manifest; {hint}")
    if data.get("version") != FORMAT_VERSION:
        raise RagIndexError(f"{file} is a version-{data.get('version')} index, not {FORMAT_VERSION}; {hint}")
    try:
        return Manifest(**data)
    except RagIndexError as e:
        raise RagIndexError(f"{file} is damaged ({e}); {hint}") from None


def is_index_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a unimae index (its manifest), whose files are not documents."""
    manifest = Path(folder) / MANIFEST
    try:
        return manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False
