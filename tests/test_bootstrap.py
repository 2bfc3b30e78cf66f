"""Bootstrap intervals (issue 24): shared draws, per-item statistics against references, rescoring that
reproduces mteb's main score on a mock task of every type, paired comparisons and the compare command."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score
from summaries import bootstrapped_summary

from unimae.evaluation import bootstrap as bs
from unimae.evaluation import item_scores as its
from unimae.evaluation.compare import compare_summaries, comparison_markdown
from unimae.evaluation.results import BenchmarkSummary

mteb = pytest.importorskip("mteb")


def test_draws_are_deterministic_and_keyed_by_task_size_and_seed():
    a = bs.draw_indices("LeeSTS", 50, seed=0, n_replicates=20)
    assert a.shape == (20, 50) and a.min() >= 0 and a.max() < 50
    assert np.array_equal(a, bs.draw_indices("LeeSTS", 50, seed=0, n_replicates=20))
    assert np.array_equal(a[:5], bs.draw_indices("LeeSTS", 50, seed=0, n_replicates=5))  # prefix-stable
    for other in (("Other", 50, 0), ("LeeSTS", 51, 0), ("LeeSTS", 50, 1)):
        assert not np.array_equal(a[:, :50], bs.draw_indices(*other, n_replicates=20)[:, :50])
    # the first row of a run is pinned: draws must not change between versions
    assert bs.draw_indices("pinned", 6, 0, 1).tolist() == [[5, 2, 3, 2, 5, 0]]


def test_weighted_average_precision_equals_sklearn_on_resamples():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=40), 1)  # rounding makes ties
    labels = rng.integers(0, 2, 40)
    draws = bs.draw_indices("ap", 40, n_replicates=30)
    ours = its.weighted_average_precision(scores, labels, bs.counts(draws, 40))
    ref = [average_precision_score(labels[d], scores[d]) for d in draws]
    assert np.allclose(ours, ref)


def test_correlation_on_resamples_equals_scipy():
    rng = np.random.default_rng(1)
    gold, pred = rng.normal(size=30), rng.normal(size=30)
    draws = bs.draw_indices("sts", 30, n_replicates=10)
    ours = its.correlation(gold, pred, "spearman")(draws)
    assert np.allclose(ours, [spearmanr(gold[d], pred[d])[0] for d in draws])


def test_fold_mean_accuracy_is_mtebs_mean_of_fold_accuracies():
    correct = np.array([1, 0, 1, 1, 0, 1, 1], dtype=float)
    folds = np.array([0, 0, 0, 1, 1, 2, 2])
    full = its.fold_mean_accuracy(correct, folds)(np.arange(7)[None, :])[0]
    assert full == pytest.approx(np.mean([2 / 3, 1 / 2, 1.0]))


def test_interval_contains_the_point_estimate_and_narrows_with_more_items():
    rng = np.random.default_rng(2)
    widths = []
    for n in (100, 1600):
        values = rng.random(n) < 0.7
        stat = its.ItemStatistic(n, its.mean_of(values.astype(float)))
        iv = bs.interval(stat.full(), stat(bs.draw_indices("acc", n)), n)
        assert iv.ci_low <= iv.score <= iv.ci_high
        widths.append(iv.ci_high - iv.ci_low)
    assert widths[1] < widths[0] / 2


# --- rescoring reproduces mteb on a mock task of every type ----------------------------------------------


class HashEncoder:
    """A stand-in Encoder: a text's vector is a fixed random function of the text (not a perfect answer)."""

    pooling, max_length, dim = "mean", 64, 2  # 2-d: mteb's 2-4 item mock tasks then score below 1

    def __init__(self):
        self.model = torch.nn.Linear(2, 2)

    def encode(self, texts, **kwargs):
        seeds = [int(hashlib.md5(("0" + t).encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).normal(size=self.dim) for s in seeds]).astype(np.float32)


def _mock_tasks() -> list:
    from mteb.mocks import (
        LegacyMockClusteringFastTask,
        MockClassificationTask,
        MockPairClassificationTask,
        MockRerankingTask,
        MockRetrievalTask,
        MockSTSTask,
    )

    return [
        MockSTSTask(),
        MockClassificationTask(),
        LegacyMockClusteringFastTask(),
        MockPairClassificationTask(),
        MockRetrievalTask(),
        MockRerankingTask(),
    ]


def test_rescoring_reproduces_mtebs_main_score_on_every_task_type(tmp_path):
    from unimae.evaluation.mteb_model import MtebEncoder
    from unimae.evaluation.rescore import EmbeddingRecorder, load_task_embeddings, rescore_task, task_texts

    tasks = _mock_tasks()
    recorder = EmbeddingRecorder(MtebEncoder(HashEncoder(), name="t/hash"), tmp_path)
    result = mteb.evaluate(recorder, tasks, cache=None, show_progress_bar=False)
    scores = {r.task_name: r.get_score() for r in result.task_results}
    assert len(set(scores.values())) > 2  # not all perfect: the check below means something
    for task in tasks:
        name = task.metadata.name
        stored = load_task_embeddings(tmp_path, name)
        assert stored.texts == task_texts(task)  # the npz keeps mteb's order of first request
        found = rescore_task(task, stored.lookup())  # asserts per-item == mteb inside
        assert found.score == pytest.approx(scores[name], abs=1e-5), name
        assert found.n_items > 0 and len(found.replicates) in (bs.N_REPLICATES, bs.N_REPLICATES_CLUSTERING)
        again = rescore_task(task, stored.lookup()).replicates
        np.testing.assert_array_equal(found.replicates, again)  # deterministic (nan: a constant resample)


def test_rescoring_post_processed_vectors_and_missing_ones():
    from mteb.mocks import MockSTSTask

    from unimae.evaluation.rescore import rescore_task, task_texts

    task = MockSTSTask()
    texts = task_texts(task)
    vectors = dict(zip(texts, HashEncoder().encode(texts), strict=True))
    unit = {t: v / np.linalg.norm(v) for t, v in vectors.items()}
    assert rescore_task(task, unit).score == pytest.approx(rescore_task(task, vectors).score)  # cosine
    with pytest.raises(KeyError, match="no stored vector"):
        rescore_task(task, dict(list(vectors.items())[1:]))


# --- paired comparisons ---------------------------------------------------------------------------------


def _summary(label: str, values: dict[str, np.ndarray]) -> BenchmarkSummary:
    return bootstrapped_summary(label, values)


def _values(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"TaskA": rng.random(200), "TaskB": rng.random(300)}


def test_identical_results_differ_by_zero_with_a_zero_width_interval():
    a, b = _summary("A", _values(0)), _summary("B", _values(0))
    c = compare_summaries(a, b)
    for d in [*c.tasks.values(), c.average]:
        assert d.difference == 0 and d.ci_low == 0 and d.ci_high == 0 and d.includes_zero
    assert "includes 0: no clear difference" in comparison_markdown(c)


def test_a_constant_shift_of_item_scores_gives_that_shift():
    base = _values(1)
    c = compare_summaries(_summary("A", {k: v + 0.05 for k, v in base.items()}), _summary("B", base))
    for d in [*c.tasks.values(), c.average]:
        assert d.difference == pytest.approx(0.05)
        assert d.ci_low == pytest.approx(0.05) and d.ci_high == pytest.approx(0.05)
        assert d.includes_zero is False
    assert "A higher" in comparison_markdown(c)


def test_each_category_gets_the_paired_difference_of_its_own_tasks():
    base = {**_values(5), "TaskC": np.random.default_rng(6).random(250)}
    cats = {"TaskA": "STS", "TaskB": "STS", "TaskC": "Retrieval"}
    shifted = {k: v + (0.1 if k == "TaskC" else 0.0) for k, v in base.items()}
    c = compare_summaries(_summary_of("A", shifted, cats), _summary_of("B", base, cats))
    assert c.members == {"STS": ["TaskA", "TaskB"], "Retrieval": ["TaskC"]}
    sts, retrieval = c.categories["STS"], c.categories["Retrieval"]
    assert sts.difference == 0 and sts.ci_low == 0 and sts.ci_high == 0  # its tasks did not move
    assert retrieval.difference == pytest.approx(0.1) and retrieval.ci_low == pytest.approx(0.1)
    assert c.average.difference == pytest.approx(0.1 / 3)
    text = comparison_markdown(c)
    assert "| *STS* (2)" in text and "| *Retrieval* (1)" in text
    assert c.to_dict()["categories"]["Retrieval"]["tasks"] == ["TaskC"]
    one = compare_summaries(_summary("A", _values(0)), _summary("B", _values(0)))
    assert list(one.categories) == ["Retrieval"] and "| *Retrieval*" not in comparison_markdown(one)


def _summary_of(label: str, values: dict[str, np.ndarray], categories: dict[str, str]) -> BenchmarkSummary:
    return bootstrapped_summary(label, values, category=categories)


def test_a_noisy_difference_has_an_interval_around_it():
    c = compare_summaries(_summary("A", _values(2)), _summary("B", _values(3)))
    for d in c.tasks.values():
        assert d.ci_low < d.difference < d.ci_high


def test_compare_refuses_other_tasks_and_handles_old_results(tmp_path):
    from unimae.errors import UserError

    a, b = _summary("A", _values(0)), _summary("B", {"TaskA": _values(0)["TaskA"]})
    with pytest.raises(UserError, match="different tasks"):
        compare_summaries(a, b)
    old = _summary("Old", _values(0))
    for t in old.tasks.values():
        t.ci_low = t.ci_high = t.n_items = t.replicates = None
    c = compare_summaries(a, old)
    assert c.average.ci_low is None and c.average.includes_zero is None
    assert "no interval" in comparison_markdown(c)


def test_compare_on_named_tasks_pairs_a_partial_run_with_a_full_one(tmp_path, capsys):
    from unimae.cli import main
    from unimae.errors import UserError

    full = _values(0)
    part = _summary("Part", {"TaskB": full["TaskB"] + 0.02})
    with pytest.raises(UserError, match="different tasks"):
        compare_summaries(part, _summary("Full", full))
    c = compare_summaries(part, _summary("Full", full), tasks=["TaskB"])
    assert list(c.tasks) == ["TaskB"] and c.average.difference == pytest.approx(0.02)
    assert c.average.ci_low == pytest.approx(0.02)
    with pytest.raises(UserError, match=r"A \(Part\) has no result for \['TaskA'\]"):
        compare_summaries(part, _summary("Full", full), tasks=["TaskA", "TaskB"])
    part.save(tmp_path / "P" / "summary.json")
    _summary("Full", full).save(tmp_path / "F" / "summary.json")
    assert main(["compare", str(tmp_path / "P"), str(tmp_path / "F"), "--tasks", "TaskB"]) == 0
    assert "| TaskB" in capsys.readouterr().out


def test_summary_with_replicates_round_trips_one_line_per_task(tmp_path):
    s = _summary("A", _values(4))
    path = s.save(tmp_path / "summary.json")
    text = path.read_text()
    assert sum(line.strip().startswith('"replicates": [') for line in text.splitlines()) == 2
    loaded = BenchmarkSummary.load(path)
    assert loaded.tasks["TaskA"].replicates == pytest.approx(s.tasks["TaskA"].replicates, abs=1e-5)
    assert json.loads(text)["tasks"]["TaskA"]["n_items"] == 200


def test_compare_command_prints_and_writes_json(tmp_path, capsys):
    from unimae.cli import main

    for label, seed in (("A", 0), ("B", 0)):
        _summary(label, _values(seed)).save(tmp_path / label / "summary.json")
    out = tmp_path / "cmp.json"
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--json", str(out)]) == 0
    assert "**Average**" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["average"]["difference"] == 0 and data["average"]["includes_zero"] is True
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "missing")]) == 2


def test_a_task_without_usable_embeddings_gets_no_interval(tmp_path, caplog):
    from mteb.mocks import MockSTSTask

    from unimae.evaluation.benchmark import task_intervals
    from unimae.evaluation.rescore import TaskEmbeddings, save_task_embeddings, task_texts

    task = MockSTSTask()
    assert task_intervals([task], {"MockSTSTask": 0.5}, tmp_path, "rev") == {}  # no file
    texts = task_texts(task)
    save_task_embeddings(tmp_path, "MockSTSTask", TaskEmbeddings(texts, HashEncoder().encode(texts), "other"))
    assert task_intervals([task], {"MockSTSTask": 0.5}, tmp_path, "rev") == {}  # another model's vectors
    found = task_intervals([task], {"MockSTSTask": -1.0}, tmp_path, "other")
    assert found["MockSTSTask"].score == pytest.approx(
        -1.0
    )  # the same model: rescored, equal to the evaluation's score
    assert task_intervals([task], {"MockSTSTask": 0.5}, tmp_path, "other") == {}  # does not reproduce
    assert "no interval" in caplog.text
