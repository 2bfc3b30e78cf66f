"""t-SNE of one clustering task's embeddings coloured by class, one panel per model (the paper's Figure 2).

unimae tsne Base=smollm2-135m@mean UniMAE=runs/default/model -o results/tsne.png
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unimae.errors import UserError
from unimae.evaluation.offline_data import rng_for


def clustering_texts(task: str, n_points: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(texts, class names) of an offline clustering task, a seeded sample of ``n_points``."""
    from unimae.evaluation.offline_tasks import offline_tasks

    t = offline_tasks([task])[0]
    if t.metadata.type != "Clustering":
        raise UserError(f"{task} is a {t.metadata.type} task, not a clustering task")
    t.load_data()
    split = t.dataset["test"]
    texts, labels = list(split["sentences"]), [str(y) for y in split["labels"]]
    idx = sorted(rng_for(f"tsne-{task}", seed).sample(range(len(texts)), min(n_points, len(texts))))
    return [texts[i] for i in idx], [labels[i] for i in idx]


def tsne_2d(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, 2) t-SNE of L2-normalised embeddings (cosine geometry), deterministic for a seed."""
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_panels(
    panels: Sequence[tuple[str, np.ndarray]], labels: Sequence[str], output: str | Path, title: str = ""
) -> Path:
    """Scatter each (title, (n, 2) points) side by side, one colour per class; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unimae.evaluation.figures import save_figure

    classes = sorted(set(labels))
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    y = np.array(labels)
    for ax, (name, pts) in zip(axes[0], panels, strict=True):
        for k, c in enumerate(classes):
            sel = y == c
            ax.scatter(pts[sel, 0], pts[sel, 1], s=8, color=cmap(k % cmap.N), label=c)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        axes[0][-1].legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=7, markerscale=2)
    if title:
        fig.suptitle(title)
    return save_figure(fig, output, dpi=120)


def tsne_figure(
    models: Sequence[tuple[str, str, str | None]],
    output: str | Path,
    task: str = "SquadArticleClustering",
    n_points: int = 400,
    seed: int = 0,
    batch_size: int = 32,
) -> Path:
    """Embed a clustering task's texts with each (label, model, pooling) and plot their t-SNE side by side."""
    from unimae.encoding.encoder import Encoder

    texts, labels = clustering_texts(task, n_points, seed)
    panels = []
    for label, model, pooling in models:
        enc = Encoder.from_pretrained(model, pooling=pooling)
        vecs = enc.encode(texts, batch_size=batch_size, show_progress_bar=True)
        name = label if enc.pooling.lower() in label.lower() else f"{label} ({enc.pooling})"
        panels.append((name, tsne_2d(vecs, seed)))
        del enc
    return plot_panels(
        panels, labels, output, title=f"t-SNE of {task} ({len(texts)} texts), coloured by class"
    )
