"""``unimae report``: RESULTS.md from any result folders: the summary.json files of ``unimae eval``, the
lm_eval.json files of ``unimae lm-eval`` and the figures (``*.png``) found there.

The report is a pure function of those files: the same files give the same RESULTS.md. It is a list of
named sections (``report_sections``), so that a study can add its own between them (``insert_after``)
and render the whole (``render_report``); this repository's RESULTS.md is made that way by
``studies/results.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from unimae.evaluation.offline_tasks import CATEGORIES, SIZES
from unimae.evaluation.results import REFERENCE_ENCODER, BenchmarkSummary, LmEvalResult, ModelInfo
from unimae.io import atomic_write_text
from unimae.tables import markdown_table

Record = BenchmarkSummary | LmEvalResult
Sections = dict[str, list[str]]  # section name -> its markdown lines, in the order they are rendered
SHORT = {"PairClassification": "PairClass."}


def is_study_list(path: Path) -> bool:
    """A ``summary.json`` holding a JSON list is a study's table of records (``results/scale/summary.json``),
    not the summary of one ``unimae eval``."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(64).lstrip().startswith("[")


def find_results(
    root: str | Path, runs: list[str] | None = None
) -> tuple[list[BenchmarkSummary], list[LmEvalResult], list[Path]]:
    """(eval summaries, lm-eval results, figures) under ``root`` (or under each of ``runs``, in that order)."""
    folders = [Path(r) for r in runs] if runs else [Path(root)]
    summaries, lm = [], []
    for folder in folders:
        if not folder.exists():
            raise FileNotFoundError(f"result folder {folder} does not exist")
        summaries += [
            BenchmarkSummary.load(p) for p in sorted(folder.rglob("summary.json")) if not is_study_list(p)
        ]
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


def fmt_score(x: float | None, scale: float = 100.0, digits: int = 2) -> str:
    """``x`` (a 0-1 score) x ``scale`` with ``digits`` decimals; "-" for None."""
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
                cells.append(fmt_score(cat.score))
        cells.append(f"**{fmt_score(s.average)}**" + _interval_suffix(s))
        r = _lm_for(s, lm)
        cells.append(f"{r.perplexity.perplexity:.2f}" if r else "-")
        cells.append(fmt_score(r.choice_accuracy, 100, 1) if r else "-")
        table.append(cells)
    return markdown_table(head, table).splitlines()


def _interval_suffix(s: BenchmarkSummary) -> str:
    """' (low-high)' after an average that has a 95% bootstrap interval; '' for older results."""
    if s.average_ci_low is None or s.average_ci_high is None:
        return ""
    return f" ({fmt_score(s.average_ci_low)}-{fmt_score(s.average_ci_high)})"


def task_table(summaries: list[BenchmarkSummary], benchmark: str) -> list[str]:
    rows = [s for s in summaries if s.task_set == benchmark]
    tasks = list(dict.fromkeys(t for s in rows for t in s.tasks))
    table = []
    for t in tasks:
        info = next(s.tasks[t] for s in rows if t in s.tasks)
        cells = [fmt_score(s.tasks[t].score) if t in s.tasks else "-" for s in rows]
        table.append([t, info.category, info.main_score, *cells])
    return markdown_table(["task", "category", "metric", *(s.label for s in rows)], table).splitlines()


def lm_table(lm: list[LmEvalResult]) -> list[str]:
    tasks = list(dict.fromkeys(t for r in lm for t in r.multiple_choice))
    table = []
    for r in lm:
        accs = [fmt_score(r.multiple_choice[t].acc, 100, 1) if t in r.multiple_choice else "-" for t in tasks]
        means = [fmt_score(r.choice_accuracy, 100, 1), fmt_score(r.choice_accuracy_norm, 100, 1)]
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


def benchmark_section(summaries: list[BenchmarkSummary], lm: list[LmEvalResult], task_set: str) -> list[str]:
    """The comparison and per-task tables of one task set (a whole benchmark, or one task subset of it)."""
    rows = [s for s in summaries if s.task_set == task_set]
    lines = [
        f"## Embeddings and generation: `{task_set}` benchmark",
        "",
        "Main scores x 100 averaged per MTEB category; Average = mean over all tasks (MTEB's convention). "
        "PPL: held-out Wikipedia perplexity; MC acc: mean multiple-choice accuracy over the BIG-bench "
        "tasks of `unimae lm-eval` (same model, any pooling).",
        "",
    ]
    if rows[0].subset:
        lines += [f"Tasks of this subset: {', '.join(rows[0].subset)}.", ""]
    if any(s.average_ci_low is not None for s in rows):
        lines += [
            "In brackets: the 95% bootstrap interval of the average (seeded resamples of every task's "
            "items, shared by all rows; `unimae compare A B` gives paired differences).",
            "",
        ]
    lines += comparison_table(summaries, lm, task_set) + [""]
    return lines + [f"### Per task (`{task_set}`)", ""] + task_table(summaries, task_set) + [""]


def seeds_section(summaries: list[BenchmarkSummary], lm: list[LmEvalResult]) -> list[str]:
    seeds = seed_table(summaries, lm)
    if not seeds:
        return []
    return ["## Seeds", "", "Configs trained with more than one seed, same data and steps.", "", *seeds, ""]


def generation_section(lm: list[LmEvalResult]) -> list[str]:
    if not lm:
        return []
    lines = ["## Is generation kept?", "", "Accuracy x 100 (summed log-likelihood of each choice).", ""]
    lines += lm_table(lm) + [""]
    return lines + ["### Greedy generations", ""] + generations_table(lm) + [""]


def figures_section(figures: list[Path], out_dir: Path) -> list[str]:
    """Every figure as an image link relative to ``out_dir`` (where RESULTS.md is written)."""
    if not figures:
        return []
    return ["## Figures", ""] + [
        x for f in figures for x in (f"![{f.stem}]({os.path.relpath(f, out_dir)})", "")
    ]


def offline_data_section(summaries: list[BenchmarkSummary]) -> list[str]:
    """How each offline task's data is drawn, when any result is on an offline set."""
    if not any(s.benchmark.startswith("offline") for s in summaries):
        return []
    sizes = [*SIZES.items(), ("(Summarization)", "no offline data: no offline set has human summary scores")]
    return [
        "## Offline data",
        "",
        "Built by `unimae data prepare` from pinned registry packages (see docs/evaluation.md for the "
        "manifest and hashes); subsamples are drawn with fixed seeds (seed 0).",
        "",
        *markdown_table(["task", "size"], sizes).splitlines(),
        "",
    ]


def commands_section(records: list[Record], out_dir: Path, command: str) -> list[str]:
    """The command of every result, then ``command`` (what wrote the report), then the result files."""
    lines = ["## Commands", "", "```bash", *(x.command for x in records), f"{command}  # this file", "```"]
    return lines + ["", "Result files:", ""] + [f"- `{os.path.relpath(x.path, out_dir)}`" for x in records]


def report_sections(
    summaries: list[BenchmarkSummary],
    lm: list[LmEvalResult],
    figures: list[Path],
    out_dir: Path,
    command: str = "unimae report",
    more_records: Sequence[Record] = (),
) -> Sections:
    """RESULTS.md's sections in order (an empty one is left out when rendered): title, one per task set,
    seeds, generation, figures, setup, offline data, commands. Links and file names are relative to
    ``out_dir``; ``command`` is named as what generated the file; ``more_records`` (results a study shows
    in a section of its own) are listed with the commands and files after the others."""
    sections: Sections = {
        "title": [
            "# Results",
            "",
            f"Generated by `{command}` from the result files listed at the end; do not edit by hand.",
            "",
        ]
    }
    for task_set in dict.fromkeys(s.task_set for s in summaries):
        sections[f"task set {task_set}"] = benchmark_section(summaries, lm, task_set)
    sections["seeds"] = seeds_section(summaries, lm)
    sections["generation"] = generation_section(lm)
    sections["figures"] = figures_section(figures, out_dir)
    sections["setup"] = ["## Models, steps and seeds", "", *_setup_lines(summaries, lm), ""]
    sections["offline data"] = offline_data_section(summaries)
    sections["commands"] = commands_section([*summaries, *lm, *more_records], out_dir, command)
    return sections


def insert_after(sections: Sections, name: str, new: Sections) -> Sections:
    """``sections`` with ``new`` placed right after the section ``name`` (KeyError if there is none)."""
    if name not in sections:
        raise KeyError(f"no section {name!r}; sections: {list(sections)}")
    out: Sections = {}
    for key, lines in sections.items():
        out[key] = lines
        if key == name:
            out.update(new)
    return out


def render_report(sections: Sections) -> str:
    """The markdown text of ``sections``, in order."""
    return "\n".join(line for lines in sections.values() for line in lines) + "\n"


def write_report(
    results: str | Path = "results", output: str | Path = "RESULTS.md", runs: list[str] | None = None
) -> Path:
    """Write the report of every result file and figure under ``results`` (or under ``runs``, rows in that
    order) to ``output``; returns ``output``."""
    summaries, lm, figures = find_results(results, runs)
    output = Path(output)
    atomic_write_text(output, render_report(report_sections(summaries, lm, figures, output.resolve().parent)))
    return output
