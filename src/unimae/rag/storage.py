"""An index's data files on disk: ``index-g.faiss`` and ``chunks-g.jsonl`` of each generation ``g``.

A save writes generation ``g+1`` next to ``g``, then the manifest naming it, then deletes the others, so
a crash leaves the old index whole and a reader never sees a file change under it. Files are read
whole and checked against the manifest's sha256 before FAISS or JSON parses a byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from unimae import io as fileio
from unimae.rag.chunking import Chunk
from unimae.rag.manifest import REBUILD_HINT, FileHashes, RagIndexError


def index_file(folder: Path, generation: int) -> Path:
    return folder / f"index-{generation}.faiss"


def chunks_file(folder: Path, generation: int) -> Path:
    return folder / f"chunks-{generation}.jsonl"


def generations(folder: Path) -> set[int]:
    """Generation numbers of the index and chunk files in ``folder`` (empty if it is no folder)."""
    names = [*folder.glob("index-*.faiss"), *folder.glob("chunks-*.jsonl")] if folder.is_dir() else []
    return {int(m.group(1)) for f in names if (m := re.fullmatch(r"(?:index|chunks)-(\d+)\.\w+", f.name))}


def verified_bytes(file: Path, digest: str | None, folder: Path) -> bytes:
    """The bytes of ``file``, checked against the manifest's sha256 (None: not recorded) before anything
    parses them; ``RagIndexError`` naming the file if it is missing or differs."""
    hint = REBUILD_HINT.format(path=folder)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise RagIndexError(f"{file} is missing (the manifest names it); {hint}") from None
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise RagIndexError(f"{file} is damaged (its sha256 differs from the manifest's); {hint}")
    return data


def read_faiss(file: Path, digest: str | None, folder: Path):
    """The FAISS index in ``file`` (verified first)."""
    import faiss

    data = verified_bytes(file, digest, folder)
    try:
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1][:200] if str(e).strip() else "unreadable"
        raise RagIndexError(f"{file} is damaged ({reason}); {REBUILD_HINT.format(path=folder)}") from None


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_chunks(file: Path, digest: str | None, folder: Path) -> dict[int, Chunk]:
    """The chunks in ``file`` (one JSON object a line, verified first) by id."""
    data = verified_bytes(file, digest, folder)
    hint = REBUILD_HINT.format(path=folder)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RagIndexError(f"{file} is damaged (not UTF-8); {hint}") from None
    chunks = {}
    for n, line in enumerate(lines, start=1):
        try:
            c = Chunk(**json.loads(line))
            if not (_is_whole(c.id) and all(isinstance(v, str) for v in (c.source, c.file, c.text))):
                raise TypeError("a field of the wrong type")
        except (json.JSONDecodeError, TypeError) as e:
            raise RagIndexError(f"{file}:{n} is damaged ({type(e).__name__}: {e}); {hint}") from None
        chunks[c.id] = c
    return chunks


def write_generation(folder: Path, generation: int, index, chunks: dict[int, Chunk]) -> FileHashes:
    """Write generation ``generation``'s two files atomically; their sha256 for the manifest."""
    import faiss

    faiss_path, chunks_path = index_file(folder, generation), chunks_file(folder, generation)
    fileio.atomic_write_bytes(faiss_path, faiss.serialize_index(index).tobytes())
    fileio.atomic_write_text(
        chunks_path, "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chunks.values())
    )
    return FileHashes(index=fileio.sha256_file(faiss_path), chunks=fileio.sha256_file(chunks_path))


def remove_other_generations(folder: Path, generation: int) -> None:
    """Delete the data files of every generation but ``generation`` (after the manifest names it)."""
    keep = (index_file(folder, generation), chunks_file(folder, generation))
    for stale in [*folder.glob("index-*.faiss"), *folder.glob("chunks-*.jsonl")]:
        if stale not in keep:
            stale.unlink(missing_ok=True)
