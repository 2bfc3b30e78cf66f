"""RAG: chunking, a persistent FAISS index that only embeds new or changed files, retrieval and answer."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from unimae.cli import main
from unimae.encoding.encoder import Encoder
from unimae.rag import (
    DocumentError,
    RagIndex,
    ask,
    build_index,
    build_prompt,
    chunk_text,
    collect_files,
    read_documents,
    source_parts,
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


def test_source_parts_name_the_document_and_chunk_number():
    assert source_parts("a.md#3") == ("a.md", 3)
    assert source_parts("a.md") == ("a.md", 1)  # a one-chunk document has no "#k"
    assert source_parts("c.jsonl:2#12") == ("c.jsonl:2", 12)
    assert source_parts("notes #x#2") == ("notes #x", 2) and source_parts("a#b") == ("a#b", 1)


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
        ".lock",  # the writers' lock
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


# --- hostile input (issue 10) ------------------------------------------------------------------------


def test_symlinks_out_of_the_folder_are_skipped_unless_followed(encoder, docs, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("the king loves the queen .")
    (outside / "deep").mkdir()
    (outside / "deep" / "more.md").write_text("a secret bird .")
    (docs / "link.txt").symlink_to(outside / "key.txt")  # a file link
    (docs / "linked").symlink_to(outside)  # a folder link
    (docs / "inside.txt").symlink_to(docs / "a.txt")  # inside the folder: the same file, once
    (docs / "broken.txt").symlink_to(tmp_path / "nowhere.txt")
    files, skipped = collect_files([docs])
    assert sorted(f.name for f in files) == ["a.txt", "b.md", "c.jsonl"]
    assert len(skipped) == 3 and all("secret" in s or "broken" in s for s in skipped)
    index, up = build_index(encoder, [docs], tmp_path / "idx", model_name="tiny")
    assert len(up.skipped) == 3 and not any("secret" in c.text for c in index.chunks.values())
    files, skipped = collect_files([docs], follow_symlinks=True)
    assert {"key.txt", "more.md"} <= {f.name for f in files} and skipped == [
        f"{docs / 'broken.txt'}: a broken symlink"
    ]
    index, up = build_index(encoder, [docs], tmp_path / "idx2", model_name="tiny", follow_symlinks=True)
    assert any("secret" in c.text for c in index.chunks.values())
    (outside / "deep" / "loop").symlink_to(outside)  # a loop ends
    assert len(collect_files([docs], follow_symlinks=True)[0]) == 5


@pytest.mark.parametrize("sep", [" ", ","], ids=["spaces", "no-spaces"])
def test_one_huge_line_becomes_chunks_that_fit(encoder, tmp_path, sep):
    """A ~20k-character line: chunks within the embedding limit; a prompt that fits the context."""
    from conftest import WORDS

    from unimae.rag import chunk_token_limit, fit_prompt, token_spans

    line = sep.join(WORDS[i % len(WORDS)] for i in range(4000))[:20_000]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "huge.txt").write_text(line)
    index, _ = build_index(encoder, [tmp_path / "docs"], tmp_path / "idx", model_name="tiny")
    limit = chunk_token_limit(encoder)
    sizes = [len(token_spans(encoder.tokenizer, c.text)) for c in index.chunks.values()]
    assert len(sizes) > 20 and max(sizes) <= limit <= encoder.max_length
    result = ask(encoder, index, "the cat", k=8, max_new_tokens=20)  # sources dropped or cut to fit
    assert isinstance(result.answer, str) and 1 <= len(result.hits) < 8
    assert len(encoder.tokenizer(result.prompt).input_ids) + 20 <= encoder.context_length
    prompt = fit_prompt(encoder, "the cat", index.search(encoder, "the cat", 8), 500)
    assert len(prompt.ids) + prompt.max_new_tokens <= encoder.context_length
    from unimae.rag import PromptTooLongError

    with pytest.raises(PromptTooLongError, match="context"):
        fit_prompt(encoder, line, [], 10)


def test_unreadable_documents_are_skipped_with_a_warning(encoder, docs, tmp_path, caplog):
    (docs / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (docs / "bad.jsonl").write_text('{"text": "fine"}\n{oops\n')
    with caplog.at_level("WARNING"):
        index, up = build_index(encoder, [docs], tmp_path / "idx", model_name="tiny")
    assert len(up.added) == 3 and len(up.skipped) == 2
    assert any("latin1.txt: not UTF-8" in s for s in up.skipped) and any(
        "bad.jsonl:2" in s for s in up.skipped
    )
    assert "latin1.txt" in caplog.text and "bad.jsonl" in caplog.text


def _damage(idx, how: str) -> str:
    g = json.loads((idx / "manifest.json").read_text())["generation"]
    target = {
        "truncate-index": idx / f"index-{g}.faiss",
        "flip-index": idx / f"index-{g}.faiss",
        "chunks": idx / f"chunks-{g}.jsonl",
        "manifest": idx / "manifest.json",
        "missing": idx / f"index-{g}.faiss",
    }[how]
    data = target.read_bytes()
    if how == "truncate-index":
        target.write_bytes(data[: len(data) // 2])
    elif how == "flip-index":
        middle = len(data) // 2  # other finite bytes in a vector
        target.write_bytes(
            data[:middle] + bytes(b ^ 0x11 for b in data[middle : middle + 3]) + data[middle + 3 :]
        )
    elif how == "chunks":
        target.write_text('{"id": 0, "oops"\n')
    elif how == "manifest":
        target.write_bytes(data[:40])
    else:
        target.unlink()
    return target.name


@pytest.mark.parametrize("how", ["truncate-index", "flip-index", "chunks", "manifest", "missing"])
def test_damaged_index_names_the_file_and_the_fix(encoder, tiny_gpt2, docs, tmp_path, how, capsys):
    from unimae.rag import RagIndexError

    idx = tmp_path / "idx"
    build_index(encoder, [docs], idx, model_name="tiny")
    name = _damage(idx, how)
    with pytest.raises(RagIndexError, match=name) as info:
        RagIndex.open(idx)
    assert "--rebuild" in str(info.value)
    with pytest.raises(RagIndexError):
        build_index(encoder, [docs], idx)
    index, up = build_index(encoder, [docs], idx, model_name="tiny", rebuild=True)
    assert len(up.added) == 3 and len(RagIndex.open(idx)) == len(index)
    search = ["rag", "search", "a bird", "--index", str(idx), "-k", "1", "--model", str(tiny_gpt2)]
    assert main(search) == 0
    name = _damage(idx, how)
    assert main(search) == 2  # one line, no traceback
    assert name in capsys.readouterr().err


def test_k_must_be_positive(encoder, docs, tmp_path):
    from unimae.errors import UserError

    index, _ = build_index(encoder, [docs], tmp_path / "idx", model_name="tiny")
    for k in (0, -1, 1.5, True):
        with pytest.raises(UserError, match="k"):
            index.search(encoder, "a bird", k)
        with pytest.raises(UserError, match="k"):
            ask(encoder, index, "a bird", k=k)
    assert len(index.search(encoder, "a bird", 100)) == len(index)


# --- hostile input, round two (issue 23) ---------------------------------------------------------------


def test_an_index_inside_its_documents_folder_does_not_index_itself(encoder, docs, tmp_path):
    idx = docs / "idx"
    sizes = [build_index(encoder, [docs], idx, model_name="tiny")[1].total_chunks for _ in range(3)]
    assert sizes[0] == sizes[1] == sizes[2] == 4  # a.txt, b.md and the two records of c.jsonl
    index = RagIndex.open(idx)
    assert not any(Path(k).is_relative_to(idx.resolve()) for k in index.manifest.files)
    # another index in the folder is not a document either; files of the own index named are skipped
    build_index(encoder, [docs / "a.txt"], docs / "sub" / "other", model_name="tiny")
    g = index.manifest.generation
    _, up = build_index(encoder, [docs, idx / f"chunks-{g}.jsonl"], idx)
    assert up.total_chunks == 4 and any("part of the index" in why for why in up.skipped)
    _, up = build_index(encoder, [docs / "sub" / "other"], idx)
    assert up.total_chunks == 4 and any("holds a unimae index" in why for why in up.skipped)


def test_a_second_writer_waits_and_keeps_the_first_writers_documents(encoder, tiny_gpt2, docs, tmp_path):
    """Two writers in two processes: the CLI one waits for the lock this test holds while it updates."""
    import subprocess
    import sys

    from unimae.rag import writer_lock

    idx, more = tmp_path / "idx", tmp_path / "more"
    more.mkdir()
    (more / "m.txt").write_text("the dog swims in the river .")
    cmd = [sys.executable, "-m", "unimae.cli", "rag", "index", str(more), "--model", str(tiny_gpt2)]
    with writer_lock(idx):
        proc = subprocess.Popen([*cmd, "--index", str(idx)], stderr=subprocess.PIPE, text=True)
        seen = ""
        while "waiting" not in seen:
            line = proc.stderr.readline()
            assert line, f"the second writer ended without waiting: {seen}"
            seen += line
        index = RagIndex.open_or_create(idx, encoder, "tiny")  # the first writer, holding the lock
        index.add_documents(encoder, [docs])
        assert len(RagIndex.open(idx)) == len(index) == 4  # readers are not blocked by the lock
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    final = RagIndex.open(idx)
    assert sorted(Path(k).name for k in final.manifest.files) == ["a.txt", "b.md", "c.jsonl", "m.txt"]
    assert len(final) == 5


def test_a_writer_without_the_lock_cannot_lose_anothers_update(encoder, docs, tmp_path):
    from unimae.rag import RagIndexError

    idx = tmp_path / "idx"
    build_index(encoder, [docs / "a.txt"], idx, model_name="tiny")
    first, second = RagIndex.open(idx), RagIndex.open(idx)
    first.add_documents(encoder, [docs / "b.md"])
    with pytest.raises(RagIndexError, match="changed by another writer"):
        second.add_documents(encoder, [docs / "c.jsonl"])
    assert sorted(Path(k).name for k in RagIndex.open(idx).manifest.files) == ["a.txt", "b.md"]


def test_a_reader_that_meets_a_new_generation_reads_it(encoder, docs, tmp_path, monkeypatch):
    from unimae.rag import index as rag_index

    idx = tmp_path / "idx"
    build_index(encoder, [docs], idx, model_name="tiny")
    stale = rag_index.read_manifest(idx)
    (docs / "a.txt").write_text("the dog swims .")
    build_index(encoder, [docs], idx)  # a writer saved the next generation; the old files are gone
    real, calls = rag_index.read_manifest, []

    def first_stale(path):
        calls.append(path)
        return stale if len(calls) == 1 else real(path)

    monkeypatch.setattr(rag_index, "read_manifest", first_stale)
    index = RagIndex.open(idx)
    assert index.manifest.generation == stale.generation + 1 and len(calls) >= 3


def test_documents_with_a_bom_and_old_mac_line_endings(tmp_path):
    (tmp_path / "w.jsonl").write_bytes(
        '\ufeff{"text": "the cat", "title": "cat"}\r{"text": "a dog"}\r'.encode()
    )
    (tmp_path / "w.txt").write_bytes("\ufeffthe cat\rsings".encode())
    assert read_documents(tmp_path / "w.jsonl") == [("cat", "the cat"), ("w.jsonl:2", "a dog")]
    assert read_documents(tmp_path / "w.txt") == [("w.txt", "the cat\nsings")]


def test_records_and_file_names_that_are_not_unicode_are_skipped_naming_them(encoder, tmp_path, caplog):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "w.jsonl").write_text(
        '{"text": "the cat runs ."}\n{"text": "bad \\ud800 text"}\n{"text": "a dog", "source": "\\udfff"}\n'
        '{"text": "the bird ."}\n'
    )
    (docs / "a.txt").write_text("the city .")
    with open(bytes(docs) + b"/caf\xe9.txt", "w") as f:  # a file name that is not UTF-8
        f.write("the king .")
    with caplog.at_level("WARNING"):
        index, up = build_index(encoder, [docs], tmp_path / "idx", model_name="tiny")
    assert sorted(c.text for c in index.chunks.values()) == ["the bird .", "the cat runs .", "the city ."]
    notes = " | ".join(up.skipped)
    assert "w.jsonl:2: its text: a lone surrogate U+D800" in notes
    assert "w.jsonl:3: its source name: a lone surrogate U+DFFF" in notes
    assert "byte 0xe9" in notes and "rename it" in notes
    assert "w.jsonl:2" in caplog.text and len(RagIndex.open(tmp_path / "idx")) == 3


MANIFEST_DAMAGE = {  # field: (a damaged value, what the error names)
    "probe-text": ("probe", ["a"] * 32, "probe"),
    "probe-short": ("probe", [0.1] * 3, "probe"),
    "probe-nan": ("probe", [float("nan")] * 32, "probe"),
    "file-ids": ("files", {"x.txt": {"sha256": "ab", "ids": ["1"]}}, "files['x.txt']"),
    "file-entry": ("files", {"x.txt": [1, 2]}, "files['x.txt']"),
    "id-past-next": ("files", {"x.txt": {"sha256": "ab", "ids": [10**6]}}, "files['x.txt']"),
    "next-id": ("next_id", -1, "next_id"),
    "overlap": ("overlap", 500, "overlap"),
    "generation": ("generation", True, "generation"),
    "sha256": ("sha256", {"index": 5}, "sha256"),
    "unknown-key": ("surprise", 1, "surprise: unknown field"),  # refused on purpose (manifest.py says why)
    "file-unknown-key": ("files", {"x.txt": {"sha256": "ab", "ids": [], "x": 1}}, "files['x.txt'].x"),
    "model": ("model", None, "model"),
}


@pytest.mark.parametrize("how", MANIFEST_DAMAGE)
def test_damaged_manifest_fields_are_named(how, encoder, tiny_gpt2, docs, tmp_path, capsys):
    from unimae.rag import RagIndexError

    idx = tmp_path / "idx"
    build_index(encoder, [docs], idx, model_name="tiny")
    field, value, named = MANIFEST_DAMAGE[how]
    manifest = json.loads((idx / "manifest.json").read_text())
    (idx / "manifest.json").write_text(json.dumps({**manifest, field: value}))
    with pytest.raises(RagIndexError, match="damaged") as info:
        RagIndex.open(idx)
    assert named in str(info.value) and "--rebuild" in str(info.value)
    assert main(["rag", "search", "a bird", "--index", str(idx), "--model", str(tiny_gpt2)]) == 2
    assert named in capsys.readouterr().err.strip().splitlines()[-1]


def test_fifos_and_device_links_are_skipped_or_refused_as_what_they_are(docs, tmp_path):
    import os

    os.mkfifo(docs / "pipe.txt")
    (docs / "zero.md").symlink_to("/dev/zero")
    files, skipped = collect_files([docs], follow_symlinks=True)  # even when links are followed
    assert sorted(f.name for f in files) == ["a.txt", "b.md", "c.jsonl"]
    assert sorted(s.split(": ", 1)[1] for s in skipped) == [
        "a FIFO, not a regular file",
        "a character device, not a regular file",
    ]
    with pytest.raises(DocumentError, match=r"pipe.txt is a FIFO, not a regular file"):
        collect_files([docs / "pipe.txt"])
    with pytest.raises(DocumentError, match=r"zero.md \(-> /dev/zero\) is a character device"):
        collect_files([docs / "zero.md"])


# --- the manifest record; opening an index with the encoder that built it ----------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "rag-index-v1"  # written by the code before the record


@pytest.fixture
def old_index(tmp_path):
    import shutil

    return Path(shutil.copytree(FIXTURE, tmp_path / "old-index"))


def test_an_index_written_before_the_manifest_record_opens_and_updates(encoder, old_index, tmp_path):
    """The committed index (tiny GPT-2, 3 documents, 8 chunks) opens; its manifest is read into the record
    and written back byte for byte; an update keeps the keys in the order they were written."""
    from unimae.rag import IndexedFile, Manifest

    before = (old_index / "manifest.json").read_text(encoding="utf-8")
    index = RagIndex.open(old_index)
    m = index.manifest
    assert isinstance(m, Manifest) and (m.model, m.dim, m.generation, m.next_id) == ("tiny-gpt2", 32, 1, 8)
    assert m.files["docs/b.md"] == IndexedFile(sha256=m.files["docs/b.md"].sha256, ids=[3, 4])
    assert json.dumps(m.to_dict(), indent=1, ensure_ascii=False) + "\n" == before
    target = index.chunks[5]  # "the king builds a house by the river"
    assert index.search_vector(index.index.reconstruct(5), 1)[0].chunk == target
    (tmp_path / "new.txt").write_text("the queen plays music in the forest .")
    _, up = build_index(encoder, [tmp_path / "new.txt"], old_index)  # no probe check: a foreign encoder
    after = json.loads((old_index / "manifest.json").read_text(encoding="utf-8"))
    assert up.added and list(after) == list(json.loads(before)) and after["generation"] == 2
    assert after["count"] == 9 and len(RagIndex.open(old_index)) == 9
    assert sorted(p.name for p in old_index.iterdir()) == [
        ".lock",
        "chunks-2.jsonl",
        "index-2.faiss",
        "manifest.json",
    ]


def test_the_oldest_manifests_open_with_defaults(old_index):
    """Indexes from before backends, token limits and file hashes were recorded still open."""
    data = json.loads((old_index / "manifest.json").read_text())
    for key in ("backend", "max_chunk_tokens", "count", "sha256"):
        del data[key]
    (old_index / "manifest.json").write_text(json.dumps(data, indent=1))
    m = RagIndex.open(old_index).manifest
    assert (m.backend, m.max_chunk_tokens, m.count, m.sha256) == ("torch", None, None, None)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"version": 2}, "is a version-2 index, not 1"),
        ({"format": "other"}, "is not a unimae index manifest"),
        ({"dim": 16}, "probe: 32 numbers, not dim (16)"),
    ],
)
def test_manifest_format_version_and_consistency(old_index, change, message):
    from unimae.rag import RagIndexError

    data = json.loads((old_index / "manifest.json").read_text())
    (old_index / "manifest.json").write_text(json.dumps(data | change))
    with pytest.raises(RagIndexError, match=re.escape(message)) as info:
        RagIndex.open(old_index)
    assert "manifest.json" in str(info.value) and "--rebuild" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_open_index_loads_the_model_and_backend_that_built_it(tiny_gpt2, tiny_llama, docs, tmp_path):
    from unimae.errors import UserError
    from unimae.rag import open_index

    idx = tmp_path / "idx"
    with pytest.raises(UserError, match="give --model"):
        open_index(idx, must_exist=False)  # nothing to take the model from
    with pytest.raises(UserError, match="holds no index"):
        open_index(idx, str(tiny_gpt2))
    encoder, index, model = open_index(idx, str(tiny_gpt2), device="cpu", must_exist=False)
    assert index is None and model == str(tiny_gpt2.resolve())
    build_index(encoder, [docs], idx, model_name=model)
    encoder, index, model = open_index(idx, device="cpu", max_length=100)  # the model the index records
    assert model == str(tiny_gpt2.resolve()) and len(index) == 4 and encoder.max_length == 100
    assert encoder.backend == index.manifest.backend == "torch"
    with pytest.raises(UserError, match="built with"):
        open_index(idx, str(tiny_llama), device="cpu")
    _damage(idx, "chunks")
    with pytest.raises(UserError, match="damaged"):
        open_index(idx, device="cpu")
    _, index, _ = open_index(idx, str(tiny_llama), device="cpu", rebuild=True)  # about to be rebuilt
    assert index is None


def test_serve_opens_its_index_with_open_index(tiny_gpt2, tiny_llama, docs, tmp_path):
    """`unimae serve --index`: the index and the encoder come from ``unimae.rag.open_index``."""
    from unimae.errors import UserError
    from unimae.serving.server import _load

    encoder, index = _load(str(tiny_gpt2), None, "cpu", 100, None)
    assert index is None and encoder.max_length == 100
    build_index(encoder, [docs], tmp_path / "idx", model_name="tiny")
    encoder, index = _load(str(tiny_gpt2), str(tmp_path / "idx"), "cpu", 100, None)
    assert len(index) == 4 and encoder.max_length == 100
    with pytest.raises(UserError, match="built with"):
        _load(str(tiny_llama), str(tmp_path / "idx"), "cpu", None, None)
