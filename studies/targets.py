"""The targets this repository set itself, checked in RESULTS.md's "Against the targets" section: UniMAE
against the training-free poolings and MNTP (average and per category, whole task sets only), generation
kept (perplexity, choice accuracy), and the slowest evaluation. Computed from the same result files.
"""

from __future__ import annotations

from unimae.evaluation.report import fmt_score
from unimae.evaluation.results import BenchmarkSummary, LmEvalResult


def _unimae_checks(bench: str, u: BenchmarkSummary, by_kind: dict[str, list[BenchmarkSummary]]) -> list[str]:
    """One UniMAE row against the best untrained and MNTP rows (average), and the categories where any
    of those rows beats it."""
    lines = []
    for kind, group in by_kind.items():
        if group:
            best = max(group, key=lambda s: s.average)
            d = 100 * (u.average - best.average)
            lines.append(
                f"- `{bench}`: {u.label} {fmt_score(u.average)} vs best {kind} row {best.label} "
                f"{fmt_score(best.average)}: **{d:+.2f}** points"
            )
    others = [s for group in by_kind.values() for s in group]
    below = []
    for cat, c in u.categories.items():
        if c.score is None:
            continue
        beat_by = [
            f"{o.label} {fmt_score(o.categories[cat].score)}"
            for o in others
            if cat in o.categories
            and o.categories[cat].score is not None
            and o.categories[cat].score > c.score
        ]
        if beat_by:
            below.append(f"{cat} ({fmt_score(c.score)}; above it: {', '.join(beat_by)})")
    lines.append(
        f"- `{bench}`: categories where {u.label} is below an untrained pooling or MNTP: "
        + ("; ".join(below) if below else "none")
    )
    return lines


def checks(summaries: list[BenchmarkSummary], lm: list[LmEvalResult]) -> list[str]:
    """The targets, computed from the result files: UniMAE against the untrained poolings and MNTP
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


def targets_section(summaries: list[BenchmarkSummary], lm: list[LmEvalResult]) -> list[str]:
    """RESULTS.md's "Against the targets" section (no lines when nothing is checked)."""
    found = checks(summaries, lm)
    if not found:
        return []
    return ["## Against the targets", "", "Computed from the same files.", "", *found, ""]
