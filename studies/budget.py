"""The training-budget curve on ``offline-v2-dev``: does a recipe's lead over the best training-free prompt
grow with the texts its run has seen?

Each point is one trained run's ``unimae eval MODEL --benchmark offline-v2-dev`` under
``results/v25/<name>/offline-v2-dev``. Longer runs extend a shorter one: a copy of its run folder resumed
with ``unimae train --resume true --output_dir COPY optim.steps=N``. The default schedule is constant after
its warmup and the batches and masks are pure functions of (seed, step), so the first 100 steps of a
300-step run are the 100-step run and every point of a curve shares its prefix. A run's *variant* is the
set of config fields in which it differs from ``--config default``, the step count aside ("default" when
none), read from the ``training`` record that the eval stored with the model. Margins are paired
(``unimae compare``) against the base model read through pretended chain of thought
(``results/v25/base-pcot``), the best training-free pooling of the 135M model on ``offline-v2-test``.

``budget_section`` is RESULTS.md's table (no lines until a variant has two budgets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from margins import interval, pct, verdict

from unimae.evaluation.compare import compare_summaries
from unimae.evaluation.results import RUN_ONLY, BenchmarkSummary
from unimae.tables import markdown_table
from unimae.training.config import TrainConfig, load_config

BENCHMARK = "offline-v2-dev"
FOLDER = "v25"
BASELINE = "base-pcot"
# fields that do not name a variant: where and how often a run wrote, its length, seed and base model
NOT_THE_RECIPE = {*RUN_ONLY, "optim.steps", "seed", "model"}


@dataclass
class BudgetPoint:
    """One run on the dev set: averages and margin in 0-1, intervals at 95% (None: no replicates)."""

    variant: str
    model: str
    seed: int
    steps: int
    texts: int  # texts seen: steps x batch_size
    label: str
    average: float
    ci_low: float | None
    ci_high: float | None
    margin: float
    margin_ci_low: float | None
    margin_ci_high: float | None
    categories: dict[str, float | None]


def run_config(summary: BenchmarkSummary) -> TrainConfig | None:
    """The training config stored with an evaluated model (None: a base model or an unknown run)."""
    training = summary.model_info.training
    return TrainConfig(**training) if training else None


def variant_name(cfg: TrainConfig, default: TrainConfig) -> str:
    """``key=value`` for each field that differs from ``default`` (the step count aside), or "default"."""
    ours, theirs = cfg.flat(), default.flat()
    changed = [f"{k}={ours[k]}" for k in sorted(ours) if k not in NOT_THE_RECIPE and ours[k] != theirs.get(k)]
    return " ".join(changed) or "default"


def budget_points(results: str | Path = "results") -> list[BudgetPoint]:
    """Every trained run under ``results/v25/*/offline-v2-dev``, by variant, seed and steps."""
    root = Path(results) / FOLDER
    base_path = root / BASELINE / BENCHMARK / "summary.json"
    if not base_path.is_file():
        return []
    base, default = BenchmarkSummary.load(base_path), load_config("default")
    points = []
    for path in sorted(root.glob(f"*/{BENCHMARK}/summary.json")):
        run = BenchmarkSummary.load(path)
        cfg = run_config(run)
        if cfg is None or run.benchmark != BENCHMARK:
            continue
        diff = compare_summaries(run, base).average
        points.append(
            BudgetPoint(
                variant=variant_name(cfg, default),
                model=cfg.model,
                seed=cfg.seed,
                steps=cfg.optim.steps,
                texts=cfg.optim.steps * cfg.optim.batch_size,
                label=run.label,
                average=run.average,
                ci_low=run.average_ci_low,
                ci_high=run.average_ci_high,
                margin=diff.difference,
                margin_ci_low=diff.ci_low,
                margin_ci_high=diff.ci_high,
                categories={name: c.score for name, c in run.categories.items()},
            )
        )
    return sorted(points, key=lambda p: (p.model, p.variant != "default", p.variant, p.seed, p.steps))


def budget_section(results: str | Path = "results") -> list[str]:
    """RESULTS.md's "Training budget" table (no lines before some variant has two step counts)."""
    points = budget_points(results)
    budgets: dict[tuple[str, str, int], set[int]] = {}
    for p in points:
        budgets.setdefault((p.model, p.variant, p.seed), set()).add(p.steps)
    curves = {key for key, steps in budgets.items() if len(steps) >= 2}
    if not curves:
        return []
    categories = sorted({c for p in points for c in p.categories})
    head = ["model", "variant", "seed", "steps", "texts seen", "average [95% CI]", "margin [95% CI]", ""]
    rows = [
        [
            f"`{p.model}`",
            p.variant,
            p.seed,
            p.steps,
            f"{p.texts:,}",
            pct(p.average) + interval(p.ci_low, p.ci_high),
            pct(p.margin, "+") + interval(p.margin_ci_low, p.margin_ci_high, "+"),
            verdict(p.margin_ci_low, p.margin_ci_high),
            *(pct(p.categories.get(c)) for c in categories),
        ]
        for p in points
    ]
    return [
        f"## Training budget on `{BENCHMARK}`",
        "",
        f"Trained runs under `results/{FOLDER}` on `{BENCHMARK}`, x 100 with 95% bootstrap intervals, by the "
        "steps they trained (16 texts of at most 64 tokens a step). A longer run is a shorter one resumed "
        "with more steps (`unimae train --resume true --output_dir RUN optim.steps=N` on a copy of its "
        "folder), so a curve's points share their first steps. The variant names the config fields that "
        "differ from `--config default`. The margin is paired against the base model read through "
        f"pretended chain of thought (`results/{FOLDER}/{BASELINE}`); lead / trails: its interval is above / "
        "below 0. This is the dev part: it chooses, `offline-v2-test` reports.",
        "",
        *markdown_table(head + categories, rows).splitlines(),
        "",
    ]
