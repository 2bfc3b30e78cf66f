"""The size study on ``offline-v2-test``: does training lead the best training-free prompt, by how much, and
how sure is that?

The same runs as ``scale.py`` (``scripts/scale_study.sh MODEL``; ``BENCHMARK=offline-v2-test``), each read
from ``results/scale/MODEL/<result>/offline-v2-test``. Per size, the best training-free pooling is the
best of pretended chain of thought, PromptEOL and Token Prepending *on the test set itself*: the most
generous choice for the baselines, so a margin over it is conservative. A recipe's margin is its average
minus that baseline's, with the paired-bootstrap interval of ``unimae compare`` (the same resampled items
on both sides).

``margin_records`` gives one record per size, recipe and seed (``results/scale/summary.json``, written by
``studies/results.py``); ``margins_section`` is RESULTS.md's table of them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from scale import MODELS, SEEDS, lm_eval_result

from unimae.evaluation.compare import compare_summaries
from unimae.evaluation.results import BenchmarkSummary
from unimae.io import atomic_write_text
from unimae.tables import markdown_table

BENCHMARK = "offline-v2-test"
BASELINES = {
    "pretended CoT": "base-pcot",
    "PromptEOL": "base-prompteol",
    "Token Prepending": "base-tokenprepend",
}
# recipe name (``src/unimae/configs/<name>.yaml``; "mntp": default.yaml with objective=mntp, the baseline)
# -> its run folders' prefix under results/scale/MODEL (``<prefix>-s<seed>``); "d1" is the name the
# distillation run had on offline-v2-dev (results/v25/d1-s42), kept so the two parts read alike
RECIPES = {"default": "unimae", "distill": "d1", "mntp": "mntp"}


@dataclass
class MarginRecord:
    """One size, recipe and seed on ``benchmark``: averages and margin in 0-1, ``*_ci_*`` 95% intervals
    (None: a side has no bootstrap replicates); ``ppl``/``mc_acc`` from the run's own lm-eval (None: not
    run for that seed), ``*_base`` the base model's."""

    model: str
    recipe: str
    seed: int
    benchmark: str
    average: float
    average_ci_low: float | None
    average_ci_high: float | None
    best_baseline: float
    best_baseline_name: str
    margin: float
    margin_ci_low: float | None
    margin_ci_high: float | None
    ppl: float | None
    ppl_base: float | None
    mc_acc: float | None
    mc_acc_base: float | None


def _summary(results: Path, model: str, key: str, part: str = BENCHMARK) -> BenchmarkSummary | None:
    p = results / "scale" / model / key / part / "summary.json"
    return BenchmarkSummary.load(p) if p.is_file() else None


def _trained_runs(results: Path, part: str = BENCHMARK):
    """``(model, recipe, seed, run, best)`` for every trained run scored on ``part`` of a size whose best
    training-free pooling ``best`` (name, summary) is measured, in size, recipe and seed order."""
    for model in MODELS:
        best = best_baseline(results, model)
        if best is None:
            continue
        for recipe, prefix in RECIPES.items():
            for seed in SEEDS:
                if (run := _summary(results, model, f"{prefix}-s{seed}", part)) is not None:
                    yield model, recipe, seed, run, best


def best_baseline(results: Path, model: str) -> tuple[str, BenchmarkSummary] | None:
    """The training-free pooling with the highest average on the test set (None: none measured)."""
    found = [(name, s) for name, key in BASELINES.items() if (s := _summary(results, model, key)) is not None]
    return max(found, key=lambda x: x[1].average) if found else None


def _record(results: Path, model: str, recipe: str, seed: int, run: BenchmarkSummary, best) -> MarginRecord:
    name, base = best
    diff = compare_summaries(run, base).average
    lm, lm_base = (
        lm_eval_result(results, model, f"{RECIPES[recipe]}-s{seed}"),
        lm_eval_result(results, model, "base"),
    )
    return MarginRecord(
        model=model,
        recipe=recipe,
        seed=seed,
        benchmark=BENCHMARK,
        average=run.average,
        average_ci_low=run.average_ci_low,
        average_ci_high=run.average_ci_high,
        best_baseline=base.average,
        best_baseline_name=name,
        margin=diff.difference,
        margin_ci_low=diff.ci_low,
        margin_ci_high=diff.ci_high,
        ppl=lm.perplexity.perplexity if lm else None,
        ppl_base=lm_base.perplexity.perplexity if lm_base else None,
        mc_acc=lm.choice_accuracy if lm else None,
        mc_acc_base=lm_base.choice_accuracy if lm_base else None,
    )


def margin_records(results: str | Path = "results") -> list[MarginRecord]:
    """One record per size, recipe and seed that has an ``offline-v2-test`` result (sizes with no
    baseline measured yet have none)."""
    results = Path(results)
    return [_record(results, *found) for found in _trained_runs(results)]


def write_margins(results: str | Path = "results") -> Path | None:
    """``results/scale/summary.json``: the records as a JSON list (None, nothing written, without any)."""
    records = margin_records(results)
    if not records:
        return None
    text = json.dumps([asdict(r) for r in records], indent=2) + "\n"
    return atomic_write_text(Path(results) / "scale" / "summary.json", text)


def pct(x: float | None, sign: str = "") -> str:
    """A 0-1 figure x 100 with 2 decimals ("-" for None); ``sign="+"`` shows the sign."""
    return "-" if x is None else f"{100 * x:{sign}.2f}"


def interval(low: float | None, high: float | None, sign: str = "") -> str:
    """`` [low, high]`` x 100, or nothing when either end is missing."""
    return "" if low is None or high is None else f" [{pct(low, sign)}, {pct(high, sign)}]"


def verdict(low: float | None, high: float | None) -> str:
    """A margin's interval in a word: lead / trails (above / below 0), includes 0, or no interval."""
    if low is None or high is None:
        return "no interval"
    if low > 0:
        return "lead"
    return "trails" if high < 0 else "includes 0"


def _generation(value: float | None, base: float | None, relative: bool) -> str:
    if value is None or base is None:
        return "not run"
    if relative:
        return f"{value:.2f} vs {base:.2f} ({100 * (value / base - 1):+.1f}%)"
    return f"{100 * value:.1f} vs {100 * base:.1f} ({100 * (value - base):+.1f})"


def _averages_table(results: Path) -> list[str]:
    """One row a size: every method's average with its interval."""
    keys = {**BASELINES, **{f"{r} s{s}": f"{p}-s{s}" for r, p in RECIPES.items() for s in SEEDS}}
    rows = []
    for model in MODELS:
        cells = [_summary(results, model, key) for key in keys.values()]
        if any(cells):
            rows.append(
                [f"`{model}`"]
                + [
                    "not run" if s is None else pct(s.average) + interval(s.average_ci_low, s.average_ci_high)
                    for s in cells
                ]
            )
    return markdown_table(["model", *keys], rows).splitlines() if rows else []


def _categories_table(results: Path) -> list[str]:
    """One row a trained run: each category's paired difference to the size's best training-free pooling."""
    rows, cats = [], []
    for model, recipe, seed, run, best in _trained_runs(results):
        c = compare_summaries(run, best[1])
        cats = cats or list(c.categories)
        rows.append(
            [f"`{model}`", recipe, seed]
            + [
                pct(d.difference, "+") + interval(d.ci_low, d.ci_high, "+")
                if (d := c.categories.get(cat))
                else "-"
                for cat in cats
            ]
        )
    return markdown_table(["model", "recipe", "seed", *cats], rows).splitlines() if rows else []


# A run scored on part of offline-v2-test only: the tasks whose data the package registry still serves
# (BIG-bench's archive was withdrawn from PyPI; docs/evaluation.md, "unimae data prepare")
PARTIAL = "offline-v2-test-registry"


def _paired_cell(run: BenchmarkSummary, other: BenchmarkSummary | None, tasks: list[str]) -> str:
    if other is None:
        return "-"
    d = compare_summaries(run, other, tasks).average
    return f"{pct(d.difference, '+')}{interval(d.ci_low, d.ci_high, '+')} ({verdict(d.ci_low, d.ci_high)})"


def _full_or_partial(results: Path, model: str, seed: int) -> BenchmarkSummary | None:
    """The default recipe's result of ``seed``: on the whole set, else on the registry-served part."""
    key = f"{RECIPES['default']}-s{seed}"
    full = _summary(results, model, key)
    return full if full is not None else _summary(results, model, key, PARTIAL)


def _partial_rows(results: Path) -> list[list]:
    """Each partial run against the same size's results, paired on the partial run's tasks: the default
    recipe of the same seed (its full result, else its partial one) and the best training-free pooling."""
    rows = []
    for model, recipe, seed, run, best in _trained_runs(results, PARTIAL):
        tasks = list(run.tasks)
        default = None if recipe == "default" else _full_or_partial(results, model, seed)
        rows.append(
            [
                f"`{model}`",
                recipe,
                seed,
                ", ".join(f"{t} {pct(run.tasks[t].score)}" for t in tasks),
                _paired_cell(run, default, tasks),
                _paired_cell(run, best[1], tasks),
                best[0],
            ]
        )
    return rows


def partial_section(results: str | Path = "results") -> list[str]:
    """RESULTS.md's table of runs scored only on the registry-served tasks of offline-v2-test (none: no lines)."""
    rows = _partial_rows(Path(results))
    if not rows:
        return []
    head = [
        "model",
        "recipe",
        "seed",
        "scores",
        "minus default (same seed)",
        "minus best training-free",
        "best",
    ]
    return [
        f"### Scored on part of `{BENCHMARK}` only",
        "",
        "Runs made after PyPI stopped serving the BIG-bench archive, scored on the test tasks that need no "
        f"BIG-bench file (`{PARTIAL}`), paired on those tasks with the full results above (`unimae compare "
        "--tasks`), x 100 with 95% intervals. Two tasks are no verdict on the recipe: they show which way it "
        "moves these tasks.",
        "",
        *markdown_table(head, rows).splitlines(),
        "",
    ]


def margins_section(results: str | Path = "results") -> list[str]:
    """RESULTS.md's "Model sizes on offline-v2-test" (no lines before any result)."""
    results = Path(results)
    averages, records = _averages_table(results), margin_records(results)
    if not averages:
        return []
    rows = [
        [
            f"`{r.model}`",
            r.recipe,
            r.seed,
            pct(r.average),
            f"{r.best_baseline_name} {pct(r.best_baseline)}",
            pct(r.margin, "+") + interval(r.margin_ci_low, r.margin_ci_high, "+"),
            verdict(r.margin_ci_low, r.margin_ci_high),
            _generation(r.ppl, r.ppl_base, relative=True),
            _generation(r.mc_acc, r.mc_acc_base, relative=False),
        ]
        for r in records
    ]
    head = [
        "model",
        "recipe",
        "seed",
        "average",
        "best training-free",
        "margin [95% CI]",
        "",
        "PPL vs base",
        "MC acc vs base",
    ]
    return [
        f"## Model sizes on `{BENCHMARK}`",
        "",
        f"The size study's runs re-scored on `{BENCHMARK}` (it chose nothing), x 100 with 95% bootstrap "
        "intervals. Recipes: `default` is `unimae train --config default` (the paper's objective, as "
        "`--config paper`); `distill` is `--config distill` (the default plus distillation from the base "
        "model's pretended-CoT embedding, issue 25's finalist on `offline-v2-dev`); `mntp` the default with "
        "`objective=mntp` (LLM2Vec's masked next-token step). The best training-free pooling is chosen per "
        "size on this test set (the generous choice for the baselines); the margin's interval is paired "
        "(`unimae compare`). lead / trails: the interval is above / below 0. Generation: each run's own lm-eval "
        "against the base model's. Records: `results/scale/summary.json`.",
        "",
        *averages,
        "",
        *(markdown_table(head, rows).splitlines() if rows else ["No trained run measured on this set yet."]),
        "",
        *(
            [
                "Per category: each trained run minus the same size's best training-free pooling, the mean over "
                "the category's tasks x 100 with its paired 95% interval.",
                "",
                *categories,
                "",
            ]
            if (categories := _categories_table(results))
            else []
        ),
        *partial_section(results),
    ]
