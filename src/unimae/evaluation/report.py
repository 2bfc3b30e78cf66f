"""``unimae report``: regenerate RESULTS.md from result files (summary.json of ``unimae eval``,
lm_eval.json of ``unimae lm-eval``) and the figures (``*.png``) found under a results folder.

The report is a pure function of those files: the same files give the same RESULTS.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from unimae.evaluation.offline_tasks import CATEGORIES, SIZES

SHORT = {"PairClassification": "PairClass."}


def _load(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    data["_path"] = str(path)
    return data


def find_results(
    root: str | Path, runs: list[str] | None = None
) -> tuple[list[dict], list[dict], list[Path]]:
    """(eval summaries, lm-eval results, figures) under ``root`` (or under each of ``runs``, in that order)."""
    folders = [Path(r) for r in runs] if runs else [Path(root)]
    summaries, lm = [], []
    for folder in folders:
        if not folder.exists():
            raise FileNotFoundError(f"result folder {folder} does not exist")
        summaries += [_load(p) for p in sorted(folder.rglob("summary.json"))]
        lm += [_load(p) for p in sorted(folder.rglob("lm_eval.json"))]
    if runs is None:  # no order given: supervised reference last, others by label
        summaries.sort(key=lambda s: (s["model_info"]["model"] == "all-MiniLM-L6-v2", s["label"]))
        lm.sort(key=lambda r: r["label"])
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


def _lm_for(summary: dict, lm: list[dict]) -> dict | None:
    """The lm-eval result of the same model (same model string), if any."""
    model = summary["model_info"]["model"]
    return next((r for r in lm if r["model_info"]["model"] == model), None)


def task_set(summary: dict) -> str:
    """The name of the task set a summary covers: the benchmark, or the benchmark and its subset's size."""
    subset = summary.get("subset")
    return summary["benchmark"] if not subset else f"{summary['benchmark']}, {len(subset)}-task subset"


def comparison_table(summaries: list[dict], lm: list[dict], benchmark: str) -> list[str]:
    rows = [s for s in summaries if task_set(s) == benchmark]
    cats = (
        list(CATEGORIES)
        if benchmark == "offline"
        else list(dict.fromkeys(c for s in rows for c in s["categories"]))
    )
    head = ["model", *(SHORT.get(c, c) for c in cats), "Average", "PPL ↓", "MC acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in rows:
        cells = [s["label"]]
        for c in cats:
            cat = s["categories"].get(c)
            if cat is None or cat["score"] is None:
                cells.append("n/a" if cat is None else cat.get("note", "n/a"))
            else:
                cells.append(_fmt(cat["score"]))
        cells.append(f"**{_fmt(s['average'])}**")
        r = _lm_for(s, lm)
        cells.append(f"{r['perplexity']['perplexity']:.2f}" if r else "-")
        cells.append(_fmt(r["choice_accuracy"], 100, 1) if r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def task_table(summaries: list[dict], benchmark: str) -> list[str]:
    rows = [s for s in summaries if task_set(s) == benchmark]
    tasks = list(dict.fromkeys(t for s in rows for t in s["tasks"]))
    lines = [
        "| task | category | metric | " + " | ".join(s["label"] for s in rows) + " |",
        "|---|---|---|" + "---|" * len(rows),
    ]
    for t in tasks:
        info = next(s["tasks"][t] for s in rows if t in s["tasks"])
        cells = [_fmt(s["tasks"][t]["score"]) if t in s["tasks"] else "-" for s in rows]
        lines.append(f"| {t} | {info['category']} | {info['main_score']} | " + " | ".join(cells) + " |")
    return lines


def lm_table(lm: list[dict]) -> list[str]:
    tasks = list(dict.fromkeys(t for r in lm for t in r["multiple_choice"]))
    lines = [
        "| model | PPL ↓ | " + " | ".join(tasks) + " | MC mean (acc) | MC mean (acc_norm) |",
        "|---|---|" + "---|" * len(tasks) + "---|---|",
    ]
    for r in lm:
        accs = [
            _fmt(r["multiple_choice"][t]["acc"], 100, 1) if t in r["multiple_choice"] else "-" for t in tasks
        ]
        lines.append(
            f"| {r['label']} | {r['perplexity']['perplexity']:.2f} | "
            + " | ".join(accs)
            + f" | {_fmt(r['choice_accuracy'], 100, 1)} | {_fmt(r['choice_accuracy_norm'], 100, 1)} |"
        )
    if lm:
        chance = [
            f"{100 * lm[0]['multiple_choice'][t]['chance']:.1f}" if t in lm[0]["multiple_choice"] else "-"
            for t in tasks
        ]
        lines.append("| *chance* | | " + " | ".join(chance) + " | | |")
    return lines


def generations_table(lm: list[dict]) -> list[str]:
    prompts = list(dict.fromkeys(g["prompt"] for r in lm for g in r["generations"]))
    if not prompts:
        return []
    lines = ["| prompt | " + " | ".join(r["label"] for r in lm) + " |", "|---|" + "---|" * len(lm)]
    for p in prompts:
        outs = []
        for r in lm:
            out = next((g["output"] for g in r["generations"] if g["prompt"] == p), "-")
            outs.append(out.replace("|", "\\|").replace("\n", " ⏎ "))
        lines.append(f"| {p} | " + " | ".join(outs) + " |")
    return lines


REFERENCE = "all-MiniLM-L6-v2"


def model_kind(info: dict) -> str:
    """'reference', 'untrained', or the training objective ('unimae', 'mntp') of a result's model."""
    if info.get("model") == REFERENCE:
        return "reference"
    training = info.get("training")
    return training.get("objective", "unimae") if training else "untrained"


def checks(summaries: list[dict], lm: list[dict]) -> list[str]:
    """The issue's targets, computed from the result files: UniMAE against the untrained poolings and MNTP
    (average and per category, full task sets only), generation kept (perplexity, choice accuracy), time."""
    lines = []
    for bench in dict.fromkeys(s["benchmark"] for s in summaries if not s.get("subset")):
        rows = [s for s in summaries if s["benchmark"] == bench and not s.get("subset")]
        by_kind = {k: [s for s in rows if model_kind(s["model_info"]) == k] for k in ("untrained", "mntp")}
        others = by_kind["untrained"] + by_kind["mntp"]
        for u in (s for s in rows if model_kind(s["model_info"]) == "unimae"):
            for kind, group in by_kind.items():
                if group:
                    best = max(group, key=lambda s: s["average"])
                    d = 100 * (u["average"] - best["average"])
                    lines.append(
                        f"- `{bench}`: {u['label']} {_fmt(u['average'])} vs best {kind} row {best['label']} "
                        f"{_fmt(best['average'])}: **{d:+.2f}** points"
                    )
            below = []
            for cat, c in u["categories"].items():
                if c["score"] is None:
                    continue
                beat_by = [
                    f"{o['label']} {_fmt(o['categories'][cat]['score'])}"
                    for o in others
                    if (o["categories"].get(cat) or {}).get("score") is not None
                    and o["categories"][cat]["score"] > c["score"]
                ]
                if beat_by:
                    below.append(f"{cat} ({_fmt(c['score'])}; above it: {', '.join(beat_by)})")
            lines.append(
                f"- `{bench}`: categories where {u['label']} is below an untrained pooling or MNTP: "
                + ("; ".join(below) if below else "none")
            )
        slowest = max(rows, key=lambda s: s["seconds"])
        lines.append(
            f"- `{bench}`: slowest evaluation {slowest['label']}, {slowest['seconds'] / 60:.1f} min wall "
            f"({slowest.get('cpu_seconds', 0) / 60:.1f} min CPU of its process)"
        )
    base = next((r for r in lm if model_kind(r["model_info"]) == "untrained"), None)
    for r in lm:
        if base is None or r is base or model_kind(r["model_info"]) == "untrained":
            continue
        p0, p1 = base["perplexity"]["perplexity"], r["perplexity"]["perplexity"]
        da = 100 * (r["choice_accuracy"] - base["choice_accuracy"])
        lines.append(
            f"- generation, {r['label']} vs {base['label']}: perplexity {p1:.2f} vs {p0:.2f} "
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


def varying_fields(infos: list[dict], skip: tuple[str, ...] = SHOWN) -> list[str]:
    """Training fields (other than ``skip``) whose value differs between the trained models of ``infos``."""
    trained = [i["training"] for i in infos if i.get("training")]
    keys = dict.fromkeys(k for t in trained for k in t if k not in skip)
    return [k for k in keys if len({json.dumps(t.get(k)) for t in trained}) > 1]


def _training_text(info: dict, varying: list[str] = ()) -> str:
    train = info.get("training")
    if not train:
        return "untrained / as published"
    return ", ".join(f"{k}={train[k]}" for k in (*SHOWN, *varying) if k in train)


def _setup_lines(summaries: list[dict], lm: list[dict]) -> list[str]:
    varying = varying_fields([x["model_info"] for x in summaries + lm])
    lines = [
        "| row | model | pooling | max tokens | revision (weights hash) | training | device | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        m = s["model_info"]
        lines.append(
            f"| {s['label']} ({task_set(s)}) | `{m['model']}` | {m['pooling']} | {m.get('max_length')} | "
            f"`{m['revision']}` | {_training_text(m, varying)} | {m.get('device', '?')} | {s['seconds']:.0f} s |"
        )
    for r in lm:
        m = r["model_info"]
        lines.append(
            f"| {r['label']} (lm-eval) | `{m['model']}` | - | - | `{m['revision']}` | "
            f"{_training_text(m, varying)} | {m.get('device', '?')} | {r['seconds']:.0f} s |"
        )
    return lines


def seed_table(summaries: list[dict], lm: list[dict]) -> list[str]:
    """Training configs run with more than one seed (full task sets): each seed's average and choice
    accuracy, and their mean. A config is named by the fields that tell the trained configs apart; rows
    with the same weights (same revision hash, e.g. a rerun of one seed) count once."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in summaries:
        train = s["model_info"].get("training")
        if train and not s.get("subset"):
            rest = json.dumps({k: v for k, v in train.items() if k != "seed"}, sort_keys=True)
            group = groups.setdefault((s["benchmark"], rest), [])
            if all(g["model_info"]["revision"] != s["model_info"]["revision"] for g in group):
                group.append(s)  # the same weights (a rerun) count once
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    full = [s["model_info"] for s in summaries if not s.get("subset")]
    names = varying_fields(full, skip=("seed",))
    lines = [
        "| benchmark | config | seeds | Average per seed | mean | MC acc per seed | mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for (bench, _), rows in groups.items():
        train = rows[0]["model_info"]["training"]
        name = ", ".join(f"{k}={train.get(k)}" for k in names) or "(one config)"
        avgs = [100 * s["average"] for s in rows]
        accs = [100 * r["choice_accuracy"] for r in (_lm_for(s, lm) for s in rows) if r]
        mc = (
            (" / ".join(f"{a:.1f}" for a in accs), f"{sum(accs) / len(accs):.1f}")
            if len(accs) == len(rows)
            else ("-", "-")
        )
        lines.append(
            f"| {bench} | {name} | {', '.join(str(s['model_info']['training'].get('seed')) for s in rows)} | "
            + " / ".join(f"{a:.2f}" for a in avgs)
            + f" | {sum(avgs) / len(avgs):.2f} | {mc[0]} | {mc[1]} |"
        )
    return lines


def render_report(summaries: list[dict], lm: list[dict], figures: list[Path], out_dir: Path) -> str:
    """RESULTS.md text; figure links are relative to ``out_dir`` (where RESULTS.md is written)."""
    lines = [
        "# Results",
        "",
        "Generated by `unimae report` from the result files listed at the end; do not edit by hand.",
        "",
    ]
    benchmarks = list(dict.fromkeys(task_set(s) for s in summaries))
    for b in benchmarks:
        subset = next(s.get("subset") for s in summaries if task_set(s) == b)
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
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            rel = os.path.relpath(f, out_dir)
            lines += [f"![{f.stem}]({rel})", ""]
    lines += ["## Models, steps and seeds", ""] + _setup_lines(summaries, lm) + [""]
    if any(s["benchmark"] == "offline" for s in summaries):
        lines += [
            "## Offline data",
            "",
            "Built by `unimae data prepare` from pinned registry packages (see docs/evaluation.md for the "
            "manifest and hashes); subsamples are drawn with fixed seeds (seed 0).",
            "",
            "| task | size |",
            "|---|---|",
        ]
        lines += [f"| {t} | {size} |" for t, size in SIZES.items()] + [
            "| (Summarization) | no offline data: no offline set has human summary scores |",
            "",
        ]
    lines += ["## Commands", "", "```bash"]
    lines += [s["command"] for s in summaries] + [r["command"] for r in lm]
    lines += ["unimae report  # this file", "```", "", "Result files:", ""]
    lines += [f"- `{os.path.relpath(x['_path'], out_dir)}`" for x in summaries + lm]
    return "\n".join(lines) + "\n"


def write_report(
    results: str | Path = "results", output: str | Path = "RESULTS.md", runs: list[str] | None = None
) -> Path:
    """Write RESULTS.md; with lm-eval results of two or more models, first (re)draws Figure 3(b) into
    ``results/fig3b_lm_scores.png`` from them."""
    summaries, lm, _ = find_results(results, runs)
    if len(lm) >= 2:
        from unimae.evaluation.figures import plot_lm_scores

        plot_lm_scores(lm, Path(results) / "fig3b_lm_scores.png")
    figures = find_figures(results, runs)  # now with the figure just drawn
    output = Path(output)
    text = render_report(summaries, lm, figures, output.resolve().parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return output
