"""Text sources: .txt/.jsonl files, the HF hook and its failures, and the shipped Wikipedia corpus."""

from __future__ import annotations

import json
import sys
import types

import pytest

from unimae.data import wiki
from unimae.data.corpus import CorpusError, load_texts, parse_hf_source

# --- .txt and .jsonl -------------------------------------------------------------------------------------


def test_txt_one_text_per_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("  first text \n\nsecond text\n   \nthird", encoding="utf-8")
    assert load_texts(str(path)) == ["first text", "second text", "third"]
    assert load_texts(str(path), max_texts=2) == ["first text", "second text"]


def test_jsonl_text_field(tmp_path):
    path = tmp_path / "texts.jsonl"
    rows = [{"text": "alpha", "id": 1}, {"text": "  "}, {"text": "beta"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load_texts(str(path)) == ["alpha", "beta"]
    other = tmp_path / "other.jsonl"
    other.write_text('{"body": "gamma"}\n', encoding="utf-8")
    assert load_texts(str(other), text_field="body") == ["gamma"]


@pytest.mark.parametrize("ending", ["\r\n", "\r"], ids=["crlf", "cr"])
@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_any_line_ending_and_a_bom(tmp_path, ending, suffix):
    """CR-only files are one text per line, a BOM is not part of the first text; a form feed stays inside."""
    path = tmp_path / f"texts{suffix}"
    texts = ["first text", "second \x0c text", "third"]
    lines = texts if suffix == ".txt" else [json.dumps({"text": t}) for t in texts]
    path.write_bytes(("\ufeff" + ending.join(lines) + ending).encode("utf-8"))
    assert load_texts(str(path)) == texts


@pytest.mark.parametrize("content", ["", "\n  \n", "   "])
def test_empty_txt_is_an_error(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match="no texts"):
        load_texts(str(path))


def test_jsonl_with_only_blank_texts_is_an_error(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text('{"text": ""}\n{"text": "  "}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="no texts"):
        load_texts(str(path))


def test_missing_file(tmp_path):
    for name in ("nope.txt", "nope.jsonl", "nope.csv", "sub/nope"):
        with pytest.raises(CorpusError, match="not found"):
            load_texts(str(tmp_path / name))


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": broken}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"line 3: invalid JSON"):
        load_texts(str(path))


def test_jsonl_line_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('["text"]\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"line 1: expected a JSON object"):
        load_texts(str(path))


def test_missing_field_names_line_and_field(tmp_path):
    path = tmp_path / "field.jsonl"
    path.write_text('{"text": "ok"}\n{"body": "no text here"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"line 2: no field 'text' \(fields: body\)"):
        load_texts(str(path))


def test_non_string_field(tmp_path):
    path = tmp_path / "num.jsonl"
    path.write_text('{"text": 3}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"line 1: field 'text' is int"):
        load_texts(str(path))


def test_unknown_extension_lists_accepted_forms(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"unsupported file type '\.csv'.*\.txt.*\.jsonl.*hf:NAME"):
        load_texts(str(path))
    with pytest.raises(CorpusError, match="unknown text source 'wikipedia'.*accepted"):
        load_texts("wikipedia")


def test_directory_and_bad_encoding_are_unreadable(tmp_path):
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    with pytest.raises(CorpusError, match=r"cannot read .*folder\.txt"):
        load_texts(str(folder))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"cannot read .*latin\.txt: not valid UTF-8"):
        load_texts(str(latin))


def test_max_texts_must_be_positive(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="max_texts"):
        load_texts(str(path), max_texts=0)


# --- Hugging Face datasets -----------------------------------------------------------------------------


def test_parse_hf_source():
    assert parse_hf_source("hf:user/data", "train") == ("user/data", "train")
    assert parse_hf_source("hf:user/data:validation", "train") == ("user/data", "validation")
    with pytest.raises(CorpusError, match="names no dataset"):
        parse_hf_source("hf:", "train")


def test_hf_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(CorpusError, match="pip install datasets"):
        load_texts("hf:user/data")


def _fake_datasets(load_dataset):
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    return module


def test_hf_unreachable_hub(monkeypatch):
    def offline(name, split):
        raise ConnectionError("Couldn't reach 'user/data' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(offline))
    with pytest.raises(CorpusError, match=r"hub may be unreachable.*\.txt/\.jsonl.*wiki"):
        load_texts("hf:user/data")


class _FakeDataset:
    def __init__(self, columns: dict[str, list]):
        self._columns = columns
        self.column_names = list(columns)

    def __getitem__(self, key):
        return self._columns[key]


def test_hf_dataset_column_and_split(monkeypatch):
    calls = []

    def load(name, split):
        calls.append((name, split))
        return _FakeDataset({"sentence": ["one", " ", "two", "three"], "label": [0, 1, 0, 1]})

    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(load))
    assert load_texts("hf:user/data:test", text_field="sentence") == ["one", "two", "three"]
    assert load_texts("hf:user/data", split="validation", text_field="sentence", max_texts=1) == ["one"]
    assert calls == [("user/data", "test"), ("user/data", "validation")]
    with pytest.raises(CorpusError, match=r"no column 'text' \(columns: sentence, label\)"):
        load_texts("hf:user/data")


# --- the shipped Wikipedia sample ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def wiki_cache(tmp_path_factory):
    """The real corpus, built once (a few seconds) into a private cache."""
    root = tmp_path_factory.mktemp("unimae_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIMAE_CACHE", str(root))
        articles = wiki.wiki_articles()
        splits = {s: wiki.wiki_sentences(s) for s in wiki.SPLITS}
        yield root, articles, splits


def test_wiki_sizes_are_plausible(wiki_cache):
    _, articles, splits = wiki_cache
    train_titles, heldout_titles = wiki.split_titles(articles)
    assert 95 <= len(articles) <= 106
    assert 5 <= len(heldout_titles) <= 20
    assert 12_000 <= len(splits["train"]) <= 17_000
    assert 1_000 <= len(splits["heldout"]) <= 4_000
    assert len(splits["all"]) == len(splits["train"]) + len(splits["heldout"])
    assert 15_000 <= len(splits["all"]) <= 19_000


def test_wiki_splits_are_disjoint_by_article(wiki_cache):
    _, articles, splits = wiki_cache
    train_titles, heldout_titles = wiki.split_titles(articles)
    assert not set(train_titles) & set(heldout_titles)
    assert set(train_titles) | set(heldout_titles) == set(articles)
    heldout_sentences = {s for t in heldout_titles for s in articles[t]}
    train_sentences = {s for t in train_titles for s in articles[t]}
    assert set(splits["heldout"]) <= heldout_sentences
    assert set(splits["train"]) == train_sentences
    assert not set(splits["train"]) & set(splits["heldout"])


def test_wiki_sentences_are_clean(wiki_cache):
    _, _, splits = wiki_cache
    sentences = splits["all"]
    assert len(set(sentences)) == len(sentences)
    for s in sentences:
        assert wiki.MIN_WORDS <= len(s.split()) <= wiki.MAX_WORDS
        assert not any(mark in s for mark in ("[[", "]]", "{{", "}}", "<ref", "'''", "=="))
        assert s == s.strip()


def test_wiki_bad_split():
    with pytest.raises(ValueError, match="unknown wiki split"):
        wiki.wiki_sentences("test")
    with pytest.raises(CorpusError, match="unknown wiki split"):
        load_texts("wiki", split="test")


def test_load_texts_wiki(wiki_cache, monkeypatch):
    root, _, splits = wiki_cache
    monkeypatch.setenv("UNIMAE_CACHE", str(root))
    assert load_texts("wiki", max_texts=10) == splits["train"][:10]
    assert load_texts("wiki", split="heldout") == splits["heldout"]


def test_wiki_cache_is_written_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMAE_CACHE", str(tmp_path))
    fake = {"B title": ["Sentence one is here."], "A title": ["Sentence two is here too."]}
    builds = []
    monkeypatch.setattr(wiki, "build_articles", lambda: builds.append(1) or dict(fake))
    cache_file = tmp_path / "data" / "wiki_sentences_v1.json"
    assert not cache_file.exists()
    assert wiki.wiki_articles() == fake
    assert cache_file.exists() and len(builds) == 1
    assert not list(cache_file.parent.glob("*.tmp"))  # written atomically, no leftovers

    def no_rebuild():
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(wiki, "build_articles", no_rebuild)
    assert wiki.wiki_articles() == fake

    # a corrupt cache or one from another source is rebuilt
    monkeypatch.setattr(wiki, "build_articles", lambda: builds.append(1) or dict(fake))
    cache_file.write_text("{not json", encoding="utf-8")
    assert wiki.wiki_articles() == fake and len(builds) == 2
    payload = json.loads(cache_file.read_text(encoding="utf-8"))
    payload["source_sha256"] = "0" * 64
    cache_file.write_text(json.dumps(payload), encoding="utf-8")
    assert wiki.wiki_articles() == fake and len(builds) == 3


def test_wiki_source_checksum(tmp_path):
    assert wiki.sha256_file(wiki.wiki_source_path()) == wiki.WIKI_SHA256
    other = tmp_path / "other.bz2"
    other.write_bytes(b"not the wikipedia sample")
    with pytest.raises(wiki.WikiDataError, match=r"expected a53f.*gensim 4\.4\.0"):
        wiki.verify_source(other)


def test_heldout_assignment_is_stable():
    assert wiki.is_heldout_title("Alaska") is wiki.is_heldout_title("Alaska")
    share = sum(wiki.is_heldout_title(f"title {i}") for i in range(5000)) / 5000
    assert 0.07 < share < 0.13


# --- cleaning and sentence splitting -------------------------------------------------------------------


def test_split_sentences_respects_abbreviations():
    text = (
        "Mr. Smith visited the U.S. Army base in 1990. He met J. R. R. Tolkien there, e.g. at lunch. "
        'Was it fun? "Yes!" It was (c. 1990) great, see Smith et al. for details. The end.'
    )
    assert wiki.split_sentences(text) == [
        "Mr. Smith visited the U.S. Army base in 1990.",
        "He met J. R. R. Tolkien there, e.g. at lunch.",
        "Was it fun?",
        '"Yes!"',
        "It was (c. 1990) great, see Smith et al. for details.",
        "The end.",
    ]


def test_clean_paragraph_and_templates():
    assert wiki.clean_paragraph("'''Bold''' text ( ; ) with , gaps  .") == "Bold text with, gaps."
    assert wiki.expand_inline_templates("a road of {{convert|279|km|mi}} and {{lang|fr|la vie}}") == (
        "a road of 279 km and la vie"
    )
    assert wiki.expand_inline_templates("{{as of|2014|lc=y}}, {{convert|1|to|2|sqmi}}") == (
        "as of 2014, 1 to 2 square miles"
    )


def test_keep_sentence():
    assert wiki.keep_sentence("This is a clean sentence of words.")
    assert not wiki.keep_sentence("Too short here.")
    assert not wiki.keep_sentence("this starts with lower case letters.")
    assert not wiki.keep_sentence("This one has no final punctuation at all")
    assert not wiki.keep_sentence("This one has [[markup]] left in it.")
    assert not wiki.keep_sentence("Word " * 81 + "end.")
