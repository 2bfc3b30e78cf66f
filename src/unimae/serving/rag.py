"""Retrieval and answer from one model: chunk documents, embed them (EOS embeddings), search, generate.

    enc = Encoder.from_pretrained("runs/default/model")
    index, update = build_index(enc, ["examples/docs"], "runs/rag-index")     # adds only new/changed files
    result = ask(enc, index, "When was the lighthouse built?")
    print(result.answer); [print(h.chunk.source) for h in result.hits]

On disk (``DIR``): ``manifest.json`` (model, embedding probe, chunking, per-file content hash and chunk
ids, the current generation ``g``), ``index-g.faiss`` (a FAISS ``IndexIDMap2`` over ``IndexFlatIP`` of
unit vectors: inner product = cosine) and ``chunks-g.jsonl`` (chunk texts and sources). A save writes
generation ``g+1`` next to ``g`` and then replaces the manifest, so a crash leaves the old index whole; the
manifest holds both files' sha256, checked before FAISS parses a byte (a damaged file is a
``RagIndexError`` that names it and says how to rebuild). Writers (``build_index``) hold ``DIR/.lock`` for
the whole update, so a second ``rag index`` on the same folder waits for the first and then adds to its
result; readers take no lock (a save never changes a file a reader may be reading, only the manifest).

Hostile folders and documents: symlinks out of a folder are skipped unless ``follow_symlinks``; the index's
own folder (and any other index folder) inside a documents folder is never indexed; a file that is
not UTF-8 (or a bad JSONL line) is skipped with a warning; chunks are capped in tokens so each is embedded
whole; every answer prompt is fitted to the model's context (``fit_prompt``), and control-token text in a
document stays text (``unimae.chat``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from unimae import io as fileio
from unimae.chat import chat_input_ids, has_chat_template, text_input_ids
from unimae.encoding.encoder import Encoder
from unimae.encoding.pooling import layout
from unimae.errors import UserError

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md", ".jsonl")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
PROBE_TEXT = "unimae retrieval index probe: the quick brown fox jumps over the lazy dog."
PROBE_COSINE_ACROSS_BACKENDS = 0.98  # int8 vs fp32 of one model (docs/backends.md: min cosine >= 0.99)
DEFAULT_CHUNK_WORDS = 120
DEFAULT_OVERLAP = 30
REBUILD_HINT = "rebuild it from the documents: unimae rag index DOCS --index {path} --rebuild"
LOCK_FILE = ".lock"  # held by a writer for a whole update (hidden: never indexed itself)


class DocumentError(UserError):
    """A document or folder cannot be indexed (missing, wrong kind, unreadable); the message names it."""


class RagIndexError(UserError):
    """An index folder is missing, truncated or corrupt; the message names the file and how to rebuild."""


class PromptTooLongError(UserError):
    """The question alone (with the instruction) does not fit the model's context."""


@dataclass
class Chunk:
    id: int
    source: str  # what to cite: "file.md#3" (3rd chunk), or "file.jsonl:12#1"
    file: str  # the file's key in the manifest
    text: str


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


def source_parts(source: str) -> tuple[str, int]:
    """``("file.md", 3)`` for the source ``"file.md#3"`` (its 3rd chunk); ``(source, 1)`` for a document that
    is one chunk (its source has no ``#k``). A one-chunk document whose own name ends in ``#<digits>``
    reads as that chunk of the name before it."""
    match = re.fullmatch(r"(.*)#(\d+)", source, flags=re.DOTALL)
    return (match.group(1), int(match.group(2))) if match else (source, 1)


@dataclass
class IndexUpdate:
    """What ``RagIndex.add_documents`` did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: why" for each file left out
    chunks_embedded: int = 0
    total_chunks: int = 0


@dataclass
class RagAnswer:
    answer: str
    hits: list[Hit]
    prompt: str


# --- documents and chunks -----------------------------------------------------------------------


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


def is_index_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a unimae index (its manifest), whose files are not documents."""
    manifest = Path(folder) / MANIFEST
    try:
        return manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("format") == (
            "unimae-rag"
        )
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def collect_files(
    paths: Iterable[str | Path], follow_symlinks: bool = False, index_dir: str | Path | None = None
) -> tuple[list[Path], list[str]]:
    """The .txt/.md/.jsonl files named, or found (recursively, hidden ones skipped) in the folders named.

    In a folder, a symlink to a file or folder outside it is skipped unless ``follow_symlinks``: the
    second list says what was skipped and why. Files named explicitly are always taken, except those of
    ``index_dir`` (the index being updated, whose chunk files change with every save); a folder that
    holds an index (``index_dir`` or another) is never searched.
    """
    files: list[Path] = []
    skipped: list[str] = []
    own = Path(index_dir).resolve() if index_dir is not None else None
    for p in map(Path, paths):
        if own is not None and p.resolve().is_relative_to(own) and p.exists():
            skipped.append(f"{p}: part of the index {index_dir} being updated; not a document")
            continue
        if p.is_dir() and is_index_folder(p):
            skipped.append(f"{p}: holds a unimae index (its chunk files are not documents)")
            continue
        if p.is_dir():
            found, why = _walk(p, follow_symlinks)
            skipped += why
            if not found:
                raise DocumentError(
                    f"{p} holds no {'/'.join(SUFFIXES)} files to index" + "".join(f"; {w}" for w in why)
                )
            files += found
        else:
            fileio.require_regular_file(p, DocumentError)  # missing, a FIFO, a device: said as it is
            if p.suffix not in SUFFIXES:
                raise DocumentError(f"{p}: only {', '.join(SUFFIXES)} files can be indexed")
            files.append(p)
    return list(dict.fromkeys(f.resolve() for f in files)), skipped


def _walk(root: Path, follow_symlinks: bool) -> tuple[list[Path], list[str]]:
    """Indexable files under ``root``, and what was skipped (links out of ``root``, broken links)."""
    top = root.resolve()
    found, skipped, seen = [], [], set()
    hint = "pass follow_symlinks=True (--follow-symlinks) to index it"
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        here = Path(dirpath)
        seen.add(here.resolve())
        keep = []
        for name in sorted(n for n in dirnames if not n.startswith(".")):
            d = here / name
            if follow_symlinks and d.resolve() in seen:  # a link loop
                continue
            if is_index_folder(d):  # an index's own chunk files: indexing them doubles it every run
                continue
            if not follow_symlinks and d.is_symlink() and not d.resolve().is_relative_to(top):
                skipped.append(f"{d}: a symlink to a folder outside {root} ({d.resolve()}); {hint}")
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(n for n in filenames if not n.startswith(".") and Path(n).suffix in SUFFIXES):
            f = here / name
            kind = fileio.file_kind(f)
            if kind != "a file":  # reading a FIFO or /dev/zero would block or never end
                skipped.append(
                    f"{f}: {kind}" if kind == "a broken symlink" else f"{f}: {kind}, not a regular file"
                )
            elif not follow_symlinks and not f.resolve().is_relative_to(top):
                skipped.append(f"{f}: a symlink to a file outside {root} ({f.resolve()}); {hint}")
            else:
                found.append(f)
    return found, skipped


def read_documents(path: Path, skipped: list[str] | None = None) -> list[tuple[str, str]]:
    """``(source, text)`` pairs of one file: the whole file for .txt/.md, one per record for .jsonl.

    A .jsonl record holds its text in ``text`` (or ``content``) and may name itself in ``source``, ``title``
    or ``id``; otherwise it is ``file.jsonl:LINE``. A file that is not UTF-8 raises UnicodeDecodeError, a bad
    record ``DocumentError`` (``unimae.io.JsonlError``), both naming the file. A record whose text or name
    is not valid Unicode (a JSON ``"\\ud800"`` escape) is left out, its ``file:line`` and why appended to
    ``skipped``: it could be neither embedded nor saved, and the file's other records are fine.
    """
    if path.suffix != ".jsonl":
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not text
        return [(path.name, text)] if text.strip() else []
    docs = []
    for n, rec in fileio.iter_jsonl(path):
        text = rec.get("text", rec.get("content")) if isinstance(rec, dict) else None
        if not isinstance(text, str):
            raise DocumentError(f"{path}:{n}: a record needs a 'text' string")
        name = next(
            (str(rec[k]) for k in ("source", "title", "id") if rec.get(k) is not None), f"{path.name}:{n}"
        )
        why = fileio.not_unicode(text) or fileio.not_unicode(name)
        if why is not None:
            field_name = "its text" if fileio.not_unicode(text) else "its source name"
            (skipped if skipped is not None else []).append(
                f"{path}:{n}: {field_name}: {why}; record skipped"
            )
            continue
        if text.strip():
            docs.append((name, text))
    return docs


def _readable_documents(path: Path, skipped: list[str]) -> tuple[list[tuple[str, str]] | None, str | None]:
    """(documents, None), or (None, why) for a file one bad document should not stop an index for; records
    left out of a readable file are added to ``skipped``."""
    try:
        return read_documents(path, skipped), None
    except UnicodeDecodeError as e:
        return None, f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); skipped"
    except (DocumentError, fileio.JsonlError) as e:
        return None, f"{e}; skipped"
    except OSError as e:
        return None, f"{path}: cannot be read ({e.strerror}); skipped"


# --- the index ------------------------------------------------------------------------------------


class RagIndex:
    """A persistent vector index of document chunks, built and searched with one ``Encoder``."""

    def __init__(
        self, path: str | Path, manifest: dict, index, chunks: dict[int, Chunk], on_disk: bool = True
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
        manifest = {
            "format": "unimae-rag",
            "version": FORMAT_VERSION,
            "generation": max(_generations(Path(path)), default=0),  # never reuse a file name on disk
            "model": model_name,
            "backend": encoder.backend,  # what embedded the chunks: `rag ask/search` use it by default
            "dim": encoder.dim,
            "probe": _probe(encoder).tolist(),
            "chunk_words": chunk_words,
            "overlap": overlap,
            "max_chunk_tokens": chunk_token_limit(encoder),
            "next_id": 0,
            "files": {},
        }
        return cls(path, manifest, faiss.IndexIDMap2(faiss.IndexFlatIP(encoder.dim)), {}, on_disk=False)

    @classmethod
    def open(cls, path: str | Path) -> RagIndex:
        """The index saved in ``path``; ``RagIndexError`` (naming the file) if it is missing or damaged.

        Takes no lock: when a writer saves a new generation between reading the manifest and its files
        (the old files are then deleted), the new manifest is read again."""
        for _ in range(3):
            manifest = _read_manifest(Path(path))
            try:
                return cls._open_generation(Path(path), manifest)
            except RagIndexError:
                if _read_manifest(Path(path))["generation"] == manifest["generation"]:
                    raise  # really damaged, not replaced under us
        return cls._open_generation(Path(path), _read_manifest(Path(path)))

    @classmethod
    def _open_generation(cls, path: Path, manifest: dict) -> RagIndex:
        g = manifest["generation"]
        index = _read_faiss(path / f"index-{g}.faiss", manifest.get("sha256", {}).get("index"), path)
        chunks = _read_chunks(path / f"chunks-{g}.jsonl", manifest.get("sha256", {}).get("chunks"), path)
        if index.ntotal != len(chunks) or index.d != manifest["dim"]:
            raise RagIndexError(
                f"{path}: index-{g}.faiss holds {index.ntotal} {index.d}-d vectors for {len(chunks)} chunks of "
                f"{manifest['dim']}-d; {REBUILD_HINT.format(path=path)}"
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
            if value != index.manifest[key]:
                raise UserError(
                    f"the index at {path} was chunked with {key}={index.manifest[key]}, not {value}; "
                    "use a new index folder (or --rebuild) to change the chunking"
                )
        return index

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def model_name(self) -> str:
        return self.manifest["model"]

    def check_model(self, encoder: Encoder) -> None:
        """UserError unless ``encoder`` embeds like the model that built the index."""
        if encoder.dim != self.manifest["dim"]:
            raise UserError(
                f"the index holds {self.manifest['dim']}-d vectors of '{self.model_name}'; "
                f"this model gives {encoder.dim}-d vectors"
            )
        cos = float(np.dot(_probe(encoder), np.asarray(self.manifest["probe"], dtype=np.float32)))
        same = self.manifest.get("backend", "torch") == encoder.backend
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
        update, new_chunks, drop_ids = IndexUpdate(skipped=skipped), [], []
        for f in files:
            if fileio.not_unicode(str(f)) is not None:  # its name could not be cited or saved
                update.skipped.append(
                    f"{f}: the file name is not UTF-8 ({fileio.not_unicode(str(f))}); rename it"
                )
                continue
            key, digest = str(f), fileio.sha256_file(f)
            old = self.manifest["files"].get(key)
            if old is not None and old["sha256"] == digest:
                update.unchanged.append(key)
                continue
            if old is not None:  # changed: its old chunks go, readable or not
                drop_ids += self.manifest["files"].pop(key)["ids"]
            docs, why = _readable_documents(f, update.skipped)
            if docs is None:
                update.skipped.append(why)
                continue
            (update.updated if old is not None else update.added).append(key)
            chunks = self._chunks_of(key, docs, encoder)
            self.manifest["files"][key] = {"sha256": digest, "ids": [c.id for c in chunks]}
            new_chunks += chunks
        if prune:
            for key in [k for k in self.manifest["files"] if not Path(k).exists()]:
                drop_ids += self.manifest["files"].pop(key)["ids"]
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
        limit = self.manifest.get("max_chunk_tokens") or chunk_token_limit(encoder)
        out = []
        for source, text in docs:
            pieces = chunk_text(
                text, self.manifest["chunk_words"], self.manifest["overlap"], encoder.tokenizer, limit
            )
            for k, piece in enumerate(pieces, start=1):
                out.append(
                    Chunk(
                        self.manifest["next_id"], f"{source}#{k}" if len(pieces) > 1 else source, key, piece
                    )
                )
                self.manifest["next_id"] += 1
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

    def search_vector(self, vector: np.ndarray, k: int = 4) -> list[Hit]:
        """The ``k`` chunks closest to a unit ``vector`` ``(d,)``, best first."""
        _check_k(k)
        if not len(self.chunks):
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        scores, ids = self.index.search(q, min(int(k), len(self.chunks)))
        return [Hit(self.chunks[int(i)], float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]

    def search(self, encoder: Encoder, query: str, k: int = 4) -> list[Hit]:
        """The ``k`` chunks closest to ``query``, best first."""
        _check_k(k)  # before embedding anything
        return self.search_vector(encoder.encode(query, normalize_embeddings=True), k)

    def save(self) -> None:
        """Write generation g+1 (with hashes), then switch the manifest to it (atomic), then delete older ones."""

        if self.on_disk and (self.path / MANIFEST).is_file():
            on_disk = _read_manifest(self.path)["generation"]
            if on_disk != self.manifest["generation"]:
                raise RagIndexError(
                    f"{self.path} was changed by another writer since it was opened (generation {on_disk}, "
                    f"not {self.manifest['generation']}); nothing was saved: update it with build_index, "
                    "which holds the index's lock"
                )
        new = max({self.manifest["generation"], *_generations(self.path)}) + 1
        with fileio.disk_errors(self.path, "the index is as it was before this update"):
            self._write_generation(new)

    def _write_generation(self, new: int) -> None:
        """Write generation ``new``'s files, then the manifest naming them, then delete the older ones."""
        import faiss

        index_file, chunks_file = self.path / f"index-{new}.faiss", self.path / f"chunks-{new}.jsonl"
        fileio.atomic_write_bytes(index_file, faiss.serialize_index(self.index).tobytes())
        fileio.atomic_write_text(
            chunks_file,
            "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in self.chunks.values()),
        )
        hashes = {"index": fileio.sha256_file(index_file), "chunks": fileio.sha256_file(chunks_file)}
        manifest = {**self.manifest, "generation": new, "count": len(self.chunks), "sha256": hashes}
        fileio.atomic_write_json(self.path / MANIFEST, manifest, indent=1)
        self.manifest, self.on_disk = manifest, True
        for stale in [*self.path.glob("index-*.faiss"), *self.path.glob("chunks-*.jsonl")]:
            if stale not in (index_file, chunks_file):
                stale.unlink(missing_ok=True)


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"k (the number of chunks to retrieve) must be a whole number >= 1, got {k!r}")


def _generations(path: Path) -> set[int]:
    """Generation numbers of the index and chunk files in ``path``."""
    names = [*path.glob("index-*.faiss"), *path.glob("chunks-*.jsonl")] if path.is_dir() else []
    return {int(m.group(1)) for f in names if (m := re.fullmatch(r"(?:index|chunks)-(\d+)\.\w+", f.name))}


def _read_manifest(path: Path) -> dict:
    file = path / MANIFEST
    if not file.is_file():
        raise RagIndexError(f"{path} holds no index ({MANIFEST}); build one with `unimae rag index`")
    hint = REBUILD_HINT.format(path=path)
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RagIndexError(f"{file} is damaged (not JSON: {e}); {hint}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "unimae-rag":
        raise RagIndexError(f"{file} is not a unimae index manifest; {hint}")
    if manifest.get("version") != FORMAT_VERSION:
        raise RagIndexError(
            f"{file} is a version-{manifest.get('version')} index, not {FORMAT_VERSION}; {hint}"
        )
    bad = manifest_problems(manifest)
    if bad:
        raise RagIndexError(f"{file} is damaged (missing or wrong: {'; '.join(bad[:3])}); {hint}")
    return manifest


def _whole(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def manifest_problems(manifest: dict) -> list[str]:
    """What is wrong in an index manifest's fields (empty: nothing): every field is read before any
    file is, so a damaged value is named here instead of failing deep inside an update or a search."""
    m = manifest
    checks = {
        "generation": _whole(m.get("generation")),
        "model": isinstance(m.get("model"), str),
        "dim": _whole(m.get("dim"), 1),
        "chunk_words": _whole(m.get("chunk_words"), 1),
        "overlap": _whole(m.get("overlap")) and m.get("overlap") < (m.get("chunk_words") or 0),
        "next_id": _whole(m.get("next_id")),
        "files": isinstance(m.get("files"), dict),
        "max_chunk_tokens": m.get("max_chunk_tokens") is None or _whole(m.get("max_chunk_tokens"), 1),
        "backend": isinstance(m.get("backend", "torch"), str),
        "sha256": isinstance(m.get("sha256", {}), dict)
        and all(isinstance(v, str) for v in m.get("sha256", {}).values()),
    }
    probe = m.get("probe")
    checks["probe"] = (
        isinstance(probe, list) and len(probe) == m.get("dim") and all(_number(x) for x in probe)
    )
    bad = [name for name, ok in checks.items() if not ok]
    for key, entry in (m.get("files") or {}).items() if checks["files"] else ():
        ids = entry.get("ids") if isinstance(entry, dict) else None
        ok = isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(ids, list)
        if not ok or not all(_whole(i) and i < (m.get("next_id") or 0) for i in ids):
            bad.append(f"files[{key!r}] (needs a sha256 and ids below next_id)")
    return bad


def _verified_bytes(file: Path, digest: str | None, path: Path) -> bytes:
    """The bytes of ``file``, checked against the manifest's sha256 before anything parses them."""
    hint = REBUILD_HINT.format(path=path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise RagIndexError(f"{file} is missing (the manifest names it); {hint}") from None
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise RagIndexError(f"{file} is damaged (its sha256 differs from the manifest's); {hint}")
    return data


def _read_faiss(file: Path, digest: str | None, path: Path):
    import faiss

    data = _verified_bytes(file, digest, path)
    try:
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1][:200] if str(e).strip() else "unreadable"
        raise RagIndexError(f"{file} is damaged ({reason}); {REBUILD_HINT.format(path=path)}") from None


def _read_chunks(file: Path, digest: str | None, path: Path) -> dict[int, Chunk]:
    data = _verified_bytes(file, digest, path)
    hint = REBUILD_HINT.format(path=path)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RagIndexError(f"{file} is damaged (not UTF-8); {hint}") from None
    chunks = {}
    for n, line in enumerate(lines, start=1):
        try:
            c = Chunk(**json.loads(line))
            if not (_whole(c.id) and all(isinstance(v, str) for v in (c.source, c.file, c.text))):
                raise TypeError("a field of the wrong type")
        except (json.JSONDecodeError, TypeError) as e:
            raise RagIndexError(f"{file}:{n} is damaged ({type(e).__name__}: {e}); {hint}") from None
        chunks[c.id] = c
    return chunks


def _probe(encoder: Encoder) -> np.ndarray:
    return encoder.encode(PROBE_TEXT, normalize_embeddings=True)


def build_index(
    encoder: Encoder,
    docs: Sequence[str | Path],
    index_dir: str | Path,
    model_name: str | None = None,
    chunk_words: int | None = None,
    overlap: int | None = None,
    batch_size: int = 32,
    prune: bool = False,
    show_progress_bar: bool | None = None,
    follow_symlinks: bool = False,
    rebuild: bool = False,
) -> tuple[RagIndex, IndexUpdate]:
    """Create the index at ``index_dir`` or update it with ``docs`` (files or folders).

    The index folder is locked for the whole update (``writer_lock``): a second writer waits, then
    updates what the first one saved. Readers (``RagIndex.open``, a server) are not blocked.

    Args:
        follow_symlinks: also index what symlinks in a folder point to outside it (skipped by default).
        rebuild: start a new index (also over a damaged one) instead of updating the existing one.
    """
    check_build_options(index_dir, batch_size, chunk_words, overlap)
    with writer_lock(index_dir):
        index = RagIndex.open_or_create(
            index_dir,
            encoder,
            model_name or "unknown",
            rebuild=rebuild,
            chunk_words=chunk_words,
            overlap=overlap,
        )
        return index, index.add_documents(
            encoder,
            docs,
            batch_size=batch_size,
            prune=prune,
            show_progress_bar=show_progress_bar,
            follow_symlinks=follow_symlinks,
        )


def check_build_options(
    index_dir: str | Path, batch_size: int, chunk_words: int | None = None, overlap: int | None = None
) -> None:
    """Before any work (the CLI calls it before loading the model): ``batch_size >= 1``, a valid chunking,
    and an index folder that can be written (``DiskError`` for a file there, a read-only disk)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if (chunk_words is not None and chunk_words < 1) or (overlap is not None and overlap < 0):
        raise UserError(f"need chunk_words >= 1 and overlap >= 0, got {chunk_words}, {overlap}")
    if chunk_words is not None and overlap is not None:
        chunk_text("x", chunk_words, overlap)  # overlap < chunk_words
    fileio.check_writable(index_dir, folder=True)


@contextmanager
def writer_lock(index_dir: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold ``index_dir/.lock`` (created with the folder) while the block runs; one writer at a time.

    Another process's lock is waited for (a warning says so once), at most ``timeout`` seconds (None: as
    long as it takes; the lock goes with its process, so a killed writer never leaves it held); then
    ``RagIndexError``. A folder that cannot be written is a one-line ``DiskError`` before any work.
    """
    from filelock import FileLock, Timeout

    index_dir = Path(index_dir)
    fileio.check_writable(index_dir, folder=True)
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(index_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("another `unimae rag index` is updating %s: waiting for it to finish", index_dir)
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise RagIndexError(
                f"{index_dir} is still being updated by another `unimae rag index` after {timeout} s; "
                "try again when it has finished"
            ) from None
    try:
        yield
    finally:
        lock.release()


# --- answering ------------------------------------------------------------------------------------

INSTRUCTION = (
    "Answer the question using only the numbered sources below. Cite the sources you use as [1], [2]. "
    "If the sources do not contain the answer, say that you do not know."
)
MIN_SOURCE_TOKENS = 16  # a source cut shorter than this is dropped instead


@dataclass
class RagPrompt:
    """A prompt that fits the model's context: its ids, the sources it kept (the last may be cut)."""

    ids: list[int]
    text: str  # the user message
    hits: list[Hit]
    max_new_tokens: int  # the answer length that still fits


def build_prompt(question: str, hits: Sequence[Hit]) -> str:
    """The user message: instruction, numbered sources, question."""
    sources = "\n\n".join(f"[{i}] ({h.chunk.source}) {h.chunk.text}" for i, h in enumerate(hits, start=1))
    return f"{INSTRUCTION}\n\nSources:\n{sources}\n\nQuestion: {question}"


def prompt_ids(tokenizer, text: str) -> list[int]:
    """The ids ``Encoder.generate`` gives ``text``: one user turn (chat template) or plain text; either way
    control-token text in the question or a source stays text."""
    if has_chat_template(tokenizer):
        return chat_input_ids(tokenizer, [{"role": "user", "content": text}])
    return text_input_ids(tokenizer, text)


def fit_prompt(encoder: Encoder, question: str, hits: Sequence[Hit], max_new_tokens: int) -> RagPrompt:
    """The prompt for ``question`` with as many of ``hits`` as fit the context, never more.

    Half the context at most is kept for the answer (``max_new_tokens`` if less); sources that do not fit
    the rest are dropped from the end, the last one kept is cut by tokens. ``PromptTooLongError`` if the
    question alone does not fit.
    """
    hits, ctx = list(hits), encoder.context_length
    text = build_prompt(question, hits)
    ids = prompt_ids(encoder.tokenizer, text)
    if ctx is None:
        return RagPrompt(ids, text, hits, max_new_tokens)
    budget = ctx - min(max_new_tokens, ctx // 2)
    while len(ids) > budget and hits:
        spans = token_spans(encoder.tokenizer, hits[-1].chunk.text)
        keep = len(spans) - (len(ids) - budget) - 2  # two spare: a cut can merge tokens differently
        if keep < MIN_SOURCE_TOKENS or keep >= len(spans):
            hits.pop()
        else:
            hits[-1] = replace(
                hits[-1], chunk=replace(hits[-1].chunk, text=hits[-1].chunk.text[: spans[keep - 1][1]])
            )
        text = build_prompt(question, hits)
        ids = prompt_ids(encoder.tokenizer, text)
    if len(ids) > budget:
        raise PromptTooLongError(
            f"the question makes a prompt of {len(ids)} tokens; the model's context of {ctx} tokens leaves "
            f"{budget} for it (the rest is kept for the answer): ask a shorter question"
        )
    return RagPrompt(ids, text, hits, min(max_new_tokens, ctx - len(ids)))


def ask(encoder: Encoder, index: RagIndex, question: str, k: int = 4, max_new_tokens: int = 200) -> RagAnswer:
    """Retrieve the top-``k`` chunks for ``question`` and answer from them with the same weights.

    The sources are cut to fit the model's context (``fit_prompt``); ``RagAnswer.hits`` are those used.
    """
    if not question.strip():
        raise UserError("the question is empty")
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    prompt = fit_prompt(encoder, question, index.search(encoder, question, k), max_new_tokens)
    answer = encoder.generate(prompt.text, max_new_tokens=prompt.max_new_tokens)
    return RagAnswer(answer, prompt.hits, prompt.text)
