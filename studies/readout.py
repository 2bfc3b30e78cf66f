"""How the embedding is read out, without training: normalisation, centering / top principal components, layer.

For each reading (a model + pooling + prompt, as one ``unimae eval`` result folder records it) and each
task of a benchmark part, the task's texts are encoded ONCE with every hidden state kept, at three layers
(the last; the second-to-last; about L/6 from the top; intermediate layers pass the model's final norm,
as the last one does). Each layer's vectors are then post-processed:

* ``raw``: as the model gives them (what mteb scores: ``normalize_embeddings`` is False in the wrapper);
* ``l2``: unit length;
* ``center``: minus the mean of the reading's vectors of ``--fit-texts`` training texts (wiki train split);
* ``center-pc1`` / ``center-pc2``: also with the top 1 / 2 principal components of those training vectors
  projected out (Mu & Viswanath 2018, "all-but-the-top"),

and every task is re-scored from the vectors with mteb's own protocol (``evaluation.rescore``), with a
bootstrap interval. Writes ``OUT/readout.json`` (every score) and prints the per-reading table.

    python studies/readout.py results/v25/unimae-s42/offline-v2-dev results/v25/base-pcot/offline-v2-dev \
        --out results/readout/offline-v2-dev
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

POST = ("raw", "l2", "center", "center-pc1", "center-pc2")


def reading_encoder(summary: dict, device: str = "cpu"):
    """The ``Encoder`` a result folder's ``summary.json`` evaluated (model, pooling, prompt)."""
    from unimae.encoding.encoder import Encoder

    info = summary["model_info"]
    return Encoder.from_pretrained(
        info["model"],
        pooling=info.get("pooling"),
        prompt=info.get("prompt"),
        max_length=info.get("max_length"),
        device=device,
    )


def layer_indices(n_layers: int) -> dict[str, int]:
    """Index into ``hidden_states`` (0 = embeddings) of the layers read: last, second-to-last, L - L/6."""
    return {"last": n_layers, "last-1": n_layers - 1, f"L-{n_layers // 6}": n_layers - n_layers // 6}


def encode_layers(encoder, texts: list[str], batch_size: int = 32) -> dict[str, np.ndarray]:
    """``{layer name: (n, d)}`` of ``texts`` read as ``encoder`` reads them, one forward pass per batch for
    every layer (``Encoder.encode_layers``; intermediate layers pass the model's final norm)."""
    n_layers = encoder.model.config.get_text_config().num_hidden_layers
    names = layer_indices(n_layers)
    by_index = encoder.encode_layers(
        texts, list(names.values()), batch_size=batch_size, show_progress_bar=len(texts) > 256
    )
    return {name: by_index[i] for name, i in names.items()}


def post_process(vectors: np.ndarray, fit: np.ndarray, how: str) -> np.ndarray:
    """``vectors`` (n, d) post-processed by ``how`` (``POST``), statistics from ``fit`` (m, d)."""
    v = vectors.astype(np.float64)
    if how == "raw":
        return v
    if how == "l2":
        return v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
    mean = fit.mean(0)
    v = v - mean
    k = {"center": 0, "center-pc1": 1, "center-pc2": 2}[how]
    if k:
        _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
        top = vt[:k]  # (k, d) principal directions of the training vectors
        v = v - (v @ top.T) @ top
    return v


def study_reading(
    folder: Path,
    tasks: list,
    fit_texts: list[str],
    n_replicates: int,
    target: Path | None = None,
    command: str = "",
) -> dict:
    """Every (layer, post-processing, task) score of the reading evaluated in ``folder``; with ``target``,
    the scores so far are written there after each task (``"complete": false`` until the last)."""
    from unimae.evaluation.rescore import rescore_task, task_texts

    summary = json.loads((folder / "summary.json").read_text())
    encoder = reading_encoder(summary)
    fit = encode_layers(encoder, fit_texts)
    out: dict = {"label": summary.get("label"), "model_info": summary["model_info"], "scores": {}}
    out["command"] = command
    for task in tasks:
        name = task.metadata.name
        texts = task_texts(task)
        t0 = time.perf_counter()
        by_layer = encode_layers(encoder, texts)
        for layer, vectors in by_layer.items():
            for how in POST:
                pv = post_process(vectors, fit[layer], how)
                r = rescore_task(
                    task, dict(zip(texts, pv.astype(np.float32), strict=True)), n_replicates=n_replicates
                )
                out["scores"].setdefault(layer, {}).setdefault(how, {})[name] = {
                    "score": r.score,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "replicates": [round(float(x), 5) for x in r.replicates],
                }
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        if target is not None:
            target.write_text(json.dumps({**out, "complete": False}))
    out["complete"] = True
    return out


def averages(reading: dict) -> dict[str, dict[str, float]]:
    """``{layer: {post: mean score over tasks}}``."""
    return {
        layer: {how: float(np.mean([t["score"] for t in tasks.values()])) for how, tasks in posts.items()}
        for layer, posts in reading["scores"].items()
    }


def readout_section(results: str | Path = "results", part: str = "offline-v2-dev") -> list[str]:
    """RESULTS.md's readout table: one row per (layer, post-processing), one column per reading (mean over
    the tasks it has scored; a partial reading says how many). No lines before any reading."""
    from unimae.tables import markdown_table

    files = sorted(p for p in (Path(results) / "readout" / part).glob("*.json") if ".partial" not in p.name)
    files += sorted((Path(results) / "readout" / part).glob("*.partial.json"))
    readings = [json.loads(p.read_text()) for p in files]
    if not readings:
        return []
    heads, columns = [], []
    for r in readings:
        n = len(next(iter(next(iter(r["scores"].values())).values()))) if r["scores"] else 0
        heads.append(r["label"] + ("" if r.get("complete", True) else f" ({n} tasks so far)"))
        columns.append(averages(r) if r["scores"] else {})
    keys = list(dict.fromkeys((layer, how) for c in columns for layer in c for how in c[layer]))
    rows = [
        [
            f"{layer} / {how}",
            *(f"{100 * c[layer][how]:.2f}" if how in c.get(layer, {}) else "-" for c in columns),
        ]
        for layer, how in keys
    ]
    return [
        f"## Readout study on `{part}` (no training)",
        "",
        "`python studies/readout.py`: each reading's texts encoded once, read at three layers (the last, "
        "the second-to-last, about L/6 from the top; through the final norm) and post-processed (raw; L2; "
        "centred on 300 wiki training texts; also minus their top 1 / 2 principal components), every task "
        "re-scored with mteb's protocol. Mean over tasks x 100; `last / raw` is what `unimae eval` scores. "
        "Per-task scores and intervals: `results/readout/`.",
        "",
        "Tasks: "
        + ", ".join(
            sorted({t for r in readings for p in r["scores"].values() for t in next(iter(p.values()))})
        )
        + ".",
        "",
        *markdown_table(["layer / post-processing", *heads], rows).splitlines(),
        "",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "folders", nargs="+", help="unimae eval result folders (their summary.json names the reading)"
    )
    p.add_argument("--benchmark", default="offline-v2-dev")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--fit-texts", type=int, default=1000, help="wiki train texts the centering/PCs are fitted on"
    )
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--tasks", nargs="*", default=None)
    args = p.parse_args()

    from unimae.data.corpus import load_texts
    from unimae.evaluation.benchmark import benchmark_tasks

    torch.set_num_threads(1)
    tasks = benchmark_tasks(args.benchmark, args.tasks)
    for t in tasks:
        t.load_data()
    rng = np.random.default_rng(0)
    wiki = load_texts("wiki", split="train")
    fit_texts = [wiki[i] for i in sorted(rng.choice(len(wiki), args.fit_texts, replace=False))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in map(Path, args.folders):
        target = out / f"{folder.parent.name}.json"
        if target.exists():
            continue
        print(f"{folder}", flush=True)
        settings = ["--benchmark", args.benchmark, "--out", args.out, "--fit-texts", args.fit_texts]
        settings += ["--replicates", args.replicates, *(["--tasks", *args.tasks] if args.tasks else [])]
        command = "python studies/readout.py " + " ".join(map(str, [folder, *settings]))
        partial = out / f"{folder.parent.name}.partial.json"
        reading = study_reading(folder, tasks, fit_texts, args.replicates, partial, command)
        partial.unlink(missing_ok=True)
        target.write_text(json.dumps(reading))
        for layer, posts in averages(reading).items():
            print(f"  {layer:8s} " + "  ".join(f"{h} {100 * v:.2f}" for h, v in posts.items()), flush=True)


if __name__ == "__main__":
    main()
