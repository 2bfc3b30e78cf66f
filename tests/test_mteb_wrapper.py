"""The mteb wrapper on mock tasks with known answers, the summary, and `unimae eval` end to end (tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

mteb = pytest.importorskip("mteb")

from datasets import Dataset, DatasetDict  # noqa: E402
from mteb.abstasks import (  # noqa: E402
    AbsTaskClassification,
    AbsTaskClustering,
    AbsTaskPairClassification,
    AbsTaskRetrieval,
    AbsTaskSTS,
)
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402

from unimae.evaluation.mteb_model import MtebEncoder, weights_fingerprint  # noqa: E402

TOPICS = ["cat", "dog", "car", "sun"]


class TopicEncoder:
    """A stand-in Encoder: a text's vector counts the topic words it contains (one axis per topic)."""

    pooling = "mean"
    max_length = 64
    dim = len(TOPICS)

    def __init__(self):
        self.model = torch.nn.Linear(2, 2)
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size=32, max_length=None, normalize=False, show_progress_bar=None):
        self.calls.append(list(texts))
        return np.array([[t.split().count(w) for w in TOPICS] for t in texts], dtype=np.float32) + 1e-3


def _meta(name: str, type_: str, main_score: str) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description="mock",
        reference=None,
        dataset={"path": "mock", "revision": "1"},
        type=type_,
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        date=None,
        domains=[],
        task_subtypes=[],
        license="not specified",
        annotations_creators="derived",
        dialect=[],
        sample_creation="created",
        bibtex_citation="",
    )


class MockSTS(AbsTaskSTS):
    metadata = _meta("MockSTS", "STS", "cosine_spearman")
    min_score, max_score = 0, 1

    def load_data(self, **kwargs):
        # cosines: identical (1.0) > half shared (~0.71) > disjoint (0)
        self.dataset = DatasetDict(
            {
                "test": Dataset.from_dict(
                    {
                        "sentence1": ["cat cat", "cat dog", "car"],
                        "sentence2": ["cat", "cat", "sun"],
                        "score": [1.0, 0.5, 0.0],
                    }
                )
            }
        )
        self.data_loaded = True


class MockClassification(AbsTaskClassification):
    metadata = _meta("MockClassification", "Classification", "accuracy")
    samples_per_label, n_experiments = 100, 1

    def load_data(self, **kwargs):
        def split(texts):
            return Dataset.from_dict({"text": texts, "label": [0 if "cat" in t else 1 for t in texts]})

        self.dataset = DatasetDict(
            {
                "train": split(["cat", "cat a", "car", "car b"]),
                "test": split(["the cat", "a car", "cat x", "car y"]),
            }
        )
        self.data_loaded = True


class MockClustering(AbsTaskClustering):
    metadata = _meta("MockClustering", "Clustering", "v_measure")
    max_fraction_of_documents_to_embed = None
    max_documents_per_cluster = 6

    def load_data(self, **kwargs):
        self.dataset = DatasetDict(
            {
                "test": Dataset.from_dict(
                    {
                        "sentences": ["cat", "cat a", "cat b", "sun", "sun a", "sun b"],
                        "labels": [0, 0, 0, 1, 1, 1],
                    }
                )
            }
        )
        self.data_loaded = True


class MockPairs(AbsTaskPairClassification):
    metadata = _meta("MockPairs", "PairClassification", "max_ap")

    def load_data(self, **kwargs):
        self.dataset = DatasetDict(
            {
                "test": Dataset.from_dict(
                    {
                        "sentence1": ["cat", "dog", "car", "sun"],
                        "sentence2": ["a cat", "car", "the car", "dog"],
                        "labels": [1, 0, 1, 0],
                    }
                )
            }
        )
        self.data_loaded = True


class MockRetrieval(AbsTaskRetrieval):
    metadata = _meta("MockRetrieval", "Retrieval", "ndcg_at_10")

    def load_data(self, **kwargs):
        corpus = {"d0": "cat cat", "d1": "dog", "d2": "car", "d3": "sun"}
        queries = {"q0": "cat", "q1": "sun", "q2": "dog"}
        qrels = {"q0": {"d0": 1}, "q1": {"d3": 1}, "q2": {"d1": 1}}
        self.dataset = {
            "default": {
                "test": RetrievalSplitData(
                    corpus=Dataset.from_dict(
                        {"id": list(corpus), "text": list(corpus.values()), "title": [""] * 4}
                    ),
                    queries=Dataset.from_dict({"id": list(queries), "text": list(queries.values())}),
                    relevant_docs=qrels,
                    top_ranked=None,
                )
            }
        }
        self.data_loaded = True


class MockReranking(MockRetrieval):
    metadata = _meta("MockReranking", "Reranking", "map_at_1000")

    def load_data(self, **kwargs):
        super().load_data()
        split = self.dataset["default"]["test"]
        split["relevant_docs"] = {
            "q0": {"d0": 1, "d2": 0},
            "q1": {"d3": 1, "d1": 0},
            "q2": {"d1": 1, "d0": 0},
        }
        split["top_ranked"] = {"q0": ["d2", "d0"], "q1": ["d1", "d3"], "q2": ["d0", "d1"]}


def test_wrapper_gets_known_answers_on_mock_tasks():
    enc = TopicEncoder()
    model = MtebEncoder(enc, name="test/topics")
    tasks = [MockSTS(), MockClassification(), MockClustering(), MockPairs(), MockRetrieval(), MockReranking()]
    result = mteb.evaluate(model, tasks, cache=None, show_progress_bar=False)
    scores = {r.task_name: r.get_score() for r in result.task_results}
    assert scores == pytest.approx({t.metadata.name: 1.0 for t in tasks})
    # every distinct text went through the encoder once
    seen = [t for call in enc.calls for t in call]
    assert len(seen) == len(set(seen)) == model.n_encoded


def test_wrapper_protocol_and_metadata():
    from mteb.models.model_meta import ScoringFunction

    enc = TopicEncoder()
    model = MtebEncoder(enc, name="plainname")
    meta = model.mteb_model_meta
    assert meta.name == "unimae/plainname" and meta.similarity_fn_name is ScoringFunction.COSINE
    assert meta.revision.endswith("-mean-64") and meta.embed_dim == 4
    batches = [{"text": ["cat", ""]}, {"text": ["cat dog"]}]
    out = model.encode(batches, task_metadata=None, hf_split="test", hf_subset="default")
    assert out.shape == (3, 4) and not out[1].any()  # empty text -> zero vector
    sim = np.asarray(model.similarity(out[[0]], out[[0, 2]]))
    assert sim[0, 0] == pytest.approx(1.0) and sim[0, 1] == pytest.approx(1 / np.sqrt(2), abs=1e-2)
    assert np.asarray(model.similarity_pairwise(out[[0, 2]], out[[0, 2]])) == pytest.approx([1.0, 1.0])


def test_revision_depends_on_weights_and_pooling(tiny_llama):
    from unimae.encoding.encoder import Encoder

    a = Encoder.from_pretrained(str(tiny_llama), pooling="mean")
    b = Encoder.from_pretrained(str(tiny_llama), pooling="eos")
    ra, rb = MtebEncoder(a).revision, MtebEncoder(b).revision
    assert ra != rb and ra.split("-")[0] == rb.split("-")[0]
    before = weights_fingerprint(a.model)
    with torch.no_grad():
        next(a.model.parameters()).add_(1e-3)
    assert weights_fingerprint(a.model) != before


def test_wrapper_matches_encoder_and_ignores_batching(tiny_llama):
    from unimae.encoding.encoder import Encoder

    enc = Encoder.from_pretrained(str(tiny_llama), pooling="eos")
    texts = ["the cat runs .", "a dog eats fish in the house .", "the cat runs ."]
    model = MtebEncoder(enc, batch_size=2)
    got = model.encode(
        [{"text": texts[:1]}, {"text": texts[1:]}], task_metadata=None, hf_split="t", hf_subset="d"
    )
    np.testing.assert_allclose(got, enc.encode(texts), atol=1e-5)
    assert model.n_encoded == 2


def test_summary_categories_and_missing_summarization():
    from unimae.evaluation.benchmark import NO_DATA_NOTE, summarize

    s = summarize({"A": 0.5, "B": 0.7, "C": 0.9}, {"A": "STS", "B": "STS", "C": "Retrieval"})
    assert s["categories"]["STS"] == {"score": pytest.approx(0.6), "n_tasks": 2}
    assert s["categories"]["Summarization"] == {"score": None, "n_tasks": 0, "note": NO_DATA_NOTE}
    assert s["average"] == pytest.approx(0.7)  # over tasks
    assert s["category_average"] == pytest.approx(0.75)  # over categories that have tasks


def test_hub_benchmarks_are_named_without_downloading():
    from unimae.evaluation.benchmark import MTEB_15, benchmark_tasks

    tasks = benchmark_tasks("mteb-15")
    assert [t.metadata.name for t in tasks] == list(MTEB_15)
    assert len(benchmark_tasks("mteb-eng")) == 56


def test_unreachable_hub_gives_a_clear_message(monkeypatch, capsys):
    import socket

    from unimae.cli import main

    def refuse(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert main(["eval", "any-model", "--benchmark", "mteb-15"]) == 2
    err = capsys.readouterr().err
    assert "--benchmark offline" in err and "Traceback" not in err


def test_unimae_eval_end_to_end_is_deterministic(tiny_llama, tmp_path, capsys):
    from unimae.cli import main

    args = [
        "eval",
        str(tiny_llama),
        "--pooling",
        "mean",
        "--tasks",
        "LeeSTS",
        "MiniNewsgroupsClustering",
        "--label",
        "Tiny",
    ]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert main([*args, "-o", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "total time" in out and "no offline data" in out
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a["tasks"] == b["tasks"] and a["label"] == "Tiny"
    assert set(a["tasks"]) == {"LeeSTS", "MiniNewsgroupsClustering"}
    assert a["categories"]["Summarization"]["note"] == "no offline data"
    assert a["categories"]["Retrieval"]["note"] == "not in the task subset"
    assert a["subset"] == ["LeeSTS", "MiniNewsgroupsClustering"]
    assert a["command"].startswith("unimae eval")
    mteb_files = list((tmp_path / "a" / "mteb" / "results").rglob("LeeSTS.json"))
    assert len(mteb_files) == 1 and (tmp_path / "a" / "summary.md").read_text().startswith("# Tiny")
