"""The paper's ablations: MAR mask ratio sweep and the MAR-only / MRC-only / both variants.

Each variant is a normal training run (``runs/<sweep>/<name>``) followed by ``unimae eval`` on a
benchmark (``results/<sweep>/<name>/<benchmark>``). Finished runs and evaluations are skipped, so an
interrupted sweep continues where it stopped. The figure is the paper's Figure 3(a): benchmark
average against ``mar_mask_ratio``.

    python studies/sweep.py --config default --name sweep
    python studies/sweep.py --tasks LeeSTS PangLeePolarityClassification ...   # a cheaper task subset

The "both" variant is the mask-ratio point at the config's own ``mar_mask_ratio`` when that ratio is swept,
so it is trained and evaluated once. A study script, not part of the package: it calls the library
(training, ``unimae eval``) and declares its options from ``run_sweep``'s signature as ``unimae``'s
commands do (``--help`` lists them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from unimae.cli import run_script, script_command
from unimae.evaluation.results import BenchmarkSummary
from unimae.training.config import load_config

PROG = "python studies/sweep.py"
RATIOS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8)
VARIANTS = {"mar-only": {"mrc_weight": 0.0}, "mrc-only": {"alpha": 0.0}, "both": {}}


@dataclass
class SweepPoint:
    """One point of a sweep: its name, its config overrides, where it trains and where its result goes;
    ``summary`` once evaluated."""

    name: str
    overrides: dict[str, Any]
    run_dir: Path
    result_dir: Path
    summary: BenchmarkSummary | None = None


def sweep_points(
    config: str | None,
    name: str,
    ratios: Sequence[float] = RATIOS,
    variants: Sequence[str] = tuple(VARIANTS),
    benchmark: str = "offline",
    runs_root: str = "runs",
    results_root: str = "results",
) -> list[SweepPoint]:
    """The runs of a sweep: one per mask ratio (both losses) plus one per variant (at the config's ratio)."""
    base_ratio = load_config(config).objective.mar_mask_ratio
    points = []
    for r in ratios:
        tag = f"mar{r:g}"
        points.append(
            SweepPoint(
                tag,
                {"mar_mask_ratio": float(r)},
                Path(runs_root) / name / tag,
                Path(results_root) / name / tag / benchmark,
            )
        )
    same = next((p for p in points if p.overrides == {"mar_mask_ratio": base_ratio}), None)
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; known: {list(VARIANTS)}")
        if v == "both" and same is not None:  # identical config: share the run and its scores
            points.append(SweepPoint(v, {}, same.run_dir, same.result_dir))
            continue
        points.append(
            SweepPoint(
                v, dict(VARIANTS[v]), Path(runs_root) / name / v, Path(results_root) / name / v / benchmark
            )
        )
    return points


def run_sweep(
    config: str | None,
    name: str = "sweep",
    *,
    ratios: Sequence[float] = RATIOS,
    variants: Sequence[str] = tuple(VARIANTS),
    benchmark: str = "offline",
    tasks: list[str] | None = None,
    overrides: dict | None = None,
    runs_root: str = "runs",
    results_root: str = "results",
) -> list[SweepPoint]:
    """Train and evaluate every point of the sweep (skipping finished ones); returns them with summaries.

    ``tasks``: evaluate on only these tasks of ``benchmark`` (a cheaper sweep); the summaries record it.
    """
    from unimae.evaluation.benchmark import evaluate_model
    from unimae.pipeline import train_and_export

    points = sweep_points(config, name, ratios, variants, benchmark, runs_root, results_root)
    for p in points:
        summary_file = p.result_dir / "summary.json"
        if not summary_file.exists():
            if not (p.run_dir / "model" / "unimae.json").exists():
                cfg = load_config(config, {**(overrides or {}), **p.overrides, "output_dir": str(p.run_dir)})
                train_and_export(cfg, resume=(p.run_dir / "checkpoint").exists())
            evaluate_model(
                str(p.run_dir / "model"),
                benchmark,
                p.result_dir,
                tasks=list(tasks) if tasks else None,
                label=f"{name}: {p.name}",
                command=f"{PROG} --name {name}"
                + (f" --tasks {' '.join(tasks)}" if tasks else "")
                + f" ({p.name}: {p.overrides or 'the config as is'})",
            )
        p.summary = BenchmarkSummary.load(summary_file)
    return points


def plot_mask_ratio(points: list[SweepPoint], path: str | Path) -> Path:
    """Figure 3(a): benchmark average against mar_mask_ratio (variants as horizontal reference lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unimae.evaluation.figures import save_figure

    sweep = sorted(
        (p.overrides["mar_mask_ratio"], 100 * p.summary.average)
        for p in points
        if "mar_mask_ratio" in p.overrides and p.summary
    )
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot([x for x, _ in sweep], [y for _, y in sweep], "o-", label="MAR + MRC")
    x_right = max((x for x, _ in sweep), default=1.0)
    for p in points:
        if "mar_mask_ratio" not in p.overrides and p.summary and p.name != "both":
            ax.axhline(100 * p.summary.average, ls="--", lw=1, color="gray")
            ax.text(
                x_right, 100 * p.summary.average, p.name, ha="right", va="bottom", fontsize=8, color="gray"
            )
    ax.set_xlabel("MAR mask ratio")
    n_tasks = {len(p.summary.tasks) for p in points if p.summary}
    ax.set_ylabel(f"average score ({'/'.join(map(str, sorted(n_tasks)))} tasks)")
    task_sets = sorted({p.summary.task_set for p in points if p.summary})
    ax.set_title(f"{' / '.join(task_sets) or 'benchmark'} average vs. MAR mask ratio")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


EXAMPLES = f"""examples:
  {PROG} --config default --name sweep                      # full offline set per point
  {PROG} --config default --name sweep --tasks LeeSTS SquadRetrieval   # cheaper
  {PROG} --config default --ratios '[0.2, 0.5]' --variants '[both]' steps=50
key=value: training config overrides for every run of the sweep"""


def _run(ns: Namespace) -> None:
    """Run the sweep with the parsed options, print each point's average and draw Figure 3(a)."""
    import yaml

    args = {k: v for k, v in ns.as_dict().items() if k not in ("threads", "__path__")}
    # key=value overrides arrive as text; TrainConfig checks the parsed values' types
    overrides = args.pop("overrides") or {}
    overrides = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in overrides.items()}
    points = run_sweep(**args, overrides=overrides)
    for p in points:
        print(f"{p.name:10s} average {100 * p.summary.average:.2f}  ({p.result_dir})")
    figure = Path(args.get("results_root", "results")) / ns.name / "fig3a_mask_ratio.png"
    print(f"wrote {plot_mask_ratio(points, figure)}")


def main(argv: list[str] | None = None) -> int:
    help = "ablations: train + eval over mar_mask_ratio and MAR-only/MRC-only/both (Figure 3(a))"
    cmd = script_command(
        run_sweep, _run, help, EXAMPLES, overrides="--overrides.", positional=False, threads=True
    )
    interrupted = "interrupted; the same command continues the sweep (finished points are kept)"
    return run_script(PROG, cmd, argv, interrupted)


if __name__ == "__main__":
    sys.exit(main())
