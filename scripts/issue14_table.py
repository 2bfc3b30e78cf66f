"""Issue 14's sweep as one markdown table: every point's dev (and test) average, per how it was read,
beside its MRC accuracy and most-frequent-token baseline over steps 91-100.

    python scripts/issue14_table.py [--results results/issue14] [--runs runs/issue14]

Reads `RESULTS/NAME-sSEED/READ/{offline-dev,offline-test}/summary.json` (READ: eos, template, ...) (written by
`scripts/issue14_sweep.sh`) and `RUNS/NAME-sSEED/metrics.jsonl`; a point whose run folder is gone gets
"-" for MRC. Scores are each summary's `average` (the mean of the tasks' main scores) x 100, as in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unimae.evaluation.results import BenchmarkSummary
from unimae.tables import markdown_table

BENCHMARKS = ("offline-dev", "offline-test")
READS = ("template", "eos")  # listed first; then any other read (e.g. another prompt's folder)


def averages(folder: Path) -> list[str]:
    """``folder/BENCHMARK/summary.json``'s average x 100 for each benchmark, "-" where there is none."""
    files = [folder / bench / "summary.json" for bench in BENCHMARKS]
    return [f"{100 * BenchmarkSummary.load(f).average:.2f}" if f.is_file() else "-" for f in files]


def mrc_tail(metrics: Path, first_step: int = 91) -> tuple[float, float] | None:
    """Mean MRC accuracy and its most-frequent-token baseline over steps >= first_step."""
    if not metrics.is_file():
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("step", 0) >= first_step and "mrc_acc" in r]
    if not rows:
        return None
    acc = sum(r["mrc_acc"] for r in rows) / len(rows)
    mft = sum(r["mrc_acc_mft"] for r in rows) / len(rows)
    return acc, mft


def rows(results: Path, runs: Path) -> list[list[str]]:
    table = []
    for point in sorted(p for p in results.iterdir() if p.is_dir()):
        if point.name.startswith("base-"):  # a training-free baseline: results/issue14/base-POOLING/BENCHMARK
            table.append([point.name, "", "", *averages(point), "-"])
            continue
        name, _, seed = point.name.rpartition("-s")
        tail = mrc_tail(runs / point.name / "metrics.jsonl")
        mrc = "-" if tail is None else f"{100 * tail[0]:.1f}% / {100 * tail[1]:.1f}%"
        reads = sorted(
            (d.name for d in point.iterdir() if d.is_dir()),
            key=lambda r: (READS.index(r) if r in READS else len(READS), r),
        )
        for read in reads:
            scores = averages(point / read)
            if scores != ["-", "-"]:
                table.append([name, seed, read, *scores, mrc])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/issue14"))
    parser.add_argument("--runs", type=Path, default=Path("runs/issue14"))
    args = parser.parse_args()
    header = ["point", "seed", "read", "dev average", "test average", "MRC acc. / baseline (91-100)"]
    print(markdown_table(header, rows(args.results, args.runs)))


if __name__ == "__main__":
    main()
