"""``RagIndex``: a persistent FAISS index of document chunks, built, updated and searched with one ``Encoder``.

On disk (``DIR``): ``manifest.json`` (``unimae.rag.manifest``), ``index-g.faiss`` (a FAISS ``IndexIDMap2``
over ``IndexFlatIP`` of unit vectors: inner product = cosine) and ``chunks-g.jsonl`` (chunk texts and
sources; ``unimae.rag.storage``). An update embeds only the chunks of new or changed files (by content
hash). Readers take no lock: a save never changes a file a reader may be reading, only the manifest.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unimae import io as fileio
from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.rag.chunking import (
    DEFAULT_CHUNK_WORDS,
    DEFAULT_OVERLAP,
    Chunk,
    chunk_text,
    chunk_token_limit,
    source_parts,
)
from unimae.rag.documents import collect_files, readable_documents
from unimae.rag.manifest import MANIFEST, REBUILD_HINT, IndexedFile, Manifest, RagIndexError, read_manifest
from unimae.rag.storage import (
    chunks_file,
    generations,
    index_file,
    read_chunks,
    read_faiss,
    remove_other_generations,
    write_generation,
)

log = logging.getLogger(__name__)

PROBE_TEXT = "unimae retrieval index probe: the quick brown fox jumps over the lazy dog."
PROBE_COSINE_ACROSS_BACKENDS = 0.98  # int8 vs fp32 of one model (docs/backends.md: min cosine >= 0.99)
PREVIEW_CHARS = 150  # of a hit's text on a terminal


@dataclass
class Hit:
    chunk: Chunk
    score: float  # cosine similarity to the query

    def to_dict(self) -> dict:
        document, number = source_parts(self.chunk.source)
        return {
            "id": self.chunk.id,
            "source": self.chunk.source,
            "document": document,
            "chunk": number,
            "score": round(self.score, 4),
            "text": self.chunk.text,
        }

    def __str__(self) -> str:
        """One line for a terminal: the source, the cosine and the text's start (whitespace folded)."""
        text = " ".join(self.chunk.text.split())
        more = "..." if len(text) > PREVIEW_CHARS else ""
        return f"{self.chunk.source}  (cosine {self.score:.3f})  {text[:PREVIEW_CHARS]}{more}"


def numbered_hits(hits: Sequence[Hit]) -> str:
    """The hits one per line, numbered ``[1]``, ``[2]``, ... as an answer cites them ("" for none)."""
    return "\n".join(f"[{i}] {h}" for i, h in enumerate(hits, start=1))


class Hits(list[Hit]):
    """The hits of one search, best first: a plain list whose ``str()`` is ``numbered_hits``."""

    def __str__(self) -> str:
        return numbered_hits(self)


@dataclass
class IndexUpdate:
    """What ``RagIndex.add_documents`` did; ``str()`` is the report ``unimae rag index`` prints."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: why" for each file left out
    chunks_embedded: int = 0
    total_chunks: int = 0
    index_dir: str = ""  # the index folder updated

    def __str__(self) -> str:
        """The counts on one line, then one ``skipped PATH: why`` line per file left out."""
        counts = (
            f"index {self.index_dir}: {len(self.added)} new, {len(self.updated)} changed, "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed files; "
            f"embedded {self.chunks_embedded} chunks; {self.total_chunks} chunks in all"
        )
        return "\n".join([counts, *(f"skipped {why}" for why in self.skipped)])


def probe_vector(encoder: Encoder) -> np.ndarray:
    """The unit embedding ``(d,)`` of ``PROBE_TEXT``: recorded in the manifest to recognise the model."""
    return encoder.encode(PROBE_TEXT, normalize_embeddings=True)


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"k (the number of chunks to retrieve) must be a whole number >= 1, got {k!r}")


class RagIndex:
    """A persistent vector index of document chunks, built and searched with one ``Encoder``."""

    def __init__(
        self, path: str | Path, manifest: Manifest, index, chunks: dict[int, Chunk], on_disk: bool = True
    ):
        self.path, self.manifest, self.index, self.chunks = Path(path), manifest, index, chunks
        self.on_disk = on_disk  # False until a new index is first saved

    @classmethod
    def create(
        cls,
        path: str | Path,
        encoder: Encoder,
        model_name: str,
        chunk_words: int = DEFAULT_CHUNK_WORDS,
        overlap: int = DEFAULT_OVERLAP,
    ) -> RagIndex:
        """A new, empty index (written by the first save; files of an older index in ``path`` are replaced)."""
        import faiss

        chunk_text("x", chunk_words, overlap)  # validates the chunking
        manifest = Manifest(
            generation=max(generations(Path(path)), default=0),  # never reuse a file name on disk
            model=model_name,
            backend=encoder.backend,  # what embedded the chunks: `rag ask/search` use it by default
            dim=int(encoder.dim),
            probe=probe_vector(encoder).tolist(),
            chunk_words=chunk_words,
            overlap=overlap,
            max_chunk_tokens=chunk_token_limit(encoder),
            next_id=0,
            files={},
        )
        return cls(path, manifest, faiss.IndexIDMap2(faiss.IndexFlatIP(encoder.dim)), {}, on_disk=False)

    @classmethod
    def open(cls, path: str | Path) -> RagIndex:
        """The index saved in ``path``; ``RagIndexError`` (naming the file) if it is missing or damaged.

        Takes no lock: when a writer saves a new generation between reading the manifest and its files
        (the old files are then deleted), the new manifest is read again."""
        for _ in range(3):
            manifest = read_manifest(Path(path))
            try:
                return cls._open_generation(Path(path), manifest)
            except RagIndexError:
                if read_manifest(Path(path)).generation == manifest.generation:
                    raise  # really damaged, not replaced under us
        return cls._open_generation(Path(path), read_manifest(Path(path)))

    @classmethod
    def _open_generation(cls, path: Path, manifest: Manifest) -> RagIndex:
        g, hashes = manifest.generation, manifest.sha256
        index = read_faiss(index_file(path, g), hashes and hashes.index, path)
        chunks = read_chunks(chunks_file(path, g), hashes and hashes.chunks, path)
        if index.ntotal != len(chunks) or index.d != manifest.dim:
            raise RagIndexError(
                f"{path}: index-{g}.faiss holds {index.ntotal} {index.d}-d vectors for {len(chunks)} chunks of "
                f"{manifest.dim}-d; {REBUILD_HINT.format(path=path)}"
            )
        return cls(path, manifest, index, chunks)

    @classmethod
    def open_or_create(
        cls, path: str | Path, encoder: Encoder, model_name: str, rebuild: bool = False, **chunking
    ) -> RagIndex:
        """The index in ``path`` (checked against ``encoder`` and ``chunking``), or a new one."""
        given = {k: v for k, v in chunking.items() if v is not None}
        if rebuild or not (Path(path) / MANIFEST).is_file():
            return cls.create(path, encoder, model_name, **given)
        index = cls.open(path)
        index.check_model(encoder)
        for key, value in given.items():
            if value != getattr(index.manifest, key):
                raise UserError(
                    f"the index at {path} was chunked with {key}={getattr(index.manifest, key)}, not {value}; "
                    "use a new index folder (or --rebuild) to change the chunking"
                )
        return index

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def model_name(self) -> str:
        return self.manifest.model

    def check_model(self, encoder: Encoder) -> None:
        """UserError unless ``encoder`` embeds like the model that built the index."""
        if encoder.dim != self.manifest.dim:
            raise UserError(
                f"the index holds {self.manifest.dim}-d vectors of '{self.model_name}'; "
                f"this model gives {encoder.dim}-d vectors"
            )
        cos = float(np.dot(probe_vector(encoder), np.asarray(self.manifest.probe, dtype=np.float32)))
        same = self.manifest.backend == encoder.backend
        if cos < (0.999 if same else PROBE_COSINE_ACROSS_BACKENDS):
            raise UserError(
                f"the index was built with '{self.model_name}', whose embeddings differ from this "
                f"model's (probe cosine {cos:.3f}); use that model or build a new index"
            )

    def add_documents(
        self,
        encoder: Encoder,
        paths: Sequence[str | Path],
        batch_size: int = 32,
        prune: bool = False,
        show_progress_bar: bool | None = None,
        follow_symlinks: bool = False,
    ) -> IndexUpdate:
        """Index new files, re-index changed ones (by content hash), skip unchanged ones; then save.

        ``prune`` also drops files that no longer exist. Only new chunks are embedded. Files that cannot be
        read as documents (not UTF-8, a bad JSON line) and symlinks out of a folder (unless
        ``follow_symlinks``) are skipped and listed in ``IndexUpdate.skipped``, with a logged warning.
        """
        files, skipped = collect_files(paths, follow_symlinks, index_dir=self.path)
        update, new_chunks, drop_ids = IndexUpdate(skipped=skipped, index_dir=str(self.path)), [], []
        known = self.manifest.files
        for f in files:
            if fileio.not_unicode(str(f)) is not None:  # its name could not be cited or saved
                update.skipped.append(
                    f"{f}: the file name is not UTF-8 ({fileio.not_unicode(str(f))}); rename it"
                )
                continue
            key, digest = str(f), fileio.sha256_file(f)
            old = known.get(key)
            if old is not None and old.sha256 == digest:
                update.unchanged.append(key)
                continue
            if old is not None:  # changed: its old chunks go, readable or not
                drop_ids += known.pop(key).ids
            docs, why = readable_documents(f, update.skipped)
            if docs is None:
                update.skipped.append(why)
                continue
            (update.updated if old is not None else update.added).append(key)
            chunks = self._chunks_of(key, docs, encoder)
            known[key] = IndexedFile(sha256=digest, ids=[c.id for c in chunks])
            new_chunks += chunks
        if prune:
            for key in [k for k in known if not Path(k).exists()]:
                drop_ids += known.pop(key).ids
                update.removed.append(key)
        for why in update.skipped:
            log.warning("rag index: %s", why)
        self._apply(encoder, new_chunks, drop_ids, batch_size, show_progress_bar)
        update.chunks_embedded, update.total_chunks = len(new_chunks), len(self.chunks)
        if new_chunks or drop_ids or update.added or update.updated or update.removed or not self.on_disk:
            self.save()
        return update

    def _chunks_of(self, key: str, docs: list[tuple[str, str]], encoder: Encoder) -> list[Chunk]:
        """New chunks (with fresh ids) of one file's documents, each short enough to embed whole."""
        m = self.manifest
        limit = m.max_chunk_tokens or chunk_token_limit(encoder)
        out = []
        for source, text in docs:
            pieces = chunk_text(text, m.chunk_words, m.overlap, encoder.tokenizer, limit)
            for k, piece in enumerate(pieces, start=1):
                out.append(Chunk(m.next_id, f"{source}#{k}" if len(pieces) > 1 else source, key, piece))
                m.next_id += 1
        return out

    def _apply(
        self, encoder: Encoder, new_chunks: list[Chunk], drop_ids: list[int], batch_size: int, bar
    ) -> None:
        if new_chunks:
            texts = [c.text for c in new_chunks]
            vecs = encoder.encode(
                texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=bar
            )
            self.index.add_with_ids(vecs, np.array([c.id for c in new_chunks], dtype=np.int64))
            self.chunks.update({c.id: c for c in new_chunks})
        if drop_ids:
            self.index.remove_ids(np.array(drop_ids, dtype=np.int64))
            for i in drop_ids:
                self.chunks.pop(i, None)

    def search_vector(self, vector: np.ndarray, k: int = 4) -> Hits:
        """The ``k`` chunks closest to a unit ``vector`` ``(d,)``, best first."""
        _check_k(k)
        if not len(self.chunks):
            return Hits()
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        scores, ids = self.index.search(q, min(int(k), len(self.chunks)))
        return Hits(
            Hit(self.chunks[int(i)], float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0
        )

    def search(self, encoder: Encoder, query: str, k: int = 4) -> Hits:
        """The ``k`` chunks closest to ``query``, best first."""
        _check_k(k)  # before embedding anything
        return self.search_vector(encoder.encode(query, normalize_embeddings=True), k)

    def save(self) -> None:
        """Write generation g+1 (with hashes), then switch the manifest to it (atomic), then delete older ones."""
        if self.on_disk and (self.path / MANIFEST).is_file():
            on_disk = read_manifest(self.path).generation
            if on_disk != self.manifest.generation:
                raise RagIndexError(
                    f"{self.path} was changed by another writer since it was opened (generation {on_disk}, "
                    f"not {self.manifest.generation}); nothing was saved: update it with build_index, "
                    "which holds the index's lock"
                )
        new = max({self.manifest.generation, *generations(self.path)}) + 1
        with fileio.disk_errors(self.path, "the index is as it was before this update"):
            self._write_generation(new)

    def _write_generation(self, new: int) -> None:
        """Write generation ``new``'s files, then the manifest naming them, then delete the older ones."""
        hashes = write_generation(self.path, new, self.index, self.chunks)
        manifest = dataclasses.replace(self.manifest, generation=new, count=len(self.chunks), sha256=hashes)
        manifest.save(self.path)
        self.manifest, self.on_disk = manifest, True
        remove_other_generations(self.path, new)
