"""Figure 3(b) of the paper: language-model scores of the base model, MNTP and UniMAE side by side.

Drawn from the ``lm_eval.json`` files of ``unimae lm-eval``; ``studies/results.py`` redraws it into
``results/fig3b_lm_scores.png`` whenever there are two or more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unimae.evaluation.figures import save_figure
from unimae.evaluation.results import LmEvalResult


def plot_lm_scores(lm: list[LmEvalResult], path: str | Path) -> Path:
    """Figure 3(b), one row per model (first on top), so that any number of models stays readable.
    Left: held-out perplexity (lower is better; log scale when they differ over 10x). Right: mean
    multiple-choice accuracy over the BIG-bench tasks (bar) and each task's accuracy (markers), with the
    untrained model's mean (dotted) and the mean chance level (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(lm)
    labels = [r.label for r in lm]
    tasks = list(dict.fromkeys(t for r in lm for t in r.multiple_choice))
    fig, (ax_ppl, ax_mc) = plt.subplots(
        1, 2, figsize=(11, 1.6 + 0.4 * n), dpi=120, sharey=True, gridspec_kw={"width_ratios": [1, 1.6]}
    )
    y = np.arange(n)[::-1]
    ppl = [r.perplexity.perplexity for r in lm]
    ax_ppl.barh(y, ppl, color="tab:blue", alpha=0.6)
    if max(ppl) > 10 * min(ppl):  # a destroyed model would flatten the others on a linear axis
        ax_ppl.set_xscale("log")
    for yi, v in zip(y, ppl):
        ax_ppl.text(v, yi, f" {v:.1f}", va="center", fontsize=7)
    ax_ppl.set_yticks(y, labels, fontsize=8)
    ax_ppl.set_title("held-out perplexity ↓", fontsize=9)
    ax_ppl.set_xlim(right=max(ppl) * 1.2)

    mean = [100 * r.choice_accuracy for r in lm]
    ax_mc.barh(y, mean, color="tab:green", alpha=0.35, label="mean over tasks")
    for yi, v in zip(y, mean):
        ax_mc.text(1, yi, f"{v:.1f}", va="center", fontsize=7)
    markers, colors = "osD^v<>p", plt.get_cmap("tab10")
    for j, t in enumerate(tasks):
        acc = [100 * r.multiple_choice[t].acc if t in r.multiple_choice else np.nan for r in lm]
        ax_mc.scatter(
            acc, y, marker=markers[j % len(markers)], s=22, color=colors(j), label=t.replace("_", " ")
        )
    chance = [next(r.multiple_choice[t].chance for r in lm if t in r.multiple_choice) for t in tasks]
    ax_mc.axvline(100 * float(np.mean(chance)), color="black", ls="--", lw=0.8, label="mean chance")
    base = next((r for r in lm if r.model_info.kind == "untrained"), None)
    if base is not None:
        ax_mc.axvline(
            100 * base.choice_accuracy, color="tab:green", ls=":", lw=1.2, label=f"{base.label} mean"
        )
    ax_mc.set_xlabel("accuracy (%)", fontsize=8)
    ax_mc.set_title("multiple-choice accuracy (BIG-bench, log-likelihood)", fontsize=9)
    ax_mc.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_mc.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)
