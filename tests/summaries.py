"""Result summaries built from per-item scores, as ``unimae eval`` writes them with intervals (imported by the
tests of comparisons and of the size study)."""

from __future__ import annotations

import numpy as np

from unimae.evaluation import bootstrap as bs
from unimae.evaluation import item_scores as its
from unimae.evaluation.results import BenchmarkSummary, CategoryScore, ModelInfo, TaskScore


def bootstrapped_summary(
    label: str,
    values: dict[str, np.ndarray],
    model: str | None = None,
    category: str | dict[str, str] = "Retrieval",
    benchmark: str = "offline-v2-test",
    training: dict | None = None,
) -> BenchmarkSummary:
    """A ``benchmark`` summary whose task ``name`` scores the mean of ``values[name]`` (one item score
    each), with the seeded bootstrap replicates and intervals of the real evaluation; ``training``: the
    run config stored with a trained model; ``category``: every task's, or one per task name."""
    of = category if isinstance(category, dict) else dict.fromkeys(values, category)
    tasks = {}
    for name, v in values.items():
        stat = its.ItemStatistic(len(v), its.mean_of(v))
        iv = bs.interval(stat.full(), stat(bs.draw_indices(name, len(v))), len(v))
        tasks[name] = TaskScore(
            category=of[name], main_score="ndcg_at_10", score=iv.score, ci_low=iv.ci_low,
            ci_high=iv.ci_high, n_items=iv.n_items, replicates=iv.replicates,
        )  # fmt: skip
    average = float(np.mean([t.score for t in tasks.values()]))
    low, high = bs.percentile_interval(bs.mean_replicates({n: t.replicates for n, t in tasks.items()}))
    return BenchmarkSummary(
        label=label, benchmark=benchmark,
        model_info=ModelInfo(model=model or label, revision="r", training=training),
        tasks=tasks, categories={
            c: CategoryScore(
                score=float(np.mean([t.score for t in tasks.values() if t.category == c])),
                n_tasks=sum(t.category == c for t in tasks.values()),
            )
            for c in dict.fromkeys(of.values())
        },
        average=average, category_average=average, seconds=1.0, command="unimae eval",
        average_ci_low=low, average_ci_high=high,
    )  # fmt: skip
