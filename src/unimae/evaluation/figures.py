"""Figure 3(b) of the paper: language-model scores of the base model, MNTP and UniMAE side by side,
and the figure writer the other plots share.

Drawn from ``lm_eval.json`` files of ``unimae lm-eval`` (``unimae report`` calls it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """Lay out ``fig``, write it to ``path`` (creating its folder) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **savefig_kwargs)
    plt.close(fig)
    return path


def plot_lm_scores(lm: list[dict], path: str | Path) -> Path:
    """Two panels: held-out perplexity per model (lower is better; log scale when they differ over 10x) and multiple-choice accuracy
    per BIG-bench task, one bar per model, with each task's chance level as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in lm]
    tasks = list(dict.fromkeys(t for r in lm for t in r["multiple_choice"]))
    fig, (ax_ppl, ax_mc) = plt.subplots(
        1, 2, figsize=(4 + 1.6 * len(tasks), 3.6), dpi=120, gridspec_kw={"width_ratios": [1, 2.5]}
    )
    colors = plt.get_cmap("tab10")
    ppl = [r["perplexity"]["perplexity"] for r in lm]
    ax_ppl.bar(range(len(lm)), ppl, color=[colors(i) for i in range(len(lm))])
    if max(ppl) > 10 * min(ppl):  # a destroyed model would flatten the others on a linear axis
        ax_ppl.set_yscale("log")
    ax_ppl.set_xticks(range(len(lm)), labels, rotation=20, fontsize=8)
    ax_ppl.set_title("held-out perplexity ↓", fontsize=9)
    for i, v in enumerate(ppl):
        ax_ppl.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)

    width = 0.8 / max(len(lm), 1)
    x = np.arange(len(tasks))
    for i, r in enumerate(lm):
        acc = [100 * r["multiple_choice"].get(t, {}).get("acc", np.nan) for t in tasks]
        ax_mc.bar(x + (i - (len(lm) - 1) / 2) * width, acc, width, label=r["label"], color=colors(i))
    chance = [
        100 * next(r["multiple_choice"][t]["chance"] for r in lm if t in r["multiple_choice"]) for t in tasks
    ]
    ax_mc.scatter(x, chance, marker="_", s=600, color="black", label="chance", zorder=3)
    ax_mc.set_xticks(x, [t.replace("_", " ") for t in tasks], fontsize=8)
    ax_mc.set_ylabel("accuracy (%)")
    ax_mc.set_title("multiple-choice accuracy (BIG-bench, log-likelihood)", fontsize=9)
    ax_mc.legend(fontsize=7, loc="upper right")
    ax_mc.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)
