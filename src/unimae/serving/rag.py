"""Retrieval and answer from one model: chunk documents, embed them (EOS embeddings), search, generate.

    enc = Encoder.from_pretrained("runs/default/model")
    index, update = build_index(enc, ["examples/docs"], "runs/rag-index")     # adds only new/changed files
    result = ask(enc, index, "When was the lighthouse built?")
    print(result.answer); [print(h.chunk.source) for h in result.hits]

On disk (``DIR``): ``manifest.json`` (model, embedding probe, chunking, per-file content hash and chunk
ids, the current generation ``g``), ``index-g.faiss`` (a FAISS ``IndexIDMap2`` over ``IndexFlatIP`` of
unit vectors: inner product = cosine) and ``chunks-g.jsonl`` (chunk texts and sources). A save writes
generation ``g+1`` next to ``g`` and then replaces the manifest, so a crash leaves the old index whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from unimae.encoding.encoder import Encoder

SUFFIXES = (".txt", ".md", ".jsonl")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
PROBE_TEXT = "unimae retrieval index probe: the quick brown fox jumps over the lazy dog."
DEFAULT_CHUNK_WORDS = 120
DEFAULT_OVERLAP = 30


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
        return {
            "id": self.chunk.id,
            "source": self.chunk.source,
            "score": round(self.score, 4),
            "text": self.chunk.text,
        }


@dataclass
class IndexUpdate:
    """What ``RagIndex.add_documents`` did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    chunks_embedded: int = 0
    total_chunks: int = 0


@dataclass
class RagAnswer:
    answer: str
    hits: list[Hit]
    prompt: str


# --- documents and chunks -----------------------------------------------------------------------


def chunk_text(
    text: str, chunk_words: int = DEFAULT_CHUNK_WORDS, overlap: int = DEFAULT_OVERLAP
) -> list[str]:
    """Windows of ``chunk_words`` words, each sharing ``overlap`` words with the previous one.

    Chunks are slices of ``text`` (its line breaks kept); the last window ends at the last word.
    """
    if chunk_words < 1 or not 0 <= overlap < chunk_words:
        raise ValueError(
            f"need chunk_words >= 1 and 0 <= overlap < chunk_words, got {chunk_words}, {overlap}"
        )
    words = [m.span() for m in re.finditer(r"\S+", text)]
    if not words:
        return []
    chunks, step = [], chunk_words - overlap
    for start in range(0, len(words), step):
        window = words[start : start + chunk_words]
        chunks.append(text[window[0][0] : window[-1][1]])
        if start + chunk_words >= len(words):
            break
    return chunks


def collect_files(paths: Iterable[str | Path]) -> list[Path]:
    """The .txt/.md/.jsonl files named, or found (recursively, hidden ones skipped) in the folders named."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix in SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not found:
                raise ValueError(f"{p} holds no {'/'.join(SUFFIXES)} files")
            files += found
        elif p.is_file():
            if p.suffix not in SUFFIXES:
                raise ValueError(f"{p}: only {', '.join(SUFFIXES)} files can be indexed")
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return list(dict.fromkeys(f.resolve() for f in files))


def read_documents(path: Path) -> list[tuple[str, str]]:
    """``(source, text)`` pairs of one file: the whole file for .txt/.md, one per record for .jsonl.

    A .jsonl record holds its text in ``text`` (or ``content``) and may name itself in ``source``, ``title``
    or ``id``; otherwise it is ``file.jsonl:LINE``.
    """
    if path.suffix != ".jsonl":
        text = path.read_text(encoding="utf-8")
        return [(path.name, text)] if text.strip() else []
    docs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        text = rec.get("text", rec.get("content")) if isinstance(rec, dict) else None
        if not isinstance(text, str):
            raise ValueError(f"{path}:{n}: a record needs a 'text' string")
        name = next(
            (str(rec[k]) for k in ("source", "title", "id") if rec.get(k) is not None), f"{path.name}:{n}"
        )
        if text.strip():
            docs.append((name, text))
    return docs


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the index ------------------------------------------------------------------------------------


class RagIndex:
    """A persistent vector index of document chunks, built and searched with one ``Encoder``."""

    def __init__(self, path: str | Path, manifest: dict, index, chunks: dict[int, Chunk]):
        self.path, self.manifest, self.index, self.chunks = Path(path), manifest, index, chunks

    @classmethod
    def create(
        cls,
        path: str | Path,
        encoder: Encoder,
        model_name: str,
        chunk_words: int = DEFAULT_CHUNK_WORDS,
        overlap: int = DEFAULT_OVERLAP,
    ) -> RagIndex:
        import faiss

        chunk_text("x", chunk_words, overlap)  # validates the chunking
        manifest = {
            "format": "unimae-rag",
            "version": FORMAT_VERSION,
            "generation": 0,
            "model": model_name,
            "dim": encoder.dim,
            "probe": _probe(encoder).tolist(),
            "chunk_words": chunk_words,
            "overlap": overlap,
            "next_id": 0,
            "files": {},
        }
        return cls(path, manifest, faiss.IndexIDMap2(faiss.IndexFlatIP(encoder.dim)), {})

    @classmethod
    def open(cls, path: str | Path) -> RagIndex:
        import faiss

        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"{path} holds no index ({MANIFEST}); build one with `unimae rag index`")
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") != "unimae-rag" or manifest.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path / MANIFEST} is not a version-{FORMAT_VERSION} unimae index")
        g = manifest["generation"]
        index = faiss.read_index(str(path / f"index-{g}.faiss"))
        chunks = {}
        with open(path / f"chunks-{g}.jsonl", encoding="utf-8") as f:
            for line in f:
                c = Chunk(**json.loads(line))
                chunks[c.id] = c
        if index.ntotal != len(chunks):
            raise ValueError(f"{path}: the index has {index.ntotal} vectors for {len(chunks)} chunks")
        return cls(path, manifest, index, chunks)

    @classmethod
    def open_or_create(cls, path: str | Path, encoder: Encoder, model_name: str, **chunking) -> RagIndex:
        if (Path(path) / MANIFEST).is_file():
            index = cls.open(path)
            index.check_model(encoder)
            for key, value in chunking.items():
                if value is not None and value != index.manifest[key]:
                    raise ValueError(
                        f"the index at {path} was chunked with {key}={index.manifest[key]}, not {value}; "
                        "use a new index folder to change the chunking"
                    )
            return index
        return cls.create(path, encoder, model_name, **{k: v for k, v in chunking.items() if v is not None})

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def model_name(self) -> str:
        return self.manifest["model"]

    def check_model(self, encoder: Encoder) -> None:
        """ValueError unless ``encoder`` embeds like the model that built the index."""
        if encoder.dim != self.manifest["dim"]:
            raise ValueError(
                f"the index holds {self.manifest['dim']}-d vectors of '{self.model_name}'; "
                f"this model gives {encoder.dim}-d vectors"
            )
        cos = float(np.dot(_probe(encoder), np.asarray(self.manifest["probe"], dtype=np.float32)))
        if cos < 0.999:
            raise ValueError(
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
    ) -> IndexUpdate:
        """Index new files, re-index changed ones (by content hash), skip unchanged ones; then save.

        ``prune`` also drops files that no longer exist. Only new chunks are embedded.
        """
        files = collect_files(paths)
        known = self.manifest["files"]
        update, new_chunks, drop_ids = IndexUpdate(), [], []
        for f in files:
            key, digest = str(f), _sha256(f)
            old = known.get(key)
            if old is not None and old["sha256"] == digest:
                update.unchanged.append(key)
                continue
            if old is not None:
                drop_ids += old["ids"]
            (update.updated if old is not None else update.added).append(key)
            ids = []
            for source, text in read_documents(f):
                pieces = chunk_text(text, self.manifest["chunk_words"], self.manifest["overlap"])
                for k, piece in enumerate(pieces, start=1):
                    c = Chunk(
                        self.manifest["next_id"], f"{source}#{k}" if len(pieces) > 1 else source, key, piece
                    )
                    self.manifest["next_id"] += 1
                    new_chunks.append(c)
                    ids.append(c.id)
            known[key] = {"sha256": digest, "ids": ids}
        if prune:
            for key in [k for k in known if not Path(k).exists()]:
                drop_ids += known.pop(key)["ids"]
                update.removed.append(key)
        if new_chunks:
            vecs = encoder.encode(
                [c.text for c in new_chunks],
                batch_size=batch_size,
                normalize=True,
                show_progress_bar=show_progress_bar,
            )
            self.index.add_with_ids(vecs, np.array([c.id for c in new_chunks], dtype=np.int64))
            self.chunks.update({c.id: c for c in new_chunks})
        if drop_ids:
            self.index.remove_ids(np.array(drop_ids, dtype=np.int64))
            for i in drop_ids:
                self.chunks.pop(i, None)
        update.chunks_embedded, update.total_chunks = len(new_chunks), len(self.chunks)
        if (
            new_chunks
            or drop_ids
            or update.added
            or update.updated
            or update.removed
            or self.manifest["generation"] == 0
        ):
            self.save()
        return update

    def search_vector(self, vector: np.ndarray, k: int = 4) -> list[Hit]:
        """The ``k`` chunks closest to a unit ``vector`` ``(d,)``, best first."""
        if not len(self.chunks):
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        scores, ids = self.index.search(q, min(k, len(self.chunks)))
        return [Hit(self.chunks[int(i)], float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]

    def search(self, encoder: Encoder, query: str, k: int = 4) -> list[Hit]:
        return self.search_vector(encoder.encode(query, normalize=True), k)

    def save(self) -> None:
        """Write generation g+1, then switch the manifest to it (atomic), then delete generation g."""
        import faiss

        self.path.mkdir(parents=True, exist_ok=True)
        old, new = self.manifest["generation"], self.manifest["generation"] + 1
        faiss.write_index(self.index, str(self.path / f"index-{new}.faiss"))
        with open(self.path / f"chunks-{new}.jsonl", "w", encoding="utf-8") as f:
            for c in self.chunks.values():
                f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        manifest = {**self.manifest, "generation": new, "count": len(self.chunks)}
        fd, tmp = tempfile.mkstemp(prefix=".manifest", dir=self.path)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, self.path / MANIFEST)
        self.manifest = manifest
        for stale in (f"index-{old}.faiss", f"chunks-{old}.jsonl"):
            (self.path / stale).unlink(missing_ok=True)


def _probe(encoder: Encoder) -> np.ndarray:
    return encoder.encode(PROBE_TEXT, normalize=True)


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
) -> tuple[RagIndex, IndexUpdate]:
    """Create the index at ``index_dir`` or update it with ``docs`` (files or folders)."""
    index = RagIndex.open_or_create(
        index_dir, encoder, model_name or "unknown", chunk_words=chunk_words, overlap=overlap
    )
    return index, index.add_documents(
        encoder, docs, batch_size=batch_size, prune=prune, show_progress_bar=show_progress_bar
    )


# --- answering ------------------------------------------------------------------------------------

INSTRUCTION = (
    "Answer the question using only the numbered sources below. Cite the sources you use as [1], [2]. "
    "If the sources do not contain the answer, say that you do not know."
)


def build_prompt(question: str, hits: Sequence[Hit]) -> str:
    """The user message: instruction, numbered sources, question."""
    sources = "\n\n".join(f"[{i}] ({h.chunk.source}) {h.chunk.text}" for i, h in enumerate(hits, start=1))
    return f"{INSTRUCTION}\n\nSources:\n{sources}\n\nQuestion: {question}"


def ask(encoder: Encoder, index: RagIndex, question: str, k: int = 4, max_new_tokens: int = 200) -> RagAnswer:
    """Retrieve the top-``k`` chunks for ``question`` and answer from them with the same weights."""
    if not question.strip():
        raise ValueError("the question is empty")
    hits = index.search(encoder, question, k)
    prompt = build_prompt(question, hits)
    return RagAnswer(encoder.generate(prompt, max_new_tokens=max_new_tokens), hits, prompt)
