"""The mteb wrapper on mock tasks with known answers, the summary, and `unimae eval` end to end (tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

mteb = pytest.importorskip("mteb")

from mteb.mocks import (  # noqa: E402  (mteb's own mock tasks: 2-4 examples each, no download)
    LegacyMockClusteringFastTask,
    MockClassificationTask,
    MockPairClassificationTask,
    MockRerankingTask,
    MockRetrievalTask,
    MockSTSTask,
)
from mteb.models.cache_wrappers import CachedEmbeddingWrapper  # noqa: E402

from unimae.evaluation.mteb_model import MtebEncoder  # noqa: E402
from unimae.evaluation.results import BenchmarkSummary  # noqa: E402
from unimae.llm import weights_fingerprint  # noqa: E402

# The texts of mteb's mock tasks, grouped so that one vector per group answers every task right: STS and
# pair pairs that match share a group, classification and clustering labels are groups, and each query is
# in the group of its relevant document (corpus texts arrive as "title text").
GROUPS = (
    ("This is a test sentence", "dette er en test sætning", "Title of d2 This is another positive sentence"),
    (
        "This is another test sentence",
        "This is another train sentence",
        "Title of d1 This is a positive sentence",
    ),
    ("This is a third test sentence",),
    ("denne her matche ikke den ovenstående",),
)


def mock_tasks() -> list:
    return [
        MockSTSTask(),
        MockClassificationTask(),
        LegacyMockClusteringFastTask(),
        MockPairClassificationTask(),
        MockRetrievalTask(),
        MockRerankingTask(),
    ]


class GroupEncoder:
    """A stand-in Encoder: a text's vector is the one-hot of its group in ``groups`` (KeyError if none)."""

    pooling = "mean"
    max_length = 64

    def __init__(self, groups=GROUPS):
        self.groups = groups
        self.dim = len(groups)
        self.model = torch.nn.Linear(2, 2)
        self.calls: list[list[str]] = []

    def encode(
        self, texts, batch_size=32, max_length=None, normalize_embeddings=False, show_progress_bar=None
    ):
        self.calls.append(list(texts))
        rows = [next(i for i, g in enumerate(self.groups) if t in g) for t in texts]
        return np.eye(self.dim, dtype=np.float32)[rows]


def _scores(model, tasks=None) -> dict[str, float]:
    result = mteb.evaluate(model, tasks or mock_tasks(), cache=None, show_progress_bar=False)
    return {r.task_name: r.get_score() for r in result.task_results}


def test_wrapper_gets_known_answers_on_mteb_mock_tasks():
    enc = GroupEncoder()
    model = MtebEncoder(enc, name="test/groups")
    assert _scores(model) == pytest.approx({t.metadata.name: 1.0 for t in mock_tasks()})
    # every distinct text went through the encoder once, though tasks share texts
    seen = [t for call in enc.calls for t in call]
    assert len(seen) == len(set(seen)) == model.n_encoded
    # the answers are not free: with the two documents' groups swapped, retrieval ranks them wrong
    a, b = GROUPS[0][2], GROUPS[1][2]
    swapped = (GROUPS[0][:2] + (b,), GROUPS[1][:2] + (a,), *GROUPS[2:])
    wrong = _scores(MtebEncoder(GroupEncoder(swapped), name="test/swapped"), [MockRetrievalTask()])
    assert wrong["MockRetrievalTask"] < 0.9


def test_wrapper_under_mtebs_embedding_cache(tmp_path):
    """mteb's CachedEmbeddingWrapper (a per-task cache on disk) over MtebEncoder: same scores, and a second
    evaluation with a fresh model encodes nothing.

    Retrieval is left out: mteb 2.26's wrapper rebuilds the data loader from already formatted corpus
    rows, so the model sees "title title text" (the title twice), other texts than without it.
    """
    tasks = [t for t in mock_tasks() if t.metadata.type not in ("Retrieval", "Reranking")]
    expected = {t.metadata.name: 1.0 for t in tasks}
    first = CachedEmbeddingWrapper(MtebEncoder(GroupEncoder(), name="test/groups"), tmp_path / "emb")
    assert _scores(first, tasks) == pytest.approx(expected)
    again = GroupEncoder()
    second = CachedEmbeddingWrapper(MtebEncoder(again, name="test/groups"), tmp_path / "emb")
    assert _scores(second, [type(t)() for t in tasks]) == pytest.approx(expected)
    assert again.calls == []


def test_wrapper_protocol_and_metadata():
    from mteb.models.model_meta import ScoringFunction

    model = MtebEncoder(GroupEncoder(), name="plainname")
    meta = model.mteb_model_meta
    assert meta.name == "unimae/plainname" and meta.similarity_fn_name is ScoringFunction.COSINE
    assert meta.revision.endswith("-mean-64") and meta.embed_dim == 4
    same, other = GROUPS[0][0], GROUPS[2][0]
    batches = [{"text": [same, ""]}, {"text": [GROUPS[0][1], other]}]
    out = model.encode(batches, task_metadata=None, hf_split="test", hf_subset="default")
    assert out.shape == (4, 4) and not out[1].any()  # empty text -> zero vector
    sim = np.asarray(model.similarity(out[[0]], out[[2, 3]]))
    assert sim[0, 0] == pytest.approx(1.0) and sim[0, 1] == pytest.approx(0.0)
    assert np.asarray(model.similarity_pairwise(out[[0, 3]], out[[2, 3]])) == pytest.approx([1.0, 1.0])


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
    from unimae.evaluation.benchmark import summarize
    from unimae.evaluation.results import NO_DATA_NOTE, CategoryScore

    cats, average, category_average = summarize(
        {"A": 0.5, "B": 0.7, "C": 0.9}, {"A": "STS", "B": "STS", "C": "Retrieval"}
    )
    assert cats["STS"].score == pytest.approx(0.6) and cats["STS"].n_tasks == 2
    assert cats["Summarization"] == CategoryScore(score=None, n_tasks=0, note=NO_DATA_NOTE)
    assert cats["Summarization"].to_dict() == {"score": None, "n_tasks": 0, "note": NO_DATA_NOTE}
    assert "note" not in cats["STS"].to_dict()  # as in the files: a note only where there is no score
    assert average == pytest.approx(0.7)  # over tasks
    assert category_average == pytest.approx(0.75)  # over categories that have tasks
    assert summarize({}, {}) == (summarize({}, {})[0], None, None)


def test_hub_benchmarks_are_named_without_downloading():
    from unimae.evaluation.task_sets import MTEB_15, benchmark_tasks

    tasks = benchmark_tasks("mteb-15")
    assert [t.metadata.name for t in tasks] == list(MTEB_15)
    assert len(benchmark_tasks("mteb-eng")) == 56


def test_every_named_set_is_an_mteb_benchmark_built_afresh():
    import mteb

    from unimae.errors import UserError
    from unimae.evaluation.task_sets import BENCHMARKS, get_benchmark, select_tasks

    for name in BENCHMARKS:
        bench = get_benchmark(name)
        assert isinstance(bench, mteb.Benchmark) and bench.name == name and len(bench.tasks) > 0
        assert bench.needs_hub == name.startswith("mteb-")  # the offline sets never reach the hub
    assert get_benchmark("offline").tasks[0] is not get_benchmark("offline").tasks[0]  # no data shared
    assert get_benchmark("offline").all_categories[-1] == "Summarization"  # listed though no task has it
    with pytest.raises(UserError, match="unknown benchmark 'nope'; choose one of"):
        get_benchmark("nope")
    with pytest.raises(UserError, match=r"unknown mteb-15 task\(s\) \['LeeSTS'\]"):
        select_tasks(get_benchmark("mteb-15"), ["LeeSTS"])


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
    loaded = BenchmarkSummary.load(tmp_path / "a" / "summary.json")
    assert loaded.model_info.pooling == "mean" and loaded.texts_encoded > 0
    mteb_files = list((tmp_path / "a" / "mteb" / "results").rglob("LeeSTS.json"))
    assert len(mteb_files) == 1 and (tmp_path / "a" / "summary.md").read_text().startswith("# Tiny")
    # intervals (issue 24): per task, per category and for the average, from the kept embeddings
    for task in loaded.tasks.values():
        assert task.ci_low <= task.score <= task.ci_high and task.n_items > 0 and task.replicates
    assert loaded.average_ci_low <= loaded.average <= loaded.average_ci_high
    assert loaded.categories["STS"].ci_low is not None and loaded.bootstrap.n_replicates == 1000
    assert (
        loaded.tasks["LeeSTS"].n_items == 1225
        and len(loaded.tasks["MiniNewsgroupsClustering"].replicates) == 200
    )
    from unimae.evaluation.rescore import load_task_embeddings

    stored = load_task_embeddings(tmp_path / "a", "LeeSTS")
    assert (
        len(stored.texts) == 50
        and stored.vectors.shape[0] == 50
        and stored.revision == loaded.model_info.revision
    )
    assert "95% interval" in (tmp_path / "a" / "summary.md").read_text()


def test_unimae_eval_resume_reads_back_finished_tasks_and_runs_the_rest(tiny_llama, tmp_path):
    from unimae.cli import main

    out = tmp_path / "r"
    args = ["eval", str(tiny_llama), "--pooling", "mean", "--tasks", "LeeSTS", "MiniNewsgroupsClustering"]
    assert main([*args, "-o", str(out)]) == 0
    full = json.loads((out / "summary.json").read_text())
    assert "resumed" not in full
    # an interrupted run: one task's mteb result is on disk, the other's is not
    (clustering,) = (out / "mteb" / "results").rglob("MiniNewsgroupsClustering.json")
    clustering.unlink()
    assert main([*args, "-o", str(out), "--resume", "true"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["resumed"] == ["LeeSTS"] and again["tasks"].keys() == full["tasks"].keys()
    for name, task in full["tasks"].items():  # mteb's result files keep 6 decimals
        assert again["tasks"][name]["score"] == pytest.approx(task["score"], abs=1e-6)
    assert 0 < again["texts_encoded"] < full["texts_encoded"]  # only the clustering texts were encoded
    assert "--resume" in again["command"]
    assert again["tasks"]["LeeSTS"]["replicates"] == full["tasks"]["LeeSTS"]["replicates"]  # from its npz
    # other settings (here the pooling) are another mteb revision: nothing is read back
    assert main([*args[:3], "last", *args[4:], "-o", str(out), "--resume", "true"]) == 0
    assert "resumed" not in json.loads((out / "summary.json").read_text())
