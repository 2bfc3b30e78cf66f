"""The model-size study (RESULTS.md's "Model sizes"): the same measurements at each model size, one row a size.

``scripts/scale_study.sh MODEL`` writes ``results/scale/MODEL/<result>/{offline,lm-eval}``: the two best
training-free poolings of the base model (pretended chain of thought, PromptEOL), its perplexity and
choice accuracy, MNTP and UniMAE with the default recipe. For the default model, results of the same
recipe and seeds measured before the scale study are read where they already are (``EARLIER``), not rerun.
``studies/results.py`` keeps these results out of the main tables (they are other base models) and shows
this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unimae.evaluation.report import is_study_list
from unimae.evaluation.results import BenchmarkSummary, LmEvalResult
from unimae.tables import markdown_table

MODELS = ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b")
SEEDS = (42, 7)
POOLINGS = {"pretended CoT": "base-pcot", "PromptEOL": "base-prompteol"}

# results/scale/smollm2-135m/<key> -> results/<value>: the same config and seed, run before the study
EARLIER = {
    "smollm2-135m": {
        "base-prompteol/offline": "base-prompteol/offline",
        "base/lm-eval": "base/lm-eval",
        "mntp-s42/offline": "mntp-lora/offline",
        "mntp-s42/lm-eval": "mntp-lora/lm-eval",
        "unimae-s42/offline": "issue14/plain-mrc0.5-mar0.2-s42/template/offline",
        "unimae-s42/lm-eval": "lora/mar0.2-no-eos-lora/lm-eval",
        "unimae-s7/offline": "issue14/plain-mrc0.5-mar0.2-s7/template/offline",
        "unimae-s7/lm-eval": "lora/mar0.2-no-eos-lora-seed7/lm-eval",
    }
}


def scale_results(results: str | Path = "results") -> list[BenchmarkSummary | LmEvalResult]:
    """Every result file under ``results/scale`` (their commands go into the report's list)."""
    root = Path(results) / "scale"
    summaries = [p for p in sorted(root.rglob("summary.json")) if not is_study_list(p)]  # not margins.py's
    return [BenchmarkSummary.load(p) for p in summaries] + [
        LmEvalResult.load(p) for p in sorted(root.rglob("lm_eval.json"))
    ]


def _folder(results: Path, model: str, key: str) -> Path:
    earlier = EARLIER.get(model, {}).get(key)
    return results / earlier if earlier else results / "scale" / model / key


def _average(results: Path, model: str, key: str) -> float | None:
    p = _folder(results, model, f"{key}/offline") / "summary.json"
    return BenchmarkSummary.load(p).average if p.is_file() else None


def lm_eval_result(results: Path, model: str, key: str) -> LmEvalResult | None:
    p = _folder(results, model, f"{key}/lm-eval") / "lm_eval.json"
    return LmEvalResult.load(p) if p.is_file() else None


def _seeds(results: Path, model: str, name: str) -> list[tuple[int, float]]:
    return [(s, a) for s in SEEDS if (a := _average(results, model, f"{name}-s{s}")) is not None]


def _scores(xs: list[tuple[int, float]]) -> str:
    return " / ".join(f"{100 * a:.2f}" for _, a in xs) if xs else "not run"


@dataclass
class ScaleRow:
    """One model size: ``offline`` averages (0-1; None: not run) and seed-42 lm-eval results."""

    model: str
    poolings: dict[str, float | None]  # POOLINGS' labels
    mntp: list[tuple[int, float]]  # (seed, average)
    unimae: list[tuple[int, float]]
    lm: dict[str, LmEvalResult | None]  # "base", "mntp-s42", "unimae-s42"


def scale_rows(results: str | Path = "results") -> list[ScaleRow]:
    """One row per model size that has any result."""
    results = Path(results)
    rows = []
    for model in MODELS:
        pool = {label: _average(results, model, key) for label, key in POOLINGS.items()}
        mntp, unimae = _seeds(results, model, "mntp"), _seeds(results, model, "unimae")
        lm = {k: lm_eval_result(results, model, k) for k in ("base", "mntp-s42", "unimae-s42")}
        if any(v is not None for v in pool.values()) or mntp or unimae or any(lm.values()):
            rows.append(ScaleRow(model, pool, mntp, unimae, lm))
    return rows


def _lead(row: ScaleRow) -> str:
    """UniMAE's average minus the best of the training-free poolings and MNTP, per seed.

    Over the baselines measured so far; those not run yet are named ("-": no UniMAE or no baseline).
    """
    others = dict(row.poolings)
    others["MNTP"] = max((a for _, a in row.mntp), default=None)
    measured = [a for a in others.values() if a is not None]
    if not row.unimae or not measured:
        return "-"
    lead = " / ".join(f"{100 * (a - max(measured)):+.2f}" for _, a in row.unimae)
    missing = [label for label, a in others.items() if a is None]
    return f"{lead} ({', '.join(missing)} not run)" if missing else lead


def _generation(row: ScaleRow) -> tuple[str, str]:
    """(perplexity cell, choice-accuracy cell): base / MNTP / UniMAE, then UniMAE against the base."""
    results = [row.lm[k] for k in ("base", "mntp-s42", "unimae-s42")]
    base, uni = results[0], results[2]
    ppl = " / ".join("not run" if r is None else f"{r.perplexity.perplexity:.2f}" for r in results)
    acc = " / ".join("not run" if r is None else f"{100 * r.choice_accuracy:.1f}" for r in results)
    if base is not None and uni is not None:
        ppl += f" ({100 * (uni.perplexity.perplexity / base.perplexity.perplexity - 1):+.1f}%)"
        acc += f" ({100 * (uni.choice_accuracy - base.choice_accuracy):+.1f})"
    return ppl, acc


def scale_table(results: str | Path = "results") -> list[str]:
    """Markdown: one row a model size (empty when no size has a result)."""
    rows = scale_rows(results)
    if not rows:
        return []
    head = [
        "model",
        *(f"{p} (base)" for p in POOLINGS),
        "MNTP",
        "UniMAE",
        "UniMAE - best other",
        "PPL ↓ base / MNTP / UniMAE",
        "MC acc base / MNTP / UniMAE",
    ]
    table = []
    for r in rows:
        pools = [f"{100 * a:.2f}" if a is not None else "not run" for a in r.poolings.values()]
        ppl, acc = _generation(r)
        table.append([f"`{r.model}`", *pools, _scores(r.mntp), _scores(r.unimae), _lead(r), ppl, acc])
    return markdown_table(head, table).splitlines()


def model_sizes_section(results: str | Path = "results") -> list[str]:
    """RESULTS.md's "Model sizes" section (no lines when no size has a result)."""
    table = scale_table(results)
    if not table:
        return []
    return [
        "## Model sizes",
        "",
        "`scripts/scale_study.sh MODEL` on each size, the default recipe unchanged (`configs/default.yaml` "
        "with `model=MODEL`; MNTP with the same optimizer). `offline` averages x 100; two numbers are "
        "seeds 42 / 7. UniMAE - best other: against the best of the two training-free poolings and MNTP "
        "(of those measured so far: a baseline not run yet is named). "
        "PPL and MC acc: seed 42, in brackets UniMAE against the base model. 135M results of the same "
        "recipe and seeds that predate the study are read where they are (`EARLIER` in `studies/scale.py`).",
        "",
        *table,
        "",
    ]
