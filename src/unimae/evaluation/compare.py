"""``unimae compare A B``: the paired difference of two result folders on the same tasks.

Each task's difference ``A - B`` gets the percentile interval of the replicate-wise differences: both
summaries resampled the same items (draws keyed by task, number of items and seed), so the pairing is
exact and no embeddings are needed. The average, and each MTEB category's mean over its tasks, get the
same from the per-replicate mean over those tasks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unimae.errors import UserError
from unimae.evaluation.bootstrap import Difference, mean_replicates, paired_difference
from unimae.evaluation.results import BenchmarkSummary
from unimae.tables import markdown_table


@dataclass
class Comparison:
    """``a`` minus ``b``: per task (in A's order), per MTEB category (the mean over its tasks) and for the
    average over all tasks; ``str()`` is ``comparison_markdown``, what ``unimae compare`` prints."""

    a: str
    b: str
    tasks: dict[str, Difference]
    average: Difference
    scores: dict[str, tuple[float, float]]  # task -> (A's score, B's score)
    categories: dict[str, Difference] = field(default_factory=dict)  # category -> mean over its tasks
    members: dict[str, list[str]] = field(default_factory=dict)  # category -> its tasks, in A's order

    def to_dict(self) -> dict:
        def one(d: Difference) -> dict:
            return {**asdict(d), "includes_zero": d.includes_zero}

        return {
            "a": self.a,
            "b": self.b,
            "difference": "a - b",
            "tasks": {t: {"a": s[0], "b": s[1], **one(self.tasks[t])} for t, s in self.scores.items()},
            "categories": {c: {"tasks": self.members[c], **one(d)} for c, d in self.categories.items()},
            "average": one(self.average),
        }

    def __str__(self) -> str:
        return comparison_markdown(self)


def load_summary(folder: str | Path) -> BenchmarkSummary:
    """The summary.json of a result folder (or the file itself)."""
    path = Path(folder)
    path = path / "summary.json" if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"{path} does not exist (give an `unimae eval` output folder or its summary.json)")
    return BenchmarkSummary.load(path)


def _check_pairable(a: BenchmarkSummary, b: BenchmarkSummary) -> None:
    if set(a.tasks) != set(b.tasks):
        only = sorted(set(a.tasks) ^ set(b.tasks))
        raise UserError(
            f"the two results have different tasks ({', '.join(only)}): compare the same task set"
        )
    for name, ta in a.tasks.items():
        tb = b.tasks[name]
        if ta.n_items is not None and tb.n_items is not None and ta.n_items != tb.n_items:
            raise UserError(f"{name}: {ta.n_items} items in A, {tb.n_items} in B: not the same data")
    sa, sb = a.bootstrap, b.bootstrap
    if sa and sb and (sa.seed, sa.n_replicates) != (sb.seed, sb.n_replicates):
        raise UserError("the two results were bootstrapped with other seeds or replicate counts")


def compare_summaries(
    a: BenchmarkSummary, b: BenchmarkSummary, tasks: Sequence[str] | None = None
) -> Comparison:
    """Paired comparison ``a - b`` (same tasks). Tasks without replicates on either side get the
    difference without an interval; so does a mean over tasks (a category's, the average) unless every
    one of its tasks has them. ``tasks``: compare on these only (each must be in both summaries), e.g. a
    run evaluated on part of a benchmark against a full result."""
    if tasks is not None:
        a, b = _restricted(a, list(tasks), "A"), _restricted(b, list(tasks), "B")
    _check_pairable(a, b)
    names = list(a.tasks)
    tasks = {
        n: paired_difference(a.tasks[n].score, b.tasks[n].score, a.tasks[n].replicates, b.tasks[n].replicates)
        for n in names
    }
    members: dict[str, list[str]] = {}
    for n in names:
        members.setdefault(a.tasks[n].category, []).append(n)
    scores = {n: (a.tasks[n].score, b.tasks[n].score) for n in names}
    return Comparison(
        a.label,
        b.label,
        tasks,
        _mean_difference(a, b, names),
        scores,
        categories={c: _mean_difference(a, b, ns) for c, ns in members.items()},
        members=members,
    )


def _restricted(s: BenchmarkSummary, tasks: list[str], side: str) -> BenchmarkSummary:
    missing = [t for t in tasks if t not in s.tasks]
    if missing or not tasks:
        raise UserError(f"{side} ({s.label}) has no result for {missing or 'an empty task list'}")
    return dataclasses.replace(s, tasks={t: s.tasks[t] for t in tasks})


def _mean_difference(a: BenchmarkSummary, b: BenchmarkSummary, names: list[str]) -> Difference:
    """``a - b`` of the mean score over ``names``, paired replicate by replicate when all have them."""
    mean_a = sum(a.tasks[n].score for n in names) / len(names)
    mean_b = sum(b.tasks[n].score for n in names) / len(names)
    if not all(a.tasks[n].replicates and b.tasks[n].replicates for n in names):
        return paired_difference(mean_a, mean_b, None, None)
    ra = mean_replicates({n: a.tasks[n].replicates for n in names})
    rb = mean_replicates({n: b.tasks[n].replicates for n in names})
    return paired_difference(mean_a, mean_b, ra, rb)


def _verdict(d: Difference) -> str:
    if d.includes_zero is None:
        return "no interval"
    return (
        "includes 0: no clear difference"
        if d.includes_zero
        else ("A higher" if d.difference > 0 else "B higher")
    )


def _cells(d: Difference) -> list[str]:
    interval = "-" if d.ci_low is None else f"[{100 * d.ci_low:+.2f}, {100 * d.ci_high:+.2f}]"
    return [f"{100 * d.difference:+.2f}", interval, _verdict(d)]


def comparison_markdown(c: Comparison) -> str:
    """The comparison as a markdown table (scores x 100; difference = A - B, 95% paired interval): a row a
    task, then, when there are several categories, a row a category (its mean over its tasks; the task
    count in brackets), then the average."""
    rows = [
        [name, f"{100 * sa:.2f}", f"{100 * sb:.2f}", *_cells(c.tasks[name])]
        for name, (sa, sb) in c.scores.items()
    ]
    if len(c.categories) > 1:  # one category: its row would repeat the average
        for cat, names in c.members.items():
            ma, mb = (sum(c.scores[n][k] for n in names) / len(names) for k in (0, 1))
            rows.append(
                [f"*{cat}* ({len(names)})", f"{100 * ma:.2f}", f"{100 * mb:.2f}", *_cells(c.categories[cat])]
            )
    mean_a = sum(s[0] for s in c.scores.values()) / len(c.scores)
    mean_b = sum(s[1] for s in c.scores.values()) / len(c.scores)
    rows.append(["**Average**", f"{100 * mean_a:.2f}", f"{100 * mean_b:.2f}", *_cells(c.average)])
    table = markdown_table(["task", "A", "B", "A - B", "95% interval", ""], rows)
    intro = f"A = {c.a}; B = {c.b}; difference A - B x 100 with its 95% paired-bootstrap interval"
    return f"{intro}\n\n{table}\n"
