"""Why trained models lose the two-topic split of short subject lines (MiniNewsgroupsClustering).

200 Usenet subject lines, 100 from alt.atheism and 100 from sci.space, clustered into 2 groups. Training-free
prompts split them by topic; at 270M and 0.5B the trained models (UniMAE, MNTP) do not. For each reading
(a model + pooling + prompt, as one ``unimae eval`` result folder records it) this encodes the 200 lines
once, as the reading reads them, and measures on those vectors:

* ``mteb_protocol``: what the task scores, the mean V-measure of 10 single-init MiniBatchKMeans runs (seeds
  0-9), and ``topic_runs``, how many of those 10 found the topics (V-measure above 0.5);
* ``v_measure``: 2-means (10 restarts, the lowest inertia kept, seed 0) against the topics, on the vectors raw, L2-normalised,
  centred, and centred with the top 1 / 2 principal components removed (fitted on these 200 vectors: a
  diagnosis, not a recipe);
* what the raw 2-means split follows instead: its V-measure against the topics and against a split of the
  lines by length (tokens above the median) and by a question mark / a digit / a "Re:" inside;
* the share of variance on the first principal component, its correlation with the length, and the topic
  separation (distance between the two topic means over the mean distance to one's own mean, centred).

    python studies/short_texts.py results/scale/gemma3-270m/base-pcot/offline \\
        results/scale/gemma3-270m/unimae-s42/offline --out results/readout/mininewsgroups-270m.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from readout import post_process, reading_encoder
from sklearn.cluster import KMeans
from sklearn.metrics import v_measure_score

from unimae.evaluation.item_scores import kmeans_v_measure

TASK = "MiniNewsgroupsClustering"
POST = ("raw", "l2", "center", "center-pc1", "center-pc2")


def two_means(vectors: np.ndarray) -> np.ndarray:
    """(n,) labels of 2-means with 10 restarts (seed 0) on ``vectors`` (n, d)."""
    return KMeans(2, n_init=10, random_state=0).fit_predict(vectors.astype(np.float64))


def surface_splits(texts: list[str], n_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Binary labels of each line by surface features that are not its topic."""
    return {
        "length": (n_tokens > np.median(n_tokens)).astype(int),
        "question mark": np.array(["?" in t for t in texts], dtype=int),
        "digit": np.array([any(c.isdigit() for c in t) for t in texts], dtype=int),
        "Re:": np.array(["re:" in t.lower() for t in texts], dtype=int),
    }


def separation(vectors: np.ndarray, topics: np.ndarray) -> float:
    """Distance between the two topic means over the mean distance of a vector to its own topic's mean."""
    v = vectors - vectors.mean(0)
    means = [v[topics == k].mean(0) for k in (0, 1)]
    within = np.mean([np.linalg.norm(v[topics == k] - means[k], axis=1).mean() for k in (0, 1)])
    return float(np.linalg.norm(means[0] - means[1]) / within)


def diagnose(vectors: np.ndarray, texts: list[str], topics: np.ndarray, n_tokens: np.ndarray) -> dict:
    """Every measurement of the module docstring, for one reading's vectors (n, d)."""
    v = vectors.astype(np.float64)
    runs = [kmeans_v_measure(v, topics, 2, batch_size=500, seed=s) for s in range(10)]
    scores = {how: v_measure_score(topics, two_means(post_process(v, v, how))) for how in POST}
    split = two_means(v)
    follows = {"topic": v_measure_score(topics, split)}
    follows |= {
        name: v_measure_score(labels, split) for name, labels in surface_splits(texts, n_tokens).items()
    }
    centred = v - v.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    pc1 = centred @ vt[0]
    return {
        "mteb_protocol": float(np.mean(runs)),
        "topic_runs": sum(r > 0.5 for r in runs),
        "v_measure": scores,
        "raw_split_follows": follows,
        "pc1_variance_share": float(s[0] ** 2 / (s**2).sum()),
        "pc1_length_correlation": float(np.corrcoef(pc1, n_tokens)[0, 1]),
        "topic_separation": separation(v, topics),
        "mean_norm": float(np.linalg.norm(v, axis=1).mean()),
    }


def task_lines() -> tuple[list[str], np.ndarray]:
    from unimae.evaluation.benchmark import benchmark_tasks

    task = benchmark_tasks("offline-v2-dev", [TASK])[0]
    task.load_data()
    data = task.dataset["test"]
    return list(data["sentences"]), np.asarray(data["labels"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "folders", nargs="+", help="unimae eval result folders (their summary.json names the reading)"
    )
    p.add_argument("--out", required=True, help="JSON file for every measurement")
    args = p.parse_args()
    texts, topics = task_lines()
    out = {
        "command": "python studies/short_texts.py " + " ".join([*args.folders, "--out", args.out]),
        "readings": {},
    }
    for folder in args.folders:
        summary = json.loads((Path(folder) / "summary.json").read_text())
        encoder = reading_encoder(summary)
        n_tokens = np.array([len(encoder.tokenizer(t)["input_ids"]) for t in texts])
        vectors = encoder.encode(texts, batch_size=32)
        found = diagnose(np.asarray(vectors), texts, topics, n_tokens)
        out["readings"][folder] = {"label": summary.get("label"), **found}
        print(summary.get("label"), json.dumps(found), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
