"""Seeded draws of the ``offline-v2`` set (pure functions of files, names and seeds).

Every v2 source is split into a ``dev`` and a ``test`` part whose items never overlap: a task with
plenty of items gets two disjoint seeded draws (dev smaller than test), a thin one seeded halves, and a
source of whole groups (SQuAD articles, proverbs) is split by group, so no text is in both parts.
``offline_v2.py`` turns the output into mteb datasets. Draws use ``offline_data.rng_for(name)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unimae.evaluation import offline_data as od

PARTS = ("dev", "test")


def split_sizes(n: int, name: str, sizes: dict[str, int | None]) -> dict[str, list[int]]:
    """Disjoint seeded index draws from ``range(n)``: ``{part: indices}`` in draw order.

    ``sizes`` maps each part to how many it takes, in order; ``None`` takes what is left (at most one,
    last). A part asking for more than is left gets what is left.
    """
    order = list(range(n))
    od.rng_for(name).shuffle(order)
    out, start = {}, 0
    for part, size in sizes.items():
        stop = n if size is None else min(n, start + size)
        out[part] = order[start:stop]
        start = stop
    return out


def halves(n: int, name: str) -> dict[str, list[int]]:
    """Seeded halves of ``range(n)``: dev gets ``n // 2`` items, test the rest."""
    return split_sizes(n, name, {"dev": n // 2, "test": None})


def split_groups(groups: Sequence[str], name: str, sizes: dict[str, int | None]) -> dict[str, set[str]]:
    """Disjoint seeded draws of whole groups (articles, proverbs): ``{part: set of group names}``."""
    names = sorted(set(groups))
    return {part: {names[i] for i in idx} for part, idx in split_sizes(len(names), name, sizes).items()}


def uniform_split(
    data: od.LabelledTexts, name: str, train_per_label: int, n_test: int
) -> tuple[od.LabelledTexts, od.LabelledTexts]:
    """``train_per_label`` texts of each label for training, then ``n_test`` texts drawn uniformly from
    ALL the texts training did not take (a second seeded shuffle), so the test sample keeps the data's
    label distribution. (``offline_data.train_test_split``, kept for the ``offline`` set, takes the first
    leftovers of the training shuffle, where the rare labels are used up: MultiEmo's 12% "ambivalent"
    texts are missing from its test sample.)"""
    data = od.dedupe(data)
    order = list(range(len(data.texts)))
    od.rng_for(name).shuffle(order)
    counts: dict[int, int] = {}
    train, rest = [], []
    for i in order:
        y = data.labels[i]
        if counts.get(y, 0) < train_per_label:
            counts[y] = counts.get(y, 0) + 1
            train.append(i)
        else:
            rest.append(i)
    od.rng_for(f"{name}/test").shuffle(rest)

    def pick(idx: list[int]) -> od.LabelledTexts:
        return od.LabelledTexts([data.texts[i] for i in idx], [data.labels[i] for i in idx], data.label_names)

    return pick(train), pick(rest[:n_test])


def labelled_parts(
    data: od.LabelledTexts, name: str, sizes: dict[str, tuple[int, int]]
) -> dict[str, tuple[od.LabelledTexts, od.LabelledTexts]]:
    """Disjoint seeded (train, test) draws per part: ``sizes[part] = (train_per_label, n_test)``.

    Parts are drawn in order; each from the texts no earlier part took (``uniform_split``, seeded with
    ``name/part``), so no text is in two parts.
    """
    rest, out = od.dedupe(data), {}
    for part, (per_label, n_test) in sizes.items():
        train, test = uniform_split(rest, f"{name}/{part}", per_label, n_test)
        out[part] = (train, test)
        taken = set(train.texts) | set(test.texts)
        keep = [i for i, t in enumerate(rest.texts) if t not in taken]
        rest = od.LabelledTexts(
            [rest.texts[i] for i in keep], [rest.labels[i] for i in keep], rest.label_names
        )
    return out


# --- BIG-bench abstract_narrative_understanding: narratives and the proverbs they illustrate ----------


@dataclass
class ChoiceItem:
    """One multiple-choice example: ``text`` (narrative, step or goal), its answer and all candidates."""

    text: str
    answer: str
    candidates: list[str]


def read_choice_items(path: Path, pattern: str | None = None) -> list[ChoiceItem]:
    """A BIG-bench multiple-choice task as items; ``pattern`` (a regex with one group) extracts the text
    from the input (e.g. the quoted step of goal_step_wikihow); items whose input does not match are
    dropped. Duplicate texts keep their first item."""
    items, seen = [], set()
    for e in od.read_bigbench_examples(path):
        text = e["input"].strip()
        if pattern is not None:
            match = re.fullmatch(pattern, text, flags=re.DOTALL)
            if not match:
                continue
            text = match.group(1).strip()
        if text in seen:
            continue
        seen.add(text)
        candidates = [c.strip() for c in e["target_scores"]]
        items.append(ChoiceItem(text, od.best_choice(e["target_scores"]).strip(), candidates))
    return items


def items_of_groups(items: list[ChoiceItem], groups: set[str]) -> list[ChoiceItem]:
    """The items whose answer is one of ``groups`` (file order)."""
    return [it for it in items if it.answer in groups]


def reranking_data(items: list[ChoiceItem], prefix: str) -> tuple[dict, dict, dict, dict]:
    """(corpus, queries, qrels, top_ranked) of a reranking task: each item's text ranks its candidates.

    Candidates shared between items get one document id; ids are ``{prefix}q<i>`` / ``{prefix}d<j>``.
    """
    corpus: dict[str, str] = {}
    doc_id: dict[str, str] = {}
    queries, qrels, top_ranked = {}, {}, {}
    for i, it in enumerate(items):
        qid = f"{prefix}q{i}"
        queries[qid] = it.text
        qrels[qid], top_ranked[qid] = {}, []
        for c in it.candidates:
            if c not in doc_id:
                doc_id[c] = f"{prefix}d{len(doc_id)}"
                corpus[doc_id[c]] = c
            did = doc_id[c]
            if did not in top_ranked[qid]:
                top_ranked[qid].append(did)
                qrels[qid][did] = int(c == it.answer)
    return corpus, queries, qrels, top_ranked


def retrieval_data(items: list[ChoiceItem], prefix: str) -> tuple[dict, dict, dict]:
    """(corpus, queries, qrels) of a retrieval task: each item's text retrieves its answer among every
    candidate of every item (answers and distractors pooled, one id per distinct text)."""
    corpus, _, qrels, _ = reranking_data(items, prefix)
    by_text = {text: did for did, text in corpus.items()}
    queries = {f"{prefix}q{i}": it.text for i, it in enumerate(items)}
    qrels = {f"{prefix}q{i}": {by_text[it.answer]: 1} for i, it in enumerate(items)}
    return corpus, queries, qrels


def choice_pairs(items: list[ChoiceItem], name: str) -> tuple[list[str], list[str], list[int]]:
    """Pair classification from multiple-choice items: (text, answer) is a positive pair (1), (text, a
    seeded distractor) a negative one (0); a seeded half of the items gives its positive pair, the other
    half its negative one, so the labels are balanced and each text appears once."""
    rng = od.rng_for(name)
    order = list(range(len(items)))
    rng.shuffle(order)
    positive = set(order[: len(order) // 2])
    s1, s2, labels = [], [], []
    for i, it in enumerate(items):
        distractors = [c for c in it.candidates if c != it.answer]
        if i in positive or not distractors:
            s1.append(it.text), s2.append(it.answer), labels.append(1)
        else:
            s1.append(it.text), s2.append(rng.choice(distractors)), labels.append(0)
    return s1, s2, labels


def vitaminc_parts(
    path: Path, sizes: dict[str, int], seed: int = od.SEED
) -> dict[str, tuple[list[str], list[str], list[int]]]:
    """Disjoint seeded VitaminC draws: ``sizes[part]`` supporting and as many refuting pairs per part.

    One seeded draw of ``sum(sizes)`` pairs per label is cut into the parts in order, then each part is
    shuffled; 'Neither' is left out as in ``offline_data.vitaminc_pairs``.
    """
    total = sum(sizes.values())
    evidence, claims, labels = od.vitaminc_pairs(path, total, seed)
    by_label = {y: [i for i, lab in enumerate(labels) if lab == y] for y in (1, 0)}
    out, start = {}, 0
    rng = od.rng_for("vitaminc-v2", seed)
    for part, n in sizes.items():
        idx = by_label[1][start : start + n] + by_label[0][start : start + n]
        rng.shuffle(idx)
        out[part] = ([evidence[i] for i in idx], [claims[i] for i in idx], [labels[i] for i in idx])
        start += n
    return out


def squad_questions(
    paragraphs: list[od.SquadParagraph], per_paragraph: int, name: str
) -> tuple[dict, dict, dict]:
    """(corpus, queries, qrels): every paragraph is a document; up to ``per_paragraph`` of its questions
    (seeded) are queries whose one relevant document is that paragraph."""
    rng = od.rng_for(name)
    corpus, queries, qrels = {}, {}, {}
    for i, p in enumerate(paragraphs):
        corpus[f"p{i}"] = p.context
        for j, q in enumerate(rng.sample(p.questions, min(per_paragraph, len(p.questions)))):
            queries[f"q{i}.{j}"] = q
            qrels[f"q{i}.{j}"] = {f"p{i}": 1}
    return corpus, queries, qrels
