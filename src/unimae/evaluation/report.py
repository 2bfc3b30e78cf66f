"""``unimae report``: regenerate RESULTS.md from result files (summary.json of ``unimae eval``,
lm_eval.json of ``unimae lm-eval``) and the figures (``*.png``) found under a results folder.

The report is a pure function of those files: the same files give the same RESULTS.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from unimae.evaluation.offline_tasks import CATEGORIES, SIZES
from unimae.evaluation.results import REFERENCE_ENCODER, BenchmarkSummary, LmEvalResult, ModelInfo
from unimae.evaluation.scale import scale_results, scale_table
from unimae.io import atomic_write_text
from unimae.tables import markdown_table

SHORT = {"PairClassification": "PairClass."}


def find_results(
    root: str | Path, runs: list[str] | None = None
) -> tuple[list[BenchmarkSummary], list[LmEvalResult], list[Path]]:
    """(eval summaries, lm-eval results, figures) under ``root`` (or under each of ``runs``, in that order)."""
    folders = [Path(r) for r in runs] if runs else [Path(root)]
    summaries, lm = [], []
    for folder in folders:
        if not folder.exists():
            raise FileNotFoundError(f"result folder {folder} does not exist")
        summaries += [BenchmarkSummary.load(p) for p in sorted(folder.rglob("summary.json"))]
        lm += [LmEvalResult.load(p) for p in sorted(folder.rglob("lm_eval.json"))]
    if runs is None:  # no order given: supervised reference last, others by label
        summaries.sort(key=lambda s: (s.model_info.model == REFERENCE_ENCODER, s.label))
        lm.sort(key=lambda r: r.label)
    if not summaries and not lm:
        raise FileNotFoundError(f"no summary.json or lm_eval.json under {', '.join(map(str, folders))}")
    return summaries, lm, find_figures(root, runs)


def find_figures(root: str | Path, runs: list[str] | None = None) -> list[Path]:
    """Every PNG under ``root`` and under each of ``runs``, once each."""
    folders = [Path(root), *(Path(r) for r in runs or [])]
    pngs = [p for f in folders if f.exists() for p in sorted(f.rglob("*.png"))]
    return list(dict.fromkeys(p.resolve() for p in pngs))


def _fmt(x, scale: float = 100.0, digits: int = 2) -> str:
    return "-" if x is None else f"{scale * x:.{digits}f}"


def _lm_for(summary: BenchmarkSummary, lm: list[LmEvalResult]) -> LmEvalResult | None:
    """The lm-eval result of the same model (same model string), if any."""
    return next((r for r in lm if r.model_info.model == summary.model_info.model), None)


def comparison_table(summaries: list[BenchmarkSummary], lm: list[LmEvalResult], benchmark: str) -> list[str]:
    rows = [s for s in summaries if s.task_set == benchmark]
    cats = (
        list(CATEGORIES)
        if benchmark == "offline"
        else list(dict.fromkeys(c for s in rows for c in s.categories))
    )
    head = ["model", *(SHORT.get(c, c) for c in cats), "Average", "PPL ↓", "MC acc"]
    table = []
    for s in rows:
        cells = [s.label]
        for c in cats:
            cat = s.categories.get(c)
            if cat is None or cat.score is None:
                cells.append("n/a" if cat is None else cat.note or "n/a")
            else:
                cells.append(_fmt(cat.score))
        cells.append(f"**{_fmt(s.average)}**" + _interval_suffix(s))
        r = _lm_for(s, lm)
        cells.append(f"{r.perplexity.perplexity:.2f}" if r else "-")
        cells.append(_fmt(r.choice_accuracy, 100, 1) if r else "-")
        table.append(cells)
    return markdown_table(head, table).splitlines()


def _interval_suffix(s: BenchmarkSummary) -> str:
    """' (low-high)' after an average that has a 95% bootstrap interval; '' for older results."""
    if s.average_ci_low is None or s.average_ci_high is None:
        return ""
    return f" ({_fmt(s.average_ci_low)}-{_fmt(s.average_ci_high)})"


def task_table(summaries: list[BenchmarkSummary], benchmark: str) -> list[str]:
    rows = [s for s in summaries if s.task_set == benchmark]
    tasks = list(dict.fromkeys(t for s in rows for t in s.tasks))
    table = []
    for t in tasks:
        info = next(s.tasks[t] for s in rows if t in s.tasks)
        cells = [_fmt(s.tasks[t].score) if t in s.tasks else "-" for s in rows]
        table.append([t, info.category, info.main_score, *cells])
    return markdown_table(["task", "category", "metric", *(s.label for s in rows)], table).splitlines()


def lm_table(lm: list[LmEvalResult]) -> list[str]:
    tasks = list(dict.fromkeys(t for r in lm for t in r.multiple_choice))
    table = []
    for r in lm:
        accs = [_fmt(r.multiple_choice[t].acc, 100, 1) if t in r.multiple_choice else "-" for t in tasks]
        means = [_fmt(r.choice_accuracy, 100, 1), _fmt(r.choice_accuracy_norm, 100, 1)]
        table.append([r.label, f"{r.perplexity.perplexity:.2f}", *accs, *means])
    if lm:
        first = lm[0].multiple_choice
        chance = [f"{100 * first[t].chance:.1f}" if t in first else "-" for t in tasks]
        table.append(["*chance*", "", *chance, "", ""])
    head = ["model", "PPL ↓", *tasks, "MC mean (acc)", "MC mean (acc_norm)"]
    return markdown_table(head, table).splitlines()


def generations_table(lm: list[LmEvalResult]) -> list[str]:
    prompts = list(dict.fromkeys(g.prompt for r in lm for g in r.generations))
    if not prompts:
        return []
    table = []
    for p in prompts:
        outs = []
        for r in lm:
            out = next((g.output for g in r.generations if g.prompt == p), "-")
            outs.append(out.replace("|", "\\|").replace("\n", " ⏎ "))
        table.append([p, *outs])
    return markdown_table(["prompt", *(r.label for r in lm)], table).splitlines()


def _unimae_checks(bench: str, u: BenchmarkSummary, by_kind: dict[str, list[BenchmarkSummary]]) -> list[str]:
    """One UniMAE row against the best untrained and MNTP rows (average), and the categories where any
    of those rows beats it."""
    lines = []
    for kind, group in by_kind.items():
        if group:
            best = max(group, key=lambda s: s.average)
            d = 100 * (u.average - best.average)
            lines.append(
                f"- `{bench}`: {u.label} {_fmt(u.average)} vs best {kind} row {best.label} "
                f"{_fmt(best.average)}: **{d:+.2f}** points"
            )
    others = [s for group in by_kind.values() for s in group]
    below = []
    for cat, c in u.categories.items():
        if c.score is None:
            continue
        beat_by = [
            f"{o.label} {_fmt(o.categories[cat].score)}"
            for o in others
            if cat in o.categories
            and o.categories[cat].score is not None
            and o.categories[cat].score > c.score
        ]
        if beat_by:
            below.append(f"{cat} ({_fmt(c.score)}; above it: {', '.join(beat_by)})")
    lines.append(
        f"- `{bench}`: categories where {u.label} is below an untrained pooling or MNTP: "
        + ("; ".join(below) if below else "none")
    )
    return lines


def checks(summaries: list[BenchmarkSummary], lm: list[LmEvalResult]) -> list[str]:
    """The issue's targets, computed from the result files: UniMAE against the untrained poolings and MNTP
    (average and per category, full task sets only), generation kept (perplexity, choice accuracy), time."""
    lines = []
    for bench in dict.fromkeys(s.benchmark for s in summaries if not s.subset):
        rows = [s for s in summaries if s.benchmark == bench and not s.subset]
        by_kind = {k: [s for s in rows if s.model_info.kind == k] for k in ("untrained", "mntp")}
        for u in (s for s in rows if s.model_info.kind == "unimae"):
            lines += _unimae_checks(bench, u, by_kind)
        slowest = max(rows, key=lambda s: s.seconds)
        lines.append(
            f"- `{bench}`: slowest evaluation {slowest.label}, {slowest.seconds / 60:.1f} min wall "
            f"({(slowest.cpu_seconds or 0) / 60:.1f} min CPU of its process)"
        )
    base = next((r for r in lm if r.model_info.kind == "untrained"), None)
    for r in lm:
        if base is None or r is base or r.model_info.kind == "untrained":
            continue
        p0, p1 = base.perplexity.perplexity, r.perplexity.perplexity
        da = 100 * (r.choice_accuracy - base.choice_accuracy)
        lines.append(
            f"- generation, {r.label} vs {base.label}: perplexity {p1:.2f} vs {p0:.2f} "
            f"(**{100 * (p1 / p0 - 1):+.1f}%**), mean choice accuracy **{da:+.1f}** points"
        )
    return lines


# training fields always shown in the setup table; any other field is shown where it differs between runs
SHOWN = (
    "model",
    "data",
    "objective",
    "steps",
    "seed",
    "batch_size",
    "lr",
    "mar_mask_ratio",
    "mrc_mask_ratio",
)


def varying_fields(infos: list[ModelInfo], skip: tuple[str, ...] = SHOWN) -> list[str]:
    """Training fields (other than ``skip``) whose value differs between the trained models of ``infos``."""
    trained = [i.training for i in infos if i.training]
    keys = dict.fromkeys(k for t in trained for k in t if k not in skip)
    return [k for k in keys if len({json.dumps(t.get(k)) for t in trained}) > 1]


def _training_text(info: ModelInfo, varying: list[str] = ()) -> str:
    train = info.training
    if not train:
        return "untrained / as published"
    return ", ".join(f"{k}={train[k]}" for k in (*SHOWN, *varying) if k in train)


def _setup_lines(summaries: list[BenchmarkSummary], lm: list[LmEvalResult]) -> list[str]:
    varying = varying_fields([x.model_info for x in [*summaries, *lm]])
    table = []
    for s in summaries:
        m = s.model_info
        table.append(
            [f"{s.label} ({s.task_set})", f"`{m.model}`", m.pooling, m.max_length, f"`{m.revision}`"]
            + [_training_text(m, varying), m.device or "?", f"{s.seconds:.0f} s"]
        )
    for r in lm:
        m = r.model_info
        table.append(
            [f"{r.label} (lm-eval)", f"`{m.model}`", "-", "-", f"`{m.revision}`"]
            + [_training_text(m, varying), m.device or "?", f"{r.seconds:.0f} s"]
        )
    head = ["row", "model", "pooling", "max tokens", "revision (weights hash)", "training", "device", "time"]
    return markdown_table(head, table).splitlines()


def _seed_groups(summaries: list[BenchmarkSummary]) -> dict[tuple[str, str], list[BenchmarkSummary]]:
    """Full-set summaries of trained models grouped by (benchmark, training config except the seed); the
    same weights (same revision, e.g. a rerun of one seed) count once. Only groups of two or more."""
    groups: dict[tuple[str, str], list[BenchmarkSummary]] = {}
    for s in summaries:
        train = s.model_info.training
        if train and not s.subset:
            rest = json.dumps({k: v for k, v in train.items() if k != "seed"}, sort_keys=True)
            group = groups.setdefault((s.benchmark, rest), [])
            if all(g.model_info.revision != s.model_info.revision for g in group):
                group.append(s)
    return {k: v for k, v in groups.items() if len(v) > 1}


def seed_table(summaries: list[BenchmarkSummary], lm: list[LmEvalResult]) -> list[str]:
    """Training configs run with more than one seed (full task sets): each seed's average and choice
    accuracy, and their mean. A config is named by the fields that tell the trained configs apart; rows
    with the same weights (same revision hash, e.g. a rerun of one seed) count once."""
    groups = _seed_groups(summaries)
    if not groups:
        return []
    names = varying_fields([s.model_info for s in summaries if not s.subset], skip=("seed",))
    table = []
    for (bench, _), rows in groups.items():
        train = rows[0].model_info.training or {}
        name = ", ".join(f"{k}={train.get(k)}" for k in names) or "(one config)"
        avgs = [100 * s.average for s in rows]
        accs = [100 * r.choice_accuracy for r in (_lm_for(s, lm) for s in rows) if r]
        mc = (
            (" / ".join(f"{a:.1f}" for a in accs), f"{sum(accs) / len(accs):.1f}")
            if len(accs) == len(rows)
            else ("-", "-")
        )
        seeds = ", ".join(str((s.model_info.training or {}).get("seed")) for s in rows)
        per_seed = " / ".join(f"{a:.2f}" for a in avgs)
        table.append([bench, name, seeds, per_seed, f"{sum(avgs) / len(avgs):.2f}", *mc])
    head = ["benchmark", "config", "seeds", "Average per seed", "mean", "MC acc per seed", "mean"]
    return markdown_table(head, table).splitlines()


def render_report(
    summaries: list[BenchmarkSummary],
    lm: list[LmEvalResult],
    figures: list[Path],
    out_dir: Path,
    scale: tuple[list[str], list] = ([], []),
) -> str:
    """RESULTS.md text; figure links are relative to ``out_dir`` (where RESULTS.md is written). ``scale``:
    the model-size table's lines and the results under ``results/scale`` (listed with the commands)."""
    scale_lines, scale_records = scale
    lines = [
        "# Results",
        "",
        "Generated by `unimae report` from the result files listed at the end; do not edit by hand.",
        "",
    ]
    benchmarks = list(dict.fromkeys(s.task_set for s in summaries))
    for b in benchmarks:
        subset = next(s.subset for s in summaries if s.task_set == b)
        lines += [
            f"## Embeddings and generation: `{b}` benchmark",
            "",
            "Main scores x 100 averaged per MTEB category; Average = mean over all tasks (MTEB's convention). "
            "PPL: held-out Wikipedia perplexity; MC acc: mean multiple-choice accuracy over the BIG-bench "
            "tasks of `unimae lm-eval` (same model, any pooling).",
            "",
        ]
        if subset:
            lines += [f"Tasks of this subset: {', '.join(subset)}.", ""]
        if any(s.average_ci_low is not None for s in summaries if s.task_set == b):
            lines += [
                "In brackets: the 95% bootstrap interval of the average (seeded resamples of every task's "
                "items, shared by all rows; `unimae compare A B` gives paired differences).",
                "",
            ]
        lines += comparison_table(summaries, lm, b) + [""]
        lines += [f"### Per task (`{b}`)", ""] + task_table(summaries, b) + [""]
    seeds = seed_table(summaries, lm)
    if seeds:
        lines += ["## Seeds", "", "Configs trained with more than one seed, same data and steps.", ""]
        lines += seeds + [""]
    found = checks(summaries, lm)
    if found:
        lines += ["## Against the targets", "", "Computed from the same files.", ""] + found + [""]
    if lm:
        lines += ["## Is generation kept?", "", "Accuracy x 100 (summed log-likelihood of each choice).", ""]
        lines += lm_table(lm) + [""]
        lines += ["### Greedy generations", ""] + generations_table(lm) + [""]
    if scale_lines:
        lines += [
            "## Model sizes",
            "",
            "`scripts/scale_study.sh MODEL` on each size, the default recipe unchanged (`configs/default.yaml` "
            "with `model=MODEL`; MNTP with the same optimizer). `offline` averages x 100; two numbers are "
            "seeds 42 / 7. UniMAE - best other: against the best of the two training-free poolings and MNTP "
            "(of those measured so far: a baseline not run yet is named). "
            "PPL and MC acc: seed 42, in brackets UniMAE against the base model. 135M results of the same "
            "recipe and seeds that predate the study are read where they are (`unimae.evaluation.scale.EARLIER`).",
            "",
            *scale_lines,
            "",
        ]
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            rel = os.path.relpath(f, out_dir)
            lines += [f"![{f.stem}]({rel})", ""]
    lines += ["## Models, steps and seeds", ""] + _setup_lines(summaries, lm) + [""]
    if any(s.benchmark.startswith("offline") for s in summaries):
        lines += [
            "## Offline data",
            "",
            "Built by `unimae data prepare` from pinned registry packages (see docs/evaluation.md for the "
            "manifest and hashes); subsamples are drawn with fixed seeds (seed 0).",
            "",
        ]
        sizes = [
            *SIZES.items(),
            ("(Summarization)", "no offline data: no offline set has human summary scores"),
        ]
        lines += markdown_table(["task", "size"], sizes).splitlines() + [""]
    lines += ["## Commands", "", "```bash"]
    lines += [x.command for x in [*summaries, *lm, *scale_records]]
    lines += ["unimae report  # this file", "```", "", "Result files:", ""]
    lines += [f"- `{os.path.relpath(x.path, out_dir)}`" for x in [*summaries, *lm, *scale_records]]
    return "\n".join(lines) + "\n"


def write_report(
    results: str | Path = "results", output: str | Path = "RESULTS.md", runs: list[str] | None = None
) -> Path:
    """Write RESULTS.md; with lm-eval results of two or more models, first (re)draws Figure 3(b) into
    ``results/fig3b_lm_scores.png`` from them."""
    summaries, lm, _ = find_results(results, runs)
    scale_records = scale_results(results)  # other base models: their own table, whatever ``runs`` names
    scale_files = {x.path.resolve() for x in scale_records}
    summaries = [s for s in summaries if s.path.resolve() not in scale_files]
    lm = [r for r in lm if r.path.resolve() not in scale_files]
    if len(lm) >= 2:
        from unimae.evaluation.figures import plot_lm_scores

        plot_lm_scores(lm, Path(results) / "fig3b_lm_scores.png")
    figures = find_figures(results, runs)  # now with the figure just drawn
    output = Path(output)
    scale = (scale_table(results), scale_records)
    text = render_report(summaries, lm, figures, output.resolve().parent, scale)
    atomic_write_text(output, text)
    return output
