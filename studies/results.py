"""RESULTS.md of this repository: the library's report of the result folders (``unimae report``) plus the
sections of this repository's studies: "Against the targets" (``targets.py``) after the seeds, "Model
sizes" (``scale.py``, ``margins.py``), the readout (``readout.py``) and the training budget (``budget.py``)
after the generation tables, and Figure 3(b) (``fig3b.py``), redrawn from the
lm-eval results before the figures are listed.

    python studies/results.py results --runs results/base results/unimae ... -o RESULTS.md

Results under ``results/scale`` are other base models: they stay out of the main tables whatever
``--runs`` names, and are read by the model-size table (their commands and files are listed with the
others). The same files give the same RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from budget import budget_section
from fig3b import plot_lm_scores
from jsonargparse import Namespace
from margins import margins_section, write_margins
from readout import readout_section
from scale import model_sizes_section, scale_results
from targets import targets_section

from unimae.cli import run_script, script_command
from unimae.evaluation.report import (
    find_figures,
    find_results,
    insert_after,
    render_report,
    report_sections,
)
from unimae.io import atomic_write_text

PROG = "python studies/results.py"


def write_results(results: str, output: str = "RESULTS.md", runs: list[str] | None = None) -> Path:
    """Write RESULTS.md from the result files under ``results`` (or under ``runs``, rows in that order);
    with lm-eval results of two or more models, first (re)draws Figure 3(b) into
    ``results/fig3b_lm_scores.png``. Returns ``output``."""
    summaries, lm, _ = find_results(results, runs)
    scale_records = scale_results(results)  # other base models: their own table, whatever ``runs`` names
    scale_files = {x.path.resolve() for x in scale_records}
    summaries = [s for s in summaries if s.path.resolve() not in scale_files]
    lm = [r for r in lm if r.path.resolve() not in scale_files]
    if len(lm) >= 2:
        plot_lm_scores(lm, Path(results) / "fig3b_lm_scores.png")
    figures = find_figures(results, runs)  # now with the figure just drawn
    output = Path(output)
    sections = report_sections(
        summaries, lm, figures, output.resolve().parent, command=PROG, more_records=scale_records
    )
    sections = insert_after(sections, "seeds", {"targets": targets_section(summaries, lm)})
    sizes = {
        "model sizes": model_sizes_section(results),
        "model sizes v2": margins_section(results),
        "readout": readout_section(results),
        "budget": budget_section(results),
    }
    sections = insert_after(sections, "generation", sizes)
    write_margins(results)
    atomic_write_text(output, render_report(sections))
    return output


EXAMPLES = f"""examples:
  {PROG} results                                   # RESULTS.md from everything under results/
  {PROG} results --runs results/base results/unimae -o RESULTS.md   # rows in this order
the command that made the committed RESULTS.md: docs/results.md"""


def _run(ns: Namespace) -> None:
    print(f"wrote {write_results(ns.results, ns.output, runs=ns.runs)}")


def main(argv: list[str] | None = None) -> int:
    help = "regenerate RESULTS.md: the report of the result folders and this repository's study sections"
    return run_script(PROG, script_command(write_results, _run, help, EXAMPLES), argv)


if __name__ == "__main__":
    sys.exit(main())
