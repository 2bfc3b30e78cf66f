"""Keep every task's embeddings, and score a task again from given embeddings, with intervals.

``unimae eval`` wraps its model in an ``EmbeddingRecorder``: each vector mteb asked for is kept under its
task and written to ``<output>/embeddings/<Task>.npz`` (texts and float32 vectors, in the order mteb asked
for them). After the evaluation each task is scored again from that file (``rescore_task``): mteb runs the
same task on a ``StoredEncoder`` that hands back the stored vectors, with its predictions saved, and
``item_scores`` turns those into per-item scores for the bootstrap. The full-sample statistic must equal
mteb's main score (checked), so an interval belongs to the very figure in ``summary.json``.

Post-processed vectors (normalised, centred, another layer, ...) are scored the same way:

    from unimae.evaluation.offline_v2 import offline_v2_tasks
    from unimae.evaluation.rescore import load_task_embeddings, rescore_task
    task = offline_v2_tasks(["LeeSTS-dev"])[0]
    stored = load_task_embeddings("results/x/offline-v2-dev", "LeeSTS-dev")   # .texts, .vectors
    vectors = stored.vectors / np.linalg.norm(stored.vectors, axis=1, keepdims=True)
    result = rescore_task(task, dict(zip(stored.texts, vectors)))             # TaskInterval
    result.score, result.ci_low, result.ci_high, result.replicates

``task_texts(task)`` lists the texts a task embeds (to encode them another way before rescoring).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unimae.evaluation import bootstrap as bs
from unimae.evaluation import item_scores as its
from unimae.io import atomic_write_bytes

log = logging.getLogger(__name__)

TOLERANCE = 2e-5  # mteb rounds retrieval scores to 5 decimals; read-back results keep 6


# --- the embeddings of one task on disk ---------------------------------------------------------------


@dataclass
class TaskEmbeddings:
    """The vectors one evaluation produced for a task: ``texts[i]`` -> ``vectors[i]`` ``(n, d)`` float32."""

    texts: list[str]
    vectors: np.ndarray
    revision: str = ""

    def lookup(self) -> dict[str, np.ndarray]:
        return dict(zip(self.texts, self.vectors, strict=True))


def embeddings_path(folder: str | Path, task: str) -> Path:
    return Path(folder) / f"{task}.npz"


def save_task_embeddings(folder: str | Path, task: str, stored: TaskEmbeddings) -> Path:
    """Write ``<folder>/<task>.npz`` atomically (texts as UTF-8 JSON bytes: no pickle needed to read)."""
    import io

    buffer = io.BytesIO()
    np.savez(
        buffer,
        vectors=np.asarray(stored.vectors, dtype=np.float32),
        texts=np.frombuffer(json.dumps(stored.texts, ensure_ascii=False).encode(), dtype=np.uint8),
        revision=np.frombuffer(stored.revision.encode(), dtype=np.uint8),
    )
    return atomic_write_bytes(embeddings_path(folder, task), buffer.getvalue())


def load_task_embeddings(folder: str | Path, task: str) -> TaskEmbeddings:
    """Read what ``save_task_embeddings`` wrote (``folder``: an eval output folder or its embeddings/)."""
    folder = Path(folder)
    if (folder / "embeddings").is_dir():
        folder = folder / "embeddings"
    with np.load(embeddings_path(folder, task), allow_pickle=False) as z:
        texts = json.loads(z["texts"].tobytes().decode())
        return TaskEmbeddings(texts, z["vectors"], z["revision"].tobytes().decode())


class EmbeddingRecorder:
    """Wraps an mteb encoder; keeps the vectors of each task and rewrites its ``.npz`` after every call.

    Everything else (similarity, metadata, counters) is the wrapped model's.
    """

    def __init__(self, model, folder: str | Path):
        self.model = model
        self.folder = Path(folder)
        self.by_task: dict[str, dict[str, np.ndarray]] = {}

    def encode(self, inputs, *, task_metadata=None, **kwargs: Any) -> np.ndarray:
        vectors = self.model.encode(inputs, task_metadata=task_metadata, **kwargs)
        if task_metadata is not None:
            texts = [t for batch in inputs for t in batch["text"]]
            kept = self.by_task.setdefault(task_metadata.name, {})
            kept.update(zip(texts, np.asarray(vectors, dtype=np.float32), strict=True))
            revision = self.model.mteb_model_meta.revision or ""
            stored = TaskEmbeddings(list(kept), np.stack(list(kept.values())), revision)
            save_task_embeddings(self.folder, task_metadata.name, stored)
        return vectors

    def similarity(self, a, b):
        return self.model.similarity(a, b)

    def similarity_pairwise(self, a, b):
        return self.model.similarity_pairwise(a, b)

    @property
    def mteb_model_meta(self):
        return self.model.mteb_model_meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class StoredEncoder:
    """An mteb encoder that returns given vectors by text (cosine similarity); an empty text gets zeros.

    A text without a vector raises KeyError naming it (the embeddings do not belong to this task).
    """

    def __init__(
        self, vectors: Mapping[str, np.ndarray], name: str = "unimae/stored", revision: str = "stored"
    ):
        self.vectors = vectors
        self.dim = len(next(iter(vectors.values())))
        self.name, self.revision = name, revision

    @property
    def mteb_model_meta(self):
        from mteb.models.model_meta import ModelMeta, ScoringFunction

        return ModelMeta.create_empty(
            {"name": self.name, "revision": self.revision, "similarity_fn_name": ScoringFunction.COSINE}
        )

    def vectors_of(self, texts: list[str]) -> np.ndarray:
        zero = np.zeros(self.dim, dtype=np.float32)
        missing = [t for t in texts if t.strip() and t not in self.vectors]
        if missing:
            raise KeyError(f"no stored vector for {len(missing)} text(s), e.g. {missing[0][:80]!r}")
        rows = [zero if not t.strip() else np.asarray(self.vectors[t], dtype=np.float32) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def encode(self, inputs, **kwargs: Any) -> np.ndarray:
        return self.vectors_of([t for batch in inputs for t in batch["text"]])

    def similarity(self, a, b):
        from mteb.similarity_functions import cos_sim

        return cos_sim(a, b)

    def similarity_pairwise(self, a, b):
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(a, b)


# --- texts, predictions, items ------------------------------------------------------------------------


def task_texts(task) -> list[str]:
    """The distinct texts ``task`` embeds, in the order mteb first asks for them (the order of a fresh
    ``embeddings/<Task>.npz``); runs mteb on it with an encoder that hands out random 2-d vectors."""
    seen: dict[str, None] = {}

    class _Recording(StoredEncoder):
        def encode(self, inputs, **kwargs: Any) -> np.ndarray:
            texts = [t for batch in inputs for t in batch["text"]]
            seen.update(dict.fromkeys(texts))
            return np.random.default_rng(len(seen)).normal(size=(len(texts), 2)).astype(np.float32)

    _run(_fresh(task), _Recording({"": np.zeros(2)}))
    return list(seen)


def _fresh(task):
    """A new instance of the task's class with the same data (its random state as mteb starts it)."""
    clone = type(task)()
    if not task.data_loaded:
        task.load_data()
    clone.__dict__.update({k: v for k, v in task.__dict__.items() if k not in ("rng_state", "np_rng")})
    return clone


def _run(task, model, prediction_folder: Path | None = None) -> float:
    import mteb

    result = mteb.evaluate(
        model, [task], cache=None, prediction_folder=prediction_folder, show_progress_bar=False
    )
    return float(result.task_results[0].get_score())


def task_statistics(task, predictions: dict, vectors_of: Callable[[list[str]], np.ndarray]) -> dict:
    """``{(subset, split): ItemStatistic}`` of a task from mteb's saved predictions (clustering: vectors)."""
    out = {}
    for subset in task.hf_subsets:
        for split in task.metadata.eval_splits:
            kind = task.metadata.type
            if kind in ("Retrieval", "Reranking"):
                out[subset, split] = its.retrieval_items(
                    task, task.dataset[subset][split], predictions[subset][split]
                )
            elif kind == "Classification":
                data = task.dataset[subset] if subset in task.dataset else task.dataset
                out[subset, split] = its.classification_items(task, data, split, predictions[subset][split])
            elif kind == "STS":
                out[subset, split] = its.sts_items(
                    task, its.split_data(task, subset, split), predictions[subset][split]
                )
            elif kind == "PairClassification":
                out[subset, split] = its.pair_items(
                    task, its.split_data(task, subset, split), predictions[subset][split]
                )
            elif kind == "Clustering":
                out[subset, split] = its.clustering_items(
                    task, its.split_data(task, subset, split), vectors_of
                )
            else:
                raise its.UnsupportedTaskError(f"task type {kind!r}")
    return out


def _replicates(name: str, parts: dict, seed: int, n_replicates: int) -> np.ndarray:
    """Per replicate: the mean over (subset, split) parts of the part statistic on its own resample."""
    rows = []
    for key, stat in parts.items():
        draw_key = name if len(parts) == 1 else f"{name}/{key[0]}/{key[1]}"
        b = bs.N_REPLICATES_CLUSTERING if stat.restarts else n_replicates
        draws = bs.draw_indices(draw_key, stat.n_items, seed, b)
        seeds = bs.replicate_seeds(draw_key, stat.n_items, seed, b)
        rows.append(stat(draws, seeds))
    return bs.mean_replicates({str(i): r for i, r in enumerate(rows)})


def rescore_task(
    task,
    vectors: Mapping[str, np.ndarray],
    *,
    seed: int = bs.SEED,
    n_replicates: int = bs.N_REPLICATES,
    level: float = bs.LEVEL,
) -> bs.TaskInterval:
    """Score ``task`` (an mteb task object) from ``vectors`` {text: vector} with mteb's own protocol, and
    bootstrap its items: ``TaskInterval`` (score = mteb's main score on these vectors). Raises
    ``UnsupportedTaskError`` for a task type or main score without per-item form, KeyError when a text
    the task embeds has no vector, and AssertionError when the per-item statistic on all items does not
    reproduce mteb's score."""
    encoder = StoredEncoder(vectors)
    with tempfile.TemporaryDirectory(prefix="unimae-rescore-") as tmp:
        fresh = _fresh(task)
        score = _run(fresh, encoder, Path(tmp))
        predictions = json.loads(next(Path(tmp).glob("*_predictions.json")).read_text(encoding="utf-8"))
    parts = task_statistics(fresh, predictions, encoder.vectors_of)
    full = np.mean([_full(fresh, key, stat, encoder) for key, stat in parts.items()])
    assert abs(full - score) <= TOLERANCE, f"{task.metadata.name}: per-item {full} != mteb {score}"
    reps = _replicates(task.metadata.name, parts, seed, n_replicates)
    return bs.interval(score, reps, sum(s.n_items for s in parts.values()), level)


def _full(task, key: tuple[str, str], stat: its.ItemStatistic, encoder: StoredEncoder) -> float:
    if stat.restarts:
        return its.mteb_clustering_score(task, its.split_data(task, *key), encoder.vectors_of)
    return stat.full()
