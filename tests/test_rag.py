"""RAG: chunking, a persistent FAISS index that only embeds new or changed files, retrieval and answer."""

import json

import numpy as np
import pytest

from unimae.cli import main
from unimae.encoding.encoder import Encoder
from unimae.serving.rag import (
    DocumentError,
    RagIndex,
    ask,
    build_index,
    build_prompt,
    chunk_text,
    collect_files,
    read_documents,
)

DOCS = {
    "a.txt": "the cat sings in the city . the cat reads a book at night .",
    "b.md": "# birds\n\na bird flies over the ocean . the bird eats fish .",
    "c.jsonl": '{"text": "the king builds a house by the river .", "title": "king"}\n'
    '{"text": "the army makes war in the mountain ."}\n',
}


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    (folder / "skip.csv").write_text("not indexed")
    return folder


class CountingEncoder:
    """An Encoder that records every text it embeds."""

    def __init__(self, encoder: Encoder):
        self.inner, self.embedded = encoder, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, **kw):
        self.embedded += [texts] if isinstance(texts, str) else list(texts)
        return self.inner.encode(texts, **kw)


@pytest.fixture(scope="module")
def encoder(tiny_gpt2):
    return Encoder.from_pretrained(str(tiny_gpt2), device="cpu")


def test_chunk_text_overlaps_and_covers():
    words = [f"w{i}" for i in range(25)]
    chunks = chunk_text(" ".join(words), chunk_words=10, overlap=3)
    assert [c.split() for c in chunks] == [words[0:10], words[7:17], words[14:24], words[21:25]]
    assert chunk_text("one two\nthree", 10, 2) == ["one two\nthree"]  # a slice of the text: line breaks kept
    assert chunk_text("   ", 10, 2) == []
    with pytest.raises(ValueError):
        chunk_text("x", 5, 5)


def test_readers(docs, tmp_path):
    files, skipped = collect_files([docs])
    assert skipped == []
    assert sorted(f.name for f in files) == ["a.txt", "b.md", "c.jsonl"]
    assert [s for s, _ in read_documents(docs / "c.jsonl")] == ["king", "c.jsonl:2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_documents(bad)
    with pytest.raises(ValueError):
        collect_files([docs / "skip.csv"])
    with pytest.raises(DocumentError, match="missing does not exist"):
        collect_files([tmp_path / "missing"])


def test_index_persists_and_updates_incrementally(encoder, docs, tmp_path):
    counting = CountingEncoder(encoder)
    index, up = build_index(counting, [docs], tmp_path / "idx", model_name="tiny", chunk_words=8, overlap=2)
    assert len(up.added) == 3 and up.chunks_embedded == up.total_chunks == len(index) > 3
    target = next(c for c in index.chunks.values() if c.source.startswith("b.md"))
    query = target.text
    assert index.search(encoder, query, k=1)[0].chunk.id == target.id  # its own text: cosine 1
    # reopened from disk: the same results
    reopened = RagIndex.open(tmp_path / "idx")
    assert [h.chunk.id for h in reopened.search(encoder, query, 3)] == [
        h.chunk.id for h in index.search(encoder, query, 3)
    ]
    # nothing changed: nothing embedded (but the probe), nothing written
    counting.embedded.clear()
    _, up = build_index(counting, [docs], tmp_path / "idx")
    assert len(up.unchanged) == 3 and up.chunks_embedded == 0
    assert [t for t in counting.embedded if "probe" not in t] == []
    # a new file and a changed file: only their chunks are embedded; the old chunks of b.md are gone
    (docs / "d.txt").write_text("the queen plays music in the forest .")
    (docs / "b.md").write_text("the dog swims in the water .")
    counting.embedded.clear()
    index, up = build_index(counting, [docs], tmp_path / "idx")
    assert [p.rsplit("/", 1)[-1] for p in up.added] == ["d.txt"] and len(up.updated) == 1
    assert sorted(t for t in counting.embedded if "probe" not in t) == sorted(
        ["the dog swims in the water .", "the queen plays music in the forest ."]
    )
    assert {c.source for c in index.chunks.values()} >= {"b.md", "d.txt"}  # one chunk each: no "#k"
    assert not any("bird" in c.text for c in index.chunks.values())
    assert index.index.ntotal == len(index)
    # deleted files go with --prune; old generations are cleaned up
    (docs / "d.txt").unlink()
    index, up = build_index(encoder, [docs], tmp_path / "idx", prune=True)
    assert len(up.removed) == 1 and not any(c.source == "d.txt" for c in index.chunks.values())
    g = json.loads((tmp_path / "idx" / "manifest.json").read_text())["generation"]
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        f"chunks-{g}.jsonl",
        f"index-{g}.faiss",
        "manifest.json",
    ]


def test_index_refuses_another_model_or_chunking(encoder, tiny_llama, docs, tmp_path):
    build_index(encoder, [docs], tmp_path / "idx", model_name="tiny", chunk_words=8, overlap=2)
    other = Encoder.from_pretrained(str(tiny_llama), device="cpu")
    with pytest.raises(ValueError, match="built with"):
        build_index(other, [docs], tmp_path / "idx")
    with pytest.raises(ValueError, match="chunk_words"):
        build_index(encoder, [docs], tmp_path / "idx", chunk_words=50)


def test_ask_answers_from_sources(encoder, docs, tmp_path):
    index, _ = build_index(encoder, [docs], tmp_path / "idx", model_name="tiny")
    result = ask(encoder, index, "the king builds a house by the river .", k=2, max_new_tokens=4)
    assert isinstance(result.answer, str) and len(result.hits) == 2
    assert result.hits[0].chunk.source == "king" and result.hits[0].score == pytest.approx(1, abs=1e-4)
    assert "[1] (king) the king builds" in result.prompt and "[2]" in result.prompt
    assert build_prompt("q", []).endswith("Question: q")
    with pytest.raises(ValueError):
        ask(encoder, index, "  ")
    assert np.isfinite([h.score for h in result.hits]).all()


def test_cli_rag_index_ask_search(tiny_gpt2, docs, tmp_path, capsys):
    idx = str(tmp_path / "idx")
    assert (
        main(
            [
                "rag",
                "index",
                str(docs),
                "--model",
                str(tiny_gpt2),
                "--index",
                idx,
                "--chunk-words",
                "8",
                "--overlap",
                "2",
            ]
        )
        == 0
    )
    assert "3 new" in capsys.readouterr().out
    assert main(["rag", "index", str(docs), "--index", idx]) == 0  # the model comes from the index
    out = capsys.readouterr().out
    assert "3 unchanged" in out and "embedded 0 chunks" in out
    assert (
        main(
            [
                "rag",
                "ask",
                "the cat sings in the city . the",
                "--index",
                idx,
                "-k",
                "2",
                "--max-new-tokens",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "answer:" in out and "sources:" in out and "[1] a.txt#1" in out
    assert main(["rag", "search", "a bird flies", "--index", idx, "-k", "1"]) == 0
    assert (
        main(["rag", "ask", "x", "--index", str(tmp_path / "none")]) == 2
    )  # no index: a message, no traceback
    assert main(["rag", "index", str(docs), "--index", str(tmp_path / "new")]) == 2  # new index needs --model
