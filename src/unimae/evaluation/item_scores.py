"""Per-item scores of an mteb task, so its main score can be resampled.

From mteb's saved predictions (``prediction_folder``) and the task's own data, each task type becomes an
``ItemStatistic``: ``n_items`` scored items and ``__call__(draws)`` that gives the main score on each
row of item indices ``draws`` ``(B, k)``; on ``arange(n_items)`` it is mteb's main score.

- STS: pairs; Spearman / Pearson of the saved similarities against the gold scores.
- Classification: test texts (out-of-fold texts when cross-validated); accuracy per experiment / fold,
  averaged as mteb does.
- PairClassification: pairs; average precision of each similarity, the maximum over them (``max_ap``).
- Retrieval / Reranking: queries; pytrec_eval's per-query value of the main metric, averaged.
- Clustering: documents, from the embeddings; every replicate clusters its resample with its own k-means
  seed (documents and restarts both vary). ``mteb_clustering_score`` repeats mteb's own procedure.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from unimae.evaluation.bootstrap import counts


class UnsupportedTaskError(ValueError):
    """The task's type or main score has no per-item form here (it gets no interval)."""


@dataclass
class ItemStatistic:
    """A main score as a function of resampled items: ``fn(draws (B, k)) -> (B,)``."""

    n_items: int
    fn: Callable[[np.ndarray], np.ndarray]
    kind: str = "items"
    restarts: bool = False  # clustering: each replicate also needs a k-means seed (``seeds=``)

    def __call__(self, draws: np.ndarray, seeds: np.ndarray | None = None) -> np.ndarray:
        return self.fn(draws, seeds) if self.restarts else self.fn(draws)

    def full(self) -> float:
        """The statistic on all items once: mteb's main score (clustering: ``mteb_clustering_score``)."""
        if self.restarts:
            raise ValueError("a clustering score depends on k-means restarts: use mteb_clustering_score")
        return float(self(np.arange(self.n_items)[None, :])[0])


# --- pure statistics on resamples -------------------------------------------------------------------------


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant resample: nan, as scipy
        return (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))


def correlation(gold: np.ndarray, predicted: np.ndarray, kind: str) -> Callable[[np.ndarray], np.ndarray]:
    """Spearman (``kind='spearman'``, ranks with ties averaged, as scipy) or Pearson on each resample."""
    from scipy.stats import rankdata

    def fn(draws: np.ndarray) -> np.ndarray:
        g, p = gold[draws], predicted[draws]
        if kind == "spearman":
            g, p = rankdata(g, axis=1), rankdata(p, axis=1)
        return _rowwise_pearson(g, p)

    return fn


def weighted_average_precision(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """scikit-learn's ``average_precision_score`` with ``sample_weight=weights[b]`` for each row b.

    ``scores``, ``labels`` ``(n,)`` (higher score = more likely 1); ``weights`` ``(B, n)``. Equal scores
    form one threshold, so a resample (weights = counts) gives the value on the duplicated items.
    """
    order = np.argsort(-scores, kind="stable")
    s, y, w = scores[order], labels[order].astype(float), weights[:, order]
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each run of equal scores
    tp = np.cumsum(w * y, axis=1)[:, ends]
    fp = np.cumsum(w * (1 - y), axis=1)[:, ends]
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample without positives: nan, as sklearn
        recall = tp / tp[:, -1:]
    step = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    return (step * precision).sum(axis=1)


def mean_of(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The mean of per-item values on each resample (accuracy, per-query nDCG, ...)."""
    return lambda draws: values[draws].mean(axis=1)


def fold_mean_accuracy(correct: np.ndarray, folds: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Mean over folds of each fold's accuracy on the resample (mteb averages cross-validation folds)."""

    def fn(draws: np.ndarray) -> np.ndarray:
        w = counts(draws, len(correct))
        per_fold = []
        for f in np.unique(folds):
            inside = folds == f
            total = w[:, inside].sum(axis=1)
            per_fold.append(
                np.where(
                    total > 0, (w[:, inside] * correct[inside]).sum(axis=1) / np.maximum(total, 1), np.nan
                )
            )
        return np.nanmean(np.stack(per_fold, axis=1), axis=1)

    return fn


def kmeans_v_measure(
    vectors: np.ndarray, labels: np.ndarray, n_clusters: int, batch_size: int, seed: int
) -> float:
    """V-measure of one MiniBatchKMeans run (k-means++, one init) as mteb clusters."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics.cluster import v_measure_score

    km = MiniBatchKMeans(
        n_clusters=n_clusters, batch_size=batch_size, init="k-means++", n_init=1, random_state=seed
    )
    return float(v_measure_score(labels, km.fit_predict(vectors)))


# --- from an mteb task and its predictions -----------------------------------------------------------------


def split_data(task, subset: str, split: str):
    """The dataset of one (subset, split), as mteb picks it."""
    data = task.dataset
    if subset in data:
        data = data[subset]
    return data[split]


def sts_items(task, split_dataset, predictions: Mapping) -> ItemStatistic:
    name = task.metadata.main_score
    kind = "spearman" if name.endswith("spearman") else "pearson" if name.endswith("pearson") else None
    prefix = name.removesuffix("_spearman").removesuffix("_pearson").removesuffix(kind or "")
    column = {
        "cosine": "cosine_scores",
        "manhattan": "manhattan_distances",
        "euclidean": "euclidean_distances",
    }
    key = column.get(prefix, "similarity_scores" if prefix == "" else None)
    if kind is None or key is None:
        raise UnsupportedTaskError(f"STS main score {name!r}")
    values = predictions[key] if predictions.get(key) is not None else predictions["cosine_scores"]
    gold = np.asarray(split_dataset["score"], dtype=float)
    return ItemStatistic(len(gold), correlation(gold, np.asarray(values, dtype=float), kind), "pairs")


def classification_items(task, data, split: str, predictions: list) -> ItemStatistic:
    if task.metadata.main_score != "accuracy":
        raise UnsupportedTaskError(f"classification main score {task.metadata.main_score!r}")
    label = task.label_column_name
    if task.is_cross_validation:
        from sklearn.model_selection import KFold

        labels = np.asarray(data[task.train_split][label])
        folds, correct = np.zeros(len(labels), dtype=int), np.zeros(len(labels))
        splitter = KFold(n_splits=task.n_splits, shuffle=True, random_state=task.seed)
        for f, ((_, val), pred) in enumerate(
            zip(splitter.split(range(len(labels))), predictions, strict=True)
        ):
            folds[val] = f
            correct[val] = np.asarray(pred) == labels[val]
        return ItemStatistic(len(labels), fold_mean_accuracy(correct, folds), "texts (out of fold)")
    labels = np.asarray(data[split][label])
    correct = np.mean([np.asarray(p) == labels for p in predictions], axis=0)  # mean over experiments
    return ItemStatistic(len(labels), mean_of(correct), "test texts")


PAIR_SCORES = {  # mteb's similarity functions: (prediction key, higher means similar)
    "similarity": ("similarity_scores", True),
    "cosine": ("cosine_scores", True),
    "manhattan": ("manhattan_distances", False),
    "euclidean": ("euclidean_distances", False),
    "dot": ("dot_scores", True),
}


def pair_items(task, split_dataset, predictions: Mapping) -> ItemStatistic:
    name = task.metadata.main_score
    which = (
        list(PAIR_SCORES) if name == "max_ap" else [name.removesuffix("_ap")] if name.endswith("_ap") else []
    )
    if not which or any(w not in PAIR_SCORES for w in which):
        raise UnsupportedTaskError(f"pair classification main score {name!r}")
    labels = split_dataset[task.label_column_name if hasattr(task, "label_column_name") else "labels"]
    labels = np.asarray(labels[0] if len(labels) == 1 and isinstance(labels[0], list) else labels)
    scores = [
        np.asarray(predictions[PAIR_SCORES[w][0]], dtype=float) * (1 if PAIR_SCORES[w][1] else -1)
        for w in which
    ]

    def fn(draws: np.ndarray) -> np.ndarray:
        w = counts(draws, len(labels))
        return np.max([weighted_average_precision(s, labels, w) for s in scores], axis=0)

    return ItemStatistic(len(labels), fn, "pairs")


PYTREC = {"ndcg_at_": "ndcg_cut_", "map_at_": "map_cut_", "recall_at_": "recall_", "precision_at_": "P_"}


def retrieval_items(task, split_data_, predictions: Mapping) -> ItemStatistic:
    import pytrec_eval

    name = task.metadata.main_score
    prefix = next((p for p in PYTREC if name.startswith(p)), None)
    if prefix is None:
        raise UnsupportedTaskError(f"retrieval main score {name!r}")
    measure = PYTREC[prefix] + name.removeprefix(prefix)
    qrels = {q: {d: int(r) for d, r in docs.items()} for q, docs in split_data_["relevant_docs"].items()}
    family, k = measure.rsplit("_", 1)  # output key ndcg_cut_10 <- requested measure ndcg_cut.10
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {f"{family}.{k}"})
    per_query = evaluator.evaluate({q: dict(docs) for q, docs in predictions.items()})
    values = np.array([per_query[q][measure] for q in sorted(per_query)])
    return ItemStatistic(len(values), mean_of(values), "queries")


def embedded_documents(task, split_dataset) -> tuple[random.Random, list[int]]:
    """(mteb's random state after it picked the documents to embed, their indices): every document when
    the task embeds all (unimae's), else mteb's seeded sample (``max_document(s)_to_embed``)."""
    rng, n = random.Random(task.seed), len(split_dataset)
    if task.max_fraction_of_documents_to_embed is None and task.max_document_to_embed is None:
        return rng, list(range(n))
    if task.max_fraction_of_documents_to_embed is not None:
        k = int(task.max_fraction_of_documents_to_embed * n)
    else:
        k = task.max_document_to_embed
    return rng, rng.sample(range(n), k=min(n, k))


def _clustering_data(task, split_dataset, vectors_of) -> tuple[random.Random, np.ndarray, np.ndarray]:
    rng, idx = embedded_documents(task, split_dataset)
    labels = [split_dataset[task.label_column_name][i] for i in idx]
    labels = [lab[0] if isinstance(lab, list) and len(lab) == 1 else lab for lab in labels]
    if any(isinstance(lab, list) for lab in labels):
        raise UnsupportedTaskError("hierarchical clustering labels")
    texts = [split_dataset[task.input_column_name][i] for i in idx]
    return rng, vectors_of(texts), np.asarray(labels)


def clustering_items(task, split_dataset, vectors_of: Callable[[list[str]], np.ndarray]) -> ItemStatistic:
    """Documents: each replicate runs k-means once (its own seed) on its resample of the embedded ones."""
    if task.metadata.main_score != "v_measure":
        raise UnsupportedTaskError(f"clustering main score {task.metadata.main_score!r}")
    _, vectors, labels = _clustering_data(task, split_dataset, vectors_of)
    k = int(np.unique(labels).size)

    def fn(draws: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        return np.array(
            [
                kmeans_v_measure(vectors[d], labels[d], k, task.k_mean_batch_size, int(s))
                for d, s in zip(draws, seeds, strict=True)
            ]
        )

    return ItemStatistic(len(labels), fn, "documents", restarts=True)


def mteb_clustering_score(task, split_dataset, vectors_of: Callable[[list[str]], np.ndarray]) -> float:
    """mteb's own clustering main score, repeated: ``n_clusters`` samples of ``max_documents_per_cluster``
    embedded documents drawn with mteb's ``random.Random(task.seed)``, each clustered with
    ``random_state=task.seed``, V-measures averaged."""
    rng, vectors, labels = _clustering_data(task, split_dataset, vectors_of)
    k = int(np.unique(labels).size)
    scores = []
    for _ in range(task.n_clusters):
        idx = rng.choices(range(len(labels)), k=task.max_documents_per_cluster)
        scores.append(kmeans_v_measure(vectors[idx], labels[idx], k, task.k_mean_batch_size, task.seed))
    return float(np.mean(scores))
